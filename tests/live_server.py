"""An ASGI app run for real by uvicorn, in a thread, on a free loopback port (test helper).

Shared by the serving tests, the audit tests and the dashboard harness: each starts a real
server the same way and stops it the same way.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


def free_port() -> int:
    """A loopback port that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def uvicorn_serving(app, start_timeout: float = 30) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread; yields its base URL once it accepts requests.

    Fails the test when the server thread dies or has not started within ``start_timeout``
    seconds; on exit asks uvicorn to stop and waits for the thread (at most 10 s).
    """
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + start_timeout
    try:
        while not server.started:
            assert thread.is_alive() and time.time() < deadline, "server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
