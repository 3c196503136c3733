"""Every Redis key name, built in one place (the Lua scripts build the same names in lib.lua).

Each key ends with ``{<id>}``: the braces are a Redis Cluster hash tag, so all keys of one
user (or one post) live in one slot. Ids never contain braces, colons or commas
(see :func:`feedamp.models.validate_id`). Besides the view keys of one namespace, a base
prefix has two keys of its own, outside every namespace: the pointer to the active
namespace and the generation counter (see :mod:`feedamp.feeds.namespace`). Globs over keys
come from here too, escaped, so no caller parses or escapes key names itself.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "READ_FIELD",
    "SUSPENDED_SHARDS",
    "Awaiting",
    "Keys",
    "bucket_of",
    "glob_escape",
    "suspended_shard",
]

#: Shards of the suspended-accounts index.
SUSPENDED_SHARDS = 16

#: The kinds of set an order waits in (see :mod:`feedamp.feeds.shop.order_steps`).
Awaiting = Literal["awaiting_post", "awaiting_repost", "awaiting_tags"]

#: The :meth:`Keys.pair` field of a user's read mark (no user id holds a colon): when the
#: user last read a feed (ms, wall time), ``-<ms>`` once fan-out has skipped the user
#: since, ``~<ms>`` while a read rebuilds the user's feeds; absent: never read. Reader
#: state, not a view of the log (:mod:`feedamp.feeds.dormancy`); ``lua/deliver.lua`` and
#: ``lua/mark_read.lua`` spell it too.
READ_FIELD = ":read"


def bucket_of(post_id: str, buckets: int) -> int:
    """The feed bucket of a post: the first 8 hex digits of SHA-1(post_id), mod buckets.

    Same as ``bucket_of`` in ``lua/lib.lua``.
    """
    return int(hashlib.sha1(post_id.encode()).hexdigest()[:8], 16) % buckets


def glob_escape(text: str) -> str:
    """``text`` with the glob characters of ``SCAN MATCH`` escaped."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def suspended_shard(user_id: str) -> int:
    """The suspended-index shard of an account: the first 8 hex digits of SHA-1(user_id),
    mod ``SUSPENDED_SHARDS`` (the feed buckets' hash)."""
    return bucket_of(user_id, SUSPENDED_SHARDS)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder for one namespace (``prefix``, default ``fa:``)."""

    prefix: str = "fa:"

    def _key(self, kind: str, id_: str) -> str:
        return f"{self.prefix}{kind}:{{{id_}}}"

    def feed(self, user_id: str, bucket: int) -> str:
        """Sorted set: one bucket of the user's Following feed, member post_id, score event
        time (ms). See :func:`bucket_of`."""
        return f"{self._key('feed', user_id)}:{bucket}"

    def via(self, user_id: str, bucket: int) -> str:
        """Hash: post_id -> comma-separated reposters the user follows, most recent first,
        for the entries of one bucket that came through reposts, in the Following feed,
        the For You feed or both (items ``[^]id@t[:f]``, see :mod:`feedamp.feeds.entries`)."""
        return f"{self._key('via', user_id)}:{bucket}"

    def for_you(self, user_id: str, bucket: int) -> str:
        """Sorted set: one bucket of the user's For You feed, member post_id, score the
        ranking score (ms-equivalent: see README, For You)."""
        return f"{self._key('foryou', user_id)}:{bucket}"

    def followers(self, user_id: str) -> str:
        """Set: ids of the user's followers."""
        return self._key("followers", user_id)

    def following(self, user_id: str) -> str:
        """Set: ids of the accounts the user follows."""
        return self._key("following", user_id)

    def recent_posts(self, user_id: str) -> str:
        """Sorted set: the user's most recent posts (post_id -> ts), for follow backfill."""
        return self._key("recent", user_id)

    def recent_reposts(self, user_id: str) -> str:
        """Sorted set: posts the user recently reposted (post_id -> repost ts)."""
        return self._key("recent_reposts", user_id)

    def pulled(self) -> str:
        """Set: the pulled authors, whose posts and reposts are not fanned out on write but
        merged into their followers' pages at read time (sticky: never removed; see
        :mod:`feedamp.feeds.pull`)."""
        return self._key("pulled", "pulled")

    def post(self, post_id: str) -> str:
        """Hash: the post record (``a`` author, ``ts``, ``vis``, ``text``, ``media``,
        ``del`` deletion time when deleted)."""
        return self._key("post", post_id)

    def reposters(self, post_id: str) -> str:
        """Sorted set: who reposted the post, member user_id, score repost time."""
        return self._key("reposters", post_id)

    def comments(self, post_id: str) -> str:
        """Hash: reposter id -> the comment they reposted the post with."""
        return self._key("comments", post_id)

    def decided(self, post_id: str) -> str:
        """Hash: repost_id -> ``decision|depth|reasons`` for every repost of the post."""
        return self._key("decided", post_id)

    def attempts(self, user_id: str) -> str:
        """Sorted set: the user's recent repost attempts (repost_id -> ts), for rate caps."""
        return self._key("attempts", user_id)

    def forwarded_attempts(self, user_id: str) -> str:
        """Sorted set: the user's recent reposts of frequently-forwarded items."""
        return self._key("forwarded_attempts", user_id)

    def brake(self, post_id: str) -> str:
        """Sorted set: the post's recent repost attempts, for the virality brake."""
        return self._key("brake", post_id)

    def pair(self, user_id: str) -> str:
        """Hash: other user -> ``follow;blocks;blocked_by;mutes``, the state of the pair
        seen from this user (trailing empty parts left out): this user's follow, block and
        mute of the other and the other's block of this user, each ``on|off`` (the latest
        on and off event times, either may be empty; the later wins, a tie goes to off)
        or empty. One more field, :data:`READ_FIELD`, holds the user's read mark (see
        :mod:`feedamp.feeds.dormancy`)."""
        return self._key("pair", user_id)

    @staticmethod
    def pair_value(follow: str = "", blocks: str = "", blocked_by: str = "",
                   mutes: str = "") -> str:  # fmt: skip
        """A :meth:`pair` field's value from its parts, as the scripts write it."""
        return ";".join([follow, blocks, blocked_by, mutes]).rstrip(";")

    def repost(self, repost_id: str) -> str:
        """Hash: the repost record (``u`` reposter, ``p`` post), for purchase attribution."""
        return self._key("repost", repost_id)

    # Accounts.

    def account(self, user_id: str) -> str:
        """Hash: moderation state of an account: ``susp`` (suspended at, ms) and ``rein``
        (reinstated at, ms) of the latest of each, and ``label:<name>`` = ``+<ts>`` or
        ``-<ts>`` (labelled or unlabelled at)."""
        return self._key("account", user_id)

    def acts(self, user_id: str) -> str:
        """Sorted set: the user's latest posts and reposts whatever became of them (refused,
        deleted, withdrawn): member ``<post>`` or ``<post>,<repost>``, score event time;
        what a late suspension takes back (:mod:`feedamp.feeds.takeback`)."""
        return self._key("acts", user_id)

    def suspended_index(self, shard: int) -> str:
        """Set: the accounts of shard ``shard`` (see :func:`suspended_shard`) ever suspended
        (reinstated ones stay), so the door reads the state of only those. Sharded over
        ``SUSPENDED_SHARDS`` tags ``{accounts.<n>}`` so that no one slot takes every
        batch's lookup."""
        return self._key("suspended_index", f"accounts.{shard}")

    def legacy_suspended_index(self) -> str:
        """Set: the one-slot index of earlier versions (``{accounts}``), moved into the
        shards the first time the door reads a namespace that still has it."""
        return self._key("suspended_index", "accounts")

    # Gifts.

    def gift(self, gift_id: str) -> str:
        """Hash: one gift and its outcome (``sender recipient offer campaign message code ts
        decision reasons``); written once, so a redelivered gift gets the same outcome."""
        return self._key("gift", gift_id)

    def gift_inbox(self, user_id: str) -> str:
        """Sorted set: accepted gifts the user received, member gift_id, score event time."""
        return self._key("gift_inbox", user_id)

    def gifts_sent(self, user_id: str) -> str:
        """Sorted set: accepted gifts the user sent, member gift_id, score event time."""
        return self._key("gifts_sent", user_id)

    def gift_sends(self, user_id: str) -> str:
        """Hash: campaign_id -> gifts the user sent in it (accepted ones)."""
        return self._key("gift_sends", user_id)

    def gift_codes(self, offer_id: str) -> str:
        """List: the offer's codes not handed out yet, in file order."""
        return self._key("gift_codes", offer_id)

    def gift_claims(self, user_id: str) -> str:
        """Hash: gift_id -> campaign_id of every send the user claimed (counted in
        ``gift_sends``), so a redelivered gift claims nothing twice."""
        return self._key("gift_claims", user_id)

    def gift_code_of(self, offer_id: str) -> str:
        """Hash: gift_id -> the offer's code handed to that gift, so a redelivered gift
        gets the same code."""
        return self._key("gift_code_of", offer_id)

    def gift_codes_seeded(self, offer_id: str) -> str:
        """String: how many of the offer's codes (in file order) were put in its pool."""
        return self._key("gift_codes_seeded", offer_id)

    # Orders and attribution.

    def order(self, order_id: str) -> str:
        """Hash: one order: purchase fields, status, history (JSON), flags, credits."""
        return self._key("order", order_id)

    def orders(self, user_id: str) -> str:
        """Sorted set: the buyer's order center, member order_id, score purchase time."""
        return self._key("orders", user_id)

    def awaiting_post(self, post_id: str) -> str:
        """Set: orders waiting for the post's author to be known before crediting it."""
        return self._key("awaiting_post", post_id)

    def awaiting_repost(self, repost_id: str) -> str:
        """Set: orders waiting for the repost's reposter to be known before crediting."""
        return self._key("awaiting_repost", repost_id)

    def orders_via_post(self, post_id: str) -> str:
        """Set: every order whose purchase names the post (``via_post_id``), written with
        the purchase; what a late suspension re-settles when it takes the post's record
        back (:mod:`feedamp.feeds.takeback`)."""
        return self._key("orders_via_post", post_id)

    def orders_via_repost(self, repost_id: str) -> str:
        """Set: every order whose purchase names the repost (``via_repost_id``), written
        with the purchase (see :meth:`orders_via_post`)."""
        return self._key("orders_via_repost", repost_id)

    def credited(self, user_id: str) -> str:
        """Set: orders credited to the creator (once each, however often applied)."""
        return self._key("credited", user_id)

    def converted(self, user_id: str) -> str:
        """Set: the creator's conversions counted, ``<order>|p:<post>`` or
        ``<order>|r:<repost>`` (once each, as ``credited``)."""
        return self._key("converted", user_id)

    def creator(self, user_id: str) -> str:
        """Hash: the creator's attributed ``orders``, ``revenue`` (cents, any currency) and
        ``rev:<CURRENCY>``."""
        return self._key("creator", user_id)

    # Products: tags, views, conversions.

    def products(self, post_id: str) -> str:
        """Set: the product ids the post tags (its record's ``tg`` field says it was
        recorded, with how many)."""
        return self._key("products", post_id)

    def awaiting_tags(self, post_id: str) -> str:
        """Set: orders naming the post whose conversion waits for its tags to be known."""
        return self._key("awaiting_tags", post_id)

    def awaiting(self, kind: Awaiting, id_: str) -> str:
        """Set: the orders waiting in ``kind`` of ``id_`` (:meth:`awaiting_post`,
        :meth:`awaiting_repost` or :meth:`awaiting_tags`)."""
        built = {"awaiting_post": self.awaiting_post, "awaiting_repost": self.awaiting_repost,
                 "awaiting_tags": self.awaiting_tags}  # fmt: skip
        return built[kind](id_)

    def conversions(self, user_id: str) -> str:
        """Hash: conversions of the creator's tagged posts and reposts: ``p:<post>`` /
        ``r:<repost>`` -> orders, ``p:<post>:rev`` / ``r:<repost>:rev`` -> cents."""
        return self._key("conversions", user_id)

    def bought(self, user_id: str) -> str:
        """Set: products the user has an order for (kept out of their recommendations)."""
        return self._key("bought", user_id)

    def viewed(self, user_id: str) -> str:
        """Sorted set: the user's "Looked at" list, member product_id, score the time of
        their latest view (ms); the newest ``FEEDAMP_VIEWED_CAP`` kept."""
        return self._key("viewed", user_id)

    def viewed_via(self, user_id: str) -> str:
        """Hash: product_id -> ``via_post,via_repost`` of the latest view (either part may
        be empty); absent when that view named neither."""
        return self._key("viewed_via", user_id)

    # The watermark of the reposts topic (one slot: the tag is ``{order}``, a name the
    # Lua scripts share; it has nothing to do with shop orders).

    def parked(self) -> str:
        """Sorted set: reposts-topic events waiting for the watermark, member event_id,
        score event time."""
        return self._key("parked", "order")

    def parked_events(self) -> str:
        """Hash: event_id -> the parked record (JSON: topic, partition, offset, key, value,
        timestamp)."""
        return self._key("parked_events", "order")

    def progress(self) -> str:
        """Hash: ``<topic>:<partition>`` -> event time (ms) up to which that partition of
        the posts or reposts topic has been read, less the allowed lateness."""
        return self._key("progress", "order")

    def release_lock(self) -> str:
        """String: held by the one worker releasing parked events (expires)."""
        return self._key("release_lock", "order")

    @staticmethod
    def bookkeeping() -> frozenset[str]:
        """Names (without the prefix) of the keys that order work rather than hold views:
        they follow the clock and live processing, so comparisons of namespaces skip
        them."""
        return frozenset(f"{kind}:{{order}}" for kind in
                         ("parked", "parked_events", "progress", "release_lock"))  # fmt: skip

    # The base prefix's own keys (``prefix`` is the base here, e.g. ``fa:``).

    def stem(self) -> str | None:
        """The base without its final ``:`` (``fa:`` -> ``fa``); None when it has none
        (such a base has no pointer and no generations)."""
        p = self.prefix
        return p[:-1] if p.endswith(":") and len(p) > 1 else None

    def _require_stem(self) -> str:
        stem = self.stem()
        if stem is None:
            raise ValueError(
                f"a rebuildable key prefix ends with ':' (FEEDAMP_KEY_PREFIX={self.prefix!r})"
            )
        return stem

    def pointer(self) -> str | None:
        """String: the active namespace's prefix (``fa:`` -> ``fa.active``); None if the
        base has no pointer."""
        stem = self.stem()
        return None if stem is None else f"{stem}.active"

    def generation_counter(self) -> str:
        """String: counter of generation numbers (``fa:`` -> ``fa.generation``), ``INCR``
        only. ValueError if the base has none."""
        return f"{self._require_stem()}.generation"

    def generation(self, n: int) -> str:
        """The prefix of generation ``n`` (``fa:``, 3 -> ``fa.3:``)."""
        return f"{self._require_stem()}.{n}:"

    def scratch(self, token: str) -> str:
        """The prefix of a scratch namespace (``fa:``, ``ab12`` -> ``fa.sab12:``)."""
        return f"{self._require_stem()}.s{token}:"

    # Globs.

    def pattern(self) -> str:
        """Glob matching every key of this namespace."""
        return f"{glob_escape(self.prefix)}*"

    def feed_pattern(self) -> str:
        """Glob matching every Following feed bucket of every user."""
        return f"{glob_escape(self.prefix)}feed:{{*}}:*"

    def for_you_pattern(self) -> str:
        """Glob matching every For You feed bucket of every user."""
        return f"{glob_escape(self.prefix)}foryou:{{*}}:*"

    @staticmethod
    def tag(key: bytes) -> bytes:
        """The id in a key's hash tag (``fa:feed:{alice}:3`` -> ``alice``)."""
        return key[key.index(b"{") + 1 : key.rindex(b"}")]
