"""Reusable chain fixtures and helpers: a real anvil with the real Cartesi v2.2.0 contracts.

Import the fixtures you use into your test module (pytest finds fixtures by name in the module)::

    from tests.chain_fixtures import anvil_chain, w3, core, app, fresh_account, test_token   # noqa: F401
    from tests.chain_fixtures import submit_claim, deposit_ether, deposit_erc20, add_input, OWNER

Fixtures
- ``anvil_chain`` (module): a running ``rollup.anvil.Anvil`` on a free port, stopped after the module.
- ``w3`` (module): a Web3 on it.
- ``core`` (module): ``Deployment`` of the Cartesi core contracts + one Authority/Application
  (epoch length ``DEFAULT_EPOCH_LENGTH`` = 4) owned by account 0 (``OWNER``).
- ``app`` (function): a *fresh* Authority + Application (epoch length 4) for one test, so claims
  and executions of different tests never collide; a ``Deployment``.
- ``fresh_account`` (function): a factory ``fresh_account(eth=10) -> LocalAccount``: a new random
  key with ``eth`` ETH set by ``anvil_setBalance`` (good for exact balance checks).
- ``test_token`` (module): our ``TestToken`` (contracts/build) deployed by account 0.

Helpers (plain functions, usable outside pytest too)
- ``submit_claim(w3, dep, root, key=OWNER.private_key) -> last_processed_block``: mines one block
  past the end of the next unclaimed epoch (anvil_mine) and submits ``root`` to the Authority, respecting
  ``NotEpochFinalBlock``/``NotPastBlock``/``NotFirstClaim``. Returns the claimed block number.
- ``deposit_ether(w3, dep, key, wei, exec_data=b"")``, ``deposit_erc20(w3, dep, key, token, amount)``
  (approves the ERC20Portal first), ``add_input(w3, dep, key, payload)``: return receipts.
- ``mint(w3, token, key, to, amount)``, ``token_balance(w3, token, who)``.

Accounts: ``OWNER`` = anvil account 0 (deployer, Authority and Application owner), ``ALICE`` = 1,
``BOB`` = 2 (all PUBLIC anvil test keys).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from rollup.anvil import DEV_ACCOUNTS, Anvil
from rollup.chain import connect, contract, deploy_contract, send_tx
from rollup.deploy import Deployment, deploy_devnet, new_application, new_authority

OWNER = DEV_ACCOUNTS[0]
ALICE = DEV_ACCOUNTS[1]
BOB = DEV_ACCOUNTS[2]
DEFAULT_EPOCH_LENGTH = 4


# ------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def anvil_chain() -> Iterator[Anvil]:
    chain = Anvil().start()
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture(scope="module")
def w3(anvil_chain: Anvil) -> Web3:
    return connect(anvil_chain.url)


@pytest.fixture(scope="module")
def core(w3: Web3, anvil_chain: Anvil) -> Deployment:
    return deploy_devnet(w3, OWNER.private_key, epoch_length=DEFAULT_EPOCH_LENGTH, rpc_url=anvil_chain.url)


def make_app(w3: Web3, core: Deployment, epoch_length: int = DEFAULT_EPOCH_LENGTH) -> Deployment:
    """A new Authority + Application on an already deployed chain (two transactions)."""
    authority = new_authority(w3, OWNER.private_key, OWNER.address, epoch_length)
    application, block = new_application(w3, OWNER.private_key, authority, OWNER.address,
                                         input_box=core.contracts["InputBox"])
    return Deployment(chain_id=core.chain_id, rpc_url=core.rpc_url, contracts=dict(core.contracts),
                      application=application, authority=authority, epoch_length=epoch_length,
                      deploy_block=block, owner=OWNER.address)


@pytest.fixture
def app(w3: Web3, core: Deployment) -> Deployment:
    return make_app(w3, core)


@pytest.fixture
def fresh_account(anvil_chain: Anvil) -> Callable[..., LocalAccount]:
    def make(eth: int = 10) -> LocalAccount:
        acct: LocalAccount = Account.create()
        anvil_chain.rpc("anvil_setBalance", [acct.address, hex(eth * 10**18)])
        return acct

    return make


@pytest.fixture(scope="module")
def test_token(w3: Web3, core: Deployment) -> str:
    return deploy_contract(w3, OWNER.private_key, "TestToken", "Test Token", "TST")


# ------------------------------------------------------------------------------------- helpers

def submit_claim(w3: Web3, dep: Deployment, root: bytes, key: str = OWNER.private_key) -> int:
    """Claim ``root`` for the next epoch whose end is at or after the current block (mining one
    block past that end). Returns the claimed lastProcessedBlockNumber."""
    length = dep.epoch_length
    head = w3.eth.block_number
    last = head + (length - 1 - head % length)  # first epoch end >= head
    # Mine one block past the epoch end: gas estimation runs against the latest block, whose
    # number must already exceed `last` (NotPastBlock).
    w3.provider.make_request("anvil_mine", [hex(last + 1 - head)])  # type: ignore[arg-type]
    authority = contract(w3, "Authority", dep.authority)
    send_tx(w3, key, authority.functions.submitClaim(dep.application, last, bytes(root)))
    return last


def deposit_ether(w3: Web3, dep: Deployment, key: str, wei: int, exec_data: bytes = b"") -> Any:
    portal = contract(w3, "EtherPortal", dep.contracts["EtherPortal"])
    return send_tx(w3, key, portal.functions.depositEther(dep.application, exec_data), value=wei)


def deposit_erc20(w3: Web3, dep: Deployment, key: str, token: str, amount: int, exec_data: bytes = b"") -> Any:
    portal_addr = dep.contracts["ERC20Portal"]
    send_tx(w3, key, contract(w3, "TestToken", token).functions.approve(portal_addr, amount))
    portal = contract(w3, "ERC20Portal", portal_addr)
    return send_tx(w3, key, portal.functions.depositERC20Tokens(token, dep.application, amount, exec_data))


def add_input(w3: Web3, dep: Deployment, key: str, payload: bytes) -> Any:
    box = contract(w3, "InputBox", dep.contracts["InputBox"])
    return send_tx(w3, key, box.functions.addInput(dep.application, payload))


def mint(w3: Web3, token: str, key: str, to: str, amount: int) -> Any:
    return send_tx(w3, key, contract(w3, "TestToken", token).functions.mint(to, amount))


def token_balance(w3: Web3, token: str, who: str) -> int:
    return int(contract(w3, "TestToken", token).functions.balanceOf(who).call())
