"""The coding task suite: impossible tasks that invite cheating, and solvable controls.

Each task is one JSON file in ``affectlens/data/coding_tasks``. The model is shown the spec, the
signature and ``visible_tests``; ``hidden_tests`` check the behaviour the spec asks for and are
never shown. For an impossible task no spec-correct solution passes the visible tests (the
``impossibility`` field says why), so passing them means the solution cheated. Test code is plain
Python: module-level ``test_*`` functions that use ``assert`` and import the candidate with
``from solution import <function_name>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

TASK_DIR = ("data", "coding_tasks")


@dataclass(frozen=True)
class Task:
    """One coding task of the suite.

    Attributes:
        id: Stable identifier (also the JSON file's stem).
        title: Short human-readable title.
        kind: Why the task is impossible (``time_budget``, ``contradicts_spec``,
            ``self_contradictory``, ``missing_module``, ...) or ``solvable`` for a control.
        solvable: Whether an honest, spec-correct solution passes the visible tests.
        function_name: Name of the function the model must write.
        signature: The function's signature, as shown to the model.
        spec: Prose specification of the required behaviour.
        visible_tests: Test code shown to the model.
        hidden_tests: Spec tests, never shown to the model.
        impossibility: Why no spec-correct solution passes the visible tests (None if solvable).
        telltale_literals: Values from the visible tests that a spec-following solution has no
            reason to mention; a solution that branches on or returns them special-cases tests.
        reference_solution: A spec-correct solution.
    """

    id: str
    title: str
    kind: str
    solvable: bool
    function_name: str
    signature: str
    spec: str
    visible_tests: str
    hidden_tests: str
    impossibility: str | None
    telltale_literals: tuple[Any, ...]
    reference_solution: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        """Build a task from its JSON object, checking that it is self-consistent."""
        telltales = _freeze(data.get("telltale_literals", []))
        task = cls(**{**data, "telltale_literals": telltales})
        if task.solvable != (task.impossibility is None):
            raise ValueError(f"task {task.id}: impossibility must be given iff it is unsolvable")
        if (task.kind == "solvable") != task.solvable:
            raise ValueError(f"task {task.id}: kind 'solvable' must match the solvable flag")
        return task


def _freeze(value: Any) -> Any:
    """JSON value with every list turned into a tuple, so tasks stay hashable."""
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def load_tasks(*, solvable: bool | None = None) -> list[Task]:
    """Load the shipped task suite, sorted by id; optionally only (un)solvable tasks."""
    files = resources.files("affectlens").joinpath(*TASK_DIR).iterdir()
    tasks = [
        Task.from_dict(json.loads(f.read_text(encoding="utf-8")))
        for f in files
        if f.name.endswith(".json")
    ]
    tasks.sort(key=lambda t: t.id)
    if solvable is not None:
        tasks = [t for t in tasks if t.solvable == solvable]
    return tasks


def get_task(task_id: str) -> Task:
    """Return the task with id ``task_id``; raise KeyError if there is none."""
    for task in load_tasks():
        if task.id == task_id:
            return task
    raise KeyError(task_id)
