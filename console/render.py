"""Server-rendered HTML of the console pages: plain markup, one stylesheet, a few lines of
script (auto-refresh and the look-up form), no build step.

Every value comes from :mod:`feedamp.console.data` and is escaped here. Numbers carry
``data-*`` attributes naming what they are, so tests and scripts can read them back.
The cascade is drawn as inline SVG: one row per repost in depth-first order, indented by
depth, each linked to the repost it came through. The explain page shows the facts and
verdicts of :class:`~feedamp.feeds.explain.Explanation` as they are (the same as
``feedamp explain`` prints), without reasoning of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from feedamp.feeds.explain import Explanation
from feedamp.feeds.reader import FeedItem

from .data import Cascade, Overview, UserFeeds

__all__ = ["cascade_page", "error_page", "explain_page", "overview_page", "user_page"]

#: Colour of each decision in the cascade and the decisions chart.
COLOURS = {
    "delivered": "#2e7d32",
    "restricted": "#f9a825",
    "rate_limited": "#ef6c00",
    "refused": "#c62828",
    "accepted": "#1565c0",
}
#: Nodes drawn in a cascade picture, and listed in the table below it.
MAX_DRAWN = 400
MAX_LISTED = 1000

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f7f9}
header{background:#1f2933;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header form{margin-left:auto;display:flex;gap:6px}
main{padding:16px 20px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 16px;
 margin:0 0 16px}
h1{font-size:20px;margin:4px 0 12px}h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eef0f2;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#6b7280}.bad{color:#c62828;font-weight:600}.ok{color:#2e7d32}
.chip{display:inline-block;padding:0 6px;border-radius:9px;color:#fff;font-size:12px}
code{font-size:12px;background:#f1f3f5;padding:1px 4px;border-radius:3px}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.verdict{font-weight:700}.verdict.shown{color:#2e7d32}.verdict.hidden{color:#c62828}
"""

