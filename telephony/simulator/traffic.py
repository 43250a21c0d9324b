"""Simulated citizens and seats: Poisson arrivals, patience, talk and wrap-up, seats that
do not answer, random pauses with the hotline's reasons."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from telephony.simulator.dialplan import Dialplan
from telephony.simulator.queues import Member

PAUSE_REASONS = ("小休", "午休", "培训", "会议")


@dataclass(frozen=True)
class TrafficConfig:
    """Traffic parameters; durations are simulated seconds."""

    calls_per_minute: float = 60.0
    mean_patience: float = 60.0
    mean_talk: float = 120.0
    no_answer_probability: float = 0.05
    pauses_per_minute: float = 1.0
    mean_pause: float = 120.0
    # Share of callers sent through [incoming-asr] (their IVR utterance streamed over
    # AudioSocket when the dialplan has a source) instead of [incoming].
    asr_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("calls_per_minute", "mean_patience", "mean_talk", "pauses_per_minute",
                     "mean_pause"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrafficConfig.{name} must be >= 0")
        if not 0 <= self.no_answer_probability <= 1:
            raise ValueError("TrafficConfig.no_answer_probability must be within [0, 1]")
        if not 0 <= self.asr_share <= 1:
            raise ValueError("TrafficConfig.asr_share must be within [0, 1]")


class Traffic:
    """Runs the arrival and pause processes until stopped."""

    def __init__(self, dialplan: Dialplan, config: TrafficConfig) -> None:
        self.d = dialplan
        self.e = dialplan.e
        self.config = config
        self._tasks: set[asyncio.Task[None]] = set()
        self.callers = 0

    @property
    def running(self) -> bool:
        """Is traffic being generated?"""
        return bool(self._tasks)

    def start(self) -> None:
        """Start arrivals and pauses (idempotent)."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        for coro in (self._arrivals(), self._pauses()):
            task = loop.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop generating; calls in progress run to their end."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def add_caller(self) -> str:
        """One citizen now, with sampled patience and talk time; returns its channel."""
        cfg, rng = self.config, self.e.rng
        self.callers += 1
        number = f"13{rng.randrange(10**9):09d}"
        patience = rng.expovariate(1 / cfg.mean_patience) if cfg.mean_patience else None
        talk = max(1.0, round(rng.expovariate(1 / cfg.mean_talk), 1)) if cfg.mean_talk else 3.0
        self._prepare_seats(talk)
        # The caller stays on long enough for the seat to end the call (Reason=agent) most
        # of the time; a short TALK makes the caller hang up first (Reason=caller).
        caller_talk = talk * 3 if rng.random() < 0.8 else talk / 2
        # Drawn only when asked for: seeded runs without ASR keep their exact sequence.
        context = ("incoming-asr" if cfg.asr_share and rng.random() < cfg.asr_share
                   else "incoming")
        return self.d.add_caller(number, talk=caller_talk + 10, patience=patience,
                                 context=context)

    def _prepare_seats(self, talk: float) -> None:
        """Choose per-seat behaviour for the next ring: talk time, answer or not."""
        qapp = self.d.q
        rng = self.e.rng
        for q in self.e.queues.values():
            for m in q.members.values():
                if m.interface not in qapp.talk_time:
                    qapp.talk_time[m.interface] = max(
                        1.0, round(rng.expovariate(1 / self.config.mean_talk), 1))
                if rng.random() < self.config.no_answer_probability:
                    qapp.no_answer.add(m.interface)
                else:
                    qapp.no_answer.discard(m.interface)

    async def _arrivals(self) -> None:
        rate = self.config.calls_per_minute / 60.0
        if rate <= 0:
            return
        while True:
            await self.e.clock.sleep(self.e.rng.expovariate(rate))
            self.add_caller()

    async def _pauses(self) -> None:
        rate = self.config.pauses_per_minute / 60.0
        if rate <= 0:
            return
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self.e.clock.sleep(self.e.rng.expovariate(rate))
                idle = [m for q in self.e.queues.values() for m in q.members.values()
                        if not m.paused and not m.in_call and not m.ringing]
                if not idle:
                    continue
                member = self.e.rng.choice(idle)
                self.d.q.set_paused(member, True, self.e.rng.choice(PAUSE_REASONS))
                task = asyncio.get_running_loop().create_task(self._unpause_later(member))
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _unpause_later(self, member: Member) -> None:
        await self.e.clock.sleep(self.e.rng.expovariate(1 / max(self.config.mean_pause, 1)))
        queue = self.e.queues.get(member.queue)
        if queue is not None and queue.members.get(member.interface) is member:
            self.d.q.set_paused(member, False)
