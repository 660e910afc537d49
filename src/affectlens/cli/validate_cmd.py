"""``affectlens validate``: the paper's checks for an emotion-vectors artifact, as a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from affectlens.cli.options import add_model_option, check_writable
from affectlens.cli.vector_options import load_fitting_model
from affectlens.corpus.stories import default_stories_path, load_stories
from affectlens.errors import AffectlensError
from affectlens.validation.geometry import load_norms, match_norms
from affectlens.validation.report import write_report
from affectlens.validation.run import ValidationOptions, validate
from affectlens.validation.transfer import SPLITS, load_transfer
from affectlens.vectors import EmotionVectors


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``validate``."""
    parser = commands.add_parser(
        "validate",
        help="check an emotion-vectors file: classification, geometry, clusters, logit lens, "
        "stability, transfer",
    )
    parser.add_argument("--vectors", type=Path, required=True, help="emotion vectors file")
    add_model_option(parser, None)
    parser.add_argument("--corpus", type=Path, help="story JSONL or folder (default: shipped)")
    parser.add_argument(
        "--norms",
        type=Path,
        help="valence/arousal norms CSV (Warriner et al., or emotion,valence,arousal; "
        "default: none, geometry skips the human-norm comparison)",
    )
    parser.add_argument("--out", type=Path, default=Path("validation"), help="report folder")
    parser.add_argument(
        "--layers",
        type=int,
        dest="layer",
        metavar="LAYER",
        help="the one layer for geometry, clusters and stability (default: best held-out top-1)",
    )
    parser.add_argument("--layer", type=int, dest="layer", help=argparse.SUPPRESS)
    parser.add_argument(
        "--lens-layer", type=int, help="layer for the logit lens (default: nearest 90%% depth)"
    )
    parser.add_argument("--clusters", type=int, default=10, help="k of k-means (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed for k-means and the split")
    parser.add_argument("--top-tokens", type=int, default=10, help="logit-lens tokens per side")
    parser.add_argument(
        "--stability-stories",
        type=int,
        default=20,
        help="train stories per emotion read for split-half stability (default 20)",
    )
    parser.add_argument("--batch-size", type=int, help="default: the extraction's batch size")
    parser.add_argument(
        "--transfer",
        type=Path,
        help="out-of-genre transfer set, JSONL file or folder (default: the shipped sets)",
    )
    parser.add_argument(
        "--transfer-split",
        choices=SPLITS,
        default="dev",
        help="transfer half to score (default dev; score test only once per method, at the layer "
        "the dev half recorded)",
    )
    parser.add_argument("--no-transfer", action="store_true", help="skip the transfer section")
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="leave the vectors file untouched (default: record the recommended layer in it, "
        "so monitoring and steering default to that layer)",
    )
    parser.add_argument(
        "--no-progress", dest="quiet", action="store_true", help="hide the progress bars"
    )
    parser.add_argument("--quiet", dest="quiet", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_validate)


def command_line(args: argparse.Namespace) -> str:
    """The ``affectlens validate`` invocation that reproduces this run."""
    parts = ["affectlens", "validate", "--vectors", str(args.vectors)]
    for flag, value in (
        ("--model", args.model),
        ("--corpus", args.corpus),
        ("--norms", args.norms),
        ("--out", args.out),
        ("--layers", args.layer),
        ("--lens-layer", args.lens_layer),
        ("--clusters", args.clusters),
        ("--seed", args.seed),
        ("--top-tokens", args.top_tokens),
        ("--stability-stories", args.stability_stories),
        ("--batch-size", args.batch_size),
        ("--transfer", args.transfer),
        ("--transfer-split", None if args.transfer_split == "dev" else args.transfer_split),
    ):
        if value is not None:
            parts += [flag, str(value)]
    if args.no_transfer:
        parts.append("--no-transfer")
    return shlex.join(parts)


def _validate(args: argparse.Namespace) -> int:
    if args.clusters < 1:
        raise AffectlensError("--clusters must be at least 1")
    if args.top_tokens < 1:
        raise AffectlensError("--top-tokens must be at least 1")
    if args.stability_stories < 2:
        raise AffectlensError("--stability-stories must be at least 2")
    if args.batch_size is not None and args.batch_size < 1:
        raise AffectlensError("--batch-size must be at least 1")
    check_writable(args.out, "--out", folder=True)
    vectors = EmotionVectors.load(args.vectors)
    if not args.no_record:
        check_writable(args.vectors, "--vectors (where the recommended layer is recorded)")
    for chosen in (args.layer, args.lens_layer):
        if chosen is not None:
            vectors.layer_index(chosen)
    norms = load_norms(args.norms) if args.norms is not None else None
    if norms is not None:
        match_norms(vectors.emotions, norms)
    stories = load_stories(args.corpus or default_stories_path())
    transfer = None if args.no_transfer else load_transfer(args.transfer)
    model = load_fitting_model(args, vectors)
    options = ValidationOptions(
        layer=args.layer,
        lens_layer=args.lens_layer,
        clusters=args.clusters,
        seed=args.seed,
        top_tokens=args.top_tokens,
        stability_stories=args.stability_stories,
        batch_size=args.batch_size,
        show_progress=not args.quiet,
        transfer_split=args.transfer_split,
        transfer_source=str(args.transfer) if args.transfer else "shipped",
    )
    results = validate(vectors, model, stories, norms, options, transfer)
    command = command_line(args)
    out = write_report(results, args.out, command, extra={"vectors": str(args.vectors)})
    recommended = results["recommended_layer"]
    if not args.no_record and vectors.provenance.get("recommended_layer") != recommended:
        vectors.provenance["recommended_layer"] = recommended
        vectors.save(args.vectors)
    top1 = results["classification"]["per_layer"]
    best = max(top1, key=lambda entry: entry["top1"]["value"])
    at = next(entry for entry in top1 if entry["layer"] == recommended)
    print(
        f"best held-out top-1 {best['top1']['value']:.3f} at layer {best['layer']}; recommended "
        f"layer {recommended} ({results['recommendation_rule']}, held-out top-1 "
        f"{at['top1']['value']:.3f}); report: {out / 'index.html'}",
        file=sys.stderr,
    )
    basic = results["transfer"].get("basic6", {})
    if "pooled" in basic:
        column = results["layers"].index(results["layer"])
        top1 = basic["pooled"]["per_layer"][column]["top1"]
        print(
            f"transfer ({results['transfer']['split']}) 6-way at layer {results['layer']}: "
            f"{top1['value']:.3f} [{top1['low']:.3f}, {top1['high']:.3f}], n = {top1['n']}, "
            f"chance {basic['chance']:.3f}",
            file=sys.stderr,
        )
    return 0
