"""Feed events: one frozen dataclass per kind, with typed fields.

A hook receives a :class:`FeedEvent` subclass and tells kinds apart by type::

    match event:
        case ModeChanged(new_mode=Mode.DISCONNECTED): ...
        case Unavailable(number=n, first_listed=first): ...

Every event has ``at`` (Unix seconds from :class:`~blockfeed.BlockFeed` hooks), ``reason`` (a
sentence for people) and ``endpoint`` (always redacted, None when no single endpoint is
concerned). ``kind`` is a class-level string (``"mode_changed"``, ...) for logs, filters and
JSON; it is not a constructor argument.

:meth:`FeedEvent.to_dict` is the one wire form (SSE, ``/status``, alert webhooks):
``kind``, ``at``, ``reason``, ``old_mode``, ``new_mode``, ``endpoint`` and a ``details`` object
built from the typed fields. :meth:`FeedEvent.from_dict` reads it back.

This module sits beside ``types.py`` at the bottom of the import graph: it imports nothing of
blockfeed at run time (``Mode`` is imported lazily), so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from blockfeed.types import Mode

_OPTIONAL = {"optional": True}
"""Field metadata: left out of the JSON ``details`` while it holds its default."""

_BASE_FIELDS = frozenset({"at", "reason", "endpoint"})


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedEvent:
    """Something a person or an alert should know about; the base of every event kind.

    Subclasses name their ``kind`` and add typed fields (the library's own are listed in
    :data:`EVENT_TYPES`). A frozen, keyword-only subclass of your own with a new ``kind`` can
    go through ``BlockFeed.emit_event``; ``to_dict`` works for it, ``from_dict`` does not know
    it. The 0.1 ``details`` dict is gone from the Python API (0.2): read the fields; the JSON form
    still has a ``details`` object, built from them.
    """

    kind: ClassVar[str] = ""
    _MODE_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Fields carried as the wire's top-level ``old_mode``/``new_mode``, not in ``details``."""

    at: float
    """Unix time (seconds) of the event, as delivered by :class:`BlockFeed` hooks."""
    reason: str
    endpoint: str | None = None
    """Always redacted."""

    def wire_modes(self) -> tuple[Mode | None, Mode | None]:
        """The ``(old_mode, new_mode)`` pair the JSON form shows (None for most kinds)."""
        return None, None

    def _details(self) -> dict[str, Any]:
        """The kind's own fields as a JSON-ready dict (the wire's ``details`` object)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _not_details(type(self)):
                continue
            value = getattr(self, f.name)
            if f.metadata.get("optional") and value == f.default:
                continue
            out[f.name] = _jsonable(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The one JSON form of an event (SSE, ``/status``, alert webhooks)."""
        old, new = self.wire_modes()
        return {
            "kind": self.kind,
            "at": self.at,
            "reason": self.reason,
            "old_mode": str(old) if old is not None else None,
            "new_mode": str(new) if new is not None else None,
            "endpoint": self.endpoint,
            "details": self._details(),
        }

    @classmethod
    def _from_wire_modes(cls, old: str | None, new: str | None) -> dict[str, Any]:
        """Constructor arguments for the wire's ``old_mode``/``new_mode`` (none for most)."""
        return {}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> FeedEvent:
        """Read back :meth:`to_dict`'s form; ValueError names what is wrong with it."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an event is a JSON object, not {type(data).__name__}")
        kind = data.get("kind")
        event_type = _BY_KIND.get(kind) if isinstance(kind, str) else None
        if event_type is None:
            raise ValueError(f"unknown event kind {kind!r}; known: {', '.join(sorted(_BY_KIND))}")
        details = data.get("details")
        if details is None:
            details = {}
        if not isinstance(details, Mapping):
            raise ValueError(f"{kind} event: details must be an object")
        typed = {f.name: f for f in fields(event_type)}
        unknown = sorted((set(details) - set(typed)) | (set(details) & _not_details(event_type)))
        if unknown:
            raise ValueError(f"{kind} event: unknown details {', '.join(map(str, unknown))}")
        for name, value in details.items():
            check = _WIRE_CHECKS.get(str(typed[name].type))
            if check is not None and not check(value):
                raise ValueError(f"{kind} event: {name} must be {typed[name].type}, got {value!r}")
        endpoint = data.get("endpoint")
        if endpoint is not None and not isinstance(endpoint, str):
            raise ValueError(f"{kind} event: endpoint must be a string, got {endpoint!r}")
        try:
            modes = event_type._from_wire_modes(data.get("old_mode"), data.get("new_mode"))
            return event_type(
                at=float(data["at"]),
                reason=str(data.get("reason") or ""),
                endpoint=endpoint,
                **modes,
                **details,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{kind} event: {exc}") from None


def _not_details(event_type: type[FeedEvent]) -> set[str]:
    """Fields that never travel in ``details`` (base fields, modes)."""
    return set(_BASE_FIELDS) | set(event_type._MODE_FIELDS)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def _is_str_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


_WIRE_CHECKS: dict[str, Callable[[object], bool]] = {
    "int": _is_int,
    "int | None": lambda v: v is None or _is_int(v),
    "float": lambda v: _is_int(v) or isinstance(v, float),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "str | None": lambda v: v is None or isinstance(v, str),
    "tuple[str, ...] | None": lambda v: v is None or _is_str_list(v),
    "Mapping[str, str] | None": lambda v: v is None or _is_str_map(v),
}
"""What a ``details`` value read from JSON may be, by the field's annotation."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _mode(value: str | None) -> Mode | None:
    from blockfeed.types import Mode  # types.py re-exports this module: import it lazily

    return None if value is None else Mode(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeChanged(FeedEvent):
    """The feed moved from one :class:`~blockfeed.Mode` to another.

    Alerts single out entering ``disconnected`` (:attr:`is_disconnect`) and getting back to
    ``streaming`` from a degraded mode (:attr:`is_recovery`).
    """

    kind: ClassVar[str] = "mode_changed"
    _MODE_FIELDS: ClassVar[tuple[str, ...]] = ("old_mode", "new_mode")
    old_mode: Mode
    new_mode: Mode

    def wire_modes(self) -> tuple[Mode | None, Mode | None]:
        return self.old_mode, self.new_mode

    @classmethod
    def _from_wire_modes(cls, old: str | None, new: str | None) -> dict[str, Any]:
        if old is None or new is None:
            raise ValueError("old_mode and new_mode are required")
        return {"old_mode": _mode(old), "new_mode": _mode(new)}

    @property
    def is_disconnect(self) -> bool:
        """True when no source answers any more."""
        return str(self.new_mode) == "disconnected"

    @property
    def is_recovery(self) -> bool:
        """True when streaming again after a degraded mode (not when leaving ``starting``)."""
        return str(self.new_mode) == "streaming" and str(self.old_mode) != "starting"


@dataclass(frozen=True, slots=True, kw_only=True)
class _FinalityEvent(FeedEvent):
    """Stalled/resumed carry the mode the feed is in (the wire shows it as old and new)."""

    _MODE_FIELDS: ClassVar[tuple[str, ...]] = ("mode",)
    mode: Mode | None = None

    def wire_modes(self) -> tuple[Mode | None, Mode | None]:
        return self.mode, self.mode

    @classmethod
    def _from_wire_modes(cls, old: str | None, new: str | None) -> dict[str, Any]:
        return {"mode": _mode(new)}


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalityStalled(_FinalityEvent):
    """Connections are healthy but the chain finalizes nothing (no reconnect storm follows)."""

    kind: ClassVar[str] = "finality_stalled"


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalityResumed(_FinalityEvent):
    """A new block was finalized after a stall."""

    kind: ClassVar[str] = "finality_resumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointQuarantined(FeedEvent):
    """An endpoint lied or lags far behind; it is not used for ``for_s`` seconds."""

    kind: ClassVar[str] = "endpoint_quarantined"
    for_s: float
    others_usable: int
    """Endpoints still usable meanwhile."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnect(FeedEvent):
    """A new socket attempt (``attempt`` counts from 1 per socket's life)."""

    kind: ClassVar[str] = "reconnect"
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockTimeChanged(FeedEvent):
    """The observed block time moved by more than 25 %; timings were rescaled to it."""

    kind: ClassVar[str] = "block_time"
    block_time_s: float
    previous_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationFailed(FeedEvent):
    """A header (or a block's contents) contradicts the verified chain or itself.

    Which fields are set says what failed:

    - a rejected header: ``number``, ``hash``, ``source``; when it is the block right after a
      resume checkpoint, also ``checkpoint`` (that number) and ``endpoints_disagreeing``;
    - endpoints listing different start blocks: ``number`` and ``votes`` (endpoint -> hash);
    - contents that do not match the header: ``contents`` True, ``first`` and ``last``;
    - an endpoint caught lying: no field but ``endpoint``.
    """

    kind: ClassVar[str] = "verification_failed"
    number: int | None = field(default=None, metadata=_OPTIONAL)
    hash: str | None = field(default=None, metadata=_OPTIONAL)
    source: str | None = field(default=None, metadata=_OPTIONAL)
    checkpoint: int | None = field(default=None, metadata=_OPTIONAL)
    endpoints_disagreeing: tuple[str, ...] | None = field(default=None, metadata=_OPTIONAL)
    votes: Mapping[str, str] | None = field(default=None, metadata=_OPTIONAL)
    contents: bool = field(default=False, metadata=_OPTIONAL)
    first: int | None = field(default=None, metadata=_OPTIONAL)
    last: int | None = field(default=None, metadata=_OPTIONAL)

    def __post_init__(self) -> None:
        # Frozen copies: a caller's list or dict changed later must not change the event.
        if self.endpoints_disagreeing is not None:
            object.__setattr__(self, "endpoints_disagreeing", tuple(self.endpoints_disagreeing))
        if self.votes is not None:
            object.__setattr__(self, "votes", dict(self.votes))

    @property
    def against_checkpoint(self) -> bool:
        """True when the block after a resume checkpoint does not extend it."""
        return self.checkpoint is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable(FeedEvent):
    """The block the feed needs next is below an endpoint's history (a pruned node, or a start
    before the chain's first block). ``first_listed``: a later block the endpoint does have,
    when it named one. The feed keeps retrying with backoff (an archive endpoint may answer);
    ``FeedStatus.error`` says so meanwhile."""

    kind: ClassVar[str] = "unavailable"
    number: int
    first_listed: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Diverged(FeedEvent):
    """Every endpoint serves another chain than the one delivered (F13): nothing more is
    delivered on it. The feed then stops with :class:`~blockfeed.errors.ChainDiverged` or
    follows the new chain (``on_divergence``)."""

    kind: ClassVar[str] = "chain_diverged"
    number: int
    delivered_hash: str
    their_hash: str
    what: str
    """E.g. ``another genesis``, ``another block #1 (the chain was restarted)``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeUpgraded(FeedEvent):
    """The spec version changed at block ``number`` (with ``contents=``)."""

    kind: ClassVar[str] = "runtime_upgraded"
    number: int
    hash: str
    from_spec_version: int
    to_spec_version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerFailed(FeedEvent):
    """An epoch trigger failed ``attempts`` times and was given up (never blocks the feed)."""

    kind: ClassVar[str] = "trigger_failed"
    name: str
    epoch: int
    block_number: int
    late: bool
    attempts: int
    error: str
    """``repr`` of the last exception, truncated."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkWrongChain(FeedEvent):
    """A sink refused to write into a target that holds another chain's blocks (once per
    episode)."""

    kind: ClassVar[str] = "sink_wrong_chain"
    stream: str
    stream_genesis: str
    """The genesis recorded in the target."""
    genesis: str | None
    """The genesis of the chain the feed follows (None if not known yet)."""
    redis: str
    """The sink's URL, redacted."""


EVENT_TYPES: tuple[type[FeedEvent], ...] = (
    ModeChanged,
    FinalityStalled,
    FinalityResumed,
    EndpointQuarantined,
    Reconnect,
    BlockTimeChanged,
    VerificationFailed,
    Unavailable,
    Diverged,
    RuntimeUpgraded,
    TriggerFailed,
    SinkWrongChain,
)
"""Every kind the library emits, one class each."""

_BY_KIND: dict[str, type[FeedEvent]] = {t.kind: t for t in EVENT_TYPES}

__all__ = [
    "EVENT_TYPES",
    "BlockTimeChanged",
    "Diverged",
    "EndpointQuarantined",
    "FeedEvent",
    "FinalityResumed",
    "FinalityStalled",
    "ModeChanged",
    "Reconnect",
    "RuntimeUpgraded",
    "SinkWrongChain",
    "TriggerFailed",
    "Unavailable",
    "VerificationFailed",
]