SCRIPT = """
function go(kind){var v=document.getElementById('lookup').value.trim();
 if(v){location.href='/console/'+kind+'/'+encodeURIComponent(v);}return false;}
function why(user){var v=document.getElementById('why-post').value.trim();
 if(v){location.href='/console/user/'+encodeURIComponent(user)+'/explain/'
 +encodeURIComponent(v);}return false;}
(function(){var box=document.getElementById('auto');if(!box)return;
 box.checked=location.hash==='#auto';
 box.onchange=function(){location.hash=box.checked?'auto':'';};
 setInterval(function(){if(box.checked)location.reload();},5000);})();
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)} · feedamp console</title><style>{STYLE}</style></head><body>"
        "<header><a href='/console/'>feedamp console</a>"
        "<form onsubmit='return false'><input id=lookup placeholder='post or user id'>"
        "<button onclick=\"return go('post')\">post</button>"
        "<button onclick=\"return go('user')\">user</button></form></header>"
        f"<main>{body}</main><script>{SCRIPT}</script></body></html>"
    )


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ms(ms: int | None) -> str:
    return "-" if ms is None else f"{ms:,} ms"


def _at_least(exact: bool) -> str:
    return "" if exact else "≥ "


def _chip(decision: str) -> str:
    colour = COLOURS.get(decision, "#555")
    return f"<span class=chip style='background:{colour}'>{escape(decision)}</span>"


def _post_link(post_id: str) -> str:
    return f"<a href='/console/post/{quote(post_id, safe='')}'>{escape(post_id)}</a>"


def _user_link(user_id: str | None) -> str:
    if not user_id:
        return "<span class=muted>?</span>"
    return f"<a href='/console/user/{quote(user_id, safe='')}'>{escape(user_id)}</a>"


def overview_page(view: Overview) -> str:
    """The front page: partitions, decisions per minute, top posts, dead letters."""
    total = sum(r.lag.lag for r in view.partitions)
    behind = _ms(view.watermark_behind_ms)
    head = (
        f"<h1>Overview <label class=muted style='font-size:13px;font-weight:400'>"
        f"<input type=checkbox id=auto> refresh every 5 s</label></h1>"
        f"<p>consumer group <code>{escape(view.group)}</code> · key namespace "
        f"<code>{escape(view.namespace)}</code> · total lag <b data-total-lag>{total:,}</b>"
        f" · watermark behind the clock <b data-watermark-behind>{behind}</b>"
        f" · parked events <b data-parked>{view.parked:,}</b>"
        f" · dead letters <b data-dead-letters>{view.dead_letters:,}</b></p>"
    )
    return _page("overview", head + _decisions(view) + _top(view) + _partitions(view)
                 + _letters(view))  # fmt: skip


def _partitions(view: Overview) -> str:
    rows = []
    for r in view.partitions:
        p = r.lag
        committed = "-" if p.committed is None else f"{p.committed:,}"
        cls = " class='n bad'" if p.lag else " class=n"
        rows.append(
            f"<tr data-topic='{escape(p.topic)}' data-partition='{p.partition}'>"
            f"<td>{escape(p.topic)}</td><td class=n>{p.partition}</td>"
            f"<td class=n data-end>{p.end:,}</td><td class=n data-committed>{committed}</td>"
            f"<td{cls} data-lag>{p.lag:,}</td><td>{_when(r.progress_ms)}</td>"
            f"<td class=n data-behind>{_ms(r.behind_ms)}</td></tr>"
        )
    return (
        "<section><h2>Partitions</h2><table><tr><th>topic</th><th class=n>partition</th>"
        "<th class=n>end</th><th class=n>committed</th><th class=n>lag</th>"
        "<th>progress (event time)</th><th class=n>behind the clock</th></tr>"
        + "".join(rows) + "</table></section>"
    )  # fmt: skip


def _letters(view: Overview) -> str:
    if not view.letters:
        return "<section><h2>Recent dead letters</h2><p class=muted>none</p></section>"
    rows = []
    for x in view.letters:
        where = f"{x.topic or '?'}[{_opt(x.source_partition)}]@{_opt(x.source_offset)}"
        rows.append(
            f"<tr data-letter='{x.partition}/{x.offset}'><td>{x.partition}/{x.offset}</td>"
            f"<td>{escape(where)}</td><td class=bad data-reason>{escape(x.reason)}</td>"
            f"<td><code>{escape(x.preview())}</code></td></tr>"
        )
    return (
        "<section><h2>Recent dead letters</h2><table><tr><th>at</th><th>from</th>"
        "<th>reason</th><th>value</th></tr>" + "".join(rows) + "</table></section>"
    )


def _opt(value: int | None) -> str:
    return "?" if value is None else str(value)


def _decisions(view: Overview) -> str:
    if not view.minutes:
        return "<section><h2>Decisions per minute</h2><p class=muted>none yet</p></section>"
    head = "".join(f"<th class=n>{_when(m)[11:16]}</th>" for m in view.minutes)
    rows = []
    for kind, counts in view.per_minute.items():
        cells = "".join(
            f"<td class=n data-minute='{m}'>{c or ''}</td>"
            for m, c in zip(view.minutes, counts, strict=True)
        )
        rows.append(f"<tr data-kind='{escape(kind)}'><td>{_chip(kind)}</td>{cells}"
                    f"<td class=n data-sum>{sum(counts):,}</td></tr>")  # fmt: skip
    return (
        f"<section><h2>Decisions per minute (event time, UTC)</h2>{_chart(view)}"
        f"<table><tr><th>decision</th>{head}<th class=n>total</th></tr>{''.join(rows)}"
        "</table></section>"
    )


def _chart(view: Overview) -> str:
    """Stacked bars, one per minute, each labelled with its minute."""
    step, bar, height, axis = 44, 30, 90, 16
    totals = [sum(c[i] for c in view.per_minute.values()) for i in range(len(view.minutes))]
    peak = max(totals) or 1
    parts = []
    for i, minute in enumerate(view.minutes):
        x, y = i * step + 4, float(height)
        for kind, counts in view.per_minute.items():
            h = counts[i] * (height - 14) / peak
            if h:
                y -= h
                parts.append(f"<rect x='{x}' y='{y:.1f}' width='{bar}' height='{h:.1f}'"
                             f" fill='{COLOURS.get(kind, '#555')}'><title>{escape(kind)}: "
                             f"{counts[i]}</title></rect>")  # fmt: skip
        if totals[i]:
            parts.append(f"<text x='{x + bar / 2}' y='{y - 3:.1f}' text-anchor='middle'>"
                         f"{totals[i]:,}</text>")  # fmt: skip
        parts.append(f"<text x='{x + bar / 2}' y='{height + axis - 3}' text-anchor='middle'"
                     f" fill='#6b7280'>{_when(minute)[11:16]}</text>")  # fmt: skip
    width = step * len(view.minutes) + 8
    return (f"<svg width='{width}' height='{height + axis}' font-size='11' role=img"
            f" aria-label='decisions per minute'><line x1='0' x2='{width}' y1='{height}'"
            f" y2='{height}' stroke='#9aa5b1'/>{''.join(parts)}</svg>")  # fmt: skip


def _top(view: Overview) -> str:
    if not view.top:
        return "<section><h2>Amplified now</h2><p class=muted>no reposts yet</p></section>"
    rows = [
        f"<tr data-post='{escape(t.post_id)}'><td>{_post_link(t.post_id)}</td>"
        f"<td>{_user_link(t.author)}</td><td class=n data-recent>{t.recent:,}</td>"
        f"<td class=n data-reposts>{t.reposts:,}</td>"
        f"<td class=n data-audience>{t.audience:,}</td>"
        "</tr>"
        for t in view.top
    ]
    return (
        "<section><h2>Amplified now (reposts in the last 30 minutes of event time)</h2>"
        "<table><tr><th>post</th><th>author</th><th class=n>reposts, last 30 min</th>"
        "<th class=n>reposts</th><th class=n>reposters' followers</th></tr>"
        + "".join(rows) + "</table></section>"
    )  # fmt: skip


def cascade_page(view: Cascade) -> str:
    """A post's cascade: summary by depth, the tree as a picture, and every repost."""
    state = " <span class=bad>deleted</span>" if view.deleted else ""
    head = (
        f"<h1>Cascade of post {escape(view.post_id)}{state}</h1>"
        f"<p>author {_user_link(view.author)} · <span class=muted>{escape(view.text[:200])}"
        f"</span></p><p>reposts <b data-reposts>{view.count:,}</b> · feeds reached "
        f"<b data-reached>{_at_least(view.exact)}{view.reached:,}</b></p>"
    )
    depth_rows = "".join(
        f"<tr data-depth='{d}'><td class=n>{d}</td><td class=n data-count>{c:,}</td>"
        f"<td class=n data-reached>{r:,}</td></tr>"
        for d, (c, r) in view.by_depth().items()
    )
    depths = (
        "<section><h2>By depth</h2><table><tr><th class=n>depth</th><th class=n>reposts</th>"
        f"<th class=n>feeds reached</th></tr>{depth_rows}</table></section>"
    )
    nodes = view.nodes()
    more = len(nodes) - MAX_LISTED
    rows = "".join(
        f"<tr data-repost='{escape(n.repost_id)}'><td>{escape(n.repost_id)}</td>"
        f"<td>{_user_link(n.reposter)}</td><td class=n>{n.depth}</td>"
        f"<td data-decision>{_chip(n.decision)} {escape(', '.join(n.reasons))}</td>"
        f"<td class=n data-reached>{_at_least(n.exact)}{n.reached:,}</td>"
        f"<td>{escape(n.via or '')}</td>"
        f"<td>{_when(n.ts)}</td></tr>"
        for n in nodes[:MAX_LISTED]
    )
    if more > 0:
        rows += f"<tr><td colspan=7 class=muted>and {more:,} more</td></tr>"
    table = (
        "<section><h2>Reposts</h2><table><tr><th>repost</th><th>reposter</th>"
        "<th class=n>depth</th><th>decision</th><th class=n>feeds reached</th><th>via</th>"
        f"<th>time (UTC)</th></tr>{rows}</table></section>"
    )
    picture = f"<section><h2>Tree</h2>{cascade_svg(view)}</section>" if nodes else ""
    return _page(f"post {view.post_id}", head + picture + depths + table)


