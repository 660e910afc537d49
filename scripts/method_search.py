"""Issue 16, part 2: which extraction method transfers out of the story genre.

    flock /tmp/affectlens-heavy.lock python scripts/method_search.py capture [--out DIR]
    python scripts/method_search.py search [--out DIR]        # offline, dev split only
    python scripts/method_search.py confirm [--out DIR]       # winner and shipped, test split

``capture`` reads, in one forward pass per batch of the default model at layers 6, 10, 14
and 18, the train and test stories of the 24 transfer emotions, every third neutral passage
and both transfer splits, keeping every pooling of
:data:`affectlens.experiments.method_search.POOLINGS` (cached; a rerun resumes). The test
split is read in the same pass but only ``confirm`` scores it, once, for two methods.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from affectlens.corpus.stories import load_neutral, load_stories
from affectlens.experiments.method_search import (
    SELECTION_RULE,
    Method,
    SearchData,
    basic6_hits,
    capture_poolings,
    choose,
    load_captures,
    paired_test,
    score_method,
    search,
    summary_row,
)
from affectlens.extract import ExtractionSettings, neutral_texts
from affectlens.progress import use_progress
from affectlens.stats import min_detectable_difference
from affectlens.validation.transfer import TRANSFER_EMOTIONS, load_transfer, select_split

LAYERS = [6, 10, 14, 18]
NEUTRAL_EVERY = 3


def groups() -> dict[str, list]:
    """The texts of each capture group, in a fixed order (labels are saved beside them)."""
    stories = [s for s in load_stories() if s.emotion in TRANSFER_EMOTIONS]
    transfer = load_transfer()
    return {
        "train": [s for s in stories if s.split == "train"],
        "neutral": load_neutral()[::NEUTRAL_EVERY],
        "dev": select_split(transfer, "dev"),
        "stories_test": [s for s in stories if s.split == "test"],
        "transfer_test": select_split(transfer, "test"),
    }


def capture(out: Path) -> None:
    from affectlens.cli.progress_bars import render_progress
    from affectlens.models import load_model
    from affectlens.models.packs import DEFAULT_PACK

    model = load_model(DEFAULT_PACK)
    settings = ExtractionSettings()
    labels = {}
    with use_progress(render_progress):
        for name, items in groups().items():
            texts = neutral_texts(model, items) if name == "neutral" else [t.text for t in items]
            capture_poolings(model, texts, LAYERS, out / name, settings=settings, description=name)
            labels[name] = [
                {"emotion": getattr(t, "emotion", None), "form": getattr(t, "form", "story")}
                for t in items
            ]
            print(f"captured {name}: {len(texts)} texts", file=sys.stderr, flush=True)
    (out / "labels.json").write_text(json.dumps({"layers": LAYERS, "groups": labels}))


def search_data(out: Path, transfer_group: str) -> SearchData:
    """The captured groups as the offline search reads them."""
    texts = groups()
    emotions = list(TRANSFER_EMOTIONS)
    captures = {
        name: load_captures(out / name)
        for name in ("train", "neutral", "stories_test", transfer_group)
    }
    return SearchData(
        captures=captures,
        layers=LAYERS,
        emotions=emotions,
        train_labels=torch.tensor([emotions.index(s.emotion) for s in texts["train"]]),
        test_labels=[emotions.index(s.emotion) for s in texts["stories_test"]],
        transfer={transfer_group: texts[transfer_group]},
    )


def cell(rate: dict) -> str:
    return f"{rate['value']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}] n={rate['n']}"


def run_search(out: Path) -> None:
    data = search_data(out, "dev")
    started = time.time()

    def report(done: int, total: int) -> None:
        if done % 20 == 0 or done == total:
            print(f"search: {done}/{total} ({time.time() - started:.0f}s)", file=sys.stderr)

    rows = search(data, progress=report)
    winner, shipped = choose(rows)
    (out / "dev_rows.json").write_text(json.dumps(rows, indent=1))
    (out / "choice.json").write_text(
        json.dumps({"rule": SELECTION_RULE, "winner": winner, "shipped": shipped}, indent=1)
    )
    ranked = sorted(rows, key=lambda r: -r["basic6/form_mean"])
    for row in ranked[:25]:
        print(
            f"{row['method']:28s} L{row['layer']:<2d} basic6 mean {row['basic6/form_mean']:.3f}"
            f"  pooled {cell(row['basic6/pooled'])}  set24 {row['set24/pooled']['value']:.3f}"
            f"  in-domain {row['in_domain24']['value']:.3f}"
        )
    print(
        "winner", winner["method"], winner["layer"], "shipped", shipped["method"], shipped["layer"]
    )


def confirm(out: Path) -> None:
    choice = json.loads((out / "choice.json").read_text())
    data = search_data(out, "transfer_test")
    result = {"rule": choice["rule"]}
    hits = {}
    for role in ("winner", "shipped"):
        picked = choice[role]
        method = Method(
            picked["pooling"], picked["neutral_variance"], picked["whiten"], picked["shrinkage"]
        )
        column = LAYERS.index(picked["layer"])
        result[role] = summary_row(
            method, picked["layer"], score_method(data, method, column, "transfer_test")
        )
        hits[role] = basic6_hits(data, method, column, "transfer_test")
    result["paired_basic6"] = paired_test(hits["winner"], hits["shipped"])
    n = len(hits["winner"])
    result["min_detectable_difference_basic6"] = min_detectable_difference(
        n, result["shipped"]["basic6/pooled"]["value"]
    )
    (out / "test_confirmation.json").write_text(json.dumps(result, indent=1))
    print(table([result["winner"], result["shipped"]]))
    print(json.dumps({k: result[k] for k in ("paired_basic6", "min_detectable_difference_basic6")}))


FORM_COLUMNS = ("second_person", "diary", "dialogue", "social_post")


def short(rate: dict) -> str:
    return f"{rate['value']:.2f} [{rate['low']:.2f}, {rate['high']:.2f}]"


def table(rows: list[dict]) -> str:
    """Markdown: method x layer, 6-way per form and pooled (n, CI), 24-way pooled, in-domain."""
    n = {form: rows[0][f"basic6/{form}"]["n"] for form in FORM_COLUMNS}
    head = (
        "| method | layer | "
        + " | ".join(f"6-way {form} (n={n[form]})" for form in FORM_COLUMNS)
        + f" | 6-way pooled (n={rows[0]['basic6/pooled']['n']}) | form mean"
        + f" | 24-way pooled (n={rows[0]['set24/pooled']['n']})"
        + f" | in-domain 24-way (n={rows[0]['in_domain24']['n']}) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        cells = [short(row[f"basic6/{form}"]) for form in FORM_COLUMNS]
        lines.append(
            f"| {row['method']} | {row['layer']} | "
            + " | ".join(cells)
            + f" | {short(row['basic6/pooled'])} | {row['basic6/form_mean']:.3f}"
            + f" | {short(row['set24/pooled'])} | {short(row['in_domain24'])} |"
        )
    return "\n".join(lines)


def summarise(out: Path) -> None:
    """The full dev table, and the best row of each family of candidates."""
    rows = json.loads((out / "dev_rows.json").read_text())
    ranked = sorted(rows, key=lambda r: (-r["basic6/form_mean"], -r["set24/pooled"]["value"]))
    (out / "dev_table.md").write_text(table(ranked) + "\n")
    picks = []
    families = {
        "pooling": lambda r: r["pooling"],
        "whiten": lambda r: f"{r['whiten']}@{r['shrinkage']:g}",
        "share": lambda r: r["neutral_variance"],
        "layer": lambda r: r["layer"],
    }
    for family, key in families.items():
        best: dict = {}
        for row in ranked:
            best.setdefault(key(row), row)
        for value, row in best.items():
            picks.append((family, value, row))
    shipped = [r for r in rows if r["method"] == "from20/nv0.5/none"]
    text = ["## shipped method, every layer", table(shipped), ""]
    for family in families:
        chosen = [row for fam, _, row in picks if fam == family]
        text += [f"## best of each {family}", table(chosen), ""]
    (out / "dev_summary.md").write_text("\n".join(text))
    print("\n".join(text))


def deployable(out: Path) -> None:
    """Dev only: the winner's vectors mapped back to the residual stream (plain readout)."""
    choice = json.loads((out / "choice.json").read_text())
    picked = choice["winner"]
    method = Method(
        picked["pooling"], picked["neutral_variance"], picked["whiten"], picked["shrinkage"]
    )
    data = search_data(out, "dev")
    rows = []
    for column, layer in enumerate(LAYERS):
        row = summary_row(method, layer, score_method(data, method, column, raw_space=True))
        row["method"] += " raw-space"
        rows.append(row)
    (out / "dev_raw_space.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


def shrinkage(out: Path) -> None:
    """Dev only, after the choice: within-emotion whitening at shrinkages off the grid."""
    data = search_data(out, "dev")
    methods = [Method("from20", s, "within", a) for s in (0.0, 0.5) for a in (0.3, 0.7, 0.9)]
    rows = search(data, methods)
    (out / "dev_rows_shrinkage.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "step", choices=["capture", "search", "summarise", "confirm", "deployable", "shrinkage"]
    )
    parser.add_argument("--out", type=Path, default=Path("runs/method_search"))
    args = parser.parse_args()
    if args.step == "capture":
        capture(args.out)
    elif args.step == "search":
        run_search(args.out)
    elif args.step == "summarise":
        summarise(args.out)
    elif args.step == "shrinkage":
        shrinkage(args.out)
    elif args.step == "deployable":
        deployable(args.out)
    else:
        confirm(args.out)


if __name__ == "__main__":
    main()
