"""Contract ABIs and bytecode: the pinned Cartesi v2.2.0 artifacts and our own compiled contracts.

Why a loader and not copied ABIs: the npm package ``@cartesi/rollups@2.2.0`` is the source of
truth (CARTESI_V2.md: "where this page and the artifacts disagree, the artifacts win"), so every
address, selector and error decoding in ``rollup/`` comes from those very files.

Public API::

    from rollup.artifacts import load_artifact, Artifact
    app = load_artifact("Application")        # Cartesi: node_modules/@cartesi/rollups/out/Application.sol/Application.json
    tok = load_artifact("TestToken")          # ours:    contracts/build/TestToken.json (committed)
    app.abi, app.bytecode (bytes), app.deployed_bytecode (bytes)

Lookup order: our ``contracts/build/<Name>.json`` first, then the Cartesi package. The package
lives in ``<repo>/node_modules`` unless ``$TRIBUTARY_NODE_MODULES`` points elsewhere. Our build
output is committed, so loading ``TestToken`` needs no node/solc at run time.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollup.anvil import node_modules_dir, repo_root


class ArtifactError(RuntimeError):
    """An artifact is missing or malformed."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    source: Path

    def initcode(self, ctor_args: bytes = b"") -> bytes:
        """Creation code followed by the ABI-encoded constructor arguments."""
        if not self.bytecode:
            raise ArtifactError(f"{self.name} is abstract or an interface: it has no creation bytecode")
        return self.bytecode + ctor_args


def cartesi_out_dir() -> Path:
    return node_modules_dir() / "@cartesi" / "rollups" / "out"


def contracts_build_dir() -> Path:
    return repo_root() / "contracts" / "build"


def _hex_bytes(value: Any, what: str) -> bytes:
    # Foundry artifacts hold {"object": "0x.."}; our solc build holds a plain "0x.." string.
    if isinstance(value, dict):
        value = value.get("object", "")
    if not isinstance(value, str):
        raise ArtifactError(f"{what}: bytecode is not a hex string")
    if "__$" in value:
        raise ArtifactError(f"{what}: bytecode has unlinked libraries")
    return bytes.fromhex(value.removeprefix("0x"))


def _read(path: Path, name: str) -> Artifact:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read artifact {name} at {path}: {exc}") from exc
    try:
        return Artifact(
            name=name,
            abi=data["abi"],
            bytecode=_hex_bytes(data["bytecode"], name),
            deployed_bytecode=_hex_bytes(data.get("deployedBytecode", "0x"), name),
            source=path,
        )
    except KeyError as exc:
        raise ArtifactError(f"artifact {name} at {path} lacks {exc}") from exc


@functools.lru_cache(maxsize=None)
def load_artifact(name: str) -> Artifact:
    """The artifact called ``name`` (e.g. "InputBox", "TestToken"); raises ArtifactError."""
    ours = contracts_build_dir() / f"{name}.json"
    if ours.is_file():
        return _read(ours, name)
    theirs = cartesi_out_dir() / f"{name}.sol" / f"{name}.json"
    if theirs.is_file():
        return _read(theirs, name)
    raise ArtifactError(f"no artifact {name!r}: looked at {ours} and {theirs} (run `make setup`?)")
