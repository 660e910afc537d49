"""How the command line renders library progress (:mod:`affectlens.progress`) on stderr.

On a terminal (or in Jupyter) this is a live ``rich`` progress bar. Anywhere else (a pipe, a
log file, CI) a live bar draws nothing useful and a long job looks hung, so the same calls
print plain lines instead, such as ``stories: 40% (123456/308000 tok, 412 tok/s, eta 7m)``,
at most one per ``PLAIN_STEP_PERCENT`` of progress unless ``PLAIN_INTERVAL_S`` passed since the
last line (a heartbeat for slow jobs), plus a last line when a task completes.

Both kinds offer the subset of :class:`rich.progress.Progress` the package uses: a context
manager with ``add_task``, ``update`` and ``advance``. :func:`render_progress` is the factory
the CLI installs with :func:`affectlens.progress.use_progress`.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from affectlens.progress import ProgressRequest

PLAIN_STEP_PERCENT = 10.0
PLAIN_INTERVAL_S = 30.0


def format_duration(seconds: float) -> str:
    """A short duration: ``45s``, ``7m``, ``2h05m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{round(seconds / 60)}m"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m"


def _format_rate(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"


@dataclass
class _PlainTask:
    description: str
    total: float | None
    completed: float
    fields: dict[str, Any]
    started: float
    base: float  # progress already there when timing started (a resumed run)
    last_time: float
    last_bucket: int = -1
    last_completed: float | None = None
    timed: bool = False


class PlainProgress:
    """Line-per-step progress for streams that are not terminals; same calls as ``Progress``.

    ``unit`` names what ``total`` counts (``tok``); ``rate_field`` names a task field holding a
    caller-computed rate (``tok_s``), otherwise the rate is measured here.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        unit: str = "",
        rate_field: str | None = None,
        status_field: str | None = None,
        step_percent: float = PLAIN_STEP_PERCENT,
        interval_s: float = PLAIN_INTERVAL_S,
        clock=time.monotonic,
    ) -> None:
        self.stream = stream
        self.unit = unit
        self.rate_field = rate_field
        self.status_field = status_field
        self.step_percent = step_percent
        self.interval_s = interval_s
        self.clock = clock
        self.tasks: list[_PlainTask] = []

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            for task in self.tasks:
                self._emit(task, force=True)

    def add_task(
        self, description: str, total: float | None = 100.0, completed: float = 0, **fields: Any
    ) -> int:
        """Start a task; returns its id for ``update`` and ``advance``."""
        now = self.clock()
        self.tasks.append(
            _PlainTask(description, total, completed, dict(fields), now, completed, now)
        )
        return len(self.tasks) - 1

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        """Change a task as ``Progress.update`` does, printing a line when one is due."""
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
            if not task.timed:  # e.g. a resumed run jumping ahead: not work done now
                task.base, task.started = completed, self.clock()
        if advance is not None:
            task.completed += advance
            task.timed = True
        if description is not None:
            task.description = description
        task.fields.update(fields)
        self._emit(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Add ``advance`` to a task's progress."""
        self.update(task_id, advance=advance)

    def _rate(self, task: _PlainTask, now: float) -> float | None:
        if self.rate_field and self.rate_field in task.fields:
            rate = float(task.fields[self.rate_field])
        else:
            elapsed = now - task.started
            rate = (task.completed - task.base) / elapsed if elapsed > 0 else 0.0
        return rate if rate > 0 and math.isfinite(rate) else None

    def line(self, task: _PlainTask, now: float) -> str:
        """The text of one progress line for ``task``."""
        unit = f" {self.unit}" if self.unit else ""
        done = f"{task.completed:.0f}"
        head = f"{task.description}: "
        if task.total:
            head += f"{min(100.0, 100.0 * task.completed / task.total):.0f}% "
            parts = [f"{done}/{task.total:.0f}{unit}"]
        else:
            parts = [f"{done}{unit}"]
        rate = self._rate(task, now)
        if rate is not None:
            parts.append(f"{_format_rate(rate)}{unit or ' items'}/s")
            if task.total and task.completed < task.total:
                parts.append(f"eta {format_duration((task.total - task.completed) / rate)}")
        if task.total and task.completed >= task.total:
            parts.append(f"took {format_duration(now - task.started)}")
        status = str(task.fields.get(self.status_field, "")) if self.status_field else ""
        if status:
            parts.append(status)
        return f"{head}({', '.join(parts)})"

    def _emit(self, task: _PlainTask, force: bool = False) -> None:
        now = self.clock()
        percent = 100.0 * task.completed / task.total if task.total else None
        bucket = int(percent // self.step_percent) if percent is not None else -1
        due = bucket > task.last_bucket or now - task.last_time >= self.interval_s
        if force:  # closing: one last line, unless nothing moved since the previous one
            due = task.completed != task.last_completed
        if not due:
            return
        print(self.line(task, now), file=self.stream or sys.stderr, flush=True)
        task.last_time, task.last_completed = now, task.completed
        task.last_bucket = max(task.last_bucket, bucket)


def _is_live(console: Console) -> bool:
    return console.is_terminal or console.is_jupyter


def make_progress(
    *columns: ProgressColumn,
    disable: bool = False,
    stream: IO[str] | None = None,
    unit: str = "",
    rate_field: str | None = None,
    status_field: str | None = None,
) -> Progress | PlainProgress:
    """A rich ``Progress`` with ``columns`` on a terminal, else :class:`PlainProgress`."""
    console = Console(file=stream or sys.stderr)
    if disable or _is_live(console):
        return Progress(*columns, console=console, disable=disable)
    return PlainProgress(stream, unit=unit, rate_field=rate_field, status_field=status_field)


def token_progress(
    disable: bool = False, stream: IO[str] | None = None
) -> Progress | PlainProgress:
    """Progress whose tasks count tokens and carry a ``tok_s`` field (tokens per second)."""
    return make_progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tok_s]:>7.0f} tok/s"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=disable,
        stream=stream,
        unit="tok",
        rate_field="tok_s",
    )


def count_progress(
    disable: bool = False, stream: IO[str] | None = None, unit: str = ""
) -> Progress | PlainProgress:
    """Progress over a count of items whose tasks carry a free-text ``status`` field."""
    return make_progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        disable=disable,
        stream=stream,
        unit=unit,
        status_field="status",
    )


def render_progress(request: ProgressRequest) -> Progress | PlainProgress:
    """The CLI's renderer: token or count progress on stderr, as the library asked."""
    if request.kind == "tokens":
        return token_progress()
    return count_progress(unit=request.unit)
