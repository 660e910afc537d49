"""``affectlens extract`` and ``affectlens models``: build a vectors artifact; list packs."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from affectlens.calibration import calibrate
from affectlens.cli.options import (
    add_model_option,
    check_writable,
    load_model_from_args,
    parse_emotions,
    parse_layers,
    resolve_emotion,
)
from affectlens.cli.vector_options import load_fitting_model
from affectlens.control_vector import export_control_vector
from affectlens.corpus.stories import FORMS, load_neutral, load_stories
from affectlens.errors import AffectlensError
from affectlens.extract import (
    ExtractionSettings,
    calibration_sample,
    extract_vectors,
    extraction_fingerprint,
    neutral_texts,
    resolve_layers,
    select_training_stories,
)
from affectlens.models.loading import pack_is_cached
from affectlens.models.packs import DEFAULT_PACK, PACKS, cache_root, install_command
from affectlens.vectors import EmotionVectors
from affectlens.whitening import WHITENINGS

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``extract``, ``models`` and ``export-control-vector``."""
    extract = commands.add_parser("extract", help="extract emotion vectors from a story corpus")
    add_model_option(extract, DEFAULT_PACK)
    extract.add_argument("--corpus", type=Path, help="story JSONL or folder (default: shipped)")
    extract.add_argument("--neutral", type=Path, help="neutral JSONL (default: shipped)")
    extract.add_argument("--out", type=Path, required=True, help="output .safetensors path")
    extract.add_argument("--layers", help="e.g. 6,10 or 4-12 (default: all)")
    extract.add_argument("--batch-size", type=int, default=8, help="texts per forward pass")
    extract.add_argument(
        "--max-stories", type=int, help="cap on train stories per emotion (default: no cap)"
    )
    extract.add_argument(
        "--emotions", help="comma-separated subset of emotions (default: all in the corpus)"
    )
    extract.add_argument(
        "--forms",
        help=f"comma-separated text forms to train on, of {', '.join(FORMS)} (default: every "
        "form in the corpus; 'story' gives the vectors of the corpus before mixed forms)",
    )
    extract.add_argument("--start-token", type=int, default=20, help="first token averaged")
    extract.add_argument(
        "--neutral-variance",
        type=float,
        default=0.5,
        help="share of neutral-text variance whose directions are projected out, in (0, 1]",
    )
    extract.add_argument(
        "--whiten",
        choices=WHITENINGS,
        default="within",
        help="within (default): whiten by the within-emotion covariance of the story means, "
        "which transfers better out of the story genre; none: the unwhitened method of "
        "artifacts made before whitening",
    )
    extract.add_argument(
        "--whiten-shrinkage",
        type=float,
        default=0.5,
        help="with --whiten within: share, in [0, 1], of that covariance replaced by its mean "
        "variance (0: none, singular when stories are fewer than hidden dimensions)",
    )
    extract.add_argument(
        "--checkpoint-every", type=int, default=20, help="batches between checkpoints"
    )
    extract.add_argument(
        "--max-neutral",
        type=int,
        help="neutral passages read for the projected-out PCs and the calibration (default: "
        "all 332 for a full run; for --emotions or --max-stories runs, 2 per training story "
        "and at least 64: each passage costs about as much as a story)",
    )
    extract.add_argument("--no-calibrate", action="store_true", help="skip readout calibration")
    extract.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run: from the last story checkpoint, or at calibration "
        "when the extraction had finished",
    )
    extract.set_defaults(handler=_extract)

    calib = commands.add_parser(
        "calibrate", help="(re)compute readout calibration of a vectors file in place"
    )
    calib.add_argument("--vectors", type=Path, required=True, help="emotion vectors file")
    add_model_option(calib, None)
    calib.add_argument("--corpus", type=Path, help="story JSONL or folder (default: shipped)")
    calib.add_argument("--neutral", type=Path, help="neutral JSONL (default: shipped)")
    calib.set_defaults(handler=_calibrate)

    models = commands.add_parser("models", help="list offline model packs and their state")
    models.set_defaults(handler=_models)

    control = commands.add_parser(
        "export-control-vector", help="write one emotion as a llama.cpp control vector"
    )
    control.add_argument("--vectors", type=Path, required=True, help="emotion vectors file")
    control.add_argument("--emotion", required=True, help="the emotion to export")
    control.add_argument(
        "--alpha", type=float, default=0.1, help="strength, as a fraction of the residual norm"
    )
    control.add_argument(
        "--layers", help="e.g. 6,10 or 4-12 (default: all layers in the artifact from 1 on)"
    )
    control.add_argument("--out", type=Path, required=True, help="output .gguf path")
    control.set_defaults(handler=_export)


def _check_numbers(args: argparse.Namespace) -> None:
    for flag, value, low in (
        ("--batch-size", args.batch_size, 1),
        ("--max-stories", args.max_stories, 1),
        ("--checkpoint-every", args.checkpoint_every, 1),
        ("--max-neutral", args.max_neutral, 2),
        ("--start-token", args.start_token, 0),
    ):
        if value is not None and value < low:
            raise AffectlensError(f"{flag} must be at least {low}")
    if not 0 < args.neutral_variance <= 1:
        raise AffectlensError("--neutral-variance must be in (0, 1]")
    if not 0 <= args.whiten_shrinkage <= 1:
        raise AffectlensError("--whiten-shrinkage must be in [0, 1]")


