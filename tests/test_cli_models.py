"""``affectlens models``: whole pack names and the right install command, piped or not."""

from __future__ import annotations

import subprocess
import sys

import pytest

from affectlens.cli import main
from affectlens.models.packs import PACKS, OfflinePack, install_command

MISSING = OfflinePack(
    name="a-rather-long-pack-name-that-a-narrow-table-would-cut",
    description="never installed",
    extra="qwen15",
    chunk_modules=("affectlens_models_test_no_such_module",),
    chunk_glob="*",
    sha256="",
    gguf_name="missing.gguf",
)


def test_piped_listing_has_every_whole_name_and_install_command(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "affectlens", "models"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "40"},
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("cache: ")
    assert lines[1].split("\t") == ["pack", "installed", "cached", "description"]
    rows = [line.split("\t") for line in lines[2:]]
    assert [row[0] for row in rows] == list(PACKS)
    for (_, installed, _, description), pack in zip(rows, PACKS.values(), strict=True):
        wanted = "yes" if pack.is_installed() else f"no ({install_command(pack.extra)})"
        assert (installed, description) == (wanted, pack.description)


@pytest.mark.parametrize("terminal", [False, True])
def test_extras_in_brackets_survive_on_a_terminal_too(terminal, monkeypatch, capsys):
    monkeypatch.setitem(PACKS, MISSING.name, MISSING)
    monkeypatch.setenv("COLUMNS", "200")
    if terminal:
        monkeypatch.setenv("TTY_COMPATIBLE", "1")
        monkeypatch.setenv("TTY_INTERACTIVE", "1")
    else:
        for name in ("FORCE_TERMINAL", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
            monkeypatch.delenv(name, raising=False)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert ("┃" in out) is terminal  # a rich table only on a terminal
    assert MISSING.name in out
    assert f"no ({install_command('qwen15')})" in out  # '[qwen15]' is not swallowed as markup


def test_install_command_matches_this_installation():
    from importlib import metadata

    command = install_command("gemma")
    direct = metadata.distribution("affectlens").read_text("direct_url.json") or ""
    if '"editable": true' in direct:
        assert command.startswith("pip install -e '") and command.endswith("[gemma]'")
    else:
        assert command == "pip install 'affectlens[gemma]'"
