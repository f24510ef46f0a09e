"""``python -m rollup <command>``: devnet, execute (chain side); node, verify (node side).

Each command lives in its own module and is only registered here, so the two sides edit this
file by one line each.
"""

from __future__ import annotations

import logging

import click


@click.group()
@click.option("-v", "--verbose", count=True, help="-v: info, -vv: debug logging")
def cli(verbose: int) -> None:
    """Tributary's host-mode Cartesi Rollups v2 tools."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from rollup.devnet import devnet_command
    from rollup.vouchers import execute_command

    cli.add_command(devnet_command)
    cli.add_command(execute_command)

    from rollup.node import node_command

    cli.add_command(node_command)

    from rollup.verify import verify_command

    cli.add_command(verify_command)

    from rollup.gateway import gateway_command  # `cartesi run`'s single port in front of a running node

    cli.add_command(gateway_command)


_register()

if __name__ == "__main__":
    cli()
