"""Suite-wide settings. Fixtures live in the modules that own them (chain_fixtures,
node_fixtures, ipfs_daemon, market_harness, riscv) and are imported where used."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Property tests run the real code paths (keccak, numpy, eth-abi); CI machines are small.
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          max_examples=int(os.environ.get("TRIBUTARY_HYPOTHESIS_EXAMPLES", "50")))
settings.load_profile("ci")
