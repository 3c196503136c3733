"""Unit tests: event parsing, validation and routing (pure logic)."""

from __future__ import annotations

import orjson
import pytest
from feedamp.config import Topics
from feedamp.models import EVENT_TYPES, ROUTES, InvalidEvent, Limits, key_of, parse_event, topic_of
from feedamp.models.events import Follow, Post, Repost

# One valid example of every event type.
EXAMPLES: dict[str, dict] = {
    "post": {"post_id": "p1", "author_id": "a1", "text": "hi", "visibility": "followers"},
    "delete_post": {"post_id": "p1", "author_id": "a1"},
    "repost": {
        "repost_id": "r1",
        "post_id": "p1",
        "post_author_id": "a1",
        "reposter_id": "u2",
        "via_repost_id": "r0",
        "comment": "wow",
    },
    "unrepost": {"repost_id": "r1", "reposter_id": "u2", "post_id": "p1"},
    "follow": {"follower_id": "u1", "followee_id": "u2"},
    "unfollow": {"follower_id": "u1", "followee_id": "u2"},
    "block": {"user_id": "u1", "target_id": "u2"},
    "unblock": {"user_id": "u1", "target_id": "u2"},
    "mute": {"user_id": "u1", "target_id": "u2"},
    "unmute": {"user_id": "u1", "target_id": "u2"},
    "gift": {"gift_id": "g1", "sender_id": "u1", "recipient_id": "u2", "offer_id": "o1"},
    "purchase": {
        "order_id": "o1",
        "buyer_id": "u1",
        "product_id": "x",
        "seller_id": "s",
        "amount_cents": 1299,
        "currency": "EUR",
        "via_post_id": "p1",
    },
    "order_status": {"order_id": "o1", "buyer_id": "u1", "status": "paid", "seq": 2},
    "account": {"user_id": "u1", "action": "label", "label": "virtual_influencer"},
    "product_view": {
        "user_id": "u1",
        "product_id": "x",
        "via_post_id": "p1",
        "via_repost_id": "r1",
    },
}


def raw(type_: str, **fields) -> bytes:
    return orjson.dumps({"type": type_, "event_id": "e1", "ts": 1000, **fields})


def test_every_type_has_an_example_and_a_route():
    assert set(EXAMPLES) == set(EVENT_TYPES) == set(ROUTES)


def test_tagged_products_are_a_bounded_list_of_ids():
    event = parse_event(raw("post", post_id="p1", author_id="a1", product_ids=["x", 42]))
    assert event.product_ids == ("x", "42")
    assert parse_event(raw("post", post_id="p1", author_id="a1")).product_ids is None
    three = raw("post", post_id="p1", author_id="a1", product_ids=["a", "b", "c"])
    with pytest.raises(InvalidEvent, match=r"too many ids \(3 > 2\)"):
        parse_event(three, limits=Limits(max_tagged_products=2))
    with pytest.raises(InvalidEvent, match=r"'product_ids\[0\]' is empty"):
        parse_event(raw("post", post_id="p1", author_id="a1", product_ids=[""]))


@pytest.mark.parametrize("type_", sorted(EVENT_TYPES))
def test_valid_event_of_every_type_parses(type_):
    event = parse_event(raw(type_, **EXAMPLES[type_]))
    assert event.type == type_
    assert event.event_id == "e1" and event.ts == 1000
    for name, value in EXAMPLES[type_].items():
        assert getattr(event, name) == value


@pytest.mark.parametrize("type_", sorted(EVENT_TYPES))
def test_missing_required_field_is_named(type_):
    event_cls = EVENT_TYPES[type_]
    required = [
        f
        for f in event_cls.__dataclass_fields__.values()
        if f.default is f.default_factory and f.name not in ("event_id", "ts")
    ]
    field = required[0].name
    fields = {k: v for k, v in EXAMPLES[type_].items() if k != field}
    with pytest.raises(InvalidEvent, match=f"missing field '{field}'"):
        parse_event(raw(type_, **fields))


def test_defaults_and_optional_fields():
    post = parse_event(raw("post", post_id="p", author_id="a"))
    assert post == Post(event_id="e1", ts=1000, post_id="p", author_id="a")
    assert post.visibility == "public" and post.text is None


def test_ts_falls_back_to_record_timestamp():
    value = orjson.dumps(
        {"type": "follow", "event_id": "e", "follower_id": "a", "followee_id": "b"}
    )
    assert parse_event(value, record_ts=1234).ts == 1234
    with pytest.raises(InvalidEvent, match="missing field 'ts'"):
        parse_event(value)


