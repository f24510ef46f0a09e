"""`Crypto` as an alias of Debian's `Cryptodome`.

Debian ships pycryptodome only under the `Cryptodome` name (its `Crypto` name belonged to the old
PyCrypto), while dapp/ (docs/ARCHITECTURE.md) and eth-hash's keccak backend import
`Crypto.Hash.keccak`. Same library, same version (3.20): this package only makes the name resolve
in the riscv64 userland and the Cartesi image. It is never installed on the host, where the
pycryptodome wheel provides `Crypto` itself.
"""
import sys

import Cryptodome

sys.modules[__name__] = Cryptodome
