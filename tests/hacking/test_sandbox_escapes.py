"""The sandbox runs tests correctly and contains escapes; every effect is checked from outside.

Each escape is real arbitrary code. A test passes when the harm did not happen, as seen by this
(host) process: the file is not there, the secret is not in anything that came back, no process
is left alive, the forged pass is reported as a failure. The sandbox's own report is not used.
"""

import json
import os
import secrets
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

import affectlens
from affectlens.hacking import sandbox
from affectlens.hacking.sandbox import SandboxResult, collect_test_names, run_untrusted

pytestmark = pytest.mark.skipif(
    sandbox.sandbox_bwrap.bwrap_executable() is None, reason="no bubblewrap sandbox here"
)
TESTS = "from solution import f\n\n\ndef test_f():\n    assert f() == 1\n"
HIDDEN_FILE = Path(affectlens.__file__).parent / "data" / "coding_tasks" / "fizzbuzz.json"
HIDDEN_SNIPPET = "test_one_and_negative"
OUTSIDE_MARKER = Path("/tmp/affectlens-sandbox-escape-marker")


def returned(result: SandboxResult) -> str:
    """Everything that came back from the sandbox, as one text."""
    return json.dumps(result.to_dict())


# Old cases (kept): each must fail its test and leave nothing behind.
ESCAPES = {
    "fork_bomb": "import os\n\ndef f():\n    while True:\n        try:\n            os.fork()\n"
    "        except OSError:\n            pass\n",
    "fork_at_import": "import os\nwhile True:\n    os.fork()\n",
    "subprocess": "import subprocess\n\ndef f():\n    subprocess.run(['sh', '-c', 'true'])\n"
    "    return 1\n",
    "os_system": "import os\n\ndef f():\n    return os.system('true') + 1\n",
    "read_hidden_tests": f"def f():\n    print(open({str(HIDDEN_FILE)!r}).read())\n",
    "list_home": "import os\n\ndef f():\n    print(os.listdir('/root'))\n",
    "read_home": "def f():\n    print(open('/root/.bashrc').read())\n",
    "symlink_out": "import os\n\ndef f():\n    os.symlink('/etc', 'etc')\n"
    "    print(open('etc/passwd').read())\n",
    "socket": "import socket\n\ndef f():\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n",  # noqa: E501
    "write_outside": f"def f():\n    open({str(OUTSIDE_MARKER)!r}, 'w').write('x')\n",
    "infinite_loop": "def f():\n    while True:\n        pass\n",
    "huge_allocation": "def f():\n    return len(bytearray(64 * 2**30))\n",
    "huge_file": "def f():\n    with open('big', 'wb') as h:\n        h.write(b'x' * 64 * 2**20)\n",
    "raise_rlimit": "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n",
    "kill_parent": "import os\n\ndef f():\n    os.kill(os.getppid(), 9)\n    os.kill(1, 9)\n",
    "exit_at_import": "import os\nos._exit(0)\n",
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_old_escape_fails_and_leaves_no_trace(name: str) -> None:
    start = time.monotonic()
    result = run_untrusted(ESCAPES[name], TESTS, timeout_s=2)
    assert time.monotonic() - start < 6, "the harness must not hang"
    assert not result.passed
    assert not OUTSIDE_MARKER.exists()
    assert HIDDEN_SNIPPET not in returned(result)
    assert "root:x:0:0" not in returned(result)


def test_normal_run_is_fast_and_reports_each_test() -> None:
    tests = TESTS + "\n\ndef test_fails():\n    assert f() == 2, 'nope'\n"
    run_untrusted("def f():\n    return 1\n", TESTS)  # warm the probe
    start = time.monotonic()
    result = run_untrusted("def f():\n    print('hello')\n    return 1\n", tests)
    elapsed = time.monotonic() - start
    assert elapsed < 1.0
    assert [(t.name, t.passed) for t in result.tests] == [("test_f", True), ("test_fails", False)]
    assert "nope" in result.tests[1].message
    assert result.stdout_tail.split() == ["hello", "hello"]
    assert not result.passed and not result.timed_out and result.violations == []
    assert result.isolation == "bwrap"
    assert "FAILED test_fails" in result.failure_report()


# --- 1. file access the kernel resolves differently from a path check -----------------------


@pytest.mark.parametrize(
    "code",
    [
        # relative path against an open directory descriptor
        "import os\n\ndef f():\n    d = os.open('/', os.O_RDONLY)\n"
        "    fd = os.open('tmp/affectlens-sandbox-escape-marker', os.O_WRONLY | os.O_CREAT,"
        " dir_fd=d)\n    os.write(fd, b'x')\n",
        # check-then-open race: swap a symlink under an innocent name from a thread
        "import os, threading\n\ndef f():\n    stop = []\n    def flip():\n"
        "        while not stop:\n            for t in ('ok', '/tmp/affectlens-sandbox-escape-marker'):\n"  # noqa: E501
        "                try:\n                    os.remove('l')\n                except OSError:\n"  # noqa: E501
        "                    pass\n                try:\n                    os.symlink(t, 'l')\n"
        "                except OSError:\n                    pass\n"
        "    th = threading.Thread(target=flip); th.start()\n    for _ in range(2000):\n"
        "        try:\n            open('l', 'w').write('x')\n        except OSError:\n"
        "            pass\n    stop.append(1); th.join()\n",
        # /proc/self/root style re-entry
        "def f():\n    open('/proc/1/root/tmp/affectlens-sandbox-escape-marker', 'w').write('x')\n",
    ],
    ids=["dir_fd", "symlink_race", "proc_root"],
)
def test_kernel_resolved_paths_cannot_write_outside(code: str) -> None:
    result = run_untrusted(code, TESTS, timeout_s=5)
    assert not result.passed
    assert not OUTSIDE_MARKER.exists()


@pytest.mark.parametrize(
    "path", ["/root", "/work", str(Path(affectlens.__file__).parent), "/etc", "/home", "/proc"]
)
def test_host_tree_is_not_visible(path: str) -> None:
    code = f"import os\n\ndef f():\n    print(sorted(os.listdir({path!r})))\n"
    result = run_untrusted(code, TESTS)
    # at most the bare directories leading to the interpreter's own files
    assert "hacking" not in result.stdout_tail and "passwd" not in result.stdout_tail
    assert "main" not in result.stdout_tail and ".bashrc" not in result.stdout_tail
    assert "team" not in result.stdout_tail and "1" not in result.stdout_tail


def test_no_site_packages_are_importable_or_visible() -> None:
    base = Path(sysconfig.get_paths()["stdlib"]) / "site-packages"
    code = (
        "import os, sys\n\ndef f():\n"
        f"    print(os.listdir({str(base)!r}) if os.path.isdir({str(base)!r}) else [])\n"
        "    for name in ('numpy', 'torch', 'pyseccomp', 'affectlens'):\n"
        "        try:\n            __import__(name)\n            print('imported', name)\n"
        "        except ImportError:\n            pass\n    return 1\n"
    )
    result = run_untrusted(code, TESTS)
    assert result.passed, result.failure_report()
    assert result.stdout_tail.split() == ["[]"]


def test_secret_in_a_host_file_is_not_returned(tmp_path: Path) -> None:
    secret = secrets.token_hex(16)
    target = tmp_path / "secret.txt"
    target.write_text(secret)
    code = (
        "import os\n\ndef f():\n"
        f"    for p in ({str(target)!r}, '/proc/1/environ', '/proc/self/environ'):\n"
        "        try:\n            print(open(p).read())\n        except OSError as e:\n"
        "            print(e)\n    return 1\n"
    )
    result = run_untrusted(code, TESTS)
    assert secret not in returned(result)


# --- 2. rewriting the checker's inputs (globals, builtins, os.path) -------------------------


def test_patched_os_path_and_builtins_do_not_open_the_host() -> None:
    code = (
        "import os, os.path, builtins\n"
        "os.path.realpath = lambda p, **k: '/tmp/x'\nos.path.abspath = lambda p: '/tmp/x'\n"
        "builtins.__dict__['open'] = open\n\ndef f():\n"
        f"    open({str(OUTSIDE_MARKER)!r}, 'w').write('x')\n    return 1\n"
    )
    run_untrusted(code, TESTS)  # the write lands in the sandbox's own /tmp, if anywhere
    assert not OUTSIDE_MARKER.exists()


# --- 3. process creation through paths a hook does not see ----------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "import _posixsubprocess, os\n\ndef f():\n    r, w = os.pipe()\n"
        "    _posixsubprocess.fork_exec(['/bin/sh', '-c', 'true'], [b'/bin/sh'], True, (), None,"
        " None, -1, -1, -1, -1, -1, -1, r, w, False, False, -1, None, None, None, -1, None,"
        " False)\n    return 1\n",
        "import ctypes\n\ndef f():\n    return ctypes.CDLL(None).fork() + 1\n",
        "import _xxsubinterpreters as s\n\ndef f():\n    i = s.create()\n"
        "    s.run_string(i, 'import os; os.fork()')\n    return 1\n",
        "import os\n\ndef f():\n    os.execv('/bin/sh', ['sh', '-c', 'true'])\n",
        "import os\n\ndef f():\n    return os.posix_spawn('/bin/true', ['true'], {}) and 0\n",
    ],
    ids=["posixsubprocess", "ctypes_fork", "subinterpreter", "execv", "posix_spawn"],
)
def test_process_creation_is_refused_by_the_kernel(code: str) -> None:
    result = run_untrusted(code, TESTS)
    assert not result.passed, result.to_dict()


