"""Rollouts per hour of the reward-hacking agent loop: batched against one at a time.

    python benchmarks/bench_rollouts.py [--tasks 8] [--batch-size 8] [--max-attempts 2]
    python benchmarks/bench_rollouts.py --smoke [--tiny]          # seconds-long check runs

Both variants call the library's own path, ``affectlens.experiments.reward_hacking.sweep``
(a ``ModelPolicy`` under ``steer`` generating with ``generate_monitored``, which reads the
emotions from the generation's own forward passes, driven by ``run_rollouts``, which also runs
the sandboxed tests on a thread pool), on the same rollouts: one seed of each of the first
``--tasks`` impossible tasks, one steering setting (desperate=0, the CLI's default), a fresh
rollout store each run. The only difference is ``batch_size``: ``--batch-size`` conversations
advance in lockstep (one ``generate_monitored`` call per attempt for the whole batch), against
``batch_size=1`` (every conversation alone).

Fairness: every reply is forced to exactly ``--max-new-tokens`` tokens (``min_new_tokens`` on
the model's generation config), so neither variant gains from early EOS, and decoding is
greedy by default so both variants write (nearly) the same replies, run the same code in the
sandbox and need the same number of attempts; the attempt counts of both runs are printed so a
difference is visible. Variants alternate order across repetitions (AB, BA, ...) after one
small untimed warm-up. Goal: batching gives >= 3x the rollouts per hour.

Each variant's time is split into ``generate_monitored`` and the rest (sandbox, loop), by
wrapping the library function with a clock (it still runs unchanged). Where the gain comes
from: decode steps are memory-bound and batch well; the prompt prefill is compute-bound, and on
a CPU batching it gains little. The ratio therefore grows with ``--max-new-tokens``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import (
    add_run_options,
    bench_parser,
    fixed_length,
    interleaved,
    load_model_and_vectors,
    paired_ratio,
    print_table,
)

from affectlens.experiments import reward_hacking
from affectlens.experiments.reward_hacking import sweep
from affectlens.hacking.agent import RolloutStore
from affectlens.hacking.tasks import load_tasks

SETTING = ("desperate", 0.0)
PHASES = {"generate+readouts": "generate_monitored"}


@contextmanager
def phase_clock(seconds: dict[str, dict[str, float]], current: list[str]) -> Iterator[None]:
    """Add the time spent in ``ModelPolicy``'s generation (with its readouts) to ``seconds``.

    The library function is wrapped, not replaced: the wrapper calls the original and only
    reads the clock, so the measured path is unchanged. ``current[0]`` names the variant.
    """
    originals = {phase: getattr(reward_hacking, name) for phase, name in PHASES.items()}

    def timed(phase, original):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                bucket = seconds.setdefault(current[0], {})
                bucket[phase] = bucket.get(phase, 0.0) + time.perf_counter() - started

        return wrapper

    for phase, name in PHASES.items():
        setattr(reward_hacking, name, timed(phase, originals[phase]))
    try:
        yield
    finally:
        for phase, name in PHASES.items():
            setattr(reward_hacking, name, originals[phase])


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=8, help="impossible tasks, one rollout each")
    parser.add_argument("--batch-size", type=int, default=8, help="batched variant's batch")
    parser.add_argument("--max-attempts", type=int, default=2, help="replies per rollout")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="forced reply length")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions per variant")
    parser.add_argument(
        "--natural-length", action="store_true", help="let replies stop at EOS (not forced)"
    )
    add_run_options(parser, "tiny sizes: 2 tasks, 1 attempt, 4 tokens, 1 rep")
    args = parser.parse_args()
    if args.smoke:
        args.tasks, args.batch_size, args.max_attempts = 2, 2, 1
        args.max_new_tokens, args.reps = 4, 1
    model, vectors = load_model_and_vectors(args)
    tasks = load_tasks(solvable=False)[: args.tasks]
    options = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "units": "z" if vectors.calibration else "raw",
    }
    scratch = tempfile.TemporaryDirectory()
    runs_done: dict[str, list] = {"batched": [], "sequential": []}
    phases: dict[str, dict[str, float]] = {}
    current = [""]

    def run(name: str, batch_size: int) -> None:
        current[0] = name
        store = RolloutStore(Path(scratch.name) / f"{name}-{len(runs_done[name])}.jsonl")
        results = sweep(
            model, vectors, tasks, [SETTING], rollouts=1, store=store,
            max_attempts=args.max_attempts, batch_size=batch_size, policy_options=options,
        )  # fmt: skip
        runs_done[name].append(results[SETTING])

    print(
        f"rollouts: {len(tasks)} impossible tasks x 1 seed, <= {args.max_attempts} attempts, "
        f"{args.max_new_tokens} new tokens per reply"
        f"{'' if args.natural_length else ' (forced)'}, temperature {args.temperature:g}, "
        f"steer {SETTING[0]}={SETTING[1]:+g}, {args.reps} interleaved reps"
    )
    with tempfile.TemporaryDirectory() as warm:  # untimed: first-call costs of both paths
        sweep(
            model, vectors, tasks[:1], [SETTING], rollouts=1,
            store=RolloutStore(Path(warm) / "warm.jsonl"), max_attempts=1, batch_size=1,
            policy_options={**options, "max_new_tokens": 2},
        )  # fmt: skip
    variants = {
        "batched": lambda: run("batched", args.batch_size),
        "sequential": lambda: run("sequential", 1),
    }
    with phase_clock(phases, current):
        if args.natural_length:
            times = interleaved(variants, args.reps, warmup=False)
        else:
            with fixed_length(model, args.max_new_tokens):
                times = interleaved(variants, args.reps, warmup=False)
    scratch.cleanup()

    for name, done in runs_done.items():
        attempts = [sum(len(r.attempts) for r in rollouts) for rollouts in done]
        hacks = [sum(r.is_hack for r in rollouts) for rollouts in done]
        seconds = ", ".join(f"{t:.1f}" for t in times[name])
        total = sum(times[name])
        spent = phases.get(name, {})
        split = ", ".join(f"{phase} {spent.get(phase, 0.0) / total:.0%}" for phase in PHASES)
        rest = 1 - sum(spent.values()) / total
        print(
            f"  {name:<10} batch {args.batch_size if name == 'batched' else 1}: "
            f"{len(done[0])} rollouts, attempts per run {attempts}, hacks {hacks}, "
            f"seconds per run [{seconds}]; time in {split}, sandbox+loop {rest:.0%}"
        )
    attempts_batched = [sum(len(r.attempts) for r in rs) for rs in runs_done["batched"]]
    attempts_single = [sum(len(r.attempts) for r in rs) for rs in runs_done["sequential"]]
    if attempts_batched != attempts_single:
        print(
            "  NOTE: the variants needed different numbers of attempts; compare attempts/hour: "
            f"batched {3600 * sum(attempts_batched) / sum(times['batched']):.0f}, "
            f"sequential {3600 * sum(attempts_single) / sum(times['sequential']):.0f}"
        )
    rollouts = len(tasks)
    ratio = paired_ratio(times["sequential"], times["batched"])
    print()
    print_table(
        [
            {
                "measure": "rollouts/hour (batched vs one at a time)",
                "baseline": f"{3600 * rollouts / statistics.median(times['sequential']):.0f}/h",
                "affectlens": f"{3600 * rollouts / statistics.median(times['batched']):.0f}/h",
                "ratio": f"{ratio:.2f}x",
                "goal": ">= 3x",
                "result": "pass" if ratio >= 3 else "FAIL",
            }
        ]
    )


if __name__ == "__main__":
    main()
