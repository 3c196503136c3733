"""Event records: one frozen dataclass per event type, and strict parsing from JSON bytes.

Every event is a JSON object with ``type``, ``event_id`` (the idempotency key) and ``ts``
(event time, ms since epoch; when absent the Kafka record timestamp is used). Fields not
named here are ignored, so producers can add fields without breaking workers.

IDs are opaque strings of 1 to 64 characters. Because they become parts of Redis keys
(``fa:feed:{<id>}``) and of comma-separated attribution lists, they may not contain ``:``,
``{``, ``}``, ``,``, whitespace or control characters. JSON integers are accepted as ids
and read as their decimal string (snowflakes often travel as numbers).
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

import orjson

__all__ = [
    "EVENT_TYPES",
    "Account",
    "Block",
    "DeletePost",
    "Event",
    "Follow",
    "Gift",
    "InvalidEvent",
    "Limits",
    "Mute",
    "OrderStatus",
    "Post",
    "ProductView",
    "Purchase",
    "Repost",
    "Unblock",
    "Unfollow",
    "Unmute",
    "Unrepost",
    "parse_event",
    "validate_id",
]

MAX_ID_CHARS = 64
_FORBIDDEN_IN_ID = frozenset(":{},")
#: Printable ASCII but space and the forbidden characters: ids that need no closer look.
_SAFE_ASCII_ID = re.compile(r"[\x21-\x2b\x2d-\x39\x3b-\x7a\x7c\x7e]+")
_safe_id = _SAFE_ASCII_ID.fullmatch
ORDER_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "refunded")
ACCOUNT_ACTIONS = ("suspend", "reinstate", "label", "unlabel")


class InvalidEvent(ValueError):
    """An event that cannot be handled; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied while parsing."""

    max_event_bytes: int = 64 * 1024
    max_text_chars: int = 4000
    #: Longest list of product ids a post may tag.
    max_tagged_products: int = 10


# Field kinds, kept in dataclass field metadata and read by the parser.
_ID, _TEXT, _CHOICE, _INT, _IDS = "id", "text", "choice", "int", "ids"


def _id(*, optional: bool = False) -> Any:
    return (
        field(default=None, metadata={"kind": _ID}) if optional else field(metadata={"kind": _ID})
    )


def _text() -> Any:
    return field(default=None, metadata={"kind": _TEXT})


def _choice(*values: str, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"kind": _CHOICE, "values": values})


def _ids() -> Any:
    """An optional list of ids (at most ``Limits.max_tagged_products``), kept as a tuple."""
    return field(default=None, metadata={"kind": _IDS})


def _int(*, optional: bool = False) -> Any:
    meta = {"kind": _INT}
    return field(default=None, metadata=meta) if optional else field(metadata=meta)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event has. ``type`` is a class attribute of each subclass."""

    type: ClassVar[str] = ""
    event_id: str = _id()
    ts: int = _int()


@dataclass(frozen=True, slots=True, kw_only=True)
class Post(Event):
    type: ClassVar[str] = "post"
    post_id: str = _id()
    author_id: str = _id()
    text: str | None = _text()
    media_url: str | None = _text()
    visibility: str = _choice("public", "followers", default="public")
    #: Products tagged in the clip.
    product_ids: tuple[str, ...] | None = _ids()


@dataclass(frozen=True, slots=True, kw_only=True)
class DeletePost(Event):
    type: ClassVar[str] = "delete_post"
    post_id: str = _id()
    author_id: str = _id()


@dataclass(frozen=True, slots=True, kw_only=True)
class Repost(Event):
    type: ClassVar[str] = "repost"
    repost_id: str = _id()
    post_id: str = _id()
    post_author_id: str = _id()
    reposter_id: str = _id()
    via_repost_id: str | None = _id(optional=True)
    comment: str | None = _text()


@dataclass(frozen=True, slots=True, kw_only=True)
class Unrepost(Event):
    type: ClassVar[str] = "unrepost"
    repost_id: str = _id()
    reposter_id: str = _id()
    post_id: str = _id()


@dataclass(frozen=True, slots=True, kw_only=True)
class _FollowEdge(Event):
    follower_id: str = _id()
    followee_id: str = _id()


@dataclass(frozen=True, slots=True, kw_only=True)
class Follow(_FollowEdge):
    type: ClassVar[str] = "follow"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unfollow(_FollowEdge):
    type: ClassVar[str] = "unfollow"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Hiding(Event):
    """block, unblock, mute, unmute: ``user_id`` acts on ``target_id``."""

    user_id: str = _id()
    target_id: str = _id()


@dataclass(frozen=True, slots=True, kw_only=True)
class Block(_Hiding):
    type: ClassVar[str] = "block"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unblock(_Hiding):
    type: ClassVar[str] = "unblock"


@dataclass(frozen=True, slots=True, kw_only=True)
class Mute(_Hiding):
    type: ClassVar[str] = "mute"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unmute(_Hiding):
    type: ClassVar[str] = "unmute"


@dataclass(frozen=True, slots=True, kw_only=True)
class Gift(Event):
    type: ClassVar[str] = "gift"
    gift_id: str = _id()
    sender_id: str = _id()
    recipient_id: str = _id()
    offer_id: str = _id()
    message: str | None = _text()


