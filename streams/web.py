"""The worker's web endpoints, on Faust's web server (``FEEDAMP_WEB_PORT``).

- ``GET /healthz``: 200 when the worker is ready, 503 otherwise, with a JSON body
  ``{"status", "partitions", "reasons"}``. Ready means: not in a rebalance, holding at
  least one partition of the input topics, and Redis answering ``PING`` within a second.
  A worker that has no partition because the group has more workers than partitions
  reports 503 too (it is not doing any work).
- ``GET /metrics``: Prometheus text format; see :mod:`feedamp.streams.metrics`, plus
  ``feedamp_consumer_lag{topic,partition}`` (the partition's high-water mark minus the
  group's committed offset, as this worker last saw them) and
  ``feedamp_assigned_partitions``.

Only these routes (and any added with ``app.page`` in :func:`install_web`) are served:
Faust's built-in pages (``/``, ``/router/``, ``/table/``, ``/graph/``, statistics) are
never registered, since they expose the cluster's layout. The server listens on
``FEEDAMP_WEB_HOST`` (127.0.0.1 by default), see :func:`feedamp.streams.app.create_app`.
- ``GET /console/``, ``/console/post/{post_id}``, ``/console/user/{user_id}``: the
  read-only console (:mod:`feedamp.console`), HTML.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.web.base import BlueprintManager
from feedamp.config import Settings
from feedamp.feeds.connection import AnyRedis
from feedamp.models import InvalidEvent, validate_id

from .metrics import CONTENT_TYPE, Gauge, Metrics

__all__ = ["Health", "consumer_gauges", "install_console", "install_web", "redis_error"]

log = logging.getLogger("feedamp.web")

PING_TIMEOUT = 1.0


@dataclass(frozen=True)
class Health:
    """The readiness verdict and why."""

    partitions: int
    rebalancing: bool
    redis_error: str | None
    reasons: list[str] = field(init=False)

    def __post_init__(self) -> None:
        reasons = []
        if self.rebalancing:
            reasons.append("rebalancing")
        if not self.partitions:
            reasons.append("no partitions assigned")
        if self.redis_error:
            reasons.append(f"redis: {self.redis_error}")
        object.__setattr__(self, "reasons", reasons)

    @property
    def ready(self) -> bool:
        """True when the worker holds partitions, is not rebalancing and Redis answers."""
        return not self.reasons

    def body(self) -> dict[str, Any]:
        """The JSON body of ``/healthz``."""
        return {
            "status": "ok" if self.ready else "unavailable",
            "partitions": self.partitions,
            "reasons": self.reasons,
        }


async def redis_error(redis: AnyRedis, timeout: float = PING_TIMEOUT) -> str | None:
    """None when Redis answers PING within ``timeout``, else what went wrong."""
    try:
        await asyncio.wait_for(redis.ping(), timeout)
    except TimeoutError:
        return f"no answer to PING within {timeout}s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _assignment(app: faust.App, topics: Collection[str]) -> set[Any]:
    """The input partitions the app's consumer holds (Faust's internal topics left out)."""
    try:
        return {tp for tp in app.consumer.assignment() if tp.topic in topics}
    except Exception:  # the consumer is not started yet
        return set()


def consumer_gauges(app: faust.App, topics: Collection[str]) -> list[Gauge]:
    """Assigned input partitions, and the lag of each (high-water mark minus committed
    offset)."""
    assigned = _assignment(app, topics)
    lag: list[tuple[dict[str, str | int], float]] = []
    consumer = app.consumer if assigned else None
    for tp in sorted(assigned):
        try:
            highwater = consumer.highwater(tp)  # type: ignore[union-attr]
            committed = consumer._committed_offset.get(tp)  # type: ignore[union-attr]
        except Exception:
            continue
        if highwater is not None and committed is not None:
            lag.append(
                ({"topic": tp.topic, "partition": tp.partition}, max(0, highwater - committed))
            )
    return [
        Gauge(
            "feedamp_assigned_partitions",
            "Input partitions this worker holds.",
            [({}, len(assigned))],
        ),
        Gauge(
            "feedamp_consumer_lag", "Records not yet committed by the group, per partition.", lag
        ),
    ]


def install_web(app: faust.App, metrics: Metrics, redis: AnyRedis, topics: Collection[str]) -> None:
    """Register ``/healthz`` and ``/metrics`` on the app's web server, and only them (add
    further routes here with ``app.page``); ``topics`` are the input topics (partitions of
    other topics do not count as work held)."""
    topics = frozenset(topics)
    app.web.blueprints = BlueprintManager()  # none of Faust's built-in pages
    metrics.add_gauges(lambda: consumer_gauges(app, topics))

    @app.page("/healthz", name="feedamp_healthz")
    async def healthz(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        health = Health(
            partitions=len(_assignment(app, topics)),
            rebalancing=bool(getattr(app, "rebalancing", False)),
            redis_error=await redis_error(redis),
        )
        return view.json(health.body(), status=200 if health.ready else 503)

    @app.page("/metrics", name="feedamp_metrics")
    async def metrics_page(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        body = metrics.render().encode()
        return view.bytes(body, headers={"Content-Type": CONTENT_TYPE})


def install_console(app: faust.App, settings: Settings, redis: AnyRedis) -> None:
    """Register the console's pages (read-only HTML) on the app's web server. A page
    whose sources (Kafka, Redis) cannot be read answers 503 with the cause in one line."""
    from feedamp.console import ConsoleData, cascade_page, error_page, overview_page, user_page

    data = ConsoleData(settings, redis)

    async def render(view: faust.web.View, what: str, page: Any, id_: str | None = None,
                     kind: str = "") -> faust.web.Response:  # fmt: skip
        if id_ is not None:
            try:
                validate_id(id_, kind)
            except InvalidEvent as exc:
                page.close()  # never awaited
                return view.html(error_page(what, exc), status=400)
        try:
            return view.html(await page)
        except Exception as exc:
            log.warning("console: cannot show %s: %r", what, exc)
            return view.html(error_page(what, exc), status=503)

    async def overview_html() -> str:
        return overview_page(await data.overview())

    async def post_html(post_id: str) -> str:
        return cascade_page(await data.cascade(post_id))

    async def user_html(user_id: str) -> str:
        return user_page(await data.user(user_id))

    @app.page("/console/", name="feedamp_console")
    async def overview(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return await render(view, "the overview", overview_html())

    @app.page("/console/post/{post_id}", name="feedamp_console_post")
    async def post(
        view: faust.web.View, request: faust.web.Request, post_id: str
    ) -> faust.web.Response:
        return await render(view, f"post {post_id}", post_html(post_id), post_id, "post_id")

    @app.page("/console/user/{user_id}", name="feedamp_console_user")
    async def user(
        view: faust.web.View, request: faust.web.Request, user_id: str
    ) -> faust.web.Response:
        return await render(view, f"user {user_id}", user_html(user_id), user_id, "user_id")
