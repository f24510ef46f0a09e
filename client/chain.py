"""The client's base-layer side: send inputs, deposit through the portals, read balances.

Why through rollup.chain.send_tx: a refused transaction then raises ContractRevert with the
Cartesi error decoded (e.g. `InputTooLarge`), and an input's index comes back from the
InputBox's `InputAdded` event, which is how the client later finds the node's answer to it.

Devnet helpers (`advance_time`, `mine`, `set_balance`) use anvil's JSON-RPC extensions and refuse
to run on any chain that does not answer them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from client.config import Config
from client.keys import Signer
from rollup.chain import ChainError, ContractRevert, connect, contract, send_tx

log = logging.getLogger(__name__)


class ClientChainError(Exception):
    """A chain interaction failed; the message names the action and the reason."""


class NotEnoughFunds(ClientChainError):
    """The account cannot pay the value (plus gas) it tries to send."""


@dataclass(frozen=True)
class SentInput:
    """An input the InputBox accepted: its global index and the transaction that carried it."""

    index: int
    tx_hash: str
    block_number: int
    gas_used: int
    fee_wei: int


class Chain:
    """One Application on one chain, as seen by one client."""

    def __init__(self, cfg: Config) -> None:
        try:
            self.w3: Web3 = connect(cfg.require_rpc(), timeout=30)
        except ChainError as exc:
            raise ClientChainError(f"{exc}. Is the devnet running? (`python -m rollup devnet`)") from None
        self.cfg = cfg
        self.app = to_checksum_address(cfg.require_app())
        self.input_box = contract(self.w3, "InputBox", cfg.contract("InputBox"))
        self.ether_portal = contract(self.w3, "EtherPortal", cfg.contract("EtherPortal"))
        self.erc20_portal = contract(self.w3, "ERC20Portal", cfg.contract("ERC20Portal"))

    # ---- sending -------------------------------------------------------------------------

    def _send(self, signer: Signer, fn: Any, what: str, value: int = 0) -> Any:
        bal = self.w3.eth.get_balance(to_checksum_address(signer.address))
        if bal < value:
            raise NotEnoughFunds(f"{what}: {signer.address} holds {bal} wei, less than the "
                                 f"{value} wei to send. Fund the account first.")
        try:
            return send_tx(self.w3, signer.private_key, fn, value=value)
        except ContractRevert as exc:
            raise ClientChainError(f"{what} was refused by the contract: {exc}") from None
        except ChainError as exc:
            msg = str(exc)
            if "insufficient funds" in msg.lower():
                raise NotEnoughFunds(f"{what}: {signer.address} cannot pay value plus gas "
                                     f"({bal} wei held)") from None
            raise ClientChainError(f"{what} failed: {msg}") from None
        except Exception as exc:  # web3 raises many types for RPC/network problems
            msg = str(exc)
            if "insufficient funds" in msg.lower():
                raise NotEnoughFunds(f"{what}: {signer.address} cannot pay value plus gas "
                                     f"({bal} wei held)") from None
            raise ClientChainError(f"{what} failed: {type(exc).__name__}: {msg}") from None

    def _input_from(self, receipt: Any) -> SentInput:
        events = self.input_box.events.InputAdded().process_receipt(receipt, errors=DISCARD)
        mine = [e for e in events if e["args"]["appContract"].lower() == self.app.lower()]
        if not mine:
            raise ClientChainError("the transaction added no input for this Application")
        price = int(receipt.get("effectiveGasPrice", 0))
        return SentInput(int(mine[0]["args"]["index"]), "0x" + bytes(receipt["transactionHash"]).hex(),
                         int(receipt["blockNumber"]), int(receipt["gasUsed"]),
                         int(receipt["gasUsed"]) * price)

    def add_input(self, signer: Signer, payload: bytes) -> SentInput:
        """InputBox.addInput(app, payload)."""
        rcpt = self._send(signer, self.input_box.functions.addInput(self.app, payload), "addInput")
        return self._input_from(rcpt)

    def deposit_ether(self, signer: Signer, value: int, exec_layer_data: bytes = b"") -> SentInput:
        """EtherPortal.depositEther(app, execLayerData) with `value` wei."""
        fn = self.ether_portal.functions.depositEther(self.app, exec_layer_data)
        return self._input_from(self._send(signer, fn, "depositEther", value=value))

    def deposit_erc20(self, signer: Signer, token: str, value: int,
                      exec_layer_data: bytes = b"") -> SentInput:
        """approve(ERC20Portal, value) on the token, then ERC20Portal.depositERC20Tokens."""
        tok = contract(self.w3, "IERC20", token)
        have = int(tok.functions.balanceOf(to_checksum_address(signer.address)).call())
        if have < value:
            raise NotEnoughFunds(f"depositERC20Tokens: {signer.address} holds {have} of token "
                                 f"{token}, less than {value}")
        self._send(signer, tok.functions.approve(self.erc20_portal.address, value), "approve")
        fn = self.erc20_portal.functions.depositERC20Tokens(to_checksum_address(token), self.app,
                                                              value, exec_layer_data)
        return self._input_from(self._send(signer, fn, "depositERC20Tokens"))

    # ---- reading -------------------------------------------------------------------------

    def balance(self, address: str, token: str | None = None) -> int:
        addr = to_checksum_address(address)
        if token is None or int(token, 16) == 0:
            return int(self.w3.eth.get_balance(addr))
        return int(contract(self.w3, "IERC20", token).functions.balanceOf(addr).call())

    def block_timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    # ---- devnet only ---------------------------------------------------------------------

    def _dev_rpc(self, method: str, params: list[Any]) -> Any:
        resp = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in resp:
            raise ClientChainError(f"{method} is not available: this is not an anvil devnet "
                                   f"({resp['error']})")
        return resp.get("result")

    def advance_time(self, seconds: int) -> int:
        """Devnet only: move block time forward and mine a block; returns the new timestamp."""
        self._dev_rpc("evm_increaseTime", [int(seconds)])
        self._dev_rpc("evm_mine", [])
        return self.block_timestamp()

    def mine(self, blocks: int = 1) -> None:
        self._dev_rpc("anvil_mine", [hex(blocks)])

    def set_balance(self, address: str, wei: int) -> None:
        self._dev_rpc("anvil_setBalance", [to_checksum_address(address), hex(wei)])
