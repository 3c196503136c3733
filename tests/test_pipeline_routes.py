"""The pipeline's route table: every event type but ``account`` (applied first, by the
account store) goes to a store (posts to the feed store, and to the product store last).
Builds a pipeline without touching Redis."""

from __future__ import annotations

from feedamp.config import Settings
from feedamp.feeds import FeedStore
from feedamp.models import EVENT_TYPES
from feedamp.streams import Pipeline
from redis.asyncio import Redis


def test_every_event_type_has_a_store():
    settings = Settings()
    pipeline = Pipeline(FeedStore(Redis(), settings), settings)
    routed = {cls.__name__ for cls in pipeline._store_of}
    routed |= {cls.__name__ for _, types in pipeline._last for cls in types}
    expected = {cls.__name__ for name, cls in EVENT_TYPES.items() if name != "account"}
    assert routed == expected
    assert set(pipeline._store_of.values()) <= set(pipeline._stores)
    assert not pipeline.watermarked  # no partitions given: nothing is parked
