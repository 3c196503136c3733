"""One Redis layout under test (a standalone Redis or a Redis Cluster), with a key
namespace of its own: the helper the tests that run on both layouts share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from feedamp.config import Settings
from feedamp.feeds import FeedReader, Keys
from feedamp.feeds.connection import AnyRedis


@dataclass
class Layout:
    """A layout's name (``standalone`` or ``cluster``), its settings (own key prefix) and
    a client."""

    name: str
    settings: Settings
    redis: AnyRedis

    @property
    def keys(self) -> Keys:
        """The key names of the layout's namespace."""
        return Keys(self.settings.key_prefix)

    def reader(self, **kw: Any) -> FeedReader:
        """A feed reader of the layout's namespace."""
        return FeedReader(self.redis, key_prefix=self.settings.key_prefix, **kw)
