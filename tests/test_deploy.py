"""Deployment lands on Cartesi's canonical addresses, the devnet resumes or restarts cleanly, and
our own contracts are what their sources compile to."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3
from web3.logs import DISCARD

from rollup.anvil import DEV_ACCOUNTS, DEV_MNEMONIC, Anvil, AnvilError, port_is_free
from rollup.artifacts import load_artifact
from rollup.chain import ContractRevert, call_fn, connect, contract, deploy_contract, send_tx
from rollup.deploy import (CREATE2_DEPLOYER, DEFAULT_TEMPLATE_HASH, EXPECTED_ADDRESSES, Deployment, create2_address,
                           deploy_core)
from rollup.devnet import DEPLOYMENT_FILE, NODE_DIR, STATE_FILE, start_devnet
from tests.chain_fixtures import (ALICE, BOB, OWNER, add_input, anvil_chain, core, mint, submit_claim,  # noqa: F401
                                  token_balance, w3)

pytestmark = pytest.mark.chain
REPO = Path(__file__).resolve().parent.parent

# CARTESI_V2.md §5, typed in again here on purpose (the module's table could drift with it).
CARTESI_TABLE = """
InputBox 0x1b51e2992A2755Ba4D6F7094032DF91991a0Cfac
EtherPortal 0xA632c5c05812c6a6149B7af5C56117d1D2603828
ERC20Portal 0xACA6586A0Cf05bD831f2501E7B4aea550dA6562D
ERC721Portal 0x9E8851dadb2b77103928518846c4678d48b5e371
ERC1155SinglePortal 0x18558398Dd1a8cE20956287a4Da7B76aE7A96662
ERC1155BatchPortal 0xe246Abb974B307490d9C6932F48EbE79de72338A
SafeERC20Transfer 0xb7C2bcAA4437425cfcE9d233bFf15EF461273D63
ApplicationFactory 0x26E758238CB6eC5aB70ce0dd52aF2d7b82e1972E
AuthorityFactory 0x5E96408CFE423b01dADeD3bc867E6013135990cc
QuorumFactory 0x1C91Ba8aa5648cdAC77E97eaC781447c646EF239
SelfHostedApplicationFactory 0x010D3CbB4223F5bCc7b7B03cEE59f3aAea8eDb8A
"""


def test_addresses_equal_cartesi_table(w3: Web3, core: Deployment) -> None:
    table = dict(line.split() for line in CARTESI_TABLE.strip().splitlines())
    assert core.contracts == table == EXPECTED_ADDRESSES
    for name, addr in table.items():
        code = w3.eth.get_code(addr)
        # equal to the artifact's runtime code up to immutables (zero in the artifact)
        assert len(code) == len(load_artifact(name).deployed_bytecode) > 0


def test_deployment_json_and_app_wiring(w3: Web3, core: Deployment, tmp_path: Path) -> None:
    path = core.save(tmp_path / "deployment.json")
    data = json.loads(path.read_text())
    assert set(data) == {"chain_id", "rpc_url", "contracts", "application", "authority", "epoch_length",
                         "deploy_block", "owner"}
    assert data["chain_id"] == 31337 and data["owner"] == OWNER.address
    assert Deployment.load(path) == core
    app = contract(w3, "Application", core.application)
    assert app.functions.getOutputsMerkleRootValidator().call() == core.authority
    assert app.functions.owner().call() == OWNER.address
    assert app.functions.getTemplateHash().call() == DEFAULT_TEMPLATE_HASH
    assert app.functions.getDeploymentBlockNumber().call() == core.deploy_block
    da = app.functions.getDataAvailability().call()
    assert da[:4].hex() == "b12c9ede" and da.endswith(bytes.fromhex(core.contracts["InputBox"][2:]))
    auth = contract(w3, "Authority", core.authority)
    assert auth.functions.getEpochLength().call() == core.epoch_length
    assert auth.functions.owner().call() == OWNER.address


def test_deploy_core_is_idempotent(w3: Web3, core: Deployment) -> None:
    before = w3.eth.block_number
    assert deploy_core(w3, OWNER.private_key) == core.contracts
    assert w3.eth.block_number == before  # nothing sent


def test_create2_matches_chain() -> None:
    init = load_artifact("InputBox").initcode()
    assert create2_address(init) == EXPECTED_ADDRESSES["InputBox"]
    assert CREATE2_DEPLOYER == "0x4e59b44847b379578588920cA78FbF26c0B4956C"


def test_authority_rules_surface_as_typed_reverts(w3: Web3, core: Deployment) -> None:
    auth = contract(w3, "Authority", core.authority)
    head = w3.eth.block_number
    bad = head + (core.epoch_length - head % core.epoch_length)  # an epoch *start*, not its end
    with pytest.raises(ContractRevert) as err:
        send_tx(w3, OWNER.private_key, auth.functions.submitClaim(core.application, bad, b"\x01" * 32))
    assert err.value.error in ("NotEpochFinalBlock", "NotPastBlock")
    with pytest.raises(ContractRevert) as err:
        send_tx(w3, ALICE.private_key, auth.functions.submitClaim(core.application, core.epoch_length - 1, b"\x01" * 32))
    assert err.value.error == "OwnableUnauthorizedAccount" and err.value.args_decoded == (ALICE.address,)
    last = submit_claim(w3, core, b"\x02" * 32)
    with pytest.raises(ContractRevert) as err:
        send_tx(w3, OWNER.private_key, auth.functions.submitClaim(core.application, last, b"\x03" * 32))
    assert err.value.error == "NotFirstClaim"


def test_input_too_large_is_decoded(w3: Web3, core: Deployment) -> None:
    add_input(w3, core, ALICE.private_key, b"\x01" * 1000)
    with pytest.raises(ContractRevert) as err:
        add_input(w3, core, ALICE.private_key, b"\x01" * 70_000)
    assert err.value.error == "InputTooLarge"


def test_dev_accounts_are_anvils_mnemonic() -> None:
    Account.enable_unaudited_hdwallet_features()
    for acct in DEV_ACCOUNTS[:3]:
        derived = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{acct.index}")
        assert derived.address == acct.address
        assert "0x" + derived.key.hex().removeprefix("0x") == acct.private_key


# ------------------------------------------------------------------------------ our contracts

@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to recompile")
def test_recompiling_gives_the_committed_bytecode() -> None:
    proc = subprocess.run(["node", "contracts/compile.js", "--check"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_test_token_through_erc20_portal(w3: Web3, core: Deployment) -> None:
    token = deploy_contract(w3, OWNER.private_key, "TestToken", "Test Token", "TST")
    mint(w3, token, ALICE.private_key, ALICE.address, 10**6)
    tok = contract(w3, "TestToken", token)
    assert tok.functions.totalSupply().call() == 10**6 and tok.functions.decimals().call() == 18
    with pytest.raises(ContractRevert) as err:
        send_tx(w3, BOB.private_key, tok.functions.transfer(ALICE.address, 1))
    assert err.value.error == "InsufficientBalance"
    portal = core.contracts["ERC20Portal"]
    with pytest.raises(ContractRevert) as err:  # no allowance yet
        send_tx(w3, ALICE.private_key, contract(w3, "ERC20Portal", portal).functions.depositERC20Tokens(
            token, core.application, 10, b""))
    assert err.value.error == "InsufficientAllowance"
    send_tx(w3, ALICE.private_key, tok.functions.approve(portal, 300))
    rcpt = send_tx(w3, ALICE.private_key, contract(w3, "ERC20Portal", portal).functions.depositERC20Tokens(
        token, core.application, 300, b"job-1"))
    assert token_balance(w3, token, core.application) == 300
    box = contract(w3, "InputBox", core.contracts["InputBox"])
    (ev,) = box.events.InputAdded().process_receipt(rcpt, errors=DISCARD)
    # The EvmAdvance payload ends with token(20) ++ sender(20) ++ value(32) ++ execLayerData.
    from eth_abi import decode
    fields = decode(["uint256", "address", "address", "uint256", "uint256", "uint256", "uint256", "bytes"],
                    ev["args"]["input"][4:])
    payload = fields[7]
    assert payload == bytes.fromhex(token[2:]) + bytes.fromhex(ALICE.address[2:]) + (300).to_bytes(32, "big") + b"job-1"
    assert Web3.to_checksum_address(fields[2]) == portal  # msg_sender is the portal


def test_on_chain_aggregation_sums_and_averages(w3: Web3, core: Deployment) -> None:
    agg_addr = deploy_contract(w3, OWNER.private_key, "OnChainAggregation")
    agg = contract(w3, "OnChainAggregation", agg_addr)
    send_tx(w3, OWNER.private_key, agg.functions.createJob(5, 2))
    updates = {ALICE: [1, -2, 2**31 - 1, -(2**31), 7], BOB: [2, -3, 2**31 - 1, -(2**31), -8]}
    for who, weights in updates.items():
        send_tx(w3, who.private_key, agg.functions.submitUpdate(0, weights))
    sums = [a + b for a, b in zip(*updates.values())]
    assert agg.functions.getSum(0).call() == sums
    assert agg.functions.getAverage(0).call() == [int(s / 2) for s in sums]  # rounds toward zero
    with pytest.raises(ContractRevert) as err:
        send_tx(w3, ALICE.private_key, agg.functions.submitUpdate(0, [0] * 5))
    assert err.value.error == "AlreadySubmitted"
    with pytest.raises(ContractRevert) as err:
        send_tx(w3, OWNER.private_key, agg.functions.submitUpdate(0, [0] * 5))
    assert err.value.error == "JobFull"
    with pytest.raises(ContractRevert) as err:
        call_fn(agg.functions.submitUpdate(0, [0] * 4), sender=DEV_ACCOUNTS[5].address)
    assert err.value.error == "BadDimension"


# ------------------------------------------------------------------------------------ devnet

def test_devnet_resumes_then_restarts_cleanly(tmp_path: Path) -> None:
    with start_devnet(None, 3, tmp_path) as net:
        assert not net.reused and net.deployment.contracts == EXPECTED_ADDRESSES
        first = net.deployment
        w = connect(net.anvil.url)
        add_input(w, first, ALICE.private_key, b"kept across restarts")
        block = w.eth.block_number
        (tmp_path / NODE_DIR).mkdir()
        (tmp_path / NODE_DIR / "node.sqlite").write_text("x")
    assert json.loads((tmp_path / DEPLOYMENT_FILE).read_text())["application"] == first.application

    with start_devnet(None, 3, tmp_path) as net:  # same epoch length: resume
        assert net.reused and net.deployment.application == first.application
        w = connect(net.anvil.url)
        assert w.eth.block_number >= block
        assert net.deployment.rpc_url == net.anvil.url
        assert (tmp_path / NODE_DIR / "node.sqlite").exists()

    (tmp_path / STATE_FILE).write_text("{not json")  # unusable state: moved aside, fresh chain
    with start_devnet(None, 3, tmp_path) as net:
        assert not net.reused
        assert list(tmp_path.glob(STATE_FILE + ".broken-*"))
        assert not (tmp_path / NODE_DIR).exists()  # the node's old store described another chain
        assert connect(net.anvil.url).eth.get_code(net.deployment.application)


def test_devnet_cli_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "rollup", "devnet", "--port", "0", "--no-node",
                             "--state-dir", str(tmp_path), "--epoch-length", "5"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        lines: list[str] = []
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("deployment"):
                break
        text = "".join(lines)
        url = text.split()[1]
        assert EXPECTED_ADDRESSES["InputBox"] in text and "PUBLIC TEST KEYS" in proc.stdout.readline()
        port = int(url.rsplit(":", 1)[1])
        assert not port_is_free(port)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert port_is_free(port), "anvil outlived the devnet"
        dep = json.loads((tmp_path / DEPLOYMENT_FILE).read_text())
        assert dep["epoch_length"] == 5 and dep["contracts"] == EXPECTED_ADDRESSES
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_anvil_port_in_use_is_an_error(anvil_chain: Anvil) -> None:
    with pytest.raises(AnvilError):
        Anvil(anvil_chain.port).start()


def test_anvil_block_time_and_clean_stop() -> None:
    with Anvil(block_time=0.2) as chain:
        pid = chain.proc.pid if chain.proc else -1
        w = connect(chain.url)
        first = w.eth.block_number
        time.sleep(0.7)
        assert w.eth.block_number > first  # blocks come without transactions
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the process is gone, not orphaned
