"""Deploy the real Cartesi Rollups v2.2.0 contracts at their canonical devnet addresses.

Why CREATE2 with salt 0 through the deterministic deployer: Cartesi's own devnet does exactly
this, so the addresses equal CARTESI_V2.md §5 on every chain, and any tool that hard-codes them
(the cartesi CLI, wallets, our client) works against our anvil too. ``deploy_core`` checks every
address against that table and refuses to go on if one differs (it would mean other artifacts).

Public API::

    from rollup.deploy import deploy_devnet, Deployment, EXPECTED_ADDRESSES
    dep = deploy_devnet(w3, private_key, epoch_length=10)      # core + Authority + Application
    dep.save(path); Deployment.load(path)
    dep.to_json() == {"chain_id", "rpc_url", "contracts": {name: address}, "application",
                      "authority", "epoch_length", "deploy_block", "owner"}

    deploy_core(w3, key) -> {name: address}       # idempotent: skips contracts already there
    new_authority(w3, key, owner, epoch_length) -> address
    new_application(w3, key, authority, owner, template_hash=DEFAULT_TEMPLATE_HASH)
        -> (address, block_number)

``deploy_block`` is the block in which the Application was created: a node reads ``InputAdded``
events for the app from there on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from rollup.artifacts import load_artifact
from rollup.chain import ChainError, contract, send_tx

log = logging.getLogger(__name__)

CREATE2_DEPLOYER = "0x4e59b44847b379578588920cA78FbF26c0B4956C"
SALT = b"\x00" * 32
DEFAULT_TEMPLATE_HASH = keccak(b"tributary")
# DataAvailability.InputBox(address) selector: the Application's dataAvailability blob tells
# nodes where its inputs come from.
DATA_AVAILABILITY_INPUTBOX = bytes.fromhex("b12c9ede")

# CARTESI_V2.md §5, recomputed there from the 2.2.0 artifacts.
EXPECTED_ADDRESSES: dict[str, str] = {
    "InputBox": "0x1b51e2992A2755Ba4D6F7094032DF91991a0Cfac",
    "EtherPortal": "0xA632c5c05812c6a6149B7af5C56117d1D2603828",
    "ERC20Portal": "0xACA6586A0Cf05bD831f2501E7B4aea550dA6562D",
    "ERC721Portal": "0x9E8851dadb2b77103928518846c4678d48b5e371",
    "ERC1155SinglePortal": "0x18558398Dd1a8cE20956287a4Da7B76aE7A96662",
    "ERC1155BatchPortal": "0xe246Abb974B307490d9C6932F48EbE79de72338A",
    "SafeERC20Transfer": "0xb7C2bcAA4437425cfcE9d233bFf15EF461273D63",
    "ApplicationFactory": "0x26E758238CB6eC5aB70ce0dd52aF2d7b82e1972E",
    "AuthorityFactory": "0x5E96408CFE423b01dADeD3bc867E6013135990cc",
    "QuorumFactory": "0x1C91Ba8aa5648cdAC77E97eaC781447c646EF239",
    "SelfHostedApplicationFactory": "0x010D3CbB4223F5bCc7b7B03cEE59f3aAea8eDb8A",
}

# Deployment order and constructor arguments (names refer to earlier entries).
CORE_CONTRACTS: list[tuple[str, list[str]]] = [
    ("InputBox", []),
    ("EtherPortal", ["InputBox"]),
    ("ERC20Portal", ["InputBox"]),
    ("ERC721Portal", ["InputBox"]),
    ("ERC1155SinglePortal", ["InputBox"]),
    ("ERC1155BatchPortal", ["InputBox"]),
    ("SafeERC20Transfer", []),
    ("ApplicationFactory", []),
    ("AuthorityFactory", []),
    ("QuorumFactory", []),
    ("SelfHostedApplicationFactory", ["AuthorityFactory", "ApplicationFactory"]),
]


class DeployError(ChainError):
    """Deployment could not produce the expected contracts."""


@dataclass
class Deployment:
    """What a node, client or test needs to find the app on chain (the deployment JSON)."""

    chain_id: int
    rpc_url: str
    contracts: dict[str, str]
    application: str
    authority: str
    epoch_length: int
    deploy_block: int
    owner: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if not d.pop("extra"):
            return d
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Deployment":
        known = {"chain_id", "rpc_url", "contracts", "application", "authority", "epoch_length",
                 "deploy_block", "owner"}
        missing = known - d.keys()
        if missing:
            raise DeployError(f"deployment JSON lacks {sorted(missing)}")
        return cls(**{k: d[k] for k in known}, extra={k: v for k, v in d.items() if k not in known})

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path | str) -> "Deployment":
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise DeployError(f"cannot read deployment file {path}: {exc}") from exc


def create2_address(initcode: bytes, salt: bytes = SALT, deployer: str = CREATE2_DEPLOYER) -> str:
    """EIP-1014: keccak(0xff ++ deployer ++ salt ++ keccak(initcode))[12:]."""
    raw = keccak(b"\xff" + bytes.fromhex(deployer[2:]) + salt + keccak(initcode))[12:]
    return to_checksum_address(raw)


def _initcode(name: str, deps: list[str], addrs: dict[str, str]) -> bytes:
    args = abi_encode(["address"] * len(deps), [addrs[d] for d in deps]) if deps else b""
    return load_artifact(name).initcode(args)


def has_code(w3: Web3, address: str) -> bool:
    return len(w3.eth.get_code(to_checksum_address(address))) > 0


def deploy_core(w3: Web3, private_key: str) -> dict[str, str]:
    """Deploy (or find) every Cartesi core contract through the CREATE2 deployer; returns
    name -> address, each equal to EXPECTED_ADDRESSES (else DeployError)."""
    if not has_code(w3, CREATE2_DEPLOYER):
        raise DeployError(f"the CREATE2 deployer {CREATE2_DEPLOYER} is not on this chain")
    addrs: dict[str, str] = {}
    for name, deps in CORE_CONTRACTS:
        initcode = _initcode(name, deps, addrs)
        addr = create2_address(initcode)
        if addr != EXPECTED_ADDRESSES[name]:
            raise DeployError(f"{name} would land at {addr}, not at Cartesi's {EXPECTED_ADDRESSES[name]}: "
                              "are the artifacts @cartesi/rollups 2.2.0?")
        addrs[name] = _deploy_create2(w3, private_key, name, initcode, addr)
    return addrs


def _deploy_create2(w3: Web3, private_key: str, name: str, initcode: bytes, addr: str) -> str:
    """Send `initcode` through the CREATE2 deployer (salt 0) unless `addr` has code already."""
    if has_code(w3, addr):
        log.debug("%s already at %s", name, addr)
        return addr
    send_tx(w3, private_key, to=CREATE2_DEPLOYER, data=SALT + initcode)
    if not has_code(w3, addr):
        raise DeployError(f"{name} deployment left no code at {addr}")
    log.info("deployed %s at %s", name, addr)
    return addr


BATCH_PAYOUT = "BatchPayout"
"""Our payout library (contracts/src/BatchPayout.sol), run by DelegateCallVouchers: deployed like
Cartesi's contracts (CREATE2 deployer, salt 0), so its address is the same on every chain and the
backend can name it as a constant (dapp/market/payout.py)."""


def deploy_batch_payout(w3: Web3, private_key: str) -> str:
    """Deploy (or find) BatchPayout at its deterministic address; returns the address."""
    initcode = load_artifact(BATCH_PAYOUT).initcode()
    return _deploy_create2(w3, private_key, BATCH_PAYOUT, initcode, create2_address(initcode))


def new_authority(w3: Web3, private_key: str, owner: str, epoch_length: int) -> str:
    """A fresh Authority (claims accepted from ``owner`` only) via AuthorityFactory."""
    if epoch_length < 1:
        raise DeployError(f"epoch length must be >= 1, got {epoch_length}")
    factory = contract(w3, "AuthorityFactory", EXPECTED_ADDRESSES["AuthorityFactory"])
    fn = factory.get_function_by_signature("newAuthority(address,uint256)")(to_checksum_address(owner), epoch_length)
    receipt = send_tx(w3, private_key, fn)
    events = factory.events.AuthorityCreated().process_receipt(receipt, errors=DISCARD)
    if len(events) != 1:
        raise DeployError(f"newAuthority emitted {len(events)} AuthorityCreated events")
    return str(events[0]["args"]["authority"])


def data_availability_inputbox(input_box: str = EXPECTED_ADDRESSES["InputBox"]) -> bytes:
    return DATA_AVAILABILITY_INPUTBOX + abi_encode(["address"], [to_checksum_address(input_box)])


def new_application(
    w3: Web3,
    private_key: str,
    authority: str,
    owner: str,
    template_hash: bytes = DEFAULT_TEMPLATE_HASH,
    input_box: str = EXPECTED_ADDRESSES["InputBox"],
) -> tuple[str, int]:
    """A fresh Application validated by ``authority``; returns (address, creation block)."""
    if len(template_hash) != 32:
        raise DeployError("template hash must be 32 bytes")
    factory = contract(w3, "ApplicationFactory", EXPECTED_ADDRESSES["ApplicationFactory"])
    fn = factory.get_function_by_signature("newApplication(address,address,bytes32,bytes)")(
        to_checksum_address(authority), to_checksum_address(owner), template_hash,
        data_availability_inputbox(input_box))
    receipt = send_tx(w3, private_key, fn)
    events = factory.events.ApplicationCreated().process_receipt(receipt, errors=DISCARD)
    if len(events) != 1:
        raise DeployError(f"newApplication emitted {len(events)} ApplicationCreated events")
    return str(events[0]["args"]["appContract"]), int(receipt["blockNumber"])


def deploy_devnet(
    w3: Web3,
    private_key: str,
    *,
    epoch_length: int = 10,
    template_hash: bytes = DEFAULT_TEMPLATE_HASH,
    owner: str | None = None,
    rpc_url: str | None = None,
) -> Deployment:
    """Core contracts (idempotent) + a new Authority and Application owned by ``owner``
    (default: the deployer)."""
    owner = to_checksum_address(owner or Account.from_key(private_key).address)
    contracts = deploy_core(w3, private_key)
    deploy_batch_payout(w3, private_key)
    authority = new_authority(w3, private_key, owner, epoch_length)
    application, block = new_application(w3, private_key, authority, owner, template_hash,
                                          contracts["InputBox"])
    if rpc_url is None:
        rpc_url = str(getattr(w3.provider, "endpoint_uri", "") or "")
    return Deployment(
        chain_id=int(w3.eth.chain_id), rpc_url=rpc_url, contracts=contracts,
        application=application, authority=authority, epoch_length=epoch_length,
        deploy_block=block, owner=owner,
    )


def deployment_is_live(w3: Web3, dep: Deployment) -> bool:
    """True if this chain holds the deployment (same chain id, code at app, authority and every
    core contract): used by the devnet to decide whether saved state can be reused."""
    try:
        if int(w3.eth.chain_id) != dep.chain_id:
            return False
        return all(has_code(w3, a) for a in [dep.application, dep.authority, *dep.contracts.values()])
    except Exception:
        return False
