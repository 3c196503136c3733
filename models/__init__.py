"""Event records, validation and routing."""

from .events import EVENT_TYPES, Event, InvalidEvent, Limits, parse_event, validate_id
from .routing import ROUTES, key_of, topic_of

__all__ = [
    "EVENT_TYPES",
    "ROUTES",
    "Event",
    "InvalidEvent",
    "Limits",
    "key_of",
    "parse_event",
    "topic_of",
    "validate_id",
]
