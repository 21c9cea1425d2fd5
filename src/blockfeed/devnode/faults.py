"""The fault injector: which misbehaviours are active, with which options, until when.

Sans-I/O: it only records faults and answers "is X active?" against an injectable clock; the
node consults it for every message and reacts to injections through listeners. Faults overlap
freely and each expires on its own; when several of one kind overlap, the strongest wins (the
highest rate or delay, any "hang", any "reset").

Every kind, its fault class from DESIGN.md and its options live in :data:`FAULT_SPECS`; the CLI
help, the control API and scenario validation are generated from it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from blockfeed.errors import ConfigError

MAX_FAULT_SECONDS = 7 * 24 * 3600.0
MAX_TEXT_OPTION_CHARS = 500
TRANSPORTS = ("ws", "http", "both")
MALFORMED_KINDS = (
    "garbage",
    "invalid_json",
    "wrong_types",
    "missing_fields",
    "unknown_subscription",
    "oversized",
)
DISORDER_KINDS = ("duplicate", "reorder", "skip")
LIE_MODES = ("parent", "lag", "body")  # body: devnode/contents.py alters served bodies
RESET_GENESIS = ("new", "same")
RATE_LIMIT_CODE = -32029
RATE_LIMIT_MESSAGE = "rate limit exceeded"
"""What ``rpc_errors`` answers by default: the code and text some hosted providers send with
HTTP 200 (others use -32005 "limit exceeded" or -32016 "over rate limit"; set ``code``)."""
MAX_RETRY_AFTER_S = 86_400
SENDABLE_CLOSE_CODES = frozenset([1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)])
"""Close codes a close frame may carry (1004-1006 and 1015 are reserved)."""


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class InvalidFault(ConfigError):
    """A fault kind, duration or option is not valid; the message lists what is."""


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One option of a fault kind: its type, default, allowed values and meaning."""

    name: str
    type: type
    """bool, int, float, str, or tuple (a subset of ``choices``)."""
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    allowed: frozenset[int] | None = None
    """For ints: the only values accepted within low..high."""
    nullable: bool = False
    """``None`` (JSON ``null``) is accepted and means "not set"; shown as ``none``."""

    def describe(self) -> str:
        """``name=default`` plus allowed values, for help texts."""
        if self.default is None:
            default = "none"
        elif self.type is tuple:
            default = ",".join(self.default)
        elif self.type is bool:
            default = "true" if self.default else "false"
        else:
            default = _number_text(self.default) if self.type in (int, float) else self.default
        allowed = ""
        if self.choices:
            how_many = "one or more" if self.type is tuple else "one"
            allowed = f" ({how_many} of {'|'.join(self.choices)})"
        elif self.low is not None and self.high is not None:
            allowed = f" ({_number_text(self.low)}..{_number_text(self.high)})"
        return f"{self.name}={default}{allowed}: {self.help}"

    def check(self, kind: str, value: Any) -> Any:
        """The validated (and normalized) value, or ``InvalidFault`` saying what is expected."""
        where = f"fault {kind!r} option {self.name!r}"
        if value is None and self.nullable:
            return None
        if self.type is bool:
            if not isinstance(value, bool):
                raise InvalidFault(f"{where} must be true or false, got {value!r}")
            return value
        if self.type is int or self.type is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidFault(f"{where} must be a number, got {value!r}")
            if self.type is int and (not isinstance(value, int) and not float(value).is_integer()):
                raise InvalidFault(f"{where} must be a whole number, got {value!r}")
            number = int(value) if self.type is int else float(value)
            if self.allowed is not None and number not in self.allowed:
                raise InvalidFault(f"{where}: {value!r} is not allowed ({self.help})")
            if not math.isfinite(number) or (
                self.low is not None
                and self.high is not None
                and not self.low <= number <= self.high
            ):
                raise InvalidFault(
                    f"{where} must be from {_number_text(self.low or 0)} to "
                    f"{_number_text(self.high or 0)}, got {value!r}"
                )
            return number
        if self.type is str:
            if not self.choices:
                if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT_OPTION_CHARS:
                    raise InvalidFault(
                        f"{where} must be a string of 1 to {MAX_TEXT_OPTION_CHARS} characters, "
                        f"got {value!r}"
                    )
                return value
            if value not in self.choices:
                raise InvalidFault(
                    f"{where} must be one of {', '.join(self.choices)}; got {value!r}"
                )
            return value
        # tuple: a non-empty subset of choices, given as a list or a comma-separated string
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not items:
            raise InvalidFault(
                f"{where} must be a non-empty list of {', '.join(self.choices)}; got {value!r}"
            )
        cleaned = tuple(str(item).strip() for item in items)
        unknown = [item for item in cleaned if item not in self.choices]
        if unknown:
            raise InvalidFault(
                f"{where}: unknown {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(self.choices)}"
            )
        return cleaned


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault kind: the DESIGN.md class it models, what it does, its options."""

    kind: str
    fault_class: str
    summary: str
    default_seconds: float
    options: tuple[OptionSpec, ...] = ()

    def option_names(self) -> list[str]:
        return [option.name for option in self.options]


def _on(help_text: str) -> OptionSpec:
    return OptionSpec("on", str, "both", help_text, choices=TRANSPORTS)


def _flap(what: str) -> OptionSpec:
    return OptionSpec(
        "flap",
        bool,
        False,
        f"while {what}, keep the port open as a proxy in front of a dead node does: every new "
        "WebSocket is closed right after its handshake and HTTP requests get 502",
    )


FAULT_SPECS: Mapping[str, FaultSpec] = MappingProxyType(
    {
        spec.kind: spec
        for spec in (
            FaultSpec(
                "close",
                "F1",
                "abort every open socket now (WebSocket close frame, or a TCP reset); new "
                "connections are accepted",
                0.0,
                (
                    OptionSpec("reset", bool, False, "TCP reset (RST) instead of a close frame"),
                    OptionSpec(
                        "code",
                        int,
                        1001,
                        "WebSocket close code (1000-1003, 1007-1014 or 3000-4999)",
                        low=1000,
                        high=4999,
                        allowed=SENDABLE_CLOSE_CODES,
                    ),
                    OptionSpec(
                        "flap",
                        bool,
                        False,
                        "for the fault's duration also close every new WebSocket right after "
                        "its handshake (a proxy in front of a dead node)",
                    ),
                ),
            ),
            FaultSpec(
                "restart",
                "F2",
                "the node goes away: every socket drops (WebSocket and kept-alive HTTP alike), "
                "connections are refused (listening socket closed) and nothing is served until "
                "the fault ends, then it listens on the same port; the chain keeps growing "
                "meanwhile",
                5.0,
                (_flap("down"),),
            ),
            FaultSpec(
                "blackhole",
                "F3",
                "half-open sockets: TCP stays up but nothing flows either way (no responses, "
                "no notifications, pings unanswered); traffic resumes when the fault ends",
                5.0,
                (
                    OptionSpec("http", bool, True, "HTTP requests hang too"),
                    OptionSpec(
                        "new",
                        bool,
                        True,
                        "sockets opened during the fault are blackholed too (false: only those "
                        "open at injection, like a dropped NAT mapping)",
                    ),
                ),
            ),
            FaultSpec(
                "sub_stall",
                "F4",
                "subscriptions stop sending notifications while requests and pings are answered",
                5.0,
                (
                    OptionSpec(
                        "new",
                        bool,
                        False,
                        "subscriptions created during the fault are silent too",
                    ),
                ),
            ),
            FaultSpec(
                "sub_error",
                "F5",
                "subscribe requests are answered with a JSON-RPC error",
                5.0,
                (
                    OptionSpec("code", int, -32009, "JSON-RPC error code", low=-32768, high=32767),
                    OptionSpec("message", str, "Server is busy, try again later", "error message"),
                ),
            ),
            FaultSpec(
                "http_errors",
                "F6",
                "HTTP requests are answered with an error status, or hang",
                5.0,
                (
                    OptionSpec("status", int, 503, "HTTP status to answer", low=400, high=599),
                    OptionSpec("hang", bool, False, "hang until the fault ends instead"),
                    OptionSpec(
                        "retry_after",
                        int,
                        None,
                        "seconds sent in a Retry-After header (none: no header)",
                        low=0,
                        high=MAX_RETRY_AFTER_S,
                        nullable=True,
                    ),
                ),
            ),
            FaultSpec(
                "rpc_errors",
                "F6",
                "every JSON-RPC request (each one in a batch; not subscription notifications) "
                "is answered with a JSON-RPC error, as a rate-limiting provider does (HTTP "
                "status stays 200)",
                5.0,
                (
                    _on("which transport answers errors"),
                    OptionSpec(
                        "code", int, RATE_LIMIT_CODE, "JSON-RPC error code", low=-32768, high=32767
                    ),
                    OptionSpec("message", str, RATE_LIMIT_MESSAGE, "error message"),
                    OptionSpec("rate", float, 1.0, "share of requests answered so", low=0, high=1),
                ),
            ),
            FaultSpec(
                "finality_halt",
                "F7",
                "no new finalized blocks while best keeps growing; connections stay healthy",
                10.0,
            ),
            FaultSpec(
                "malformed",
                "F8",
                "garbage text, invalid JSON, wrong types, missing fields, unknown subscription "
                "ids and oversized frames mixed into WebSocket streams and HTTP answers",
                5.0,
                (
                    OptionSpec("rate", float, 0.3, "probability per message", low=0, high=1),
                    _on("where to inject"),
                    OptionSpec(
                        "kinds", tuple, MALFORMED_KINDS, "which malformations", MALFORMED_KINDS
                    ),
                    OptionSpec(
                        "big_bytes",
                        int,
                        3_000_000,
                        "size of oversized frames",
                        low=1024,
                        high=16_000_000,
                    ),
                    OptionSpec(
                        "replace",
                        bool,
                        False,
                        "on WebSocket, send the bad frame instead of the real message (HTTP "
                        "answers are always replaced)",
                    ),
                ),
            ),
            FaultSpec(
                "disorder",
                "F9",
                "finalized/new-head notifications are duplicated, reordered or skipped",
                5.0,
                (
                    OptionSpec("rate", float, 0.3, "probability per notification", low=0, high=1),
                    OptionSpec("kinds", tuple, DISORDER_KINDS, "which disorders", DISORDER_KINDS),
                ),
            ),
            FaultSpec(
                "lie",
                "F10",
                "the node lies: headers with a wrong parentHash (so their hash changes too), or "
                "a finalized head lagging far behind",
                5.0,
                (
                    OptionSpec("mode", str, "parent", "what to lie about", choices=LIE_MODES),
                    OptionSpec("blocks", int, 10, "lag mode: blocks behind", low=1, high=1_000_000),
                    _on("which transport lies"),
                    OptionSpec(
                        "rate", float, 1.0, "parent mode: share of headers that lie", low=0, high=1
                    ),
                ),
            ),
            FaultSpec(
                "latency",
                "F11",
                "every outgoing message (WebSocket frames, HTTP answers) is delayed",
                5.0,
                (
                    OptionSpec("delay_s", float, 0.5, "delay per message", low=0, high=60),
                    _on("which transport is slow"),
                ),
            ),
            FaultSpec(
                "reset",
                "F13",
                "the chain is replaced under the endpoint, as when a dev chain is restarted from "
                "scratch: every socket drops, the node is down (as in restart) for the fault's "
                "seconds, then serves the new chain; permanent: the old chain never comes back",
                1.0,
                (
                    OptionSpec(
                        "genesis",
                        str,
                        "new",
                        "new: another genesis (every hash differs from block 0); same: the same "
                        "block 0, every block after it differs",
                        choices=RESET_GENESIS,
                    ),
                    OptionSpec(
                        "start_block",
                        int,
                        1,
                        "first block of the new chain (1: restarted from scratch)",
                        low=1,
                        high=(1 << 31) - 1,
                    ),
                    _flap("down"),
                ),
            ),
        )
    }
)
FAULT_KINDS: tuple[str, ...] = tuple(FAULT_SPECS)


def fault_help() -> str:
    """Every fault kind with its class, meaning and options (for ``--help`` and docs)."""
    lines: list[str] = []
    for spec in FAULT_SPECS.values():
        lines.append(f"{spec.kind} ({spec.fault_class}): {spec.summary}.")
        lines.extend(f"    {option.describe()}" for option in spec.options)
    return "\n".join(lines)


def validate_fault(
    kind: Any, seconds: Any, options: Mapping[str, Any]
) -> tuple[FaultSpec, float, dict[str, Any]]:
    """Check a fault request; return its spec, duration and full options (defaults filled)."""
    if not isinstance(kind, str) or kind not in FAULT_SPECS:
        raise InvalidFault(f"unknown fault kind {kind!r}; valid kinds: {', '.join(FAULT_KINDS)}")
    spec = FAULT_SPECS[kind]
    if seconds is None:
        duration = spec.default_seconds
    elif (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= MAX_FAULT_SECONDS
    ):
        raise InvalidFault(
            f"fault {kind!r}: seconds must be a number from 0 to {MAX_FAULT_SECONDS:g}, "
            f"got {seconds!r}"
        )
    else:
        duration = float(seconds)
    known = {option.name: option for option in spec.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        valid = ", ".join(known) if known else "none"
        raise InvalidFault(
            f"fault {kind!r} has no option {', '.join(map(repr, unknown))}; valid options: {valid}"
        )
    full = {name: option.default for name, option in known.items()}
    for name, value in options.items():
        full[name] = known[name].check(kind, value)
    return spec, duration, full


@dataclass(frozen=True, slots=True)
class ActiveFault:
    """One injected fault: what, with which options, from when until when (clock seconds)."""

    id: str
    kind: str
    seconds: float
    options: Mapping[str, Any]
    started_at: float
    expires_at: float
    fault_class: str = field(default="")

    def remaining_s(self, now: float) -> float:
        """Seconds left at ``now`` (0 once expired)."""
        return max(0.0, self.expires_at - now)

    def to_dict(self, now: float) -> dict[str, Any]:
        """JSON-ready description (control API, logs)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "class": self.fault_class,
            "seconds": self.seconds,
            "remaining_s": round(self.remaining_s(now), 3),
            "options": {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in self.options.items()
            },
        }


