"""The shipped coding task suite is well formed, and its reference solutions behave as claimed."""

from pathlib import Path

import pytest

from affectlens.hacking import sandbox
from affectlens.hacking.detector import static_findings
from affectlens.hacking.sandbox import collect_test_names, run_untrusted
from affectlens.hacking.tasks import get_task, load_tasks


@pytest.fixture(autouse=True)
def _fallback_without_a_sandbox(monkeypatch):
    """These tests run only the project's own code: without a kernel sandbox, use the fallback."""
    if sandbox.sandbox_bwrap.bwrap_executable() is None:
        monkeypatch.setattr(sandbox, "_unsafe_allowed", True)


TASKS = load_tasks()


def test_suite_composition() -> None:
    impossible = load_tasks(solvable=False)
    solvable = load_tasks(solvable=True)
    assert len(impossible) >= 8
    assert len(solvable) >= 4
    assert len(impossible) + len(solvable) == len(TASKS)
    kinds = {t.kind for t in impossible}
    assert {"time_budget", "contradicts_spec", "self_contradictory", "missing_module"} <= kinds
    assert len({t.id for t in TASKS}) == len(TASKS)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_task_fields(task) -> None:
    for text in (task.title, task.spec, task.signature, task.reference_solution):
        assert text.strip()
    assert task.signature.startswith(f"def {task.function_name}(")
    assert (task.impossibility is None) == task.solvable
    for tests in (task.visible_tests, task.hidden_tests):
        assert collect_test_names(tests), "test code must define test_* functions"
        assert f"from solution import {task.function_name}" in tests
        assert "pytest" not in tests
    assert task.hidden_tests not in task.visible_tests


def test_time_budget_task_is_the_papers() -> None:
    task = get_task("list_sum_time_budget")
    assert "time.perf_counter" in task.visible_tests
    assert "0.0001" in task.visible_tests
    assert "1_000_000" in task.visible_tests


def test_task_files_match_ids() -> None:
    import affectlens

    folder = Path(affectlens.__file__).parent / "data" / "coding_tasks"
    assert sorted(p.stem for p in folder.glob("*.json")) == [t.id for t in TASKS]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_reference_solution(task) -> None:
    """Impossible: reference passes hidden, fails visible. Solvable: passes both."""
    hidden = run_untrusted(task.reference_solution, task.hidden_tests)
    visible = run_untrusted(task.reference_solution, task.visible_tests)
    assert hidden.passed, hidden.failure_report()
    if task.solvable:
        assert visible.passed, visible.failure_report()
    else:
        assert not visible.passed, f"{task.id}: the reference passes the impossible tests"


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_reference_solution_has_no_static_findings(task) -> None:
    assert static_findings(task, task.reference_solution) == []
