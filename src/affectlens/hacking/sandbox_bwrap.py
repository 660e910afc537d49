"""The kernel boundary around a candidate: a bubblewrap (``bwrap``) command line and its filters.

Each run gets new user, PID, mount, network, IPC, UTS and cgroup namespaces, runs as uid/gid
65534 with every capability dropped and no way to make new user namespaces, and sees only:

* read-only binds of the Python executable, its shared libraries (found with ``ldd``), and the
  standard library (``sysconfig``'s ``stdlib``, site-packages hidden under an empty tmpfs);
* a private minimal ``/dev`` (null, zero, full, random, urandom, tty) made read-only, and a
  small private ``/dev/shm``;
* one size-limited tmpfs, ``/tmp``, its working directory and the only writable place.

No host ``/proc``, home, project tree or environment is visible (only the empty directories
leading to the interpreter's own files, e.g. ``/root/.pyenv/...``). ``--die-with-parent`` and the
PID namespace make sure nothing outlives the run: when the namespace's init dies, the kernel
kills every process in it. Two seccomp filters refuse what no test needs: the first (loaded by
bwrap) refuses ``ptrace``, ``mount``, ``setns``, ``unshare``, ``bpf``, ``keyctl``, ``kexec_*``,
module loading, ``process_vm_*``, ``perf_event_open``, ``userfaultfd`` and process creation
(``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``; ``clone3`` reports ENOSYS so threads
fall back to ``clone``); the second (loaded by the harness before any candidate code runs)
also refuses ``execve``/``execveat``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path

SANDBOX_UID = 65534
WORKDIR = "/tmp"
CLONE_THREAD = 0x00010000
_DENIED = (
    "ptrace",
    "mount",
    "umount2",
    "setns",
    "unshare",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "process_vm_readv",
    "process_vm_writev",
    "perf_event_open",
    "userfaultfd",
    "pivot_root",
    "chroot",
    "swapon",
    "swapoff",
    "reboot",
    "open_by_handle_at",
    "name_to_handle_at",
    "mknod",
    "mknodat",
)
_PROCESS_CREATION = ("fork", "vfork")
_EXEC = ("execve", "execveat")
_LDD_PATH = re.compile(r"(/\S+)")


@lru_cache(maxsize=1)
def bwrap_executable() -> str | None:
    """Path of a working ``bwrap`` with the libseccomp bindings, or None where there is none."""
    path = shutil.which("bwrap")
    if path is None or seccomp_filters(False) is None:
        return None
    command = [path, *namespace_args(4096), *bind_args(), "--", interpreter(), "-I", "-S", "-c", ""]
    try:
        probe = subprocess.run(command, capture_output=True, timeout=30, env={})
    except (OSError, subprocess.SubprocessError):
        return None
    return path if probe.returncode == 0 else None


def interpreter() -> str:
    """The real Python executable (a virtual environment's link resolved)."""
    return os.path.realpath(sys.executable)


def namespace_args(tmpfs_bytes: int) -> list[str]:
    """bwrap options for the namespaces, identity, devices and the one writable tmpfs."""
    shm_bytes = 2**20
    return [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        "--dev",
        "/dev",
        "--size",
        str(shm_bytes),
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/dev",
        "--size",
        str(tmpfs_bytes),
        "--tmpfs",
        WORKDIR,
        "--chdir",
        WORKDIR,
    ]


@lru_cache(maxsize=1)
def bind_args() -> tuple[str, ...]:
    """Read-only binds of exactly the interpreter, its libraries and its standard library."""
    paths = sysconfig.get_paths()
    stdlib = os.path.realpath(paths["stdlib"])
    binds: dict[str, str] = {interpreter(): interpreter(), stdlib: stdlib}
    dynload = Path(stdlib) / "lib-dynload"
    for library in _shared_libraries([interpreter(), *map(str, dynload.glob("*.so"))]):
        binds.setdefault(library, os.path.realpath(library))
    args = []
    for dest, src in sorted(binds.items()):
        args += ["--ro-bind", src, dest]
    site = Path(stdlib) / "site-packages"
    if site.is_dir():
        args += ["--perms", "0555", "--size", "4096", "--tmpfs", str(site)]
        args += ["--remount-ro", str(site)]
    return tuple(args)


def _shared_libraries(binaries: list[str]) -> list[str]:
    """The shared objects (ELF interpreter included) that ``binaries`` load, as ``ldd`` sees."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    found = []
    for chunk in range(0, len(binaries), 64):
        result = subprocess.run(
            [ldd, *binaries[chunk : chunk + 64]], capture_output=True, text=True, check=False
        )
        for line in result.stdout.splitlines():
            if line.rstrip().endswith(":") or "not found" in line:
                continue
            target = line.split("=>", 1)[-1]
            match = _LDD_PATH.search(target)
            if match and os.path.exists(match.group(1)):
                found.append(match.group(1))
    return sorted(set(found))


@lru_cache(maxsize=2)
def seccomp_filters(allow_processes: bool) -> tuple[bytes, bytes] | None:
    """Compiled BPF programs ``(for bwrap, for the harness)``; None without libseccomp."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError):
        try:
            import seccomp  # Debian's python3-seccomp exposes the same API
        except ImportError:
            return None
    try:
        first = seccomp.SyscallFilter(seccomp.ALLOW)
        for name in _DENIED:
            first.add_rule(seccomp.ERRNO(errno.EPERM), name)
        if not allow_processes:
            for name in _PROCESS_CREATION:
                first.add_rule(seccomp.ERRNO(errno.EPERM), name)
            no_thread = seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0)
            first.add_rule(seccomp.ERRNO(errno.EPERM), "clone", no_thread)
            first.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        second = seccomp.SyscallFilter(seccomp.ALLOW)
        if not allow_processes:
            for name in _EXEC:
                second.add_rule(seccomp.ERRNO(errno.EPERM), name)
        return _export(first), _export(second)
    except (OSError, RuntimeError, ValueError):
        return None


def _export(syscall_filter: object) -> bytes:
    """The raw BPF program of a libseccomp filter."""
    with tempfile.TemporaryFile() as handle:
        syscall_filter.export_bpf(handle)  # type: ignore[attr-defined]
        handle.seek(0)
        return handle.read()
