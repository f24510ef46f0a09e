"""`python -m dapp`: the Tributary backend, serving the rollup HTTP API's requests forever."""

from __future__ import annotations

import logging
import os

from dapp.content.source import GioSource
from dapp.loop import run
from dapp.market.app import Market
from dapp.rollup_api import RollupClient


def main() -> None:
    logging.basicConfig(level=os.environ.get("TRIBUTARY_LOG", "WARNING"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    client = RollupClient()

    def gio(domain: int, ident: bytes) -> tuple[int, bytes]:
        result = client.gio(domain, ident)
        return result.code, result.data

    # The official Cartesi node serves no GIO: there, set TRIBUTARY_GIO=0 and jobs use content
    # posted through inputs (a GIO request would stop the machine).
    use_gio = os.environ.get("TRIBUTARY_GIO", "1") != "0"
    run(Market(GioSource(gio) if use_gio else None), client)


if __name__ == "__main__":
    main()
