"""The README's owner and trainer walkthroughs work verbatim (issue 13).

The test reads README.md, takes the ```sh blocks of "Walkthrough: an owner" and "Walkthrough: a
trainer", and runs every line of each in its own bash, as two people in two terminals would,
after `tributary dev up` (started here, on free ports, as the README's first block says). The
environment is what the README tells the user to set up: the activated `.venv` (its bin first on
PATH) and nothing else (no TRIBUTARY_* variables; HOME is a fresh folder, so the client's default
home is empty). Where the README says to wait for the other side ("once the trainers
committed"), the test waits for the trainer's terminal to print it, like a person would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.test_local_market import Market, clean_env

pytestmark = [pytest.mark.chain, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def walkthrough_blocks(readme: str, title: str) -> list[str]:
    """The ```sh blocks of one `## title` section, as lists of command lines."""
    start = readme.index(f"## {title}\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start:end if end >= 0 else None]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks, f"no ```sh block in README section {title!r}"
    return blocks


def command_lines(block: str) -> list[str]:
    return [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


class Terminal:
    """A bash that runs one line at a time and reports each line's exit status."""

    def __init__(self, name: str, cwd: Path, env: dict[str, str], log: Path) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.name, self.log = name, log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=self._out, stderr=subprocess.STDOUT)
        self.n = 0

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def run(self, line: str, timeout: float = 300) -> None:
        self.n += 1
        marker = f"__walkthrough_rc_{self.n}="
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\necho {marker}$?\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while marker not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: `{line}` did not finish:\n{self.text()[-3000:]}")
            time.sleep(0.2)
        rc = int(self.text().split(marker)[1].split()[0])
        assert rc == 0, f"{self.name}: `{line}` exited {rc}:\n{self.text()[-3000:]}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


def wait_for(cond: Callable[[], bool], timeout: float, what: str, check: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        check()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_readme_walkthroughs_run_verbatim(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    owner_lines = [ln for b in walkthrough_blocks(readme, "Walkthrough: an owner") for ln in command_lines(b)]
    trainer_lines = [ln for b in walkthrough_blocks(readme, "Walkthrough: a trainer") for ln in command_lines(b)]
    assert any("create-job" in ln for ln in owner_lines) and any("trainer run" in ln for ln in trainer_lines)

    # what `. .venv/bin/activate` does, in a fresh HOME with no TRIBUTARY_* settings
    env = clean_env(HOME=str(tmp_path / "home"), VIRTUAL_ENV=str(VENV_BIN.parent),
                    PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    (tmp_path / "home").mkdir()
    (tmp_path / "market").mkdir()
    market = Market([str(VENV_BIN / "tributary"), "dev", "up", "--port", "0", "--http-port", "0",
                     "--api-port", "0"], env, tmp_path / "market.log", cwd=tmp_path / "market")
    owner = Terminal("owner", tmp_path / "owner", env, tmp_path / "owner.log")
    trainer = Terminal("trainer", tmp_path / "trainer", env, tmp_path / "trainer.log")
    errors: list[BaseException] = []

    def trainer_terminal() -> None:
        try:
            for line in trainer_lines:
                trainer.run(line, timeout=600)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def check() -> None:
        if errors:
            raise errors[0]
        assert market.proc.poll() is None, f"dev up exited:\n{market.text()[-3000:]}"

    worker = threading.Thread(target=trainer_terminal, daemon=True)
    try:
        market.wait_ready()
        commit_ends = 0
        for line in owner_lines:
            check()
            if "advance-time" in line:  # "once the trainers committed" / "... revealed"
                commit_ends += 1
                want = "committed" if commit_ends == 1 else "revealed"
                wait_for(lambda: f"round 0: {want}" in trainer.text(), 300, f"the trainer {want}", check)
            owner.run(line)
            if "create-job" in line:
                worker.start()  # the trainer joins once the job is open
        worker.join(600)
        check()
        assert not worker.is_alive(), f"the trainer's walkthrough did not finish:\n{trainer.text()[-3000:]}"
    finally:
        owner.close()
        trainer.close()
        market.stop()

    out_o, out_t = owner.text(), trainer.text()
    assert "job 1 opened" in out_o
    assert "round 0: revealed, accepted" in out_t, out_t[-3000:]
    assert (tmp_path / "owner" / "model.safetensors").stat().st_size > 0
    assert (tmp_path / "owner" / "model-float.safetensors").stat().st_size > 0
    assert "VERDICT: OK" in out_t, out_t[-3000:]  # `tributary verify` replayed every claim
