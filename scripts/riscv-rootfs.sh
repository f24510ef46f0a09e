#!/usr/bin/env bash
# Builds the Debian trixie riscv64 userland that the cross-architecture tests run under
# qemu-riscv64-static (no chroot, no binfmt: `qemu-riscv64-static -L ROOT ROOT/usr/bin/python3`).
#
#   bash scripts/riscv-rootfs.sh ROOT        (the Makefile: .cache/riscv64)
#
# The package set is read from docker/backend-packages.txt, the same file docker/Dockerfile
# reads, so the tests run on what the real machine ships. Idempotent: each stage keeps a stamp
# holding the package list's hash and is skipped when it matches.
set -euo pipefail

ROOT="${1:?usage: riscv-rootfs.sh ROOT}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIST="$REPO/docker/backend-packages.txt"
MIRROR="${TRIBUTARY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=trixie
PIP="${TRIBUTARY_PIP:-$REPO/.venv/bin/pip}"
WHEELS_REL=opt/tributary-wheels

log() { printf 'riscv-rootfs: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -f "$LIST" ] || die "package list $LIST is missing"
mkdir -p "$ROOT"
ROOT="$(cd "$ROOT" && pwd)"
[ "$ROOT" != "/" ] && [ "$ROOT" != "$HOME" ] && [ "$ROOT" != "$REPO" ] || die "refusing ROOT=$ROOT"

debs=$(awk '$1 == "deb" {print $2}' "$LIST" | paste -sd, -)
mapfile -t wheels < <(awk '$1 == "wheel" {print $2}' "$LIST")
mapfile -t shims < <(awk '$1 == "shim" {print $2}' "$LIST")
[ -n "$debs" ] || die "no 'deb' lines in $LIST"
list_hash=$(sha256sum "$LIST" | cut -d' ' -f1)
wheels_hash=$(cat "$LIST" "$REPO"/docker/shims/*/*.py | sha256sum | cut -d' ' -f1)

# --- host tools (CI starts on a fresh machine, as root) -------------------------------------
need=()
command -v qemu-riscv64-static >/dev/null 2>&1 || need+=(qemu-user-static)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
DEBOOTSTRAP="$(command -v debootstrap || echo /usr/sbin/debootstrap)"
QEMU="$(command -v qemu-riscv64-static)"

# --- stage 1: Debian packages ----------------------------------------------------------------
if [ "$(cat "$ROOT/.tributary-debs" 2>/dev/null || true)" != "$list_hash" ]; then
    log "debootstrap $SUITE riscv64 (--include=$debs) into $ROOT"
    # A half-built tree from an interrupted run or an older list is not worth repairing.
    find "$ROOT" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    bootlog="$(mktemp)"
    "$DEBOOTSTRAP" --foreign --arch=riscv64 --variant=minbase --include="$debs" \
        "$SUITE" "$ROOT" "$MIRROR" >"$bootlog" 2>&1 \
        || { tail -n 30 "$bootlog" >&2; rm -f "$bootlog"; die "debootstrap failed"; }
    rm -f "$bootlog"
    # --foreign only downloads (and unpacks the essential base); no riscv64 dpkg can run here to
    # configure, so unpack every downloaded package. Maintainer scripts are not needed by Python.
    n=0
    for deb in "$ROOT"/var/cache/apt/archives/*.deb; do
        dpkg -x "$deb" "$ROOT"
        n=$((n + 1))
    done
    log "unpacked $n packages"
    # update-alternatives would make these links; NumPy's libraries look for the .so.3 names.
    libdir="$ROOT/usr/lib/riscv64-linux-gnu"
    for lib in blas lapack; do
        target=$(cd "$libdir" && ls -d "$lib"/lib"$lib".so.3 2>/dev/null || true)
        [ -n "$target" ] || target=$(cd "$libdir" && ls -d openblas-pthread/lib"$lib".so.3 2>/dev/null || true)
        [ -n "$target" ] || die "no lib$lib.so.3 under $libdir"
        ln -sfn "$target" "$libdir/lib$lib.so.3"
    done
    rm -f "$ROOT"/var/cache/apt/archives/*.deb
    echo "$list_hash" >"$ROOT/.tributary-debs"
fi

# --- stage 2: pure-Python wheels that Debian lacks, and the shims ----------------------------
if [ "$(cat "$ROOT/.tributary-wheels" 2>/dev/null || true)" != "$wheels_hash" ]; then
    [ -x "$PIP" ] || PIP="python3 -m pip"
    log "pip install --target $WHEELS_REL: ${wheels[*]}"
    rm -rf "${ROOT:?}/$WHEELS_REL"
    # --platform any + --only-binary: only py3-none-any wheels qualify, so nothing compiled for
    # the host can slip into the riscv64 tree.
    $PIP install --quiet --disable-pip-version-check --no-deps --no-compile \
        --target "$ROOT/$WHEELS_REL" --platform any --only-binary=:all: "${wheels[@]}" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    for shim in "${shims[@]}"; do
        [ -d "$REPO/docker/shims/$shim" ] || die "shim docker/shims/$shim is missing"
        cp -r "$REPO/docker/shims/$shim" "$ROOT/$WHEELS_REL/$shim"
    done
    echo "$wheels_hash" >"$ROOT/.tributary-wheels"
fi

# --- smoke check -----------------------------------------------------------------------------
log "smoke check under $(basename "$QEMU")"
PYTHONPATH="$ROOT/$WHEELS_REL" PYTHONDONTWRITEBYTECODE=1 \
    "$QEMU" -L "$ROOT" "$ROOT/usr/bin/python3" -c '
import platform, sys
import numpy, safetensors.numpy, eth_abi
from Crypto.Hash import keccak
assert platform.machine() == "riscv64", platform.machine()
h = keccak.new(digest_bits=256, data=b"").hexdigest()
assert h.startswith("c5d2460186f7233c"), h
assert eth_abi.encode(["uint256"], [1])[-1] == 1
print("python", sys.version.split()[0], "numpy", numpy.__version__, "eth_abi ok on", platform.machine())
' || die "smoke check failed: see above"
