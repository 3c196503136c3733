"""The read-only web console, served on the worker's web port under ``/console/``.

:mod:`.data` reads Kafka and Redis, :mod:`.render` turns what it read into HTML; the
routes live with the worker's other endpoints in :mod:`feedamp.streams.web`. Nothing in
the console writes: what it needs beyond the views, the worker writes as it applies
events (:mod:`feedamp.feeds.activity`).
"""

from __future__ import annotations

from .data import ConsoleData
from .render import cascade_page, error_page, explain_page, overview_page, user_page

__all__ = [
    "ConsoleData",
    "cascade_page",
    "error_page",
    "explain_page",
    "overview_page",
    "user_page",
]
