"""Human-readable rendering of feed pages for the command line."""

from __future__ import annotations

from datetime import UTC, datetime

from feedamp.feeds import FeedPage

__all__ = ["format_page"]


def format_page(user_id: str, page: FeedPage, name: str = "Following") -> str:
    """One line per item: time, post, author, attribution, comment, labels."""
    lines = [f"{name} feed of {user_id} ({len(page.items)} items)"]
    for item in page.items:
        when = datetime.fromtimestamp(item.ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        line = f"  {when}  post {item.post_id} by {item.author_id}"
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