def cascade_svg(view: Cascade) -> str:
    """The cascade as inline SVG: the post at the top left, each repost on its own row,
    indented by depth, joined to the repost it came through (or to the post)."""
    nodes = view.nodes()[:MAX_DRAWN]
    row, indent, left, top = 26, 28, 16, 20
    y_of: dict[str, float] = {}
    x_of: dict[str, float] = {}
    parts = [
        f"<circle cx='{left}' cy='{top}' r='8' fill='#1f2933'/>"
        f"<text x='{left + 14}' y='{top + 4}' font-weight='600'>post {escape(view.post_id)}"
        f" by {escape(view.author or '?')}</text>"
    ]
    lines: list[str] = []  # drawn first, under every circle
    peak = max((n.reached for n in nodes), default=1) or 1
    for i, node in enumerate(nodes, start=1):
        x, y = left + indent * node.depth, top + row * i
        x_of[node.repost_id], y_of[node.repost_id] = x, y
        px, py = x_of.get(node.via or "", left), y_of.get(node.via or "", top)
        lines.append(f"<path d='M{px} {py} V{y} H{x}' fill='none' stroke='#9aa5b1'/>")
        radius = 4 + 6 * (node.reached / peak) ** 0.5
        colour = COLOURS.get(node.decision, "#555")
        parts.append(
            f"<circle cx='{x}' cy='{y}' r='{radius:.1f}' fill='{colour}'>"
            f"<title>{escape(node.repost_id)}</title></circle>"
            f"<text x='{x + 14}' y='{y + 4}'>{escape(node.reposter)} · {escape(node.decision)}"
            f" · {_at_least(node.exact)}{node.reached:,} feeds</text>"
        )
    more = len(view.nodes()) - len(nodes)
    if more > 0:
        parts.append(f"<text x='{left}' y='{top + row * (len(nodes) + 1)}' fill='#6b7280'>"
                     f"and {more:,} more</text>")  # fmt: skip
    width = left + indent * max((n.depth for n in nodes), default=0) + 420
    height = top + row * (len(nodes) + (2 if more > 0 else 1))
    return (f"<svg id=cascade width='{width}' height='{height}' font-size='13' role=img "
            f"aria-label='cascade of reposts'>{''.join(lines + parts)}</svg>")  # fmt: skip


