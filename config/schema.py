"""Typed, validated configuration of the hotline service.

Admins edit YAML (``hotline.yaml``, ``queues.yaml``); :func:`config.loader.load_config` turns
it into a frozen :class:`HotlineConfig`. Every model forbids unknown keys (a typo is an error,
not a silently ignored setting) and every value that later reaches an AMI action (queue names,
interfaces, member names, pause reasons) is checked here with the rules of :mod:`config.ami`
that :mod:`telephony.actions` applies too, so a bad value fails at load time instead of on a
live call.

Checks that span several items (a seat listed twice in one queue, one extension with two
names) raise one ``hotline_cross_check`` error whose context carries each problem's own key
path; the loader expands it so every problem is reported where it is.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Annotated, Any, Literal, NamedTuple, NoReturn, Self
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from config.ami import unsafe_reason
from config.asr import AsrConfig
from config.channels import ChannelsConfig
from config.routing import RoutingConfig
from config.sla import SlaConfig
from config.units import UnitsConfig

CROSS_CHECK = "hotline_cross_check"
"""Pydantic error type whose ``ctx["issues"]`` holds ``(relative key path, reason)`` pairs."""

# Department numbers are dialled as ``_8XXX`` in the ``departments`` context
# (docker/asterisk/extensions.conf); a seat there would make a transfer ring the wrong phone.
_DEPARTMENT_NUMBER = re.compile(r"^8[0-9]{3}$")
_HOTLINE_NUMBER = "12345"
_EXTENSION = re.compile(r"^[0-9]{2,10}$")
# ``;`` starts a comment in Asterisk .conf files and ``"<>`` break a CallerID, so a display name
# that is rendered into pjsip.conf must not hold them.
_NAME_FORBIDDEN = set(';"<>\\')


def fail_cross_check(issues: Iterable[tuple[str, str]]) -> NoReturn:
    """Raise one pydantic error carrying several ``(relative path, reason)`` problems."""
    found = tuple(issues)
    summary = "; ".join(f"{path}: {reason}" if path else reason for path, reason in found)
    raise PydanticCustomError(CROSS_CHECK, "{summary}", {"summary": summary, "issues": found})


def _ami_safe(kind: str | None) -> AfterValidator:
    """A validator with the rules :func:`telephony.actions.check_value` applies to ``kind``."""

    def check(value: str) -> str:
        if (reason := unsafe_reason(value, kind)) is not None:
            raise PydanticCustomError("ami_unsafe", "not safe for Asterisk: {reason}",
                                      {"reason": reason})
        return value

    return AfterValidator(check)


def _display_name(value: str) -> str:
    bad = sorted(_NAME_FORBIDDEN.intersection(value))
    if bad:
        raise PydanticCustomError("bad_name", "must not contain {chars}",
                                  {"chars": " ".join(bad)})
    if not value.strip():
        raise PydanticCustomError("empty", "must not be empty")
    return value


def _extension(value: str) -> str:
    if not _EXTENSION.match(value):
        raise PydanticCustomError("bad_extension", "must be 2 to 10 digits")
    if _DEPARTMENT_NUMBER.match(value):
        raise PydanticCustomError(
            "department_number", "8XXX numbers are reserved for departments (转办部门号码)")
    if value == _HOTLINE_NUMBER:
        raise PydanticCustomError("hotline_number", "12345 is the hotline's own number")
    return value


def _template(kind: str | None) -> AfterValidator:
    """A template holding ``{extension}`` and nothing else, whose expansion is AMI-safe."""

    def check(value: str) -> str:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise PydanticCustomError("bad_template", "bad template: {reason}",
                                      {"reason": str(exc)}) from None
        if fields != {"extension"}:
            raise PydanticCustomError(
                "bad_template", "must use {{extension}} and no other placeholder")
        if (reason := unsafe_reason(value.format(extension="1001"), kind)) is not None:
            raise PydanticCustomError("ami_unsafe", "expands to a value not safe for Asterisk: "
                                      "{reason}", {"reason": reason})
        return value

    return AfterValidator(check)


Extension = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v),
                      AfterValidator(_extension), _ami_safe("exten")]
DisplayName = Annotated[str, Field(max_length=40), _ami_safe(None),
                        AfterValidator(_display_name)]
QueueName = Annotated[str, _ami_safe("queue")]
Interface = Annotated[str, _ami_safe("interface")]
PauseReason = Annotated[str, Field(min_length=1, max_length=20), _ami_safe(None)]
Seconds = Annotated[float, Field(gt=0, le=3600)]
Strategy = Literal["ringall", "leastrecent", "fewestcalls", "random", "rrmemory", "linear",
                   "wrandom", "rrordered"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def _int_text(value: Any) -> Any:
    """``"30"`` (from an environment variable) → 30, for Literal ints that do not coerce."""
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _agent_token(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value()
    if len(raw) < 8 or any(c.isspace() or not c.isprintable() for c in raw):
        # The reason never echoes the token itself.
        raise PydanticCustomError(
            "bad_token", "token must be at least 8 printable characters without spaces")
    return value


class ServiceConfig(_Section):
    """``service`` section of ``hotline.yaml``: the process itself."""

    name: Annotated[str, Field(min_length=1, max_length=80)] = "12345 政务服务便民热线"
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    # A SecretStr because a PostgreSQL URL carries its password; use safe_database_url() in logs.
    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///var/hotline.db")
    log_level: Annotated[LogLevel, BeforeValidator(_upper)] = "INFO"
    log_format: Literal["console", "json"] = "console"
    admin_token: Annotated[SecretStr, AfterValidator(_agent_token)] | None = None
    agent_tokens: dict[Extension, Annotated[SecretStr, AfterValidator(_agent_token)]] = {}
    timezone: str = "Asia/Shanghai"
    shutdown_grace_seconds: Seconds = 10.0
    # Seconds an HTTP request may take to arrive, from its first byte: its line and headers,
    # and the whole request with its body (a 20 MB attachment at 2 Mbit/s takes 80 s).
    # Without them, clients sending a byte every 3 s held their sockets without end.
    http_header_timeout_seconds: Seconds = 10.0
    http_body_timeout_seconds: Seconds = 120.0

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError("bad_timezone", "unknown time zone") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _url_has_scheme(cls, value: SecretStr) -> SecretStr:
        if "://" not in value.get_secret_value():
            raise PydanticCustomError("bad_url", "must be a URL like sqlite+aiosqlite:///var/x.db")
        return value

    def safe_database_url(self) -> str:
        """The database URL with any password replaced by ``***``, for logs."""
        url = self.database_url.get_secret_value()
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))


class AmiConfig(_Section):
    """``ami`` section of ``hotline.yaml``: the Asterisk Manager Interface link."""

    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5038
    username: Annotated[str, _ami_safe("variable")] = "hotline"
    secret: Annotated[SecretStr, Field(min_length=1)] | None = None
    connect_timeout: Seconds = 5.0
    action_timeout: Seconds = 10.0
    ping_interval: Seconds = 20.0
    ping_timeout: Seconds = 5.0
    backoff_initial: Seconds = 0.5
    backoff_max: Seconds = 30.0
    backoff_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    max_message_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 65536
    # Asterisk's queue_log file (logger.conf: queue_log = yes, queue_log_to_file = yes), read
    # after every reconnect to record calls that began and ended while the service could not
    # see (telephony/queue_log.py). None: such calls are not recorded.
    queue_log_path: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("secret")
    @classmethod
    def _secret_safe(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (reason := unsafe_reason(value.get_secret_value())):
            raise PydanticCustomError("ami_unsafe", "not safe for Asterisk: {reason}",
                                      {"reason": reason})
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        issues = []
        if self.backoff_max < self.backoff_initial:
            issues.append(("backoff_max", "must not be smaller than backoff_initial"))
        if self.ping_timeout >= self.ping_interval:
            issues.append(("ping_timeout", "must be shorter than ping_interval"))
        if issues:
            fail_cross_check(issues)
        return self


class StatsConfig(_Section):
    """``stats`` section of ``hotline.yaml``: queue statistics."""

    # GB/T 33358 (呼叫中心服务规范): service level = share of calls answered within 15 s.
    service_level_seconds: Annotated[int, Field(ge=1, le=600)] = 15
    interval_minutes: Annotated[Literal[5, 10, 15, 20, 30, 60], BeforeValidator(_int_text)] = 15
    days_kept: Annotated[int, Field(ge=1, le=3660)] = 400


class Seat(_Section):
    """A seat (坐席) in a queue: its extension, display name and penalty."""

    extension: Extension
    name: DisplayName
    penalty: Annotated[int, Field(ge=0, le=999)] = 0
    interface: Interface | None = None  # overrides QueuesConfig.interface_template
    # Overrides the state interface derived from ``interface`` (see state_interface_for).
    state_interface: Interface | None = None


class Queue(_Section):
    """One Asterisk queue and its seats."""

    name: QueueName
    description: Annotated[str, Field(max_length=80), _ami_safe(None),
                           AfterValidator(_display_name)]
    strategy: Strategy = "rrmemory"
    ring_timeout: Annotated[int, Field(ge=1, le=300)] = 15
    retry: Annotated[int, Field(ge=0, le=60)] = 1
    max_wait_seconds: Annotated[int, Field(ge=1, le=3600)] = 120
    service_level_seconds: Annotated[int, Field(ge=1, le=600)] = 15
    seats: tuple[Seat, ...] = ()

    @model_validator(mode="after")
    def _no_duplicate_seat(self) -> Self:
        first: dict[str, int] = {}
        issues = []
        for i, seat in enumerate(self.seats):
            if seat.extension in first:
                issues.append((f"seats[{i}].extension",
                               f"duplicate of seats[{first[seat.extension]}]"))
            else:
                first[seat.extension] = i
        if issues:
            fail_cross_check(issues)
        return self


class Membership(NamedTuple):
    """A seat's membership of a queue, as Asterisk sees it."""

    queue: str
    interface: str
    penalty: int


