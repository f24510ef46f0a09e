"""The OpenRPC description of the node's JSON-RPC API, served by `rpc.discover`.

It describes the methods, parameters and result shapes of Cartesi's rollups-node v2 JSON-RPC
(`internal/jsonrpc/jsonrpc-discover.json` of cartesi/rollups-node, the release that pairs with
`@cartesi/rollups` 2.2.0), written here from that contract rather than copied, so that a client
generated from either document sees the same API. Two deliberate additions, both because the
official node's code (and the npm clients built against it) send them where that document does not
list them:

- `Application` also carries the fields `@cartesi/rpc` 2.0.0-alpha.25 / `@cartesi/viem`
  2.0.0-alpha.31 read (`enabled`, `status`, `claim_staging_period`, `withdrawal_config`, ...):
  viem's converter calls `hexToBigInt` on each of them and throws when one is missing.
- `Input` also carries `transaction_hash` (the name newer nodes use for `transaction_reference`).

Where the official document and the official node's code (internal/jsonrpc, internal/model)
disagree, this document and rollup/rpc.py follow the code:

- `limit`: the document says minimum 1; the code takes 0 (and absence) as the default 50 and caps
  larger values at 10,000 instead of refusing them.
- params: the document lists named params; the code also takes them by position (an array, in
  the order listed here), ignores unknown keys and matches keys case-insensitively.
- `decoded_data` of inputs and vouchers: addresses EIP-55 checksummed (`common.Address.Hex()`),
  `prev_randao` printed with `%x` (no leading zeros), where the document only says "hex".
- `reason` of an application is `null` when there is none (the document types it as a string).
- an application name must have at least 3 characters (`^[a-z0-9_-]{3,}$` in the code; the
  document's pattern allows 1).
- the PRT list methods answer an empty page without checking that the application exists.

The tests validate every answer of our node against `components.schemas` below (tests/
test_cartesi_rpc.py), so this document is also the test oracle for field names and encodings.
"""

from __future__ import annotations

import copy
from typing import Any

VERSION = "2.0.0"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(name: str) -> dict[str, Any]:
    return {"oneOf": [_ref(name), {"type": "null"}]}


def _nullable_list(name: str) -> dict[str, Any]:
    return {"type": ["array", "null"], "items": _ref(name)}


DATE = {"type": "string", "format": "date-time"}
HEX_NUMBER = "UnsignedInteger"