def user_page(view: UserFeeds) -> str:
    """A user's Following and For You feeds, with attribution, each entry linked to its
    explanation, and a form to explain a post that is not there."""
    user = escape(view.user_id)
    form = (
        f"<section><form id=why-form data-user='{user}' onsubmit='return why(this.dataset.user)'>"
        "Why is a post not here? <input id=why-post placeholder='post id'> "
        "<button type=submit>explain</button></form></section>"
    )
    body = (
        f"<h1>User {user}</h1>{form}<div class=cols>"
        f"{_feed('Following', 'following', view.following, view.user_id)}"
        f"{_feed('For You', 'for-you', view.for_you, view.user_id)}</div>"
    )
    return _page(f"user {view.user_id}", body)


def _explain_link(user_id: str, post_id: str) -> str:
    href = f"/console/user/{quote(user_id, safe='')}/explain/{quote(post_id, safe='')}"
    return f"<a data-explain href='{href}'>explain</a>"


def _feed(title: str, name: str, items: Iterable[FeedItem], user_id: str) -> str:
    rows = []
    for item in items:
        by = ", ".join(item.reposted_by)
        why = f"reposted by {escape(by)}" if by else "follows the author"
        labels = "".join(f" <span class=chip style='background:#6b7280'>{escape(x)}</span>"
                         for x in item.labels)  # fmt: skip
        comment = f"<br><i>“{escape(item.comment)}”</i>" if item.comment else ""
        rows.append(
            f"<tr data-post='{escape(item.post_id)}'><td>{_post_link(item.post_id)}{labels}"
            f"<br><span class=muted>{escape((item.text or '')[:120])}</span></td>"
            f"<td>{_user_link(item.author_id)}</td><td data-why>{why}{comment}</td>"
            f"<td>{_when(item.ts)}</td><td>{_explain_link(user_id, item.post_id)}</td></tr>"
        )
    count = len(rows)
    head = ("<tr><th>post</th><th>author</th><th>why it is here</th><th>time (UTC)</th>"
            "<th></th></tr>")  # fmt: skip
    table = f"<table>{head}{''.join(rows)}</table>" if rows else "<p class=muted>empty</p>"
    return (f"<section data-feed='{name}'><h2>{title} <span class=muted data-count>{count}"
            f"</span></h2>{table}</section>")  # fmt: skip


def explain_page(x: Explanation) -> str:
    """Why a post is or is not in a user's Following and For You feeds: the post, the
    author, the reposters the user follows, each feed's entry and bucket, and the verdicts
    (the facts and sentences of ``feedamp explain``)."""
    head = (
        f"<h1>Why post {escape(x.post)} is or is not in {escape(x.user)}'s feeds</h1>"
        f"<p>user {_user_link(x.user)} · post {_post_link(x.post)} · key namespace "
        f"<code>{escape(x.namespace)}</code></p>"
    )
    return _page(f"explain {x.post} for {x.user}",
                 head + _verdicts(x) + _facts(x) + _reposts(x) + _entries(x))  # fmt: skip


