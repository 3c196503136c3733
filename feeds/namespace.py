"""Key namespaces and the pointer to the active one.

Every view key starts with a namespace prefix (``<prefix><kind>:{<id>}``). The **base**
prefix is ``Settings.key_prefix`` (``fa:`` by default). ``feedamp replay --rebuild``
builds a fresh **generation** namespace beside the live one and then switches a
**pointer** to it; readers and workers follow the pointer, so the switch is one atomic
``SET`` and nobody ever reads a namespace that is still being built.

Names, for base ``fa:`` (a base must end with ``:``; ``stem`` is the base without it):

- ``fa.active`` (string): the pointer, the active namespace's prefix. When absent the
  base itself is active, so a Redis that never saw a rebuild works as before.
- ``fa.generation`` (string): counter of generation numbers (``INCR``), never reused.
- ``fa.<n>:`` (generation ``n``) and ``fa.s<hex>:`` (a scratch namespace of ``feedamp
  verify``): namespace prefixes.

Why these shapes: a namespace is dropped with ``SCAN MATCH <prefix>*``. ``fa:*`` cannot
match ``fa.<n>:...`` (the character after ``fa`` differs), ``fa.3:*`` cannot match
``fa.30:...`` (the ``:`` right after the number), and no prefix pattern can match
``fa.active`` or ``fa.generation``, which hold no ``:``. So dropping one namespace never
touches another one or the pointer. (Another deployment on the same Redis must not use a
base of the form ``fa.<anything>:``.) A base that does not end with ``:`` has no pointer:
it is always active, and rebuild and verify refuse it.

Consistency rules the rebuild relies on:

- workers resolve the active prefix once per batch (one ``GET``) and write the whole
  batch there, so a batch fetched after the switch is written to the new namespace;
- readers resolve it at the start of every read, or cache it for at most
  :data:`MAX_POINTER_TTL` seconds, and keep it for the whole read;
- an old namespace is dropped only after a grace period longer than any reader cache
  and than a read (``feedamp replay --rebuild --grace``, default :data:`DEFAULT_GRACE`).

What a batch writes to is one :class:`Namespace`, resolved once per batch
(:meth:`Namespaces.resolve`) and handed to every store's call: its prefix, its key names
and the settings every script's ARGV starts with. Stores hold only their connection and
settings, so nothing is built or cached per prefix; a store called without one writes to
the base namespace (``Settings.key_prefix``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from feedamp.config import Settings

from .batch import context, text
from .cluster import scan_keys
from .connection import AnyRedis
from .keys import Keys, glob_escape

__all__ = [
    "DEFAULT_GRACE",
    "MAX_POINTER_TTL",
    "Namespace",
    "Namespaces",
    "counter_key",
    "generation_prefix",
    "glob_escape",
    "pattern",
    "pointer_key",
    "scratch_prefix",
]

#: Longest a reader may cache the active prefix (seconds).
MAX_POINTER_TTL = 5.0
#: Seconds between the switch and dropping the old namespace, by default.
DEFAULT_GRACE = 30.0
#: Keys unlinked per ``UNLINK`` call when a namespace is dropped.
DROP_CHUNK = 500

# Compare-and-set of the pointer: switch only if the active prefix is still the expected
# one (KEYS[1] pointer; ARGV: expected active prefix, new prefix, base).
_SWITCH = """
local current = redis.call('GET', KEYS[1]) or ARGV[3]
if current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2])
return ARGV[2]
"""


def pointer_key(base: str) -> str | None:
    """The pointer key of ``base`` (``fa:`` -> ``fa.active``); None if ``base`` has none."""
    return Keys(base).pointer()


def counter_key(base: str) -> str:
    """The generation counter of ``base`` (``fa:`` -> ``fa.generation``)."""
    return Keys(base).generation_counter()


def generation_prefix(base: str, n: int) -> str:
    """The prefix of generation ``n`` of ``base`` (``fa:``, 3 -> ``fa.3:``)."""
    return Keys(base).generation(n)


def scratch_prefix(base: str, token: str | None = None) -> str:
    """A scratch namespace of ``base`` (``fa.s<hex>:``) for ``feedamp verify``."""
    return Keys(base).scratch(token or secrets.token_hex(4))


def pattern(prefix: str) -> str:
    """The ``SCAN MATCH`` pattern of every key of the namespace ``prefix``."""
    return Keys(prefix).pattern()


@dataclass(frozen=True, slots=True)
class Namespace:
    """One key namespace as a batch writes to it: ``prefix``, its key names (``keys``) and
    the seven settings every script's ARGV starts with (``context``, ``ARGV[1]`` being the
    prefix; see :data:`feedamp.feeds.scripts.CONTEXT` and
    :func:`feedamp.feeds.scripts.argv`). Immutable: one per batch, shared by every store."""

    prefix: str
    keys: Keys
    context: tuple[str | int, ...]

    @classmethod
    def of(cls, settings: Settings, prefix: str | None = None) -> Namespace:
        """The namespace ``prefix`` (None: ``settings.key_prefix``) under ``settings``."""
        prefix = prefix or settings.key_prefix
        return cls(prefix, Keys(prefix), tuple(context(settings, prefix)))


class Namespaces:
    """The namespaces of one base prefix on one Redis: resolve, create, switch, drop."""

    def __init__(self, redis: AnyRedis, base: str) -> None:
        self.redis = redis
        self.base = base
        self.pointer = pointer_key(base)

    async def active(self) -> str:
        """The active namespace's prefix: the pointer's value, else the base (one GET)."""
        if self.pointer is None:
            return self.base
        value = await self.redis.get(self.pointer)
        return text(value) if value else self.base

    async def resolve(self, settings: Settings) -> Namespace:
        """The active namespace (:meth:`active`, one GET) as written to under ``settings``
        (whose ``key_prefix`` is this base)."""
        return Namespace.of(settings, await self.active())

    async def new_generation(self) -> str:
        """The prefix of a new, never used generation namespace."""
        n = await self.redis.incr(counter_key(self.base))
        return generation_prefix(self.base, n)

    async def switch(self, expected: str, new: str) -> None:
        """Point readers and workers at ``new``, atomically, if ``expected`` is still the
        active namespace; RuntimeError if another switch came first."""
        if self.pointer is None:
            raise ValueError(f"key prefix {self.base!r} has no pointer (it must end with ':')")
        current = await self.redis.eval(_SWITCH, 1, self.pointer, expected, new, self.base)
        current = current.decode() if isinstance(current, bytes) else str(current)
        if current != new:
            raise RuntimeError(
                f"the active namespace changed to {current!r} meanwhile (expected {expected!r})"
            )

    async def drop(self, prefix: str, chunk: int = DROP_CHUNK) -> int:
        """Delete every key of the namespace ``prefix`` with ``SCAN`` and ``UNLINK`` in
        chunks (Redis frees the memory in the background); return the keys deleted.
        Refuses the active namespace."""
        if prefix == await self.active():
            raise ValueError(f"refusing to drop the active namespace {prefix!r}")
        dropped = 0
        batch: list[bytes] = []
        async for key in scan_keys(self.redis, pattern(prefix), chunk):
            batch.append(key)
            if len(batch) >= chunk:
                dropped += await self.redis.unlink(*batch)
                batch.clear()
        if batch:
            dropped += await self.redis.unlink(*batch)
        return dropped
