"""The old in-process containment: a Python audit hook, for ``--unsafe-no-sandbox`` only.

PEP 578 audit hooks are not a security boundary: code in the same interpreter can reach around
or rewrite this hook. It is kept for platforms without a kernel sandbox tool, where the user
must opt in explicitly, and as the baseline of ``benchmarks/bench_sandbox.py``. The hook refuses
network use, process creation, signals to other processes, ctypes, raising rlimits and file
access outside the working directory (reads of the standard library excepted).

This module must import nothing outside the standard library: the child runs its source.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

MAX_VIOLATIONS = 50

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_READABLE_DEVICES = ("/dev/null", "/dev/urandom", "/dev/zero")
_PROCESS_EVENTS = {
    "os.fork": "process: fork blocked",
    "os.forkpty": "process: fork blocked",
    "os.system": "process: os.system blocked",
    "subprocess.Popen": "process: subprocess blocked",
    "os.exec": "process: exec blocked",
    "os.spawn": "process: spawn blocked",
    "os.posix_spawn": "process: spawn blocked",
    "os.kill": "process: signal to a process blocked",
    "os.killpg": "process: signal to a process blocked",
    "signal.pthread_kill": "process: signal to a process blocked",
    "resource.setrlimit": "limits: changing resource limits blocked",
    "resource.prlimit": "limits: changing resource limits blocked",
    "gc.get_objects": "tamper: gc introspection blocked",
    "gc.get_referrers": "tamper: gc introspection blocked",
    "gc.get_referents": "tamper: gc introspection blocked",
}
# Path-taking events and the positions of their path arguments that must stay in the sandbox.
_PATH_EVENTS = {
    "os.chdir": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.link": (0, 1),
    "os.mkdir": (0,),
    "os.mkfifo": (0,),
    "os.mknod": (0,),
    "os.remove": (0,),
    "os.rename": (0, 1),
    "os.rmdir": (0,),
    "os.symlink": (1,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.rmtree": (0,),
}
_LISTING_EVENTS = ("os.listdir", "os.scandir")
_BLOCKED_IMPORTS = {
    "_ctypes": "tamper: ctypes blocked",
    "_posixsubprocess": "process: subprocess blocked",
}


def install(workdir: str, channel_fd: int, emit: Callable[[dict[str, Any]], None]) -> None:
    """Install the audit hook that contains the candidate; see the module docstring."""
    import _posixsubprocess
    import sysconfig

    paths = sysconfig.get_paths()
    readonly = tuple(
        {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")} | {"/usr/share/zoneinfo"}
    )
    denied = tuple({os.path.realpath(paths[k]) for k in ("purelib", "platlib")})
    seen: set[str] = set()

    def refuse(message: str) -> PermissionError:
        if message not in seen and len(seen) < MAX_VIOLATIONS:
            seen.add(message)
            emit({"k": "violation", "message": message})
        return PermissionError(f"sandbox: {message}")

    def inside(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def resolve(path: Any) -> str | None:
        if path is None:
            return os.getcwd()
        if isinstance(path, int):
            return None
        return os.path.realpath(os.fsdecode(path))

    def check_open(path: Any, mode: Any, flags: Any) -> None:
        if isinstance(path, int):
            if path == channel_fd:
                raise refuse("tamper: opening the harness channel blocked")
            return
        real = resolve(path) or ""
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
        )
        if inside(real, (workdir,)) or real == os.devnull:
            return
        library = inside(real, readonly) and not inside(real, denied)
        if not writing and (real in _READABLE_DEVICES or library):
            return
        raise refuse(f"fs: {'write' if writing else 'open'} outside sandbox {real}")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            check_open(*args[:3])
        elif event.startswith("socket."):
            raise refuse("network: socket blocked")
        elif event.startswith("ctypes."):
            raise refuse("tamper: ctypes blocked")
        elif event in _PROCESS_EVENTS:
            raise refuse(_PROCESS_EVENTS[event])
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                real = resolve(args[i])
                if real is not None and not inside(real, (workdir,)):
                    raise refuse(f"fs: {event} outside sandbox {real}")
        elif event in _LISTING_EVENTS:
            real = resolve(args[0])
            if real is not None and not inside(real, (workdir, *readonly)):
                raise refuse(f"fs: {event} outside sandbox {real}")
        elif event == "import" and args[0] in _BLOCKED_IMPORTS:
            raise refuse(_BLOCKED_IMPORTS[args[0]])

    def blocked_fork_exec(*_args: Any, **_kwargs: Any) -> None:
        raise refuse("process: subprocess blocked")

    _posixsubprocess.fork_exec = blocked_fork_exec
    sys.addaudithook(hook)
