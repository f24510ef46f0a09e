"""What is tested is what ships: docker/Dockerfile (the real Cartesi machine) and
scripts/riscv-rootfs.sh (the qemu userland of the cross-architecture tests) install the backend's
packages only from docker/backend-packages.txt, and select the same entries from it.

Static: Docker cannot run here, so `cartesi build` is not exercised; this parses both files.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.riscv import REPO_ROOT

LIST = REPO_ROOT / "docker" / "backend-packages.txt"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
SCRIPT = REPO_ROOT / "scripts" / "riscv-rootfs.sh"
AWK = re.compile(r"""awk\s+'(\$1\s*==\s*"(\w+)"\s*\{\s*print \$2\s*\})'\s+(\S+)""")
MACHINE_ONLY_DEBS = {"busybox-static"}  # the machine's plumbing, not the backend's runtime


def entries(kind: str) -> list[str]:
    out = []
    for line in LIST.read_text().splitlines():
        parts = line.split("#", 1)[0].split()
        if parts:
            assert len(parts) == 2 and parts[0] in {"deb", "wheel", "shim"}, line
            if parts[0] == kind:
                out.append(parts[1])
    return out


def selections(text: str) -> dict[str, list[str]]:
    """kind -> the list entries each awk selector in `text` picks, run through real awk."""
    found: dict[str, list[str]] = {}
    for program, kind, source in AWK.findall(text):
        source = source.rstrip(");")
        assert "backend-packages.txt" in source or source == '"$LIST"', source
        picked = subprocess.run(["awk", program, str(LIST)], capture_output=True, text=True,
                                check=True).stdout.split()
        assert found.setdefault(kind, picked) == picked
    return found


def continued_lines(text: str) -> list[str]:
    return re.sub(r"\\\n", " ", text).splitlines()


def test_list_is_well_formed_and_pinned_like_the_host() -> None:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.strip().split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    wheels = entries("wheel")
    assert wheels, "no wheels listed"
    for spec in wheels:
        name, version = spec.split("==")
        assert pins.get(re.sub(r"[-_.]+", "-", name).lower()) == version, spec
    assert {"python3", "python3-numpy", "python3-safetensors",
            "python3-pycryptodome"} <= set(entries("deb"))
    for shim in entries("shim"):
        assert (REPO_ROOT / "docker" / "shims" / shim / "__init__.py").is_file()


def test_both_select_the_same_entries() -> None:
    docker = selections(DOCKERFILE.read_text())
    script = selections(SCRIPT.read_text())
    assert set(docker) == set(script) == {"deb", "wheel", "shim"}
    assert docker == script
    for kind in docker:
        assert docker[kind] == entries(kind)


def test_script_reads_the_shared_list_and_installs_nothing_else() -> None:
    text = SCRIPT.read_text()
    assert 'LIST="$REPO/docker/backend-packages.txt"' in text
    boot = [line for line in continued_lines(text) if re.search(r'"\$DEBOOTSTRAP"\s', line)]
    assert len(boot) == 1 and '--include="$debs"' in boot[0]
    assert text.count('"$DEBOOTSTRAP"') == 1
    pips = [line for line in continued_lines(text) if "install" in line and "$PIP" in line]
    assert len(pips) == 1
    assert pips[0].rstrip().split("--only-binary=:all:")[1].split()[0] == '"${wheels[@]}"'


def test_dockerfile_reads_the_shared_list_and_installs_nothing_else() -> None:
    lines = continued_lines(DOCKERFILE.read_text())
    froms = [line.split() for line in lines if line.startswith("FROM ")]
    assert froms[-1][1] == "--platform=linux/riscv64" and froms[-1][2].startswith(
        ("debian:trixie", "riscv64/debian:trixie"))
    apt = [line for line in lines if "apt-get install" in line]
    assert len(apt) == 1
    literal = [tok for tok in re.sub(r"\$\(awk[^)]*\)", " ", apt[0].split("apt-get install", 1)[1])
               .split(";")[0].split() if not tok.startswith("-")]
    assert set(literal) <= MACHINE_ONLY_DEBS, literal
    pip = [line for line in lines if "pip install" in line]
    assert len(pip) == 1
    after = re.sub(r"\$\(awk[^)]*\)", " ", pip[0].split("pip install", 1)[1]).split(";")[0]
    values = {"/opt/tributary-wheels", "any"}  # the values of --target and --platform
    assert [t for t in after.split() if not t.startswith("-") and t not in values] == []
    text = DOCKERFILE.read_text()
    assert "COPY docker/backend-packages.txt" in text and "COPY docker/shims" in text
    assert "machine-guest-tools/releases/download/v${MACHINE_GUEST_TOOLS_VERSION}" in text
    assert re.search(r"ARG MACHINE_GUEST_TOOLS_VERSION=0\.17\.\d+", text)
    assert 'ENTRYPOINT ["rollup-init"]' in text and 'CMD ["python3", "-m", "dapp"]' in text
    assert "ENV ROLLUP_HTTP_SERVER_URL=http://127.0.0.1:5004" in text
    assert "ENV PYTHONPATH=/opt/tributary-wheels" in text
    copies = [line.split()[1] for line in lines if line.startswith("COPY ") and "--from" not in line]
    assert set(copies) == {"docker/backend-packages.txt", "docker/shims", "dapp"}


def test_cartesi_toml_builds_this_dockerfile() -> None:
    import tomllib

    config = tomllib.loads((REPO_ROOT / "cartesi.toml").read_text())
    assert config["sdk"].startswith("cartesi/sdk:")
    assert config["machine"]["ram_length"].endswith("Mi")
    root = config["drives"]["root"]
    assert (root["builder"], root["dockerfile"], root["format"]) == (
        "docker", "docker/Dockerfile", "ext2")


def test_built_rootfs_holds_the_listed_wheels() -> None:
    import os

    root = Path(os.environ.get("TRIBUTARY_RISCV_ROOT") or REPO_ROOT / ".cache" / "riscv64")
    wheels_dir = root / "opt" / "tributary-wheels"
    if not wheels_dir.is_dir():
        pytest.skip(f"no riscv64 userland at {root} (make riscv)")
    installed = {}
    for info in wheels_dir.glob("*.dist-info"):
        name, version = info.name[: -len(".dist-info")].rsplit("-", 1)
        installed[re.sub(r"[-_.]+", "-", name).lower()] = version
    listed = {re.sub(r"[-_.]+", "-", s.split("==")[0]).lower(): s.split("==")[1]
              for s in entries("wheel")}
    assert installed == listed
    for shim in entries("shim"):
        assert (wheels_dir / shim / "__init__.py").read_bytes() == (
            REPO_ROOT / "docker" / "shims" / shim / "__init__.py").read_bytes()
