"""Progress of long library work, as callbacks that the caller renders (the library never draws).

Long jobs (extraction, calibration, story generation, rollout sweeps) open a
:class:`ProgressSink` with :func:`token_progress` or :func:`count_progress` and report to it
with the subset of :class:`rich.progress.Progress` they need: a context manager with
``add_task``, ``update`` and ``advance``. What a sink does is the caller's choice, installed for
a block of code with :func:`use_progress`: the command line draws rich bars on a terminal and
plain lines elsewhere (:mod:`affectlens.cli.progress_bars`); with nothing installed, as when
the package is used as a library, progress goes to the ``affectlens.progress`` logger at
DEBUG level (one line when a task starts and one when it ends) and nothing is printed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol

logger = logging.getLogger(__name__)

ProgressKind = Literal["tokens", "count"]


class ProgressSink(Protocol):
    """Where a job reports its progress; the calls of :class:`rich.progress.Progress`."""

    def __enter__(self) -> ProgressSink: ...

    def __exit__(self, exc_type, exc, tb) -> Any: ...

    def add_task(
        self, description: str, total: float | None = 100.0, completed: float = 0, **fields: Any
    ) -> Any:
        """Start a task; returns its id for ``update`` and ``advance``."""

    def update(self, task_id: Any, **changes: Any) -> None:
        """Set ``total``, ``completed``, ``description`` or a field, or ``advance`` by some."""

    def advance(self, task_id: Any, advance: float = 1) -> None:
        """Add ``advance`` to a task's progress."""


@dataclass(frozen=True)
class ProgressRequest:
    """What a job asks a renderer for.

    ``kind`` is ``"tokens"`` (tasks count tokens and carry a ``tok_s`` field, tokens per
    second) or ``"count"`` (tasks count items named by ``unit`` and carry a free-text
    ``status`` field).
    """

    kind: ProgressKind
    unit: str = ""


ProgressFactory = Callable[[ProgressRequest], ProgressSink]

_factory: ContextVar[ProgressFactory | None] = ContextVar("affectlens_progress", default=None)


class LoggedProgress:
    """The sink used when no renderer is installed: start and end of each task at DEBUG."""

    def __init__(self, request: ProgressRequest) -> None:
        self.unit = request.unit or ("tok" if request.kind == "tokens" else "items")
        self.tasks: list[dict[str, Any]] = []

    def __enter__(self) -> LoggedProgress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            for task in self.tasks:
                logger.debug("%s: done (%.0f %s)", task["description"], task["done"], self.unit)

    def add_task(
        self, description: str, total: float | None = 100.0, completed: float = 0, **_: Any
    ) -> int:
        """Record a task and log its start."""
        self.tasks.append({"description": description, "done": completed})
        logger.debug("%s: started (total %s %s)", description, total, self.unit)
        return len(self.tasks) - 1

    def update(
        self,
        task_id: int,
        *,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **_: Any,
    ) -> None:
        """Track how far a task got."""
        task = self.tasks[task_id]
        if completed is not None:
            task["done"] = completed
        if advance is not None:
            task["done"] += advance
        if description is not None:
            task["description"] = description

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Add ``advance`` to a task's progress."""
        self.update(task_id, advance=advance)


class _Silent(LoggedProgress):
    """The sink of a job asked not to report progress at all."""

    def __exit__(self, exc_type, exc, tb) -> None:
        return None

    def add_task(
        self, description: str, total: float | None = 100.0, completed: float = 0, **_: Any
    ) -> int:
        """Record a task without logging it."""
        self.tasks.append({"description": description, "done": completed})
        return len(self.tasks) - 1


@contextmanager
def use_progress(factory: ProgressFactory | None) -> Iterator[None]:
    """Within the block, jobs report progress to sinks made by ``factory`` (``None``: logged)."""
    token = _factory.set(factory)
    try:
        yield
    finally:
        _factory.reset(token)


def open_progress(request: ProgressRequest, *, disable: bool = False) -> ProgressSink:
    """A sink for ``request`` from the installed renderer; silent when ``disable``."""
    if disable:
        return _Silent(request)
    factory = _factory.get()
    return factory(request) if factory is not None else LoggedProgress(request)


def token_progress(disable: bool = False) -> ProgressSink:
    """A sink whose tasks count tokens and carry a ``tok_s`` field (tokens per second)."""
    return open_progress(ProgressRequest("tokens", "tok"), disable=disable)


def count_progress(disable: bool = False, unit: str = "") -> ProgressSink:
    """A sink over a count of ``unit`` whose tasks carry a free-text ``status`` field."""
    return open_progress(ProgressRequest("count", unit), disable=disable)
