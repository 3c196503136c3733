"""Human-readable rendering of feed pages for the command line."""

from __future__ import annotations

from datetime import UTC, datetime

from feedamp.feeds import FeedPage
from feedamp.feeds.shop.product_reads import OrderCenter
from feedamp.feeds.shop.reads import CreatorStats, GiftPage, OrderPage

__all__ = ["format_gifts", "format_order_center", "format_orders", "format_page", "format_stats"]


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_page(user_id: str, page: FeedPage, name: str = "Following") -> str:
    """One line per item: time, post, author, attribution, comment, labels."""
    lines = [f"{name} feed of {user_id} ({len(page.items)} items)"]
    for item in page.items:
        line = f"  {_when(item.ts)}  post {item.post_id} by {item.author_id}"
        if item.reposted_by:
            line += f"  reposted by {', '.join(item.reposted_by)}"
        if item.comment:
            line += f'  "{item.comment}"'
        if item.text:
            line += f"  | {item.text}"
        if item.labels:
            line += f"  [{', '.join(item.labels)}]"
        lines.append(line)
    if page.next_cursor:
        lines.append(f"  next page: --cursor {page.next_cursor}")
    return "\n".join(lines)


def format_gifts(user_id: str, page: GiftPage) -> str:
    """One line per gift received: time, offer, sender, code, message."""
    lines = [f"Gift inbox of {user_id} ({len(page.items)} gifts)"]
    for g in page.items:
        line = f"  {_when(g.ts)}  {g.offer_id} ({g.campaign_id}) from {g.sender_id}"
        if g.code:
            line += f"  code {g.code}"
        if g.message:
            line += f'  "{g.message}"'
        lines.append(line)
    return "\n".join(lines)


def format_orders(user_id: str, page: OrderPage) -> str:
    """One line per order: time, id, product, amount, status and history."""
    lines = [f"Order center of {user_id} ({len(page.items)} orders)"]
    for o in page.items:
        history = " -> ".join(status for status, _ in o.history)
        line = (f"  {_when(o.ts)}  order {o.order_id}  {o.product_id}  "
                f"{o.amount_cents / 100:.2f} {o.currency}  {o.status} ({history})")  # fmt: skip
        if o.flags:
            line += f"  [{', '.join(o.flags)}]"
        lines.append(line)
    return "\n".join(lines)


def format_order_center(user_id: str, center: OrderCenter) -> str:
    """The four sections: orders, looked at, tagged in clips, recommended."""
    lines = [format_orders(user_id, center.orders)]
    lines.append(f"Looked at ({len(center.viewed.items)} products)")
    for v in center.viewed.items:
        via = f"  from post {v.via_post_id}" if v.via_post_id else ""
        via += f" (repost {v.via_repost_id})" if v.via_repost_id else ""
        lines.append(f"  {_when(v.ts)}  {v.product_id}{via}")
    lines.append(f"Tagged in clips you saw ({len(center.tagged.items)} products)")
    for t in center.tagged.items:
        by = f"  reposted by {', '.join(t.reposted_by)}" if t.reposted_by else ""
        lines.append(f"  {_when(t.ts)}  {t.product_id}  in post {t.post_id} by {t.author_id}{by}")
    lines.append(f"Recommended ({len(center.recommended.items)} products)")
    for r in center.recommended.items:
        lines.append(f"  {r.product_id}  via posts {', '.join(r.post_ids)}  reposted by "
                     f"{', '.join(r.reposted_by)}")  # fmt: skip
    return "\n".join(lines)


def format_stats(user_id: str, stats: CreatorStats) -> str:
    """Orders and revenue credited to a creator, then one line per converting tagged post
    or repost."""
    revenue = ", ".join(f"{v / 100:.2f} {c}" for c, v in sorted(stats.revenue_by_currency.items()))
    lines = [f"Sales credited to {user_id}: {stats.orders} order(s) {revenue}".rstrip()]
    for t in stats.tagged:
        lines.append(f"  tagged {t.kind} {t.id}: {t.orders} conversion(s) "
                     f"{t.revenue_cents / 100:.2f}")  # fmt: skip
    return "\n".join(lines)
