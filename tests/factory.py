"""Build events for tests, with increasing event times and unique event ids."""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict

import orjson
from feedamp.models.events import (
    Account,
    Block,
    DeletePost,
    Event,
    Follow,
    Gift,
    Mute,
    OrderStatus,
    Post,
    ProductView,
    Purchase,
    Repost,
    Unblock,
    Unfollow,
    Unmute,
    Unrepost,
)


class Events:
    """An event factory; each event is ``step_ms`` after the previous one unless ``ts`` is
    given. Event ids are ``id_prefix`` and a count (factories mixed in one log need
    prefixes of their own)."""

    def __init__(self, start_ms: int = 1_700_000_000_000, step_ms: int = 1000,
                 id_prefix: str = "ev-") -> None:  # fmt: skip
        self.ts = start_ms
        self.step_ms = step_ms
        self.id_prefix = id_prefix
        self._ids = itertools.count()

    def _base(self, ts: int | None) -> dict:
        if ts is None:
            self.ts += self.step_ms
            ts = self.ts
        return {"event_id": f"{self.id_prefix}{next(self._ids)}", "ts": ts}

    def post(self, post_id: str, author: str, ts: int | None = None, **kw) -> Post:
        return Post(**self._base(ts), post_id=post_id, author_id=author, **kw)

    def repost(self, post_id: str, author: str, reposter: str, comment: str | None = None,
               ts: int | None = None, via: str | None = None,
               repost_id: str | None = None) -> Repost:  # fmt: skip
        """A repost, by default with id ``r-<post>-<reposter>``; ``via`` is the repost id it
        came through."""
        repost_id = repost_id or f"r-{post_id}-{reposter}"
        return Repost(**self._base(ts), repost_id=repost_id, post_id=post_id,
                      post_author_id=author, reposter_id=reposter, comment=comment,
                      via_repost_id=via)  # fmt: skip

    def hide(self, action: str, user: str, target: str) -> Event:
        """block, unblock, mute or unmute."""
        cls = {"block": Block, "unblock": Unblock, "mute": Mute, "unmute": Unmute}[action]
        return cls(**self._base(None), user_id=user, target_id=target)

    def unrepost(self, post_id: str, reposter: str) -> Unrepost:
        return Unrepost(**self._base(None), repost_id=f"r-{post_id}-{reposter}",
                        post_id=post_id, reposter_id=reposter)  # fmt: skip

    def delete(self, post_id: str, author: str) -> DeletePost:
        return DeletePost(**self._base(None), post_id=post_id, author_id=author)

    def follow(self, follower: str, followee: str) -> Follow:
        return Follow(**self._base(None), follower_id=follower, followee_id=followee)

    def unfollow(self, follower: str, followee: str) -> Unfollow:
        return Unfollow(**self._base(None), follower_id=follower, followee_id=followee)

    def graph(self, kind: str, a: str, b: str, rng: random.Random) -> Event:
        """For a random log: a follow or unfollow of ``b`` by ``a`` (``kind`` ``follow``,
        ``unfollow``), or (``hide``) a block, unblock, mute or unmute drawn from ``rng``."""
        if kind == "follow":
            return self.follow(a, b)
        if kind == "unfollow":
            return self.unfollow(a, b)
        assert kind == "hide", kind
        return self.hide(rng.choice(["block", "unblock", "mute", "unmute"]), a, b)

    def gift(self, gift_id: str, sender: str, recipient: str, offer: str,
             message: str | None = None, ts: int | None = None) -> Gift:  # fmt: skip
        return Gift(**self._base(ts), gift_id=gift_id, sender_id=sender, recipient_id=recipient,
                    offer_id=offer, message=message)  # fmt: skip

    def purchase(self, order_id: str, buyer: str, amount: int = 1000, currency: str = "EUR",
                 via_post: str | None = None, via_repost: str | None = None,
                 ts: int | None = None, product: str | None = None) -> Purchase:  # fmt: skip
        return Purchase(**self._base(ts), order_id=order_id, buyer_id=buyer,
                        product_id=product or f"prod-{order_id}", seller_id="shop",
                        amount_cents=amount,
                        currency=currency, via_post_id=via_post,
                        via_repost_id=via_repost)  # fmt: skip

    def view(self, user: str, product: str, via_post: str | None = None,
             via_repost: str | None = None, ts: int | None = None) -> ProductView:  # fmt: skip
        return ProductView(**self._base(ts), user_id=user, product_id=product,
                           via_post_id=via_post, via_repost_id=via_repost)  # fmt: skip

    def status(self, order_id: str, buyer: str, status: str, seq: int | None = None,
               ts: int | None = None) -> OrderStatus:  # fmt: skip
        return OrderStatus(**self._base(ts), order_id=order_id, buyer_id=buyer, status=status,
                           seq=seq)  # fmt: skip

    def account(self, user: str, action: str, label: str | None = None,
                ts: int | None = None) -> Account:  # fmt: skip
        return Account(**self._base(ts), user_id=user, action=action, label=label)


def to_json(event: Event) -> bytes:
    """The wire form of an event record."""
    return orjson.dumps({"type": event.type, **{k: v for k, v in asdict(event).items()
                                                if v is not None}})  # fmt: skip


def record_of(settings, event: Event, offset: int = 0):
    """The record ``event`` arrives as on its topic (see ``ROUTES``)."""
    from feedamp.models import topic_of
    from feedamp.streams import Record

    return Record(topic_of(event.type, settings.topics), 0, offset, b"k", to_json(event),
                  event.ts)  # fmt: skip