@dataclass(frozen=True, slots=True, kw_only=True)
class Purchase(Event):
    type: ClassVar[str] = "purchase"
    order_id: str = _id()
    buyer_id: str = _id()
    product_id: str = _id()
    seller_id: str = _id()
    amount_cents: int = _int()
    currency: str = _id()
    via_post_id: str | None = _id(optional=True)
    via_repost_id: str | None = _id(optional=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductView(Event):
    """A user looked at a product, perhaps from a clip (``via_post_id``) that reached them
    through a repost (``via_repost_id``)."""

    type: ClassVar[str] = "product_view"
    user_id: str = _id()
    product_id: str = _id()
    via_post_id: str | None = _id(optional=True)
    via_repost_id: str | None = _id(optional=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatus(Event):
    type: ClassVar[str] = "order_status"
    order_id: str = _id()
    buyer_id: str = _id()
    status: str = _choice(*ORDER_STATUSES)
    seq: int | None = _int(optional=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Account(Event):
    type: ClassVar[str] = "account"
    user_id: str = _id()
    action: str = _choice(*ACCOUNT_ACTIONS)
    label: str | None = _id(optional=True)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        Post, DeletePost, Repost, Unrepost, Follow, Unfollow, Block, Unblock, Mute, Unmute,
        Gift, Purchase, OrderStatus, Account, ProductView,
    )
}  # fmt: skip

# Per type: (name, kind, choices, required) for each field, computed once.
_SPECS: dict[str, tuple[tuple[str, str, tuple[str, ...], bool], ...]] = {
    name: tuple(
        (
            f.name,
            f.metadata["kind"],
            f.metadata.get("values", ()),
            f.default is MISSING and f.name != "ts",
        )
        for f in fields(cls)
    )
    for name, cls in EVENT_TYPES.items()
}


def validate_id(value: Any, name: str) -> str:
    """Return ``value`` as an id string, or raise :class:`InvalidEvent` saying what is wrong."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidEvent(f"field {name!r} must be a string id, got {type(value).__name__}")
    if not value:
        raise InvalidEvent(f"field {name!r} is empty")
    if len(value) > MAX_ID_CHARS:
        raise InvalidEvent(f"field {name!r} is longer than {MAX_ID_CHARS} characters")
    if _SAFE_ASCII_ID.fullmatch(value):  # the common case, without a Python loop
        return value
    for ch in value:
        if ch in _FORBIDDEN_IN_ID or ch.isspace() or not ch.isprintable():
            raise InvalidEvent(f"field {name!r} contains forbidden character {ch!r}")
    return value


def _field_value(obj: dict[str, Any], name: str, kind: str, choices: tuple[str, ...],
                 limits: Limits) -> Any:  # fmt: skip
    value = obj[name]
    if kind == _ID:
        # The common case first (a plain ASCII id), without a call; the rest says why.
        if type(value) is str and len(value) <= MAX_ID_CHARS and _SAFE_ASCII_ID.fullmatch(value):
            return value
        return validate_id(value, name)
    if kind == _INT:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidEvent(f"field {name!r} must be an integer, got {type(value).__name__}")
        if value < 0:
            raise InvalidEvent(f"field {name!r} must not be negative")
        return value
    if kind == _IDS:
        if not isinstance(value, list):
            raise InvalidEvent(f"field {name!r} must be a list of ids, got {type(value).__name__}")
        if len(value) > limits.max_tagged_products:
            raise InvalidEvent(
                f"field {name!r} has too many ids ({len(value)} > {limits.max_tagged_products})"
            )
        return tuple(validate_id(item, f"{name}[{n}]") for n, item in enumerate(value))
    if kind == _CHOICE:
        if value not in choices:
            raise InvalidEvent(f"field {name!r} must be one of {', '.join(choices)}; got {value!r}")
        return value
    if not isinstance(value, str):
        raise InvalidEvent(f"field {name!r} must be a string, got {type(value).__name__}")
    if len(value) > limits.max_text_chars:
        raise InvalidEvent(
            f"field {name!r} is too long ({len(value)} > {limits.max_text_chars} characters)"
        )
    return value


def parse_event(
    raw: bytes | None, *, record_ts: int | None = None, limits: Limits = Limits()
) -> Event:
    """Parse and validate one event from its JSON bytes.

    ``record_ts`` is the Kafka record timestamp, used when the event has no ``ts``.
    Raises :class:`InvalidEvent` with a short reason for anything it cannot accept.
    """
    if raw is None:
        raise InvalidEvent("empty value (tombstone)")
    if len(raw) > limits.max_event_bytes:
        raise InvalidEvent(f"event too large ({len(raw)} > {limits.max_event_bytes} bytes)")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(obj).__name__}")
    type_name = obj.get("type")
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise InvalidEvent(
            "missing field 'type'" if type_name is None else f"unknown type {type_name!r}"
        )
    if obj.get("ts") is None:
        if record_ts is None:
            raise InvalidEvent("missing field 'ts' and no record timestamp")
        obj["ts"] = record_ts
    values: dict[str, Any] = {}
    for name, kind, choices, required in _SPECS[cls.type]:
        value = obj.get(name)
        if value is None:
            if required:
                raise InvalidEvent(f"missing field {name!r}")
            continue
        # The common cases inline (a plain ASCII id, a non-negative integer); the rest,
        # and whatever is wrong, through _field_value.
        if kind == _ID:
            if type(value) is str and len(value) <= MAX_ID_CHARS and _safe_id(value):
                values[name] = value
                continue
        elif kind == _INT and type(value) is int and value >= 0:
            values[name] = value
            continue
        values[name] = _field_value(obj, name, kind, choices, limits)
    event = cls(**values)
    _check_rules(event)
    return event


def _check_rules(event: Event) -> None:
    """Rules that span fields."""
    if isinstance(event, _FollowEdge) and event.follower_id == event.followee_id:
        raise InvalidEvent("a user cannot follow themselves")
    if isinstance(event, _Hiding) and event.user_id == event.target_id:
        raise InvalidEvent(f"a user cannot {event.type} themselves")
    if isinstance(event, Account) and event.action in ("label", "unlabel") and not event.label:
        raise InvalidEvent(f"action {event.action!r} needs field 'label'")
