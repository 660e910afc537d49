"""A request's handle: its events as they happen, for threads and for asyncio.

The engine's stepping thread pushes events; a caller reads them with a blocking iterator, an
async iterator (woken through the event loop, no polling thread per request) or ``result()``.
Without a stepping thread, reading a handle drives the engine itself, so scripts and tests can
use the engine synchronously.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Union

from affectlens.engine.requests import Completion, FinishEvent, TokenEvent

Event = Union[TokenEvent, FinishEvent, "GuardrailEvent"]  # noqa: F821 (guardrails' event)


class RequestHandle:
    """The events of one submitted request, and a way to cancel it."""

    def __init__(self, request_id: str, drive: Callable[[], bool]) -> None:
        self.request_id = request_id
        self._drive = drive
        self._cond = threading.Condition()
        self._buffer: deque = deque()
        self._waker: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._completion: Completion | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """Ask the engine to end this request; its slot is freed at the next step."""
        self.cancelled = True

    @property
    def done(self) -> bool:
        return self._completion is not None

    def _push(self, event, completion: Completion | None = None) -> None:
        with self._cond:
            self._buffer.append(event)
            if completion is not None:
                self._completion = completion
            self._cond.notify_all()
            waker = self._waker
        if waker is not None:
            loop, flag = waker
            loop.call_soon_threadsafe(flag.set)

    def _next(self):
        """The next event, or ``None`` once the request's events have all been read."""
        while True:
            with self._cond:
                if self._buffer:
                    return self._buffer.popleft()
                if self._completion is not None:
                    return None
            if not self._drive():  # a stepping thread runs: wait for its next event
                with self._cond:
                    if not self._buffer:
                        self._cond.wait(timeout=0.5)

    def __iter__(self) -> Iterator:
        """Block for each event; ends after the :class:`FinishEvent`."""
        while True:
            event = self._next()
            if event is None:
                return
            yield event
            if isinstance(event, FinishEvent):
                return

    async def aiter(self) -> AsyncIterator:
        """The same events for asyncio code (the engine must be started)."""
        flag = asyncio.Event()
        self._waker = (asyncio.get_running_loop(), flag)
        while True:
            with self._cond:
                event = self._buffer.popleft() if self._buffer else None
                if event is None and self._completion is not None:
                    return
                if event is None:
                    flag.clear()
            if event is None:
                await flag.wait()
                continue
            yield event
            if isinstance(event, FinishEvent):
                return

    def result(self) -> Completion:
        """Wait for the end of the request and return what it produced."""
        for _ in self:
            pass
        assert self._completion is not None
        return self._completion
