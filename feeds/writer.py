"""What every store holds: its Redis connection, its settings and the scripts registered
on that connection, and never a namespace; and what every store's ``apply`` returns
(:class:`Applied`, with a :class:`Failure` per event Redis refused, by position).

Invariant: each write call is handed the :class:`~feedamp.feeds.namespace.Namespace` it
writes to (the pipeline resolves one per batch and hands the same object to every
store), so no store builds, clones or caches anything per key prefix; a call without one
writes to the base namespace (``Settings.key_prefix``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from feedamp.config import Settings
from feedamp.models.decisions import AnyDecision

from .connection import AnyRedis
from .keys import Keys
from .namespace import Namespace
from .scripts import Scripts

__all__ = ["Applied", "Failure", "Writer"]


@dataclass(frozen=True, slots=True)
class Failure:
    """An event Redis refused (a script error); the caller dead-letters it."""

    index: int
    error: Exception


@dataclass(slots=True)
class Applied:
    """The result of a store's ``apply``: events a script rejected (by position in the
    events given), and the decisions made (reposts, gifts)."""

    failures: list[Failure] = field(default_factory=list)
    decisions: list[AnyDecision] = field(default_factory=list)
    #: Feed entries pushed by post and repost fan-out (one per follower reached).
    deliveries: int = 0


class Writer:
    """A store's connection, settings and registered scripts."""

    def __init__(self, redis: AnyRedis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.scripts = Scripts(redis)

    def at(self, namespace: Namespace | None) -> Namespace:
        """``namespace``, or the base namespace (``settings.key_prefix``) when None."""
        return namespace if namespace is not None else Namespace.of(self.settings)

    @property
    def keys(self) -> Keys:
        """The key names of the base namespace (``settings.key_prefix``)."""
        return Keys(self.settings.key_prefix)
