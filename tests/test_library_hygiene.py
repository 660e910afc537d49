"""The library never prints and importing it changes no global state; only the CLI talks.

Library modules are everything under ``src/affectlens`` except ``cli/`` (and ``__main__``,
the CLI's entry point).
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import affectlens

PACKAGE = Path(affectlens.__file__).parent


def library_modules() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages([str(PACKAGE)], prefix="affectlens.")
        if not info.name.startswith("affectlens.cli") and info.name != "affectlens.__main__"
    ]
    return sorted({"affectlens", *names})


def library_files() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if "cli" not in path.relative_to(PACKAGE).parts and path.name != "__main__.py"
    )


def test_the_scan_sees_the_library():
    modules = library_modules()
    assert {"affectlens.monitor", "affectlens.models.loading", "affectlens.progress"} <= set(
        modules
    )
    assert "affectlens.experiments.plotting" in modules
    assert not any(name.startswith("affectlens.cli") for name in modules)


IMPORT_ALL = """
import importlib, json, sys
import matplotlib
names = json.loads(sys.argv[1])
for name in names:
    importlib.import_module(name)
backend = matplotlib.rcParams._get_backend_or_none()
print(json.dumps({"backend": backend, "pyplot": "matplotlib.pyplot" in sys.modules}))
"""


def test_importing_every_library_module_prints_nothing_and_picks_no_backend(tmp_path):
    """Imported in a fresh interpreter: no output at all, matplotlib's backend still unset."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    env["AFFECTLENS_CACHE"] = str(tmp_path / "cache")
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, json.dumps(library_modules())],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    *printed, report = run.stdout.splitlines()
    assert printed == []
    state = json.loads(report)
    assert state == {"backend": None, "pyplot": False}


def _print_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id in {"print", "breakpoint"})
            or (
                isinstance(node.func, ast.Attribute)
                and node.func.attr in {"write", "writelines"}
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr in {"stdout", "stderr"}
            )
        )
    ]


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_library_module_prints(path):
    assert _print_calls(path) == [], "report through logging or a progress sink instead"