def _obj(props: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """An object schema; every listed field is required (the official node always sends them)."""
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = sorted(props)
    return out


def _list_result(item: str) -> dict[str, Any]:
    return _obj({"data": {"type": "array", "items": _ref(item)}, "pagination": _ref("Pagination")})


def _get_result(item: str) -> dict[str, Any]:
    return _obj({"data": _ref(item)})


SCHEMAS: dict[str, Any] = {
    "Pagination": _obj({"total_count": {"type": "integer", "minimum": 0},
                        "limit": {"type": "integer", "minimum": 1},
                        "offset": {"type": "integer", "minimum": 0}}),
    "EthereumAddress": {"type": "string", "pattern": "^0x[a-fA-F0-9]{40}$"},
    "Hash": {"type": "string", "pattern": "^0x[a-fA-F0-9]{64}$"},
    "ByteArray": {"type": "string", "pattern": "^0x([a-fA-F0-9]{2})*$"},
    "UnsignedInteger": {"type": "string", "pattern": "^0x(0|[1-9a-fA-F][a-fA-F0-9]{0,15})$"},
    "FunctionSelector": {"type": "string", "pattern": "^0x[a-fA-F0-9]{8}$"},
    "ApplicationName": {"type": "string", "pattern": "^[a-z0-9_-]+$"},
    "NameOrAddress": {"anyOf": [_ref("ApplicationName"), _ref("EthereumAddress")]},  # 0x+hex fits both
    "ApplicationState": {"type": "string", "enum": ["ENABLED", "DISABLED", "INOPERABLE"]},
    "ApplicationStatus": {"type": "string", "enum": ["OK", "FAILED", "DIVERGED", "CORRUPTED"]},
    "Consensus": {"type": "string", "enum": ["AUTHORITY", "QUORUM", "PRT"]},
    "SnapshotPolicy": {"type": "string", "enum": ["NONE", "EVERY_INPUT", "EVERY_EPOCH"]},
    "EpochStatus": {"type": "string", "enum": ["OPEN", "CLOSED", "INPUTS_PROCESSED", "CLAIM_COMPUTED",
                                               "CLAIM_SUBMITTED", "CLAIM_ACCEPTED", "CLAIM_REJECTED"]},
    "InputCompletionStatus": {"type": "string", "enum": [
        "NONE", "ACCEPTED", "REJECTED", "EXCEPTION", "MACHINE_HALTED", "OUTPUTS_LIMIT_EXCEEDED",
        "CYCLE_LIMIT_EXCEEDED", "TIME_LIMIT_EXCEEDED", "PAYLOAD_LENGTH_LIMIT_EXCEEDED"]},
    "WinnerCommitment": {"type": "string", "enum": ["NONE", "ONE", "TWO"]},
    "MatchDeletionReason": {"type": "string", "enum": ["STEP", "TIMEOUT", "CHILD_TOURNAMENT", "NOT_DELETED"]},
    "ExecutionParameters": _obj({
        "snapshot_policy": _ref("SnapshotPolicy"),
        **{k: _ref(HEX_NUMBER) for k in (
            "advance_inc_cycles", "advance_max_cycles", "inspect_inc_cycles", "inspect_max_cycles",
            "advance_inc_deadline", "advance_max_deadline", "inspect_inc_deadline", "inspect_max_deadline",
            "load_deadline", "store_deadline", "fast_deadline")},
        "max_concurrent_inspects": {"type": "integer", "minimum": 0},
        "created_at": DATE, "updated_at": DATE}),
    "WithdrawalConfig": _obj({
        "guardian": _ref("EthereumAddress"), "log2_leaves_per_account": _ref(HEX_NUMBER),
        "log2_max_num_of_accounts": _ref(HEX_NUMBER), "accounts_drive_start_index": _ref(HEX_NUMBER),
        "withdrawal_output_builder": _ref("EthereumAddress")}),
    "Application": _obj({
        "name": _ref("ApplicationName"),
        "iapplication_address": _ref("EthereumAddress"),
        "iconsensus_address": _ref("EthereumAddress"),
        "iinputbox_address": _ref("EthereumAddress"),
        "template_hash": _ref("Hash"),
        "epoch_length": _ref(HEX_NUMBER),
        "data_availability": _ref("ByteArray"),
        "consensus_type": _ref("Consensus"),
        "state": _ref("ApplicationState"),
        "reason": {"type": ["string", "null"]},
        **{k: _ref(HEX_NUMBER) for k in (
            "iinputbox_block", "last_epoch_check_block", "last_input_check_block", "last_output_check_block",
            "last_tournament_check_block", "processed_inputs")},
        "created_at": DATE, "updated_at": DATE,
        "execution_parameters": _ref("ExecutionParameters"),
        # what @cartesi/rpc 2.0.0-alpha.25 / @cartesi/viem 2.0.0-alpha.31 read as well
        "enabled": {"type": "boolean"},
        "status": _ref("ApplicationStatus"),
        "claim_staging_period": _ref(HEX_NUMBER),
        "withdrawal_config": _ref("WithdrawalConfig"),
        **{k: _ref(HEX_NUMBER) for k in (
            "last_foreclose_check_block", "last_accounts_drive_proved_check_block",
            "last_withdrawal_check_block", "foreclose_block", "accounts_drive_proved_block")},
        **{k: _ref("Hash") for k in (
            "foreclose_transaction", "accounts_drive_proved_transaction", "accounts_drive_merkle_root")},
    }),
    "Epoch": _obj({
        "index": _ref(HEX_NUMBER), "first_block": _ref(HEX_NUMBER), "last_block": _ref(HEX_NUMBER),
        "input_index_lower_bound": _ref(HEX_NUMBER), "input_index_upper_bound": _ref(HEX_NUMBER),
        "machine_hash": _nullable("Hash"), "outputs_merkle_root": _nullable("Hash"),
        "outputs_merkle_proof": _nullable_list("Hash"), "commitment": _nullable("Hash"),
        "commitment_proof": _nullable_list("Hash"), "claim_transaction_hash": _nullable("Hash"),
        "tournament_address": _nullable("EthereumAddress"), "status": _ref("EpochStatus"),
        "virtual_index": _ref(HEX_NUMBER), "created_at": DATE, "updated_at": DATE}),
    "EvmAdvance": _obj({
        "chain_id": _ref(HEX_NUMBER), "application_contract": _ref("EthereumAddress"),
        "sender": _ref("EthereumAddress"), "block_number": _ref(HEX_NUMBER),
        "block_timestamp": _ref(HEX_NUMBER),
        # the official node prints prevRandao with %x: no leading zeros, up to 64 digits
        "prev_randao": {"type": "string", "pattern": "^0x(0|[1-9a-fA-F][a-fA-F0-9]{0,63})$"},
        "index": _ref(HEX_NUMBER), "payload": _ref("ByteArray")}),
    "Input": _obj({
        "epoch_index": _ref(HEX_NUMBER), "index": _ref(HEX_NUMBER), "block_number": _ref(HEX_NUMBER),
        "raw_data": _ref("ByteArray"), "decoded_data": _nullable("EvmAdvance"),
        "status": _ref("InputCompletionStatus"), "machine_hash": _nullable("Hash"),
        "outputs_hash": _nullable("Hash"), "transaction_reference": _ref("Hash"),
        "transaction_hash": _ref("Hash"), "created_at": DATE, "updated_at": DATE}),
    "Notice": _obj({"type": {"const": "Notice"}, "payload": _ref("ByteArray")}),
    "Voucher": _obj({"type": {"const": "Voucher"}, "destination": _ref("EthereumAddress"),
                     "value": _ref("UnsignedInteger256"), "payload": _ref("ByteArray")}),
    "UnsignedInteger256": {"type": "string", "pattern": "^0x(0|[1-9a-fA-F][a-fA-F0-9]{0,63})$"},
    "DelegateCallVoucher": _obj({"type": {"const": "DelegateCallVoucher"},
                                 "destination": _ref("EthereumAddress"), "payload": _ref("ByteArray")}),
    "DecodedOutput": {"oneOf": [_ref("Notice"), _ref("Voucher"), _ref("DelegateCallVoucher")]},
    "Output": _obj({
        "epoch_index": _ref(HEX_NUMBER), "input_index": _ref(HEX_NUMBER), "index": _ref(HEX_NUMBER),
        "raw_data": _ref("ByteArray"), "decoded_data": _nullable("DecodedOutput"),
        "hash": _nullable("Hash"),
        "output_hashes_siblings": _nullable_list("Hash"),
        "execution_transaction_hash": _nullable("Hash"), "created_at": DATE, "updated_at": DATE}),
    "Report": _obj({
        "epoch_index": _ref(HEX_NUMBER), "input_index": _ref(HEX_NUMBER), "index": _ref(HEX_NUMBER),
        "raw_data": _ref("ByteArray"), "created_at": DATE, "updated_at": DATE}),
    "Tournament": _obj({
        "epoch_index": _ref(HEX_NUMBER), "address": _ref("EthereumAddress"),
        "parent_tournament_address": _nullable("EthereumAddress"), "parent_match_id_hash": _nullable("Hash"),
        "max_level": _ref(HEX_NUMBER), "level": _ref(HEX_NUMBER), "log2step": _ref(HEX_NUMBER),
        "height": _ref(HEX_NUMBER), "winner_commitment": _nullable("Hash"), "final_state_hash": _nullable("Hash"),
        "finished_at_block": _ref(HEX_NUMBER), "created_at": DATE, "updated_at": DATE}),
    "Commitment": _obj({
        "epoch_index": _ref(HEX_NUMBER), "tournament_address": _ref("EthereumAddress"),
        "commitment": _ref("Hash"), "final_state_hash": _ref("Hash"), "submitter_address": _ref("EthereumAddress"),
        "block_number": _ref(HEX_NUMBER), "tx_hash": _ref("Hash"), "created_at": DATE, "updated_at": DATE}),
    "Match": _obj({
        "epoch_index": _ref(HEX_NUMBER), "tournament_address": _ref("EthereumAddress"), "id_hash": _ref("Hash"),
        "commitment_one": _ref("ByteArray"), "commitment_two": _ref("ByteArray"), "left_of_two": _ref("ByteArray"),
        "block_number": _ref(HEX_NUMBER), "tx_hash": _ref("Hash"), "winner_commitment": _ref("WinnerCommitment"),
        "deletion_reason": _ref("MatchDeletionReason"), "deletion_block_number": _ref(HEX_NUMBER),
        "deletion_tx_hash": _ref("Hash"), "created_at": DATE, "updated_at": DATE}),
    "MatchAdvanced": _obj({
        "epoch_index": _ref(HEX_NUMBER), "tournament_address": _ref("EthereumAddress"), "id_hash": _ref("Hash"),
        "other_parent": _ref("ByteArray"), "left_node": _ref("ByteArray"), "block_number": _ref(HEX_NUMBER),
        "tx_hash": _ref("Hash"), "created_at": DATE, "updated_at": DATE}),
    "LastAcceptedEpochIndexResult": _obj({"data": _ref(HEX_NUMBER)}),
    "ProcessedInputCountResult": _obj({"data": _ref(HEX_NUMBER)}),
    "ChainIdResult": _obj({"data": _ref(HEX_NUMBER)}),
    "NodeVersionResult": _obj({"data": {"type": "string", "pattern": "^[a-zA-Z0-9_.+-]+$"}}),
}
for _item in ("Application", "Epoch", "Input", "Output", "Report", "Tournament", "Commitment", "Match",
              "MatchAdvanced"):
    _plural = "MatchAdvanced" if _item == "MatchAdvanced" else _item
    SCHEMAS[f"{_plural}ListResult"] = _list_result(_item)
    SCHEMAS[f"{_plural}GetResult"] = _get_result(_item)


def _p(name: str, schema: dict[str, Any], required: bool = False, description: str = "") -> dict[str, Any]:
    out = {"name": name, "schema": schema, "required": required}
    if description:
        out["description"] = description
    return out


APP = _p("application", _ref("NameOrAddress"), True, "the application's name or address")
PAGE = [_p("limit", {"type": "integer", "minimum": 0, "default": 50},
           description="items per page; 0 or absent means 50, more than 10000 means 10000 (the answer's "
                       "pagination says which)"),
        _p("offset", {"type": "integer", "minimum": 0, "default": 0}),
        _p("descending", {"type": "boolean", "default": False}, description="newest first")]


def _idx(name: str, required: bool = False) -> dict[str, Any]:
    return _p(name, _ref(HEX_NUMBER), required, "hex encoded (0x...)")


# method -> (summary, params, result schema); the params' order is the positional order
METHODS: list[tuple[str, str, list[dict[str, Any]], str]] = [
    ("cartesi_listApplications", "List the applications", PAGE, "ApplicationListResult"),
    ("cartesi_getApplication", "Get an application", [APP], "ApplicationGetResult"),
    ("cartesi_listEpochs", "List an application's epochs",
     [APP, _p("status", _ref("EpochStatus")), *PAGE], "EpochListResult"),
    ("cartesi_getEpoch", "Get an epoch", [APP, _idx("epoch_index", True)], "EpochGetResult"),
    ("cartesi_getLastAcceptedEpochIndex", "The index of the last epoch whose claim was accepted", [APP],
     "LastAcceptedEpochIndexResult"),
    ("cartesi_listInputs", "List inputs",
     [APP, _idx("epoch_index"), _p("sender", _ref("EthereumAddress")), *PAGE], "InputListResult"),
    ("cartesi_getInput", "Get an input", [APP, _idx("input_index", True)], "InputGetResult"),
    ("cartesi_getProcessedInputCount", "How many inputs the application processed", [APP],
     "ProcessedInputCountResult"),
    ("cartesi_listOutputs", "List outputs (notices, vouchers, delegate-call vouchers)",
     [APP, _idx("epoch_index"), _idx("input_index"), _p("output_type", _ref("FunctionSelector")),
      _p("voucher_address", _ref("EthereumAddress")), *PAGE], "OutputListResult"),
    ("cartesi_getOutput", "Get an output with its proof", [APP, _idx("output_index", True)], "OutputGetResult"),
    ("cartesi_listReports", "List reports", [APP, _idx("epoch_index"), _idx("input_index"), *PAGE],
     "ReportListResult"),
    ("cartesi_getReport", "Get a report", [APP, _idx("report_index", True)], "ReportGetResult"),
    ("cartesi_listTournaments", "List PRT tournaments (none for an Authority application)",
     [APP, _idx("epoch_index"), _idx("level"), _p("parent_tournament_address", _ref("EthereumAddress")),
      _p("parent_match_id_hash", _ref("Hash")), *PAGE], "TournamentListResult"),
    ("cartesi_getTournament", "Get a PRT tournament", [APP, _p("address", _ref("EthereumAddress"), True)],
     "TournamentGetResult"),
    ("cartesi_listCommitments", "List PRT commitments",
     [APP, _idx("epoch_index"), _p("tournament_address", _ref("EthereumAddress")), *PAGE],
     "CommitmentListResult"),
    ("cartesi_getCommitment", "Get a PRT commitment",
     [APP, _idx("epoch_index", True), _p("tournament_address", _ref("EthereumAddress"), True),
      _p("commitment", _ref("Hash"), True)], "CommitmentGetResult"),
    ("cartesi_listMatches", "List PRT matches",
     [APP, _idx("epoch_index"), _p("tournament_address", _ref("EthereumAddress")), *PAGE], "MatchListResult"),
    ("cartesi_getMatch", "Get a PRT match",
     [APP, _idx("epoch_index", True), _p("tournament_address", _ref("EthereumAddress"), True),
      _p("id_hash", _ref("Hash"), True)], "MatchGetResult"),
    ("cartesi_listMatchAdvances", "List a PRT match's advances",
     [APP, _idx("epoch_index", True), _p("tournament_address", _ref("EthereumAddress"), True),
      _p("id_hash", _ref("Hash"), True), *PAGE], "MatchAdvancedListResult"),
    ("cartesi_getMatchAdvanced", "Get a PRT match advance",
     [APP, _idx("epoch_index", True), _p("tournament_address", _ref("EthereumAddress"), True),
      _p("id_hash", _ref("Hash"), True), _p("parent", _ref("Hash"), True)], "MatchAdvancedGetResult"),
    ("cartesi_getChainId", "The chain id the node reads", [], "ChainIdResult"),
    ("cartesi_getNodeVersion", "The node's version", [], "NodeVersionResult"),
]

RESULT_SCHEMA = {name: result for name, _, _, result in METHODS}
PARAM_NAMES = {name: [p["name"] for p in params] for name, _, params, _ in METHODS}

_DOCUMENT: dict[str, Any] = {
    "openrpc": "1.2.6",
    "info": {"title": "Cartesi Rollups Node API (Tributary host-mode node)", "version": VERSION,
             "description": "Read-only JSON-RPC over applications, epochs, inputs, outputs and reports, "
                            "as Cartesi's rollups-node v2 serves it."},
    "methods": [{"name": name, "summary": summary, "params": params, "paramStructure": "either",
                 "result": {"name": "result", "schema": _ref(result)}}
                for name, summary, params, result in METHODS],
    "components": {"schemas": SCHEMAS},
}


def document() -> dict[str, Any]:
    """A fresh copy of the document (callers may not mutate the shared one)."""
    return copy.deepcopy(_DOCUMENT)


def result_schema(method: str) -> dict[str, Any]:
    """A self-contained JSON schema for `method`'s result (its `$ref`s resolve in it)."""
    return {"$ref": f"#/components/schemas/{RESULT_SCHEMA[method]}", "components": {"schemas": SCHEMAS}}
