"""Redis feed views: key schema, writes (Lua fan-out) and reads."""

from .keys import Keys
from .reader import FeedItem, FeedPage, FeedReader
from .store import Failure, FeedStore

__all__ = ["Failure", "FeedItem", "FeedPage", "FeedReader", "FeedStore", "Keys"]
