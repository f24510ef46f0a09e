"""`tributary dashboard`: serve the dashboard for the configured node, chain and store.

Kept out of client/cli.py so that the CLI module only names the command; everything the
dashboard needs (and its failure messages) lives in this package.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import click


def serve(st: Any, host: str, port: int) -> None:
    """Start the server in the foreground until Ctrl-C; one clear line if a source is missing."""
    from client.config import ConfigError
    from client.node_api import NodeError

    from client.dashboard.data import make_views
    from client.dashboard.server import DashboardServer

    try:
        cfg = st.ctx.cfg
        store = None
        try:
            store = st.ctx.store
        except ConfigError as exc:  # the pages still work; spec details and downloads do not
            click.echo(f"warning: {exc}: specs and initial models will not be shown", err=True)
        views = make_views(cfg.node_url, cfg.app, cfg.rpc_url, store)
        views.feed.sync()
    except (ConfigError, NodeError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:
        click.echo(f"error: cannot read the node at {st.ctx.cfg.node_url}: {exc}", err=True)
        sys.exit(1)
    try:
        srv = DashboardServer(views, host, port)
    except OSError as exc:
        click.echo(f"error: cannot listen on {host}:{port}: {exc} (try --port 0)", err=True)
        sys.exit(1)
    click.echo(f"dashboard on {srv.url}  (node {cfg.node_url}, chain "
               f"{cfg.rpc_url or 'not configured'}, Application {views.feed.app}); Ctrl-C stops it")
    # Ctrl-C and SIGTERM stop it even when it was started with SIGINT ignored (a background job
    # of a non-interactive shell), as `dev up`, the node and the demo do.
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