def test_integer_ids_are_read_as_strings():
    event = parse_event(
        raw("repost", repost_id=1, post_id=1234567890123456789, post_author_id="a", reposter_id="b")
    )
    assert isinstance(event, Repost) and event.post_id == "1234567890123456789"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"event_id": "e", "ts": 1}', "missing field 'type'"),
        (raw("teleport"), "unknown type 'teleport'"),
        (raw("follow", follower_id="a", followee_id="a"), "cannot follow themselves"),
        (raw("follow", follower_id="a:b", followee_id="c"), "forbidden character ':'"),
        (raw("follow", follower_id="a{b}", followee_id="c"), "forbidden character '{'"),
        (raw("follow", follower_id="a b", followee_id="c"), "forbidden character ' '"),
        (raw("follow", follower_id="a,b", followee_id="c"), "forbidden character ','"),
        (raw("follow", follower_id="a\x00", followee_id="c"), "forbidden character"),
        (raw("follow", follower_id="x" * 65, followee_id="c"), "longer than 64"),
        (raw("follow", follower_id="", followee_id="c"), "is empty"),
        (raw("follow", follower_id=["a"], followee_id="c"), "must be a string id"),
        (raw("follow", follower_id=True, followee_id="c"), "must be a string id"),
        (raw("post", post_id="p", author_id="a", visibility="secret"), "must be one of"),
        (raw("post", post_id="p", author_id="a", text=5), "must be a string"),
        (raw("purchase", **{**EXAMPLES["purchase"], "amount_cents": "12"}), "must be an integer"),
        (raw("purchase", **{**EXAMPLES["purchase"], "amount_cents": -1}), "must not be negative"),
        (raw("account", user_id="u", action="label"), "needs field 'label'"),
        (
            orjson.dumps(
                {
                    "type": "follow",
                    "event_id": "e",
                    "ts": "yesterday",
                    "follower_id": "a",
                    "followee_id": "b",
                }
            ),
            "'ts' must be an integer",
        ),
    ],
)
def test_invalid_events_say_why(value, reason):
    with pytest.raises(InvalidEvent) as info:
        parse_event(value)
    assert reason in info.value.reason


def test_size_limits():
    limits = Limits(max_event_bytes=200, max_text_chars=10)
    with pytest.raises(InvalidEvent, match="too long"):
        parse_event(raw("post", post_id="p", author_id="a", text="x" * 11), limits=limits)
    big = raw("post", post_id="p", author_id="a", media_url="m" * 300)
    with pytest.raises(InvalidEvent, match="event too large"):
        parse_event(big, limits=limits)
    assert parse_event(raw("post", post_id="p", author_id="a", text="x" * 10), limits=limits)


def test_unknown_fields_are_ignored():
    event = parse_event(raw("follow", follower_id="a", followee_id="b", client="ios"))
    assert event == Follow(event_id="e1", ts=1000, follower_id="a", followee_id="b")


@pytest.mark.parametrize("type_", sorted(EVENT_TYPES))
def test_routing_puts_each_type_on_its_topic_with_its_key(type_):
    topics = Topics().prefixed("x-")
    event = parse_event(raw(type_, **EXAMPLES[type_]))
    topic_attr, key_field = ROUTES[type_]
    assert topic_of(type_, topics) == "x-" + getattr(Topics(), topic_attr)
    assert key_of(event) == EXAMPLES[type_][key_field]
    assert key_of({"type": type_, **EXAMPLES[type_]}) == EXAMPLES[type_][key_field]


def test_reposts_and_posts_share_the_post_id_key():
    """All events about one post land in one partition number, so they keep their order."""
    for type_ in ("post", "delete_post", "repost", "unrepost"):
        assert ROUTES[type_][1] == "post_id"


def test_the_fast_ascii_id_check_agrees_with_the_rule():
    """Every ASCII character is accepted by the regex fast path exactly when the
    character-by-character rule accepts it."""
    from feedamp.models.events import _FORBIDDEN_IN_ID, _SAFE_ASCII_ID, validate_id

    for ch in map(chr, range(128)):
        allowed = not (ch in _FORBIDDEN_IN_ID or ch.isspace() or not ch.isprintable())
        assert bool(_SAFE_ASCII_ID.fullmatch(ch)) == allowed, repr(ch)
        if not allowed:
            with pytest.raises(InvalidEvent):
                validate_id(f"a{ch}b", "id")
