"""From raw AMI messages to typed events to the tracker and other subscribers.

The link calls :class:`EventDispatcher` for every event. A malformed event is logged once per
(event, field) with context and skipped; a failing subscriber is logged and counted and the
other subscribers still get the event. Nothing here raises back into the link.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from telephony.calls import CallTracker
from telephony.events import AmiEvent, MalformedEvent, parse_event

log = logging.getLogger(__name__)

EventListener = Callable[[AmiEvent], None]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class EventDispatcher:
    """Callable sink for the AMI link: parse, track, fan out."""

    def __init__(self, tracker: CallTracker, *, clock: Clock = utc_now) -> None:
        self._tracker = tracker
        self._clock = clock
        self._listeners: list[EventListener] = []
        self._logged: set[tuple[str, str]] = set()
        self.events_typed = 0
        self.events_ignored = 0
        self.events_malformed = 0
        self.listener_errors = 0

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """``listener`` gets every typed event after the tracker has applied it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def __call__(self, message: Mapping[str, str]) -> None:
        try:
            event = parse_event(message)
        except MalformedEvent as exc:
            self.events_malformed += 1
            key = (exc.event, exc.field)
            if key not in self._logged:
                self._logged.add(key)
                log.warning("skipping malformed AMI event: %s (further ones not logged)", exc)
            return
        if event is None:
            self.events_ignored += 1
            return
        self.events_typed += 1
        self.deliver(event, self._clock())

    def deliver(self, event: AmiEvent, now: datetime) -> None:
        """Apply an already-typed event (also used by trace replay tests and benchmarks)."""
        try:
            self._tracker.handle(event, now)
        except Exception:
            # The tracker is our code: a bug there must not stop the link, but it is loud.
            self.listener_errors += 1
            log.exception("call tracker failed on %s", type(event).__name__)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                self.listener_errors += 1
                log.exception("event listener %r failed on %s", listener, type(event).__name__)
