"""Progress: library jobs report to callbacks; the CLI draws bars on terminals, lines elsewhere."""

from __future__ import annotations

import io
import logging
import re
import sys

import pytest
from rich.progress import Progress

from affectlens import progress as library
from affectlens.cli.progress_bars import (
    PlainProgress,
    count_progress,
    format_duration,
    render_progress,
    token_progress,
)


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TTYStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_forced_terminal(monkeypatch):
    for name in ("FORCE_TERMINAL", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_non_tty_stream_gets_plain_progress_and_terminal_gets_rich():
    assert isinstance(token_progress(stream=io.StringIO()), PlainProgress)
    assert isinstance(count_progress(stream=io.StringIO()), PlainProgress)
    assert isinstance(token_progress(stream=TTYStream()), Progress)
    disabled = token_progress(disable=True, stream=io.StringIO())
    assert isinstance(disabled, Progress)


def test_disabled_progress_prints_nothing():
    stream = io.StringIO()
    with token_progress(disable=True, stream=stream) as progress:
        task = progress.add_task("stories", total=100, tok_s=0.0)
        progress.update(task, advance=100, tok_s=5.0)
    assert stream.getvalue() == ""


def test_token_progress_prints_a_line_per_tenth_with_rate_and_eta():
    stream, clock = io.StringIO(), Clock()
    progress = token_progress(stream=stream)
    progress.clock = clock  # the same calls extract.py makes, on a fake clock
    with progress:
        task = progress.add_task("stories", total=308000, tok_s=0.0)
        progress.update(task, completed=0)
        for _ in range(100):  # 1% per step, quick steps: no heartbeat lines
            clock.now += 0.2
            progress.update(task, advance=3080, tok_s=410.7)
    lines = _lines(stream)
    assert len(lines) == 11  # 0%, 10%, 20% ... 100%
    assert lines[0] == "stories: 0% (0/308000 tok)"
    assert lines[4] == "stories: 40% (123200/308000 tok, 411 tok/s, eta 8m)"
    assert lines[-1] == "stories: 100% (308000/308000 tok, 411 tok/s, took 20s)"
    for line in lines[1:-1]:
        assert re.fullmatch(r"stories: \d0% \(\d+/308000 tok, 411 tok/s, eta \w+\)", line)


def test_heartbeat_every_30_seconds_when_a_tenth_takes_long():
    stream, clock = io.StringIO(), Clock()
    progress = PlainProgress(stream, unit="tok", clock=clock)
    with progress:
        task = progress.add_task("stories", total=1000)
        progress.advance(task, 1)  # first line
        for _ in range(12):  # 0.1% per 10 s: 120 s in all, far below 10%
            clock.now += 10
            progress.advance(task, 1)
        clock.now += 5
        progress.advance(task, 1)  # not due; printed when the block closes
    lines = _lines(stream)
    assert lines == [
        "stories: 0% (1/1000 tok)",
        "stories: 0% (4/1000 tok, 0.13 tok/s, eta 2h04m)",  # rate measured, not given
        "stories: 1% (7/1000 tok, 0.12 tok/s, eta 2h21m)",
        "stories: 1% (10/1000 tok, 0.11 tok/s, eta 2h28m)",
        "stories: 1% (13/1000 tok, 0.11 tok/s, eta 2h31m)",
        "stories: 1% (14/1000 tok, 0.11 tok/s, eta 2h26m)",
    ]


def test_resumed_run_does_not_count_skipped_work_in_the_rate():
    stream, clock = io.StringIO(), Clock()
    progress = PlainProgress(stream, unit="tok", clock=clock)
    with progress:
        task = progress.add_task("stories", total=1000)
        clock.now += 100
        progress.update(task, completed=500)  # resumed halfway
        clock.now += 10
        progress.update(task, advance=100)
    lines = _lines(stream)
    assert lines[0] == "stories: 50% (500/1000 tok)"
    assert lines[1] == "stories: 60% (600/1000 tok, 10 tok/s, eta 40s)"


def test_count_progress_shows_status_and_no_closing_line_after_an_error():
    stream, clock = io.StringIO(), Clock()
    progress = count_progress(stream=stream, unit="stories")
    progress.clock = clock  # as corpus/generate.py uses it
    with pytest.raises(RuntimeError), progress:
        task = progress.add_task("stories", total=40, status="")
        progress.update(task, description="afraid")
        clock.now += 20
        progress.update(task, status="1 kept, 2 rejected")
        progress.advance(task, 10)
        clock.now += 1
        progress.advance(task)  # 27.5%: no line yet
        raise RuntimeError("boom")
    assert _lines(stream) == [
        "afraid: 0% (0/40 stories)",
        "afraid: 25% (10/40 stories, 0.5 stories/s, eta 1m, 1 kept, 2 rejected)",
    ]


def test_unknown_total_and_nothing_done():
    stream = io.StringIO()
    with PlainProgress(stream, clock=Clock()) as progress:
        progress.add_task("reading", total=None)
    assert _lines(stream) == ["reading: (0)"]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.4, "59s"), (60, "1m"), (430, "7m"), (7500, "2h05m")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


class Recorder:
    """A progress sink that keeps every call: what a library caller could install."""

    def __init__(self, request: library.ProgressRequest) -> None:
        self.request = request
        self.calls: list[tuple] = []
        RECORDED.append(self)

    def __enter__(self):
        self.calls.append(("enter",))
        return self

    def __exit__(self, *exc):
        self.calls.append(("exit", exc[0]))

    def add_task(self, description, total=100.0, completed=0, **fields):
        self.calls.append(("add", description, total, fields))
        return 0

    def update(self, task_id, **changes):
        self.calls.append(("update", task_id, changes))

    def advance(self, task_id, advance=1):
        self.calls.append(("advance", task_id, advance))


RECORDED: list[Recorder] = []


def _job(disable: bool = False) -> None:
    with library.count_progress(disable=disable, unit="texts") as sink:
        task = sink.add_task("calibration", total=2, status="")
        sink.advance(task)
        sink.update(task, advance=1, status="done")


def test_library_progress_prints_nothing_and_logs_at_debug(capsys, caplog):
    with caplog.at_level(logging.DEBUG, logger="affectlens.progress"):
        _job()
    assert capsys.readouterr() == ("", "")
    assert [r.getMessage() for r in caplog.records] == [
        "calibration: started (total 2 texts)",
        "calibration: done (2 texts)",
    ]


def test_installed_factory_receives_the_calls_and_disable_silences_them(caplog):
    RECORDED.clear()
    with caplog.at_level(logging.DEBUG, logger="affectlens.progress"):
        with library.use_progress(Recorder):
            _job()
            _job(disable=True)
        _job(disable=True)
    [recorder] = RECORDED
    assert recorder.request == library.ProgressRequest("count", "texts")
    assert recorder.calls == [
        ("enter",),
        ("add", "calibration", 2, {"status": ""}),
        ("advance", 0, 1),
        ("update", 0, {"advance": 1, "status": "done"}),
        ("exit", None),
    ]
    assert caplog.records == []


def test_cli_renderer_draws_what_the_library_asked_for(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(render_progress(library.ProgressRequest("tokens", "tok")), PlainProgress)
    plain = render_progress(library.ProgressRequest("count", "texts"))
    assert isinstance(plain, PlainProgress) and plain.unit == "texts"
    with library.use_progress(render_progress):
        _job()
    assert "calibration: 100% (2/2 texts" in sys.stderr.getvalue()