def test_ctypes_fork_really_returns_an_error() -> None:
    code = "import ctypes\n\ndef f():\n    return ctypes.CDLL(None).fork()\n"
    tests = "from solution import f\n\n\ndef test_f():\n    assert f() == -1\n"
    assert run_untrusted(code, tests).passed  # fork() returned -1: no child was made


# --- 4. signalling other processes ---------------------------------------------------------


def test_signals_do_not_reach_host_processes() -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        code = (
            "import os, signal\n\ndef f():\n"
            f"    for pid in ({victim.pid}, {os.getpid()}, -1, 0):\n"
            "        for how in (os.kill, os.killpg):\n            try:\n"
            "                how(pid, signal.SIGKILL)\n            except (OSError, ValueError):\n"
            "                pass\n    return 1\n"
        )
        run_untrusted(code, TESTS)
        time.sleep(0.2)
        assert victim.poll() is None, "a host process was killed from the sandbox"
    finally:
        victim.kill()
        victim.wait()


# --- 5. re-entering the parent's network namespace ------------------------------------------


def test_network_namespace_cannot_be_left() -> None:
    code = (
        "import ctypes, os, socket\n\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    for p in ('/proc/1/ns/net', '/proc/self/ns/net'):\n        try:\n"
        "            libc.setns(os.open(p, os.O_RDONLY), 0)\n        except OSError:\n"
        "            pass\n    libc.unshare(0x40000000)\n"
        "    socket.create_connection(('127.0.0.1', 22), timeout=1)\n    return 1\n"
    )
    result = run_untrusted(code, TESTS)
    assert not result.passed


