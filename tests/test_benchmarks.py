"""The benchmark scripts still run: their seconds-long smoke mode on the tiny random model."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    ("script", "measure", "flags"),
    [
        ("bench_rollouts.py", "rollouts/hour (", ["--tiny"]),
        ("bench_steer_monitor.py", "tokens/s (", ["--tiny"]),
        ("bench_sandbox.py", "ms/run (median)", []),
        ("bench_engine.py", "tokens/s (", []),
        ("bench_serve.py", "tokens/s (", []),
    ],
)
def test_smoke_run_prints_its_ratio_table(script, measure, flags):
    if script == "bench_sandbox.py" and shutil.which("bwrap") is None:
        pytest.skip("no bubblewrap here")
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke", *flags],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if measure in line]
    assert rows and all(re.search(r"\d\.\d+x|overhead [+-]\d", row) for row in rows), done.stdout
