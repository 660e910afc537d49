"""Issue 16, part 2: which extraction method transfers out of the story genre.

    flock /tmp/affectlens-heavy.lock python scripts/method_search.py capture [--out DIR]
    python scripts/method_search.py search [--out DIR]        # offline, dev split only
    python scripts/method_search.py confirm [--out DIR]       # winner and shipped, test split
    flock /tmp/affectlens-heavy.lock python scripts/method_search.py capture-candidates
    python scripts/method_search.py candidates                # new corpora, dev split only
    python scripts/method_search.py confirm-candidates        # their winner vs default, test

``capture`` reads, in one forward pass per batch of the default model at layers 6, 10, 14
and 18, the train and test stories of the 24 transfer emotions, every third neutral passage
and both transfer splits, keeping every pooling of
:data:`affectlens.experiments.method_search.POOLINGS` (cached; a rerun resumes). The test
split is read in the same pass but only ``confirm`` scores it, once, for two methods.

The candidate corpora, written for this project under the corpus rules, are read by
``capture-candidates``: for each of the 24 emotions, 12 texts in other forms (first person,
second person, dialogue; since the winner became the default they are part of the corpus,
``data/stories``, for all 171 emotions) and a neutral twin of each of the 12 train stories
(same people, place and activity, no feeling; ``src/affectlens/data/candidates/``).
``candidates`` scores, on the dev split, four training corpora under the unwhitened and the
default method: the 12 stories (the corpus before), 6 stories + 6 mixed-form texts (the same
count), 12 stories + 12 mixed-form texts, and the 12 story-minus-twin contrasts (situation content
cancels). Its rule (:data:`CANDIDATE_RULE`) was fixed before the texts were written;
``confirm-candidates`` scores its winner and the default on the test split, once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from affectlens.corpus.stories import load_neutral, load_stories
from affectlens.experiments.method_search import (
    SELECTION_RULE,
    SHIPPED,
    Method,
    SearchData,
    basic6_hits,
    capture_poolings,
    choose,
    load_captures,
    paired_test,
    raw_space_artifact,
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
DEFAULT = Method("from20", 0.5, "within", 0.5)
CANDIDATE_CORPORA = ("stories12", "stories6+mixed6", "stories12+mixed12", "twin_contrast12")
CANDIDATE_RULE = (
    "Winner: the (corpus, method, layer) with the highest mean over the four forms of 6-way "
    "basic top-1 on the transfer dev split, among those whose 24-way held-out top-1 on the "
    "corpus test stories is at least the default's (stories12, from20/nv0.5/within@0.5) "
    "best-layer value minus 0.05; ties go to the higher pooled 24-way dev top-1. The default "
    "is compared at its own dev-best layer. Only these two are scored on the test split, once."
)


def groups() -> dict[str, list]:
    """The texts of each capture group, in a fixed order (labels are saved beside them)."""
    stories = [s for s in load_stories() if s.emotion in TRANSFER_EMOTIONS and s.form == "story"]
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


def candidate_texts() -> dict[str, list[dict]]:
    """The candidate texts, aligned with ``groups()["train"]``.

    ``mixed``: each emotion's 12 texts in other forms (the corpus's texts with ``form`` other
    than ``"story"``, emotions in :data:`TRANSFER_EMOTIONS` order, file order within);
    ``twins``: for every train story in ``groups()`` order, its neutral twin
    (``data/candidates/neutral_twins``).
    """
    from affectlens.corpus.concepts import package_data_dir

    folder = package_data_dir() / "candidates"
    emotions = list(TRANSFER_EMOTIONS)
    corpus = [s for s in load_stories() if s.form != "story"]
    mixed = [
        {"emotion": s.emotion, "form": s.form, "text": s.text}
        for e in emotions
        for s in corpus
        if s.emotion == e
    ]

    def twins_file(emotion: str) -> list[dict]:
        path = folder / "neutral_twins" / f"{emotion}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    twins_of = {e: {r["twin_of"]: r for r in twins_file(e)} for e in emotions}
    seen: dict[str, int] = {}
    twins = []
    for story in groups()["train"]:
        seen[story.emotion] = seen.get(story.emotion, 0) + 1
        twins.append(twins_of[story.emotion][seen[story.emotion]])
    return {"mixed": mixed, "twins": twins}


def capture_candidates(out: Path) -> None:
    from affectlens.cli.progress_bars import render_progress
    from affectlens.models import load_model
    from affectlens.models.packs import DEFAULT_PACK

    model = load_model(DEFAULT_PACK)
    with use_progress(render_progress):
        for name, records in candidate_texts().items():
            texts = [r["text"] for r in records]
            capture_poolings(model, texts, LAYERS, out / name, description=name)
            print(f"captured {name}: {len(texts)} texts", file=sys.stderr, flush=True)


def _first(labels: list[int], per_label: int, keys: list | None = None) -> list[int]:
    """Indices of the first ``per_label`` rows of each label (per ``keys`` value if given)."""
    counts: dict = {}
    keep = []
    for i, label in enumerate(labels):
        key = (label, keys[i] if keys is not None else None)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] <= per_label:
            keep.append(i)
    return keep


def candidate_corpus(base: SearchData, out: Path, corpus: str) -> SearchData:
    """``base`` with its train group replaced by one candidate training corpus.

    ``twin_contrast12``: story minus twin, shifted by one constant so the rows' grand mean is
    the stories' (a constant cancels in the centring and the within scatter, and keeps the
    readout centre where story activations are).
    """
    emotions = base.emotions
    texts = candidate_texts()
    train, labels = base.captures["train"], base.train_labels
    mixed = load_captures(out / "mixed")
    mixed_labels = torch.tensor([emotions.index(r["emotion"]) for r in texts["mixed"]])
    if corpus == "stories12":
        rows, new_labels = train, labels
    elif corpus == "stories6+mixed6":
        stories = _first(labels.tolist(), 6)
        extra = _first(mixed_labels.tolist(), 2, [r["form"] for r in texts["mixed"]])
        rows = {p: torch.cat([train[p][stories], mixed[p][extra]]) for p in train}
        new_labels = torch.cat([labels[stories], mixed_labels[extra]])
    elif corpus == "stories12+mixed12":
        rows = {p: torch.cat([train[p], mixed[p]]) for p in train}
        new_labels = torch.cat([labels, mixed_labels])
    elif corpus == "twin_contrast12":
        twins = load_captures(out / "twins")
        rows = {}
        for p in train:
            diff = train[p].double() - twins[p].double()
            rows[p] = (diff - diff.mean(dim=0) + train[p].double().mean(dim=0)).float()
        new_labels = labels
    else:
        raise ValueError(f"unknown corpus {corpus!r}")
    return SearchData(
        captures={**base.captures, "train": rows},
        layers=base.layers,
        emotions=emotions,
        train_labels=new_labels,
        test_labels=base.test_labels,
        transfer=base.transfer,
    )


def candidate_rows(out: Path, group: str, picks: list[tuple[str, Method, int]] | None = None):
    """Summary rows (with ``corpus``) for every corpus x method x layer, or for ``picks``."""
    from affectlens.validation.antonyms import antonym_cosines

    base = search_data(out, group)
    rows, hits = [], {}
    wanted = picks or [
        (corpus, method, layer)
        for corpus in CANDIDATE_CORPORA
        for method in (SHIPPED, DEFAULT)
        for layer in LAYERS
    ]
    datasets: dict[str, SearchData] = {}
    for corpus, method, layer in wanted:
        data = datasets.setdefault(corpus, candidate_corpus(base, out, corpus))
        column = LAYERS.index(layer)
        row = summary_row(method, layer, score_method(data, method, column, group))
        row["corpus"] = corpus
        artifact, _ = raw_space_artifact(data, method, column)
        pairs = antonym_cosines(data.emotions, artifact.vectors.double().numpy(), [layer])
        row["antonyms"] = {f"{p['a']}/{p['b']}": p["cosine"][str(layer)] for p in pairs["pairs"]}
        rows.append(row)
        hits[(corpus, method.name, layer)] = basic6_hits(data, method, column, group)
        print(f"{corpus} {method.name} L{layer} done", file=sys.stderr, flush=True)
    return rows, hits


def run_candidates(out: Path) -> None:
    rows, _ = candidate_rows(out, "dev")
    default_rows = [r for r in rows if r["corpus"] == "stories12" and r["method"] == DEFAULT.name]
    floor = max(r["in_domain24"]["value"] for r in default_rows) - 0.05

    def key(row: dict) -> tuple[float, float]:
        return (row["basic6/form_mean"], row["set24/pooled"]["value"])

    eligible = [r for r in rows if r["in_domain24"]["value"] >= floor - 1e-12]
    winner, default = max(eligible, key=key), max(default_rows, key=key)
    (out / "candidate_rows.json").write_text(json.dumps(rows, indent=1))
    (out / "candidate_choice.json").write_text(
        json.dumps({"rule": CANDIDATE_RULE, "winner": winner, "default": default}, indent=1)
    )
    for row in rows:
        row["method"] = f"{row['corpus']}: {row['method']}"
    ranked = sorted(rows, key=lambda r: (-r["basic6/form_mean"], -r["set24/pooled"]["value"]))
    text = table(ranked)
    antonym_lines = ["| corpus: method | layer | " + " | ".join(ranked[0]["antonyms"]) + " |"]
    antonym_lines.append("|" + "---|" * (len(ranked[0]["antonyms"]) + 2))
    for row in ranked:
        antonym_lines.append(
            f"| {row['method']} | {row['layer']} | "
            + " | ".join(f"{v:+.2f}" for v in row["antonyms"].values())
            + " |"
        )
    (out / "candidate_table.md").write_text(text + "\n\n" + "\n".join(antonym_lines) + "\n")
    print(text)
    print("winner", winner["corpus"], winner["method"], winner["layer"])
    print("default", default["corpus"], default["method"], default["layer"])


def confirm_candidates(out: Path) -> None:
    choice = json.loads((out / "candidate_choice.json").read_text())
    picks = []
    for role in ("winner", "default"):
        row = choice[role]
        method = Method(row["pooling"], row["neutral_variance"], row["whiten"], row["shrinkage"])
        picks.append((row["corpus"], method, row["layer"]))
    rows, hits = candidate_rows(out, "transfer_test", picks)
    keys = [(c, m.name, layer) for c, m, layer in picks]
    result = {
        "rule": choice["rule"],
        "winner": rows[0],
        "default": rows[1],
        "paired_basic6": paired_test(hits[keys[0]], hits[keys[1]]),
    }
    (out / "candidate_test_confirmation.json").write_text(json.dumps(result, indent=1))
    for row in rows:
        row["method"] = f"{row['corpus']}: {row['method']}"
    print(table(rows))
    print(json.dumps(result["paired_basic6"]))


def dose_candidates(out: Path) -> None:
    """Tylenol and water dose curves of *afraid* and *calm* for the two confirmed picks.

    The 24-emotion residual-stream vectors of each pick are read at its layer by
    :func:`affectlens.experiments.dose.run_dose` in raw units (Spearman against log dose is
    the same in any per-emotion affine unit, such as z).
    """
    from affectlens.experiments.dose import DEFAULT_TEMPLATES, run_dose
    from affectlens.models import load_model
    from affectlens.models.packs import DEFAULT_PACK

    choice = json.loads((out / "candidate_choice.json").read_text())
    model = load_model(DEFAULT_PACK)
    base = search_data(out, "dev")
    result = {}
    for role in ("winner", "default"):
        row = choice[role]
        method = Method(row["pooling"], row["neutral_variance"], row["whiten"], row["shrinkage"])
        data = candidate_corpus(base, out, row["corpus"])
        artifact, _ = raw_space_artifact(data, method, LAYERS.index(row["layer"]))
        artifact.provenance["model"] = {"id": model.name, "fingerprint": model.fingerprint()}
        curves = run_dose(model, artifact, dict(DEFAULT_TEMPLATES), ["afraid", "calm"], units="raw")
        result[role] = {
            "corpus": row["corpus"],
            "method": row["method"],
            "layer": row["layer"],
            "curves": [asdict(curve) for curve in curves],
        }
        for curve in curves:
            print(
                f"{role} {row['corpus']} {row['method']} L{row['layer']} {curve.template} "
                f"{curve.emotion}: rho {curve.rho:+.2f} "
                f"[{curve.rho_low:+.2f}, {curve.rho_high:+.2f}]"
            )
    (out / "candidate_dose.json").write_text(json.dumps(result, indent=1))


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
    steps = {
        "capture": capture, "search": run_search, "summarise": summarise, "confirm": confirm,
        "deployable": deployable, "shrinkage": shrinkage,
        "capture-candidates": capture_candidates, "candidates": run_candidates,
        "confirm-candidates": confirm_candidates, "dose-candidates": dose_candidates,
    }  # fmt: skip
    parser.add_argument("step", choices=list(steps))
    parser.add_argument("--out", type=Path, default=Path("runs/method_search"))
    args = parser.parse_args()
    steps[args.step](args.out)


if __name__ == "__main__":
    main()