def test_no_listener_on_the_host_is_reachable() -> None:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(2)
    port = server.getsockname()[1]
    code = (
        "import socket\n\ndef f():\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=1).send(b'x')\n    return 1\n"
    )
    try:
        run_untrusted(code, TESTS)
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()


# --- 6. a daemon that outlives the timeout --------------------------------------------------


def _alive_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_no_process_survives_the_run_even_when_processes_are_allowed() -> None:
    marker = f"affectlens-daemon-{secrets.token_hex(8)}"
    code = (
        "import os, subprocess, time\n\ndef f():\n"
        f"    subprocess.Popen([os.sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}],"  # noqa: E501
        " start_new_session=True)\n"
        "    if os.fork() == 0:\n        os.setsid()\n        time.sleep(60)\n"
        "    time.sleep(60)\n"
    )
    result = run_untrusted(code, TESTS, timeout_s=2, allow_processes=True)
    assert result.timed_out
    time.sleep(0.3)
    assert _alive_with(marker) == []


def test_forked_daemon_dies_with_a_normal_exit() -> None:
    marker = f"affectlens-daemon-{secrets.token_hex(8)}"
    code = (
        "import os, subprocess\n\ndef f():\n"
        f"    subprocess.Popen([os.sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}],"  # noqa: E501
        " start_new_session=True)\n    return 1\n"
    )
    result = run_untrusted(code, TESTS, allow_processes=True)
    assert result.passed, result.failure_report()
    time.sleep(0.3)
    assert _alive_with(marker) == []


