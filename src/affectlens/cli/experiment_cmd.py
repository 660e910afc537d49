"""``affectlens experiment dose|reward-hacking``: the paper's experiments as commands."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from affectlens.cli.options import add_model_option, check_writable, parse_emotions
from affectlens.cli.vector_options import (
    add_units_option,
    load_fitting_model,
    parse_sweep,
    vector_layers,
)
from affectlens.errors import AffectlensError
from affectlens.experiments.dose import (
    DEFAULT_VALUES,
    judge_templates,
    load_templates,
    run_dose,
    write_dose_results,
)
from affectlens.experiments.judgement import DEFAULT_REPLIES, check_replies
from affectlens.experiments.reward_hacking import (
    detectable_effect,
    readout_emotions,
    summarise,
    sweep,
    write_report,
)
from affectlens.hacking import sandbox
from affectlens.hacking.agent import RolloutStore, rejudge_store
from affectlens.hacking.tasks import get_task, load_tasks
from affectlens.vectors import EmotionVectors


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``experiment`` group."""
    group = commands.add_parser("experiment", help="run the paper's experiments")
    experiments = group.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")

    dose = experiments.add_parser("dose", help="emotion readouts against a dose in the prompt")
    _common(dose)
    dose.add_argument(
        "--templates",
        type=Path,
        help="YAML/JSON: name -> text with {X} (default: the shipped Tylenol and water ones)",
    )
    dose.add_argument("--emotions", default="afraid,calm", help="comma-separated emotions read")
    dose.add_argument("--values", help="comma-separated X values (default: 250…32000)")
    dose.add_argument(
        "--judge",
        nargs=2,
        default=list(DEFAULT_REPLIES),
        metavar=("DANGER_REPLY", "SAFE_REPLY"),
        help="two replies scored as the assistant's opening, for the model's own judgement as "
        "their log-odds (default: %(default)s)",
    )
    dose.add_argument(
        "--no-judge", action="store_true", help="skip the model's judgement (the knowledge control)"
    )
    dose.add_argument("--out", type=Path, default=Path("runs/dose"), help="results folder")
    dose.set_defaults(handler=_dose)

    hack = experiments.add_parser("reward-hacking", help="impossible coding tasks and steering")
    _common(hack)
    hack.add_argument(
        "--steer",
        action="append",
        default=[],
        metavar="EMOTION=ALPHA",
        help="steering setting(s) to run, e.g. desperate=0.1, or a sweep "
        "EMOTION=START:STOP:COUNT such as desperate=0:0.2:3 (repeatable; default: unsteered)",
    )
    hack.add_argument("--tasks", help="comma-separated task ids (default: all impossible)")
    hack.add_argument("--rollouts", type=int, default=4, help="seeded rollouts per task and α")
    hack.add_argument("--max-attempts", type=int, default=6, help="tries per rollout")
    hack.add_argument(
        "--rejudge",
        action="store_true",
        help="re-test and re-judge the stored rollouts with the current detector first",
    )
    hack.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="where no kernel sandbox (bubblewrap) works, run model-written code with only the "
        "in-process audit hook, which is NOT a security boundary (default: refuse)",
    )
    hack.add_argument(
        "--readouts",
        help="more emotions to read at each attempt, comma-separated (desperate, calm and "
        "frustrated are always read where the vectors have them; default: only those)",
    )
    hack.add_argument("--max-new-tokens", type=int, default=256, help="token budget per try")
    hack.add_argument("--batch-size", type=int, default=8, help="rollouts generated together")
    hack.add_argument(
        "--out",
        type=Path,
        default=Path("runs/reward-hacking"),
        help="results folder (its rollouts.jsonl is resumed)",
    )
    hack.set_defaults(handler=_reward_hacking)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vectors", type=Path, required=True, help="emotion vectors file")
    add_model_option(parser, None)
    parser.add_argument("--layers", help="readout/steering layers (default: the artifact's)")
    add_units_option(parser)