def _resumable_extraction(args, model, stories, neutral, settings, checkpoint, extracted):
    """The uncalibrated vectors: from an interrupted run's saved extraction when ``--resume``
    finds one of the same corpus and settings, else extracted now (and saved, so that a kill
    during calibration loses no extraction)."""
    if args.resume and extracted.is_file():
        saved = EmotionVectors.load(extracted)
        fingerprint = extraction_fingerprint(stories, neutral, settings)
        same = saved.provenance.get("corpus_sha256") == fingerprint and saved.provenance.get(
            "settings"
        ) == json.loads(json.dumps(asdict(settings)))
        if same:
            saved.check_fits(model)
            log.info("resuming at calibration from %s", extracted)
            return saved
    vectors = extract_vectors(
        model, stories, neutral, settings, checkpoint=checkpoint, resume=args.resume
    )
    vectors.save(extracted)
    return vectors


def _scaled_neutral(args: argparse.Namespace, neutral: list, stories: list, settings) -> list:
    """The neutral passages to read: ``--max-neutral``, or for a narrowed run (``--emotions``
    or ``--max-stories``) two per training story and at least 64, so a small extraction is
    small; a full run reads them all."""
    if args.max_neutral is not None:
        return neutral[: args.max_neutral]
    if args.emotions is None and args.max_stories is None:
        return neutral
    training = sum(len(group) for group in select_training_stories(stories, settings).values())
    return neutral[: max(64, 2 * training)]


def _extract(args: argparse.Namespace) -> int:
    if args.out.suffix != ".safetensors":
        raise AffectlensError("--out must end in .safetensors")
    _check_numbers(args)
    wanted_layers = parse_layers(args.layers)
    if wanted_layers is not None and not wanted_layers:
        raise AffectlensError("--layers names no layer")
    check_writable(args.out, "--out")
    stories = load_stories(args.corpus)
    if args.emotions is not None:
        present = {s.emotion for s in stories}
        unknown = "no stories for {name!r} in the corpus"
        wanted = set(parse_emotions(args.emotions, present, "--emotions", unknown))
        stories = [s for s in stories if s.emotion in wanted]
    if not stories:
        raise AffectlensError("the corpus is empty")
    neutral = load_neutral(args.neutral)
    if not neutral:
        raise AffectlensError("the neutral corpus is empty")
    settings = ExtractionSettings(
        batch_size=args.batch_size,
        max_stories_per_emotion=args.max_stories,
        start_token=args.start_token,
        neutral_variance=args.neutral_variance,
        checkpoint_every=args.checkpoint_every,
        whiten=args.whiten,
        whiten_shrinkage=args.whiten_shrinkage,
        forms=tuple(f.strip() for f in args.forms.split(",")) if args.forms else None,
    )
    select_training_stories(stories, settings)  # a thin or test-only corpus fails before loading
    neutral = _scaled_neutral(args, neutral, stories, settings)
    model = load_model_from_args(args, args.model)
    settings = replace(settings, layers=tuple(resolve_layers(model, wanted_layers)))
    checkpoint = args.out.with_name(args.out.name + ".ckpt")
    extracted = args.out.with_name(args.out.name + ".extracted.safetensors")
    vectors = _resumable_extraction(args, model, stories, neutral, settings, checkpoint, extracted)
    if not args.no_calibrate:
        sample = [s.text for s in calibration_sample(stories)]
        calibrate(model, vectors, neutral_texts(model, neutral), sample, show_progress=True)
    vectors.save(args.out)
    # the work is kept until the calibrated artifact is on disk
    checkpoint.unlink(missing_ok=True)
    extracted.unlink(missing_ok=True)
    print(
        f"wrote {args.out}: {len(vectors.emotions)} emotions x {len(vectors.layers)} layers "
        f"x {vectors.hidden_size} from {sum(vectors.provenance['stories_per_emotion'].values())} "
        f"training texts"
    )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    vectors = EmotionVectors.load(args.vectors)
    check_writable(args.vectors, "--vectors")
    model = load_fitting_model(args, vectors)
    stories = [s for s in load_stories(args.corpus) if s.emotion in vectors.emotions]
    sample = [s.text for s in calibration_sample(stories)]
    calibrate(
        model,
        vectors,
        neutral_texts(model, load_neutral(args.neutral)),
        sample,
        show_progress=True,
    )
    vectors.save(args.vectors)
    print(f"calibrated {args.vectors} on {len(sample)} stories")
    return 0


def _models(_: argparse.Namespace) -> int:
    """The packs as a table on a terminal; piped, one tab-separated line each, never cut."""
    rows = [
        (
            name,
            "yes" if pack.is_installed() else f"no ({install_command(pack.extra)})",
            "yes" if pack_is_cached(name) else "no",
            pack.description,
        )
        for name, pack in PACKS.items()
    ]
    console = Console(highlight=False)
    if not console.is_terminal:
        print(f"cache: {cache_root()}")
        for row in (("pack", "installed", "cached", "description"), *rows):
            print("\t".join(row))
        return 0
    table = Table(title=f"cache: {cache_root()}")
    table.add_column("pack", no_wrap=True, min_width=max(len(row[0]) for row in rows))
    for column in ("installed", "cached", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: '[qwen15]' is not markup
    console.print(table)
    return 0


def _export(args: argparse.Namespace) -> int:
    check_writable(args.out, "--out")
    vectors = EmotionVectors.load(args.vectors)
    layers = parse_layers(args.layers)
    if layers is not None and not layers:
        raise AffectlensError("--layers names no layer")
    emotion = resolve_emotion(args.emotion, vectors.emotions)
    path = export_control_vector(
        vectors, emotion, args.alpha, vectors.layers if layers is None else layers, args.out
    )
    print(f"wrote {path}")
    return 0