def _department_number(value: str) -> str:
    if not (len(value) == 4 and value.startswith("8") and value.isdigit()):
        raise PydanticCustomError("department_number",
                                  "department numbers are 8XXX (the departments context)")
    return value


class Department(_Section):
    """A department (转办部门) seats can transfer to or bring into a three-way call."""

    number: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v),
                      AfterValidator(_department_number)]
    name: DisplayName


def _device_of(interface: str) -> str:
    """``Local/1001@seats/n`` → ``Local/1001@seats``; other technologies are their own device."""
    if interface.startswith("Local/") and interface.count("/") == 2:
        return interface.rsplit("/", 1)[0]
    return interface


class QueuesConfig(_Section):
    """``queues.yaml``: queues, seats, departments and how seats appear to Asterisk."""

    pause_reasons: tuple[PauseReason, ...] = ("小休", "午休", "培训", "会议", "就餐")
    wrapup_seconds: Annotated[int, Field(ge=0, le=600)] = 10
    # How long an attended transfer (咨询转接) may take to reach the department before the
    # desk is told it failed: Asterisk's own limit (features.conf atxfernoanswertimeout,
    # 15 s by default) plus dialling.
    attended_transfer_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 25.0
    interface_template: Annotated[str, _template("interface")] = "PJSIP/{extension}"
    # None: the same as the interface (right for PJSIP; Local channels need the device here).
    state_interface_template: Annotated[str, _template("interface")] | None = None
    member_name_template: Annotated[str, _template(None)] = "seat-{extension}"
    queues: tuple[Queue, ...] = ()
    departments: tuple[Department, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        issues: list[tuple[str, str]] = []
        seen_department: dict[str, int] = {}
        for i, dept in enumerate(self.departments):
            if dept.number in seen_department:
                issues.append((f"departments[{i}].number",
                               f"duplicate of departments[{seen_department[dept.number]}]"))
            seen_department.setdefault(dept.number, i)
        seen_reason: dict[str, int] = {}
        for i, reason in enumerate(self.pause_reasons):
            if reason in seen_reason:
                issues.append((f"pause_reasons[{i}]",
                               f"duplicate of pause_reasons[{seen_reason[reason]}]"))
            seen_reason.setdefault(reason, i)
        seen_queue: dict[str, int] = {}
        # extension -> (path of its first listing, seat)
        seat_at: dict[str, tuple[str, Seat]] = {}
        owner_of_interface: dict[str, str] = {}
        for q, queue in enumerate(self.queues):
            if queue.name in seen_queue:
                issues.append((f"queues[{q}].name",
                               f"duplicate of queues[{seen_queue[queue.name]}]"))
            seen_queue.setdefault(queue.name, q)
            for s, seat in enumerate(queue.seats):
                here = f"queues[{q}].seats[{s}]"
                if seat.extension in seat_at:
                    where, known = seat_at[seat.extension]
                    if known.name != seat.name:
                        issues.append((f"{here}.name", f"seat {seat.extension} is named "
                                       f"{known.name!r} in {where}"))
                    if known.interface != seat.interface:
                        issues.append((f"{here}.interface", f"seat {seat.extension} has another "
                                       f"interface in {where}"))
                    if known.state_interface != seat.state_interface:
                        issues.append((f"{here}.state_interface", f"seat {seat.extension} has "
                                       f"another state_interface in {where}"))
                    continue
                seat_at[seat.extension] = (here, seat)
                interface = self.interface_for(seat)
                other = owner_of_interface.setdefault(interface, seat.extension)
                if other != seat.extension:
                    issues.append((f"{here}.interface",
                                   f"interface {interface} is also seat {other}'s"))
        if issues:
            fail_cross_check(issues)
        return self

    def all_seats(self) -> tuple[Seat, ...]:
        """Every distinct seat (by extension), in the order they first appear."""
        seats: dict[str, Seat] = {}
        for queue in self.queues:
            for seat in queue.seats:
                seats.setdefault(seat.extension, seat)
        return tuple(seats.values())

    def seat(self, extension: str) -> Seat | None:
        """The seat with this extension, or ``None``."""
        return next((s for s in self.all_seats() if s.extension == extension), None)

    def queue(self, name: str) -> Queue | None:
        """The queue with this name, or ``None``."""
        return next((q for q in self.queues if q.name == name), None)

    def interface_for(self, seat: Seat) -> str:
        """The AMI ``Interface`` of ``seat`` (``PJSIP/1001`` or ``Local/1001@seats/n``)."""
        return seat.interface or self.interface_template.format(extension=seat.extension)

    def state_interface_for(self, seat: Seat) -> str:
        """The AMI ``StateInterface`` whose device state tells whether ``seat`` is busy.

        A seat with its own ``interface`` is its own device: the template (written for the
        templated interfaces) does not apply to it. Its state interface is ``state_interface``
        if given, else its interface without a Local channel's options (``Local/2001@x/n`` →
        ``Local/2001@x``; Asterisk reports a Local device in use while a channel to that
        extension exists). With the template's device instead, Asterisk saw the seat "Not in
        use" while it rang and could ring it for a second caller.
        """
        if seat.state_interface is not None:
            return seat.state_interface
        if seat.interface is not None:
            return _device_of(seat.interface)
        if self.state_interface_template is None:
            return self.interface_for(seat)
        return self.state_interface_template.format(extension=seat.extension)

    def member_name_for(self, seat: Seat) -> str:
        """The AMI ``MemberName`` of ``seat`` (``seat-1001``)."""
        return self.member_name_template.format(extension=seat.extension)

    def memberships(self) -> frozenset[Membership]:
        """Every ``(queue, interface, penalty)`` Asterisk should hold."""
        return frozenset(Membership(q.name, self.interface_for(s), s.penalty)
                         for q in self.queues for s in q.seats)


class HotlineConfig(_Section):
    """The whole configuration. Frozen: a reload builds a new one (see
    :meth:`hotline.app.Hotline.reload_config`)."""

    service: ServiceConfig = ServiceConfig()
    ami: AmiConfig = AmiConfig()
    stats: StatsConfig = StatsConfig()
    queues: QueuesConfig = QueuesConfig()
    channels: ChannelsConfig = ChannelsConfig()
    sla: SlaConfig = SlaConfig()
    units: UnitsConfig = UnitsConfig()
    routing: RoutingConfig = RoutingConfig()
    asr: AsrConfig = AsrConfig()

    @model_validator(mode="after")
    def _rules_name_known_units(self) -> Self:
        """A classification rule (or a unit token) naming a unit units.yaml does not have
        would send orders nowhere: refuse it at load time."""
        if not self.units.units:
            return self
        known = {u.id for u in self.units.units} | {self.units.territorial_label}
        issues = [(f"routing.classify.rules[{i}].unit",
                   f"unknown unit {rule.unit!r} (not in units.yaml)")
                  for i, rule in enumerate(self.routing.classify.rules)
                  if rule.unit is not None and rule.unit not in known]
        issues += [(f"routing.unit_tokens.{unit}", f"unknown unit {unit!r} (not in units.yaml)")
                   for unit in self.routing.unit_tokens if unit not in known]
        if issues:
            fail_cross_check(issues)
        return self