def _verdicts(x: Explanation) -> str:
    shown, parts = x.shown, []
    for name, title in (("following", "Following"), ("for_you", "For You")):
        state = "SHOWN" if shown[name] else "NOT SHOWN"
        cls = "shown" if shown[name] else "hidden"
        items = "".join(f"<li data-because>{escape(v)}</li>" for v in x.verdicts.get(name, []))
        parts.append(
            f"<section data-verdict='{name}'><h2>{title}: <span class='verdict {cls}'"
            f" data-shown>{state}</span></h2><ul>{items}</ul></section>"
        )
    return f"<div class=cols>{''.join(parts)}</div>"


def _facts(x: Explanation) -> str:
    if not x.post_known:
        rows = "<tr><th>post</th><td class=bad data-fact=post>unknown to Redis</td></tr>"
    else:
        state = escape(x.visibility)
        if x.deleted_at is not None:
            state += f", <span class=bad>deleted {_when(x.deleted_at)}</span>"
        if x.author_suspended:
            state += ", <span class=bad>author suspended</span>"
        follows = "you follow the author" if x.follows_author else "you do not follow the author"
        if x.unfollowed_at is not None:
            follows += f" (unfollowed {_when(x.unfollowed_at)})"
        hidden = escape(", ".join(x.author_hidden)) or "<span class=muted>none</span>"
        rows = (
            f"<tr><th>author</th><td data-fact=author>{_user_link(x.author)}</td></tr>"
            f"<tr><th>posted (UTC)</th><td>{_when(x.post_ts)}</td></tr>"
            f"<tr><th>state</th><td data-fact=state>{state}</td></tr>"
            f"<tr><th>following</th><td data-fact=follows>{follows}</td></tr>"
            f"<tr><th>blocks, mutes</th><td data-fact=hidden>{hidden}</td></tr>"
            f"<tr><th>reposts in all</th><td data-fact=reposts>{x.reposts_total:,}</td></tr>"
        )
    return f"<section><h2>The post</h2><table>{rows}</table></section>"


def _reposts(x: Explanation) -> str:
    title = "<h2>Reposts by people the user follows</h2>"
    if not x.reposts:
        return f"<section>{title}<p class=muted>none</p></section>"
    rows = []
    for r in x.reposts:
        notes = [n for n in (r.hidden, "reposter suspended" if r.suspended else None,
                             "withdrawn (unrepost)" if r.withdrawn else None) if n]  # fmt: skip
        decision = _chip(r.decision) if r.decision else "<span class=muted>undecided</span>"
        rows.append(
            f"<tr data-reposter='{escape(r.reposter)}'><td>{_user_link(r.reposter)}</td>"
            f"<td>{escape(r.repost_id or '-')}</td><td>{_when(r.ts)}</td>"
            f"<td class=n data-depth>{'-' if r.depth is None else r.depth}</td>"
            f"<td data-decision>{decision} {escape(', '.join(r.reasons))}</td>"
            f"<td class=bad>{escape(', '.join(notes))}</td></tr>"
        )
    return (
        f"<section>{title}<table><tr><th>reposter</th><th>repost</th><th>time (UTC)</th>"
        "<th class=n>depth</th><th>decision</th><th>hidden or withdrawn</th></tr>"
        f"{''.join(rows)}</table></section>"
    )


def _entries(x: Explanation) -> str:
    rows = []
    for title, e in (("Following", x.following), ("For You", x.for_you)):
        if e is None:
            continue
        lowest = "-" if e.bucket_lowest is None else f"{e.bucket_lowest:.0f}"
        full = " <span class=bad>at its cap</span>" if e.bucket_size >= e.bucket_cap else ""
        rows.append(
            f"<tr><td>{title}</td><td>{'stored' if e.present else 'absent'}</td>"
            f"<td>{escape(', '.join(e.via)) or '-'}{' (labelled)' if e.labelled else ''}</td>"
            f"<td class=n>{e.bucket}</td><td class=n>{e.bucket_size:,} / {e.bucket_cap:,}{full}"
            f"</td><td class=n>{lowest}</td></tr>"
        )
    return (
        "<section><h2>Feed entries</h2><table><tr><th>feed</th><th>entry</th>"
        "<th>attributed to</th><th class=n>bucket</th><th class=n>kept / cap</th>"
        f"<th class=n>oldest score</th></tr>{''.join(rows)}</table></section>"
    )


def error_page(what: str, error: BaseException) -> str:
    """What could not be read, in one line (the page answers 503)."""
    return _page(
        "unavailable",
        f"<h1>Cannot show {escape(what)}</h1><p class=bad data-error>"
        f"{escape(type(error).__name__)}: {escape(str(error))}</p>",
    )
