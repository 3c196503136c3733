"""Which topic each event type travels on, and which field is its message key.

Keys decide partitions, and partitions decide order: every event about one post
(post, delete, reposts) is keyed by post_id so that they are handled in order by one worker.
"""

from __future__ import annotations

from feedamp.config import Topics

from .events import EVENT_TYPES, Event

__all__ = ["ROUTES", "key_of", "topic_of"]

#: type -> (attribute of :class:`Topics`, key field)
ROUTES: dict[str, tuple[str, str]] = {
    "post": ("posts", "post_id"),
    "delete_post": ("posts", "post_id"),
    "repost": ("reposts", "post_id"),
    "unrepost": ("reposts", "post_id"),
    "follow": ("graph", "follower_id"),
    "unfollow": ("graph", "follower_id"),
    "block": ("graph", "user_id"),
    "unblock": ("graph", "user_id"),
    "mute": ("graph", "user_id"),
    "unmute": ("graph", "user_id"),
    "gift": ("gifts", "sender_id"),
    "purchase": ("purchases", "order_id"),
    "order_status": ("purchases", "order_id"),
    "account": ("accounts", "user_id"),
    "product_view": ("product_views", "user_id"),
}
assert set(ROUTES) == set(EVENT_TYPES), "every event type needs a route"


def topic_of(type_name: str, topics: Topics) -> str:
    """The topic name events of ``type_name`` are published to."""
    return getattr(topics, ROUTES[type_name][0])


def key_of(event: Event | dict) -> str:
    """The message key of an event (a record or its JSON object)."""
    type_name = event["type"] if isinstance(event, dict) else event.type
    key_field = ROUTES[type_name][1]
    return str(event[key_field] if isinstance(event, dict) else getattr(event, key_field))
