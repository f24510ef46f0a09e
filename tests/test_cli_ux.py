"""The command line as a new user meets it, without a chain: options anywhere, amounts with
units, defaults that do not depend on the current folder, data in the layouts people have (and
refused, with the fix, when its scale is wrong), a PyTorch model brought in, phases and
deadlines in words, and local state written so that a crash never leaves half a file.

Everything here runs in-process (click's CliRunner) with real files, real PyTorch and the real
market parsers; the chain-side behaviour (preflight before paying, recovery, resume after a
kill) is in tests/test_cli_ux_chain.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from client.cli import main, parse_amount
from client.data import DataError, demo_split, load_trainer_data
from client.jobs import DIGITS_CNN
from client.preflight import fmt_amount, fmt_duration, fmt_when, round_phase
from dapp.ml.arch import ArchSpec

ARCH = ArchSpec.from_dict(DIGITS_CNN)


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    base = {k: None for k in os.environ if k.startswith("TRIBUTARY_")}
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        return runner.invoke(main, list(args), env={**base, **(env or {})}, catch_exceptions=False)
    finally:
        os.chdir(old)


# --- options and amounts ----------------------------------------------------------------------

def test_json_flag_is_accepted_after_the_subcommand() -> None:
    before = _cli("--json", "owner", "spec-template")
    after = _cli("owner", "spec-template", "--json")
    assert before.exit_code == after.exit_code == 0
    assert json.loads(before.output) == json.loads(after.output)
    assert json.loads(after.output)["arch"]["num_classes"] == 10


def test_a_bare_reward_is_refused_as_ambiguous(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(_cli("owner", "spec-template").output)
    res = _cli("owner", "create-job", "--spec", str(spec), "--demo-shards", "1",
               "--reward", "1", "--json", env={"TRIBUTARY_HOME": str(tmp_path / "home")})
    assert res.exit_code == 1
    err = json.loads(res.output)
    assert err["ok"] is False and "no unit" in err["message"] and "1eth" in err["message"]
    assert not (tmp_path / "home" / "client" / "owner").exists()  # refused before anything
    for bad in ("1", "250"):
        with pytest.raises(Exception, match="no unit"):
            parse_amount(bad, require_unit=True)
    assert parse_amount("1eth", require_unit=True) == 10**18
    assert parse_amount("7wei", require_unit=True) == 7


def test_amounts_print_in_eth_and_the_zero_address_is_eth() -> None:
    assert fmt_amount(10**18) == "1 ETH"
    assert fmt_amount(1) == "0.000000000000000001 ETH"
    assert fmt_amount("123450000000000000") == "0.12345 ETH"
    assert fmt_amount(5, "0x" + "00" * 20) == "0.000000000000000005 ETH"
    assert fmt_amount(0) == "0 ETH"
    token = "0x" + "ab" * 20
    assert fmt_amount(1500, token) == f"1,500 units of {token}"


def test_defaults_live_under_a_home_not_the_current_folder(tmp_path: Path) -> None:
    from client.config import resolve

    home = tmp_path / "home"
    (home / "devnet").mkdir(parents=True)
    (home / "devnet" / "deployment.json").write_text(json.dumps(
        {"application": "0x" + "11" * 20, "rpc_url": "http://127.0.0.1:1"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    old = os.getcwd()
    os.environ["TRIBUTARY_HOME"] = str(home)
    try:
        os.chdir(elsewhere)
        cfg = resolve()
    finally:
        os.chdir(old)
        del os.environ["TRIBUTARY_HOME"]
    assert cfg.app == "0x" + "11" * 20
    assert cfg.home == home.resolve() / "client" and cfg.home.is_absolute()
    assert cfg.store_spec == str(home.resolve() / "content")
    # without a deployment anywhere, the error names where it looked and what to do
    res = _cli("trainer", "jobs", env={"TRIBUTARY_HOME": str(tmp_path / "empty")}, cwd=elsewhere)
    assert res.exit_code == 1
    assert str(tmp_path / "empty") in res.output and "TRIBUTARY_HOME" in res.output


def test_the_legacy_run_folder_still_works(tmp_path: Path) -> None:
    from client.config import resolve

    (tmp_path / ".run" / "devnet").mkdir(parents=True)
    (tmp_path / ".run" / "devnet" / "deployment.json").write_text(json.dumps(
        {"application": "0x" + "22" * 20}))
    old = os.getcwd()
    saved = os.environ.pop("TRIBUTARY_HOME", None)
    try:
        os.chdir(tmp_path)
        cfg = resolve()
    finally:
        os.chdir(old)
        if saved is not None:
            os.environ["TRIBUTARY_HOME"] = saved
    assert cfg.app == "0x" + "22" * 20
    assert cfg.home == (tmp_path / ".run" / "client").resolve()


# --- local state -------------------------------------------------------------------------------

def test_local_state_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from client import config

    f = tmp_path / "s" / "job-1.json"
    config.write_json(f, {"salt": "0x01"})
    assert oct(f.stat().st_mode & 0o777) == "0o600"

    def dies(*a: object) -> None:
        raise KeyboardInterrupt  # killed between the temp write and the rename

    monkeypatch.setattr(config.os, "replace", dies)
    with pytest.raises(KeyboardInterrupt):
        config.write_json(f, {"salt": "0x02"})
    monkeypatch.undo()
    assert json.loads(f.read_text()) == {"salt": "0x01"}       # the old file, whole
    assert [p.name for p in f.parent.iterdir()] == ["job-1.json"]  # no temp left behind


# --- phases and deadlines -----------------------------------------------------------------------

def test_round_phases_and_deadlines_in_words() -> None:
    w = {"commit": 600, "reveal": 600, "validation": 600}
    info = {"id": 3, "status": "open", "rounds": [{"round": 0, "start": 1000}]}
    names = [round_phase(info, w, t, False).name for t in (999, 1000, 1599, 1600, 2199, 2200, 2799, 2800)]
    assert names == ["waiting", "commit", "commit", "reveal", "reveal", "validation", "validation",
                     "closable"]
    assert round_phase(info, w, 2200, True).name == "closable"
    ph = round_phase(info, w, 1360, False)
    assert "commit window open until" in ph.describe() and "(in 4 min)" in ph.describe()
    assert fmt_duration(240) == "4 min" and fmt_duration(3720) == "1 h 2 min"
    assert fmt_when(1000, 1300).endswith("(5 min ago)")


# --- data ------------------------------------------------------------------------------------------

def test_uint8_images_are_refused_with_the_fix(tmp_path: Path) -> None:
    x, y = demo_split(1).parts["dave"]
    raw = np.round(x * 255).astype(np.uint8)
    np.savez(tmp_path / "u8.npz", x=raw, y=y)
    with pytest.raises(DataError, match="divide by 255"):
        load_trainer_data(tmp_path / "u8.npz", ARCH)
    np.savez(tmp_path / "f.npz", x=raw.astype(np.float32), y=y)  # 0..255 stored as floats
    with pytest.raises(DataError, match="[Dd]ivide by 255"):
        load_trainer_data(tmp_path / "f.npz", ARCH)
    np.savez(tmp_path / "ok.npz", x=raw.astype(np.float32) / 255, y=y)
    lx, _ = load_trainer_data(tmp_path / "ok.npz", ARCH)
    assert lx.dtype == np.float32 and lx.max() <= 1


def test_channels_last_image_folder_and_csv_layouts(tmp_path: Path) -> None:
    x, y = demo_split(1).parts["dave"]
    notes: list[str] = []
    np.savez(tmp_path / "nhwc.npz", x=np.moveaxis(x, 1, -1), y=y)
    lx, ly = load_trainer_data(tmp_path / "nhwc.npz", ARCH, notes=notes)
    assert np.array_equal(lx, x) and np.array_equal(ly, y)
    assert any("channels-first" in n for n in notes)

    folder = tmp_path / "images"
    for i, (img, label) in enumerate(zip(x, y)):
        d = folder / str(int(label))
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / f"{i:04d}.npy", img[0])  # grey [H, W]
    fx, fy = load_trainer_data(folder, ARCH)
    assert fx.shape == x.shape and sorted(fy.tolist()) == sorted(y.tolist())

    rows = ["label," + ",".join(f"p{i}" for i in range(64))]
    rows += [f"{int(l)}," + ",".join(f"{v:.6f}" for v in img.reshape(-1)) for img, l in zip(x, y)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    cx, cy = load_trainer_data(tmp_path / "d.csv", ARCH)
    assert np.allclose(cx, x, atol=1e-6) and np.array_equal(cy, y)
    (tmp_path / "wrong.csv").write_text("label,a,b\n1,0.5,0.5\n")
    with pytest.raises(DataError, match="the job needs 64"):
        load_trainer_data(tmp_path / "wrong.csv", ARCH)
    (folder / "0" / "pic.png").write_bytes(b"\x89PNG")
    try:
        import PIL  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="Pillow"):
            load_trainer_data(folder, ARCH)


# --- a PyTorch model brought to the market ------------------------------------------------------------

def test_model_import_from_a_pytorch_state_dict(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from dapp.ml.model_format import decode_model
    from dapp.ml.fixedpoint import to_torch_state_dict

    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(128, 10))
    save_file({k: v.contiguous() for k, v in seq.state_dict().items()}, str(tmp_path / "m.safetensors"))
    (tmp_path / "arch.json").write_text(json.dumps(DIGITS_CNN))
    res = _cli("model", "import", "--state-dict", str(tmp_path / "m.safetensors"), "--arch",
               str(tmp_path / "arch.json"), "--out", str(tmp_path / "init.safetensors"),
               "--spec-out", str(tmp_path / "spec.json"), "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["tensors"] == 4 and "matched by position" in rep["notes"][0]
    model = decode_model((tmp_path / "init.safetensors").read_bytes(), ARCH, max_bytes=1 << 20)
    back = to_torch_state_dict(model, ARCH)
    assert torch.allclose(back["conv1.weight"], seq[0].weight.detach(), atol=2 ** -16)
    assert torch.allclose(back["fc1.bias"], seq[4].bias.detach(), atol=2 ** -16)
    assert json.loads((tmp_path / "spec.json").read_text())["arch"] == DIGITS_CNN

    # refused, with the reason: a pickle; a layer the market does not run; a wrong shape
    (tmp_path / "m.pt").write_bytes(b"\x80\x04")
    res = _cli("model", "import", "--state-dict", str(tmp_path / "m.pt"), "--arch",
               str(tmp_path / "arch.json"), "--out", str(tmp_path / "x"))
    assert res.exit_code == 1 and "pickle" in res.output and "save_file" in res.output
    bad_arch = dict(DIGITS_CNN, layers=DIGITS_CNN["layers"] + [{"type": "softmax"}])
    (tmp_path / "bad.json").write_text(json.dumps(bad_arch))
    res = _cli("model", "import", "--state-dict", str(tmp_path / "m.safetensors"), "--arch",
               str(tmp_path / "bad.json"), "--out", str(tmp_path / "x"))
    assert res.exit_code == 1 and "cannot run this architecture" in res.output
    wide = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.Linear(256, 10))
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(tmp_path / "w.safetensors"))
    res = _cli("model", "import", "--state-dict", str(tmp_path / "w.safetensors"), "--arch",
               str(tmp_path / "arch.json"), "--out", str(tmp_path / "x"))
    assert res.exit_code == 1 and "shape" in res.output
    assert not (tmp_path / "x").exists()
