"""Redis feed views: key schema, writes (Lua fan-out) and reads."""

from .keys import Keys
from .pages import MAX_LIMIT, Page
from .reader import FeedItem, FeedPage, FeedReader
from .store import FeedStore
from .writer import Failure

__all__ = [
    "MAX_LIMIT",
    "Failure",
    "FeedItem",
    "FeedPage",
    "FeedReader",
    "FeedStore",
    "Keys",
    "Page",
]