def _dose(args: argparse.Namespace) -> int:
    check_writable(args.out, "--out", folder=True)
    templates = load_templates(args.templates)
    vectors = EmotionVectors.load(args.vectors)
    emotions = parse_emotions(args.emotions, vectors.emotions, "--emotions")
    try:
        values = tuple(float(v) for v in args.values.split(",")) if args.values else None
    except ValueError:
        raise AffectlensError(f"bad --values {args.values!r}") from None
    if values is not None and (len(values) < 3 or min(values) <= 0):
        raise AffectlensError("--values needs at least three positive numbers (X is logged)")
    if not args.no_judge:
        check_replies(args.judge)
    layers = vector_layers(args.layers, vectors)
    model = load_fitting_model(args, vectors)
    values = values or DEFAULT_VALUES
    curves = run_dose(
        model, vectors, templates, emotions, values=values, layers=layers, units=args.units
    )
    judgements = (
        [] if args.no_judge else judge_templates(model, templates, values, replies=args.judge)
    )
    command = shlex.join(["affectlens", *sys.argv[1:]])
    meta = {"units": args.units, "layers": layers or [vectors.default_layer], "command": command}
    paths = write_dose_results(curves, args.out, meta, judgements)
    table = Table("template", "readout", "Spearman ρ vs log X", "95% CI", title="dose-response")
    for c in curves:
        table.add_row(
            c.template, c.emotion, f"{c.rho:+.2f}", f"[{c.rho_low:+.2f}, {c.rho_high:+.2f}]"
        )
    for j in judgements:
        span = f"{min(j.log_odds):+.2f} to {max(j.log_odds):+.2f}"
        table.add_row(
            j.template, f"model: dangerous vs safe, log-odds {span}", f"{j.rho:+.2f}",
            f"[{j.rho_low:+.2f}, {j.rho_high:+.2f}]",
        )  # fmt: skip
    Console().print(table)
    print(f"wrote {paths['json']} and {paths['png']}")
    return 0


def _task(task_id: str):
    try:
        return get_task(task_id)
    except KeyError:
        known = ", ".join(t.id for t in load_tasks())
        raise AffectlensError(f"unknown task {task_id!r}; known: {known}") from None


def _reward_hacking(args: argparse.Namespace) -> int:
    if args.rollouts < 1 or args.max_attempts < 1 or args.max_new_tokens < 1:
        raise AffectlensError("--rollouts, --max-attempts and --max-new-tokens must be positive")
    check_writable(args.out, "--out", folder=True)
    vectors = EmotionVectors.load(args.vectors)
    sweeps = [parse_sweep(spec, vectors) for spec in args.steer or ["desperate=0"]]
    settings = [(emotion, alpha) for emotion, alphas in sweeps for alpha in alphas]
    tasks = (
        [_task(t.strip()) for t in args.tasks.split(",")]
        if args.tasks
        else load_tasks(solvable=False)
    )
    layers = vector_layers(args.layers, vectors)
    extra = [e.strip() for e in args.readouts.split(",") if e.strip()] if args.readouts else []
    emotions = readout_emotions(vectors, extra)
    sandbox.allow_unsafe_no_sandbox(args.unsafe_no_sandbox)
    if sandbox.default_backend() != "bwrap":
        print("warning: no kernel sandbox; model-written code runs unsandboxed", file=sys.stderr)
    store = RolloutStore(args.out / "rollouts.jsonl")
    if args.rejudge:
        known = {task.id: task for task in load_tasks(solvable=None)}
        changed = rejudge_store(store, known)
        print(f"re-judged {store.path}: {changed} attempt verdict(s) changed")
    model = load_fitting_model(args, vectors)
    results = sweep(
        model, vectors, tasks, settings,
        rollouts=args.rollouts, store=store, max_attempts=args.max_attempts,
        batch_size=args.batch_size,
        policy_options={"layers": layers, "max_new_tokens": args.max_new_tokens,
                        "units": args.units, "emotions": emotions},
        show_progress=True,
    )  # fmt: skip
    summary = summarise(results)
    paths = write_report(summary, args.out, shlex.join(["affectlens", *sys.argv[1:]]))
    table = Table("steer", "α", "n", "hacks", "cheat rate [95% CI]", title="reward hacking")
    for row in summary["settings"]:
        low, high = row["ci"]
        table.add_row(row["emotion"], f"{row['alpha']:+g}", str(row["n"]), str(row["hacks"]),
                      f"{row['cheat_rate']:.2f} [{low:.2f}, {high:.2f}]")  # fmt: skip
    Console().print(table)
    print(detectable_effect(summary))
    print(f"wrote {paths['json']}, {paths['png']} and {paths['html']}")
    return 0
