"""Tributary's host-mode Cartesi Rollups v2 tooling.

Chain side (devnet, contracts, proofs, vouchers):
- ``rollup.anvil``     start/stop a local anvil; the public dev accounts
- ``rollup.artifacts`` ABIs/bytecode of the Cartesi v2.2.0 contracts and ours (contracts/build)
- ``rollup.chain``     web3 helpers: connect, send_tx, decoded reverts (ContractRevert)
- ``rollup.deploy``    CREATE2 deployment at Cartesi's canonical addresses; Deployment JSON
- ``rollup.devnet``    ``python -m rollup devnet``: anvil + deployment + node
- ``rollup.outputs``   encode/decode Notice, Voucher, DelegateCallVoucher
- ``rollup.merkle``    the height-63 outputs tree, roots and proofs at any historical size
- ``rollup.vouchers``  execute/validate an output on the Application (``python -m rollup execute``)

Node side (host-mode node: server, store, reader, claimer, rpc, verify) lives beside these.
"""
