"""`tributary dashboard`: a read-only web app where every payout can be traced from the inputs
that earned it to the executed voucher that paid it.

It reads only public sources (the node's JSON-RPC and inspect, the chain, the content store)
and ships its pages in this package (plain HTML, CSS, JS and hand-drawn SVG: no CDN, no build
step). `data` computes each page's JSON; `server` serves it with the static files.
"""

from __future__ import annotations

from client.dashboard.data import Feed, LiveFeed, NotFound, Views, make_views
from client.dashboard.server import DashboardServer

__all__ = ["DashboardServer", "Feed", "LiveFeed", "NotFound", "Views", "make_views"]
