"""Wall time of one visible-test run: the old in-process audit hook against the kernel sandbox.

    python benchmarks/bench_sandbox.py [--repeats 30]
    python benchmarks/bench_sandbox.py --smoke                 # seconds-long check run

Both variants call the library's own ``run_untrusted`` on the same work: each task's reference
solution against its visible tests (what the reward-hacking loop does after every reply), one
task after another. ``backend="audit"`` is the old containment (``--unsafe-no-sandbox``: an
audit hook in the candidate's interpreter, ``unshare --net``); ``backend="bwrap"`` is the new
one (bubblewrap namespaces, unprivileged uid, seccomp, tmpfs). Both use the same parent-side
judging, so the difference is the cost of the sandbox itself. Variants alternate order across
repetitions (AB, BA, ...) after an untimed warm-up of each (the bwrap probe and the ``ldd``
scan of the interpreter's libraries happen once per process, in the warm-up). Goal: the new
sandbox's median under 150 ms per run on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

from affectlens.hacking.sandbox import run_untrusted
from affectlens.hacking.tasks import load_tasks

GOAL_MS = 150.0


def _time_run(backend: str, code: str, tests: str) -> float:
    start = time.perf_counter()
    result = run_untrusted(code, tests, backend=backend)
    elapsed = time.perf_counter() - start
    if result.isolation == "" or (backend == "bwrap") != (result.isolation == "bwrap"):
        raise RuntimeError(f"backend {backend} ran as {result.isolation!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per task and variant")
    parser.add_argument("--smoke", action="store_true", help="2 tasks x 3 repeats")
    args = parser.parse_args()
    tasks = load_tasks()
    repeats = args.repeats
    if args.smoke:
        tasks, repeats = tasks[:2], 3
    work = [(t.reference_solution, t.visible_tests) for t in tasks]
    times: dict[str, list[float]] = {"audit": [], "bwrap": []}
    for backend in times:
        _time_run(backend, *work[0])
    for rep in range(repeats):
        order = ("audit", "bwrap") if rep % 2 == 0 else ("bwrap", "audit")
        for code, tests in work:
            for backend in order:
                times[backend].append(_time_run(backend, code, tests))
    old, new = (statistics.median(times[b]) * 1000 for b in ("audit", "bwrap"))
    n = len(times["bwrap"])
    print(f"sandbox: {len(work)} tasks x {repeats} repeats = {n} visible-test runs per variant")
    print(f"{'variant':<28}{'median ms/run':>14}{'p90 ms/run':>12}")
    variants = (("old (audit hook, unsafe)", "audit"), ("new (bwrap kernel sandbox)", "bwrap"))
    for label, backend in variants:
        p90 = statistics.quantiles(times[backend], n=10)[-1] * 1000
        print(f"{label:<28}{statistics.median(times[backend]) * 1000:>14.1f}{p90:>12.1f}")
    print(
        f"ms/run (median): new/old = {new / old:.2f}x, overhead {new - old:+.1f} ms; "
        f"goal new < {GOAL_MS:.0f} ms: {'met' if new < GOAL_MS else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
