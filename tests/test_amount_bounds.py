"""`parse_amount` refuses what no uint256 holds, quickly and with a reason (not a traceback or
a million-digit integer), and stays exact for every amount a uint256 does hold."""

from __future__ import annotations

import click
import pytest

from client.cli import parse_amount


@pytest.mark.parametrize("bad", ["1e900000wei", "1e999999999eth", "nan eth", "infeth",
                                 f"{2**256}wei"])
def test_out_of_range_amounts_are_refused(bad: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_amount(bad, require_unit=True)


def test_large_amounts_stay_exact() -> None:
    assert parse_amount("12345678901.234567890123456789eth", require_unit=True) \
        == 12345678901234567890123456789
    assert parse_amount(f"{2**256 - 1}wei", require_unit=True) == 2**256 - 1