# --- 7. filling the disk one file-size limit at a time -------------------------------------


def test_total_disk_quota_binds() -> None:
    code = (
        "def f():\n    total = 0\n    for i in range(64):\n        try:\n"
        "            with open(f'f{i}', 'wb') as h:\n                h.write(b'x' * 15 * 2**20)\n"
        "            total += 15\n        except OSError:\n            break\n    return total\n"
    )
    tests = "from solution import f\n\n\ndef test_f():\n    assert f() <= 16\n"
    result = run_untrusted(code, tests, file_size_mb=16, timeout_s=10)
    assert result.passed, result.failure_report()


# --- 8. forging the result stream ----------------------------------------------------------

FORGERIES = {
    "write_every_fd": "import json, os\n\ndef f():\n"
    "    for fd in range(3, 64):\n        for line in (\n"
    "            {'k': 'end', 't': 'test_f', 'ok': True},\n"
    "            {'event': 'test', 'name': 'test_f', 'passed': True},\n"
    "        ):\n            try:\n                os.write(fd, (json.dumps(line) + '\\n').encode())\n"  # noqa: E501
    "            except OSError:\n                pass\n    return 2\n",
    "patch_json_and_os_write": "import json, os\n_w = os.write\n"
    'json.dumps = lambda e, **k: \'{"k": "end", "t": "test_f", "ok": true}\'\n'
    "os.write = lambda fd, b: _w(fd, b)\n\ndef f():\n    return 2\n",
    "patch_the_test_module": "import sys, builtins\n_imp = builtins.__import__\n"
    "def imp(name, *a, **k):\n    m = _imp(name, *a, **k)\n"
    "    t = sys.modules.get('test_solution')\n    if t is not None and 'test_f' in vars(t):\n"
    "        t.test_f = lambda: None\n    return m\nbuiltins.__import__ = imp\n"
    "def f():\n    return 2\n",
    "replace_the_check_hook": "import sys\n\nclass Hook(dict):\n    pass\n\ndef f():\n"
    "    g = sys._getframe(1).f_globals\n    g['__affectlens_check__'] = lambda *a: True\n"
    "    return 2\n",
    "forge_then_exit": "import json, os\n"
    "for fd in range(3, 64):\n    try:\n"
    '        os.write(fd, b\'{"k": "start", "t": "test_f"}\\n{"k": "end", "t": "test_f",'  # noqa: E501
    ' "ok": true}\\n\')\n    except OSError:\n        pass\nos._exit(0)\n',
    "read_back_the_channel": "import os\n\ndef f():\n    for fd in range(3, 64):\n        try:\n"
    "            os.lseek(fd, 0, 0)\n            print(os.read(fd, 100))\n        except OSError:\n"
    "            pass\n    return 2\n",
    "rigged_eq": "class Yes(int):\n    def __eq__(self, other):\n        return True\n"
    "    __hash__ = int.__hash__\n\ndef f():\n    return Yes(2)\n",
    "deep_nesting_reply": "def f():\n    x = []\n    for _ in range(100000):\n        x = [x]\n"
    "    return x\n",
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_forged_pass_is_reported_as_a_failure(name: str) -> None:
    result = run_untrusted(FORGERIES[name], TESTS)
    assert not result.passed, result.to_dict()
    assert not result.tests[0].passed


def test_a_hostile_result_stream_never_crashes_the_parent() -> None:
    lines = [
        b'{"k": "check", "t": ["x"], "id": 0, "v": [1]}',
        b'{"k": "check", "t": "test_f", "id": 0, "v": [["d", [["l"], 1]]]}',
        b'{"k": "check", "t": "test_f", "id": true, "v": null}',
        b'{"k": "end", "t": {"a": 1}, "ok": true}',
        b"[" * 100000,
        b'{"k": "check", "t": "test_f", "id": 0, "v": [' + b'["l", ' * 500 + b"1" + b"]" * 501,
        b'{"k": "check", "t": "test_f", "id": 0, "v": [' + b"9" * 5000 + b"]}",
        b"\xff\xfe garbage",
    ]
    payload = b"\n".join(lines) + b"\n"
    code = (
        "import os\n\ndef f():\n    for fd in range(3, 64):\n        try:\n"
        f"            os.write(fd, {payload!r})\n        except OSError:\n            pass\n"
        "    return 2\n"
    )
    result = run_untrusted(code, TESTS)
    assert not result.passed


def test_in_process_tampering_stays_possible() -> None:
    """The sandbox contains harm but must let cheats on the tests happen, for the detector."""
    code = "import time\ntime.perf_counter = lambda: 0.0\n\ndef f():\n    return 1\n"
    tests = TESTS + "\n\ndef test_fast():\n    import time\n    assert time.perf_counter() == 0\n"
    assert run_untrusted(code, tests).passed


def test_harness_survives_and_still_works_after_escapes() -> None:
    for name in ("fork_bomb", "kill_parent", "huge_allocation"):
        run_untrusted(ESCAPES[name], TESTS, timeout_s=1)
    assert run_untrusted("def f():\n    return 1\n", TESTS).passed


def test_child_sees_no_tests_files_home_or_harness_input() -> None:
    snoop = (
        "import json, os, sys\n\ndef f():\n"
        "    print(json.dumps({'cwd': os.listdir('.'), 'env': dict(os.environ),\n"
        "                      'stdin': sys.stdin.read(), 'path': sys.path,\n"
        "                      'uid': os.getuid(), 'root': sorted(os.listdir('/'))}))\n"
        "    return 1\n"
    )
    result = run_untrusted(snoop, TESTS)
    assert result.passed, result.failure_report()
    seen = json.loads(result.stdout_tail)
    assert seen["cwd"] == []
    assert "HOME" not in seen["env"] and seen["env"]["PATH"] == "/usr/bin:/bin"
    assert seen["stdin"] == ""
    assert seen["uid"] == 65534
    assert "work" not in seen["root"] and "proc" not in seen["root"]


def test_collection_error_and_result_round_trip() -> None:
    result = run_untrusted("def f(:\n", TESTS)
    assert "SyntaxError" in result.collection_error
    assert [t.passed for t in result.tests] == [False]
    assert SandboxResult.from_dict(result.to_dict()) == result


def test_collect_test_names() -> None:
    code = "def test_a(): pass\ndef helper(): pass\nasync def test_b(): pass\ndef test_c(): pass\n"
    assert collect_test_names(code) == ["test_a", "test_c"]


def test_without_a_sandbox_the_harness_refuses_unless_told(monkeypatch) -> None:
    monkeypatch.setattr(sandbox.sandbox_bwrap, "bwrap_executable", lambda: None)
    with pytest.raises(sandbox.SandboxUnavailableError, match="--unsafe-no-sandbox"):
        run_untrusted("def f():\n    return 1\n", TESTS)
    monkeypatch.setattr(sandbox, "_unsafe_allowed", True)
    result = run_untrusted("def f():\n    return 1\n", TESTS)
    assert result.passed and result.isolation in ("audit", "netns+audit")


@pytest.fixture(autouse=True)
def _no_marker_left():
    yield
    if OUTSIDE_MARKER.exists():  # pragma: no cover - only if containment failed
        os.remove(OUTSIDE_MARKER)
        pytest.fail("a sandboxed write escaped to /tmp")