FaultListener = Callable[[ActiveFault], None]


class FaultInjector:
    """Holds active faults; ``inject`` validates and records, listeners react at once."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._faults: list[ActiveFault] = []
        self._next_id = 1
        self._inject_listeners: list[FaultListener] = []
        self._change_listeners: list[Callable[[], None]] = []
        self.injected_total: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)

    def now(self) -> float:
        """The injector's clock (``time.monotonic`` unless a test gave another)."""
        return self._clock()

    def on_inject(self, listener: FaultListener) -> None:
        """Call ``listener(fault)`` right after each injection (the node acts on close/restart)."""
        self._inject_listeners.append(listener)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every inject or clear (wakes tasks waiting on faults)."""
        self._change_listeners.append(listener)

    def inject(self, kind: str, *, seconds: float | None = None, **options: Any) -> ActiveFault:
        """Start fault ``kind`` for ``seconds`` (the kind's default if None) with ``options``.

        Raises ``InvalidFault`` (a ``ValueError``) naming the valid kinds or options.
        """
        spec, duration, full = validate_fault(kind, seconds, options)
        now = self._clock()
        fault = ActiveFault(
            id=f"f{self._next_id}",
            kind=spec.kind,
            seconds=duration,
            options=MappingProxyType(full),
            started_at=now,
            expires_at=now + duration,
            fault_class=spec.fault_class,
        )
        self._next_id += 1
        self._faults.append(fault)
        self.injected_total[spec.kind] += 1
        for listener in list(self._inject_listeners):
            listener(fault)
        self._changed()
        return fault

    def active(self, kind: str | None = None) -> list[ActiveFault]:
        """Faults in effect now (optionally of one kind), oldest first."""
        now = self._clock()
        if any(fault.expires_at <= now for fault in self._faults):
            self._faults = [fault for fault in self._faults if fault.expires_at > now]
        if kind is None:
            return list(self._faults)
        return [fault for fault in self._faults if fault.kind == kind]

    def is_active(self, kind: str) -> bool:
        """True while at least one fault of ``kind`` is in effect."""
        return bool(self.active(kind))

    def clear(self, which: str | None = None) -> int:
        """End faults early: all (None), one by id (``"f3"``) or all of a kind; returns how many."""
        before = self.active()
        if which is None:
            kept: list[ActiveFault] = []
        else:
            kept = [fault for fault in before if which not in (fault.id, fault.kind)]
        self._faults = kept
        removed = len(before) - len(kept)
        if removed:
            self._changed()
        return removed

    def next_change_in_s(self) -> float | None:
        """Seconds until the next active fault expires (None when nothing is active)."""
        faults = self.active()
        if not faults:
            return None
        return max(0.0, min(fault.expires_at for fault in faults) - self._clock())

    def _changed(self) -> None:
        for listener in list(self._change_listeners):
            listener()


def option_values(faults: Iterable[ActiveFault], name: str) -> list[Any]:
    """The values of option ``name`` across ``faults`` (helper for "strongest wins")."""
    return [fault.options[name] for fault in faults]
