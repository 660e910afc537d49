"""Issue 16, part 4: the same geometry and transfer measurements on every offline model.

    flock /tmp/affectlens-heavy.lock python scripts/model_survey.py capture --model PACK \
        --layers 8,14,20 --per-emotion 4 --out runs/survey/PACK
    python scripts/model_survey.py report --out runs/survey/PACK [--norms CSV]
    flock /tmp/affectlens-heavy.lock python scripts/model_survey.py dose --out runs/survey/PACK
    python scripts/model_survey.py whitening --out runs/survey/PACK [--norms CSV]
    python scripts/model_survey.py pooling --out runs/survey/PACK [--norms CSV]

``capture`` reads, once per text, the model at the given layers (every pooling of
:func:`affectlens.experiments.method_search.capture_poolings`, cached; a rerun resumes):

- ``train``: the first ``--per-emotion`` train stories (third-person stories only) of each of
  the 171 emotions, and all 12 of each of the 24 transfer emotions (so the transfer figures use
  the same stories as ``scripts/method_search.py``);
- ``neutral``: every third neutral passage; ``stories_test``: the 24 emotions' test stories;
- ``dev``: the transfer set's development split (the test split is not read).

With ``--geometry-only`` only ``train`` (``--per-emotion`` stories of every emotion, the
transfer emotions included) and ``neutral`` are read, and ``report`` gives the geometry alone:
the way to survey a model too slow on this CPU for the transfer texts.

``--mixed-per-emotion M`` adds to ``train`` the first M mixed-form texts of every emotion, one
form after another (first person, second person, dialogue, ...); ``report`` then gives the
geometry twice, from the stories alone and from the stories with the mixed-form texts, so the
two corpora are compared on the same stories, captured once.

``report`` builds, offline, the unwhitened method (``from20/nv0.5/none``) and today's default
(``from20/nv0.5/within@0.5``) at each layer, and writes ``survey.json`` and ``survey.md``:

- geometry of all 171 vectors, from ``--per-emotion`` stories each, as an artifact holds them
  (residual-stream unit vectors): variance per PC, Pearson r (Fisher 95% CI) of PC1 with
  valence and PC2 with arousal against the human norms, which PC carries each, and the antonym
  pairs' cosines;
- transfer: 6-way basic and 24-way top-1 on the dev split per form (Wilson 95% CIs), and the
  24-way held-out story top-1, from the 24 emotions' 12 stories each.

``dose`` runs the Tylenol and water dose sweep (:func:`affectlens.experiments.dose.run_dose`)
with both methods' 24-emotion vectors at every captured layer and writes ``dose.json``: the
Spearman rho (bootstrap 95% CI, n = 8 doses) of *afraid* and *calm* against log dose.

``whitening`` is the sweep of ``docs/prespecified/2026-12-07-qwen15-whitening-strength.md``:
PC1-valence and PC2-arousal of every layer x whitening in :data:`WHITENING_GRID`, built from
the stories and mixed-form texts, scored on two fixed halves of the norm words. The method
with the best |r(PC1, valence)| on half A is scored on half B; it writes ``whitening.json``
and ``whitening.md``. ``pooling`` does the same for :data:`POOLING_GRID`
(``docs/prespecified/2026-12-07-qwen15-pooling-neutral.md``) and writes ``pooling.json`` and
``pooling.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from affectlens.corpus.stories import load_neutral, load_stories
from affectlens.experiments.method_search import (
    SHIPPED,
    Method,
    SearchData,
    capture_poolings,
    load_captures,
    raw_space_artifact,
    score_method,
    summary_row,
)
from affectlens.extract import ExtractionSettings, neutral_texts
from affectlens.progress import use_progress
from affectlens.validation.antonyms import antonym_cosines, positive_pairs
from affectlens.validation.geometry import affect_alignment, load_norms, pearson_fisher
from affectlens.validation.transfer import TRANSFER_EMOTIONS, load_transfer, select_split

DEFAULT = Method("from20", 0.5, "within", 0.5)
METHODS = (SHIPPED, DEFAULT)
NEUTRAL_EVERY = 3
WHITENING_GRID = (
    Method("from20", 0.5, "none", 0.0),
    *(Method("from20", 0.5, "within", a) for a in (0.05, 0.1, 0.25, 0.5, 0.75, 0.9)),
)
"""The prespecified grid: no whitening, and within-emotion whitening at six shrinkages."""
POOLING_GRID = tuple(
    Method(pool, share, "within", a)
    for pool in ("from20", "from50", "last_third", "all", "last")
    for share in (0.0, 0.5, 0.8)
    for a in (0.25, 0.5)
)
"""The second prespecified grid: every pooling x neutral share, at shrinkage 0.25 and 0.5."""
WORD_HALF_SEED = 16
NORMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "Ratings_Warriner_et_al.csv"


def train_stories(per_emotion: int, geometry_only: bool = False) -> list:
    """All 12 train stories of the 24 transfer emotions (unless ``geometry_only``), the first
    ``per_emotion`` of the rest."""
    taken: dict[str, int] = defaultdict(int)
    out = []
    for story in load_stories():
        if story.split != "train" or story.form != "story":
            continue
        full = story.emotion in TRANSFER_EMOTIONS and not geometry_only
        cap = None if full else per_emotion
        if cap is None or taken[story.emotion] < cap:
            taken[story.emotion] += 1
            out.append(story)
    return out


MIXED_FORMS = ("first_person", "second_person", "dialogue")


def mixed_texts(per_emotion: int) -> list:
    """The first ``per_emotion`` mixed-form train texts of every emotion, cycling the forms."""
    by_key: dict[tuple[str, str], list] = defaultdict(list)
    for text in load_stories():
        if text.split == "train" and text.form in MIXED_FORMS:
            by_key[text.emotion, text.form].append(text)
    out = []
    for emotion in sorted({emotion for emotion, _ in by_key}):
        for i in range(per_emotion):
            form = MIXED_FORMS[i % len(MIXED_FORMS)]
            out.append(by_key[emotion, form][i // len(MIXED_FORMS)])
    return out


def groups(per_emotion: int, geometry_only: bool = False, mixed: int = 0) -> dict[str, list]:
    """The texts of each capture group, in a fixed order."""
    if geometry_only:
        return {
            "train": train_stories(per_emotion, geometry_only=True) + mixed_texts(mixed),
            "neutral": load_neutral()[::NEUTRAL_EVERY],
        }
    return {
        "train": train_stories(per_emotion) + mixed_texts(mixed),
        "neutral": load_neutral()[::NEUTRAL_EVERY],
        "stories_test": [
            s for s in load_stories() if s.emotion in TRANSFER_EMOTIONS and s.split == "test"
        ],
        "dev": select_split(load_transfer(), "dev"),
    }


def capture(
    model_spec: str,
    layers: list[int],
    per_emotion: int,
    out: Path,
    geometry_only: bool,
    mixed: int = 0,
) -> None:
    from affectlens.cli.progress_bars import render_progress
    from affectlens.models import load_model

    model = load_model(model_spec)
    settings = ExtractionSettings()
    with use_progress(render_progress):
        for name, items in groups(per_emotion, geometry_only, mixed).items():
            texts = neutral_texts(model, items) if name == "neutral" else [t.text for t in items]
            capture_poolings(model, texts, layers, out / name, settings=settings, description=name)
            print(f"captured {name}: {len(texts)} texts", file=sys.stderr, flush=True)
    meta = {
        "model": model_spec,
        "layers": layers,
        "per_emotion": per_emotion,
        "geometry_only": geometry_only,
        "mixed_per_emotion": mixed,
    }
    (out / "survey_capture.json").write_text(json.dumps(meta))


@dataclass(frozen=True)
class Survey:
    """A finished capture folder, read once: its settings, texts and captures."""

    meta: dict
    texts: dict[str, list]
    captures: dict[str, dict[str, torch.Tensor]]


def load_survey(out: Path) -> Survey:
    if not (out / "survey_capture.json").is_file():
        sys.exit(f"no capture in {out}: run `model_survey.py capture --out {out}` first")
    meta = json.loads((out / "survey_capture.json").read_text())
    meta.setdefault("geometry_only", False)
    meta.setdefault("mixed_per_emotion", 0)
    texts = groups(meta["per_emotion"], meta["geometry_only"], meta["mixed_per_emotion"])
    return Survey(meta, texts, {name: load_captures(out / name) for name in texts})


def _data(survey: Survey, keep: list[int], emotions: list[str]) -> SearchData:
    meta, texts, train = survey.meta, survey.texts, survey.texts["train"]
    captures = dict(survey.captures)
    captures["train"] = {pooling: rows[keep] for pooling, rows in captures["train"].items()}
    return SearchData(
        captures=captures,
        layers=meta["layers"],
        emotions=emotions,
        train_labels=torch.tensor([emotions.index(train[i].emotion) for i in keep]),
        test_labels=[
            emotions.index(s.emotion)
            for s in texts.get("stories_test", [])
            if s.emotion in emotions
        ],
        transfer={"dev": texts["dev"]} if "dev" in texts else {},
    )


def geometry_data(survey: Survey, with_mixed: bool = False) -> SearchData:
    """All 171 emotions, ``per_emotion`` stories each, and their mixed-form texts if asked."""
    seen: dict[str, int] = defaultdict(int)
    keep = []
    for i, text in enumerate(survey.texts["train"]):
        if text.form != "story":
            if with_mixed:
                keep.append(i)
        elif seen[text.emotion] < survey.meta["per_emotion"]:
            seen[text.emotion] += 1
            keep.append(i)
    return _data(survey, keep, sorted(seen))


def transfer_data(survey: Survey) -> SearchData:
    """The 24 transfer emotions, all 12 stories each (as ``scripts/method_search.py``)."""
    train = survey.texts["train"]
    keep = [i for i, s in enumerate(train) if s.emotion in TRANSFER_EMOTIONS and s.form == "story"]
    return _data(survey, keep, list(TRANSFER_EMOTIONS))


def aligned_vectors(
    data: SearchData, method: Method, column: int, norms, n_boot: int
) -> tuple[np.ndarray, dict]:
    """The method's residual-stream vectors at one layer and their PCA/norm alignment."""
    artifact, _ = raw_space_artifact(data, method, column)
    vectors = artifact.vectors[:, 0].double().numpy()
    return vectors, affect_alignment(data.emotions, vectors, norms, n_boot=n_boot)


def geometry_row(data: SearchData, method: Method, column: int, norms) -> dict:
    """PC/valence/arousal alignment and antonyms of the method's residual-stream vectors."""
    vectors, aligned = aligned_vectors(data, method, column, norms, n_boot=200)
    antonyms = basic_antonyms(data.emotions, vectors, data.layers[column])
    corr = aligned["correlations"]
    table = aligned["components"]["abs_pearson"]
    return {
        "method": method.name,
        "layer": data.layers[column],
        "n_emotions": len(data.emotions),
        "n_matched": corr["pc1_valence"]["pearson"]["n"],
        "explained": aligned["explained_variance"][:5],
        "pc1_valence": corr["pc1_valence"]["pearson"],
        "pc2_arousal": corr["pc2_arousal"]["pearson"],
        "pc1_arousal": corr["pc1_arousal"]["pearson"],
        "best_pc": aligned["components"]["best_pc"],
        "best_abs_r": {
            key: max(row[key] for row in table if not np.isnan(row[key]))
            for key in ("valence", "arousal")
        },
        **antonyms,
    }


def basic_antonyms(emotions: list[str], vectors: np.ndarray, layer: int) -> dict:
    """Every antonym pair's cosine at ``layer``, and the basic pairs whose cosine is positive."""
    antonyms = antonym_cosines(emotions, vectors[:, None], [layer])
    return {
        "antonyms": {f"{p['a']}/{p['b']}": p["cosine"][str(layer)] for p in antonyms["pairs"]},
        "positive_basic": [
            pair
            for pair in positive_pairs(antonyms, layer)
            if any(p["basic"] and f"{p['a']}/{p['b']}" == pair for p in antonyms["pairs"])
        ],
    }


def _r(entry: dict) -> str:
    return f"{entry['r']:+.2f} [{entry['low']:+.2f}, {entry['high']:+.2f}]"


def _rate(entry: dict) -> str:
    return f"{entry['value']:.2f} [{entry['low']:.2f}, {entry['high']:.2f}]"


def report(out: Path, norms_path: Path) -> None:
    norms = load_norms(norms_path)
    survey = load_survey(out)
    meta = survey.meta
    corpora = {"stories": geometry_data(survey)}
    if meta["mixed_per_emotion"]:
        corpora["stories+mixed"] = geometry_data(survey, with_mixed=True)
    layers = corpora["stories"].layers
    trans = None if meta["geometry_only"] else transfer_data(survey)
    result: dict = {"capture": meta, "geometry": [], "transfer": []}
    for method in METHODS:
        for column in range(len(layers)):
            for corpus, geo in corpora.items():
                row = geometry_row(geo, method, column, norms)
                result["geometry"].append({"corpus": corpus, **row})
            if trans is not None:
                scores = score_method(trans, method, column)
                result["transfer"].append(summary_row(method, trans.layers[column], scores))
            print(f"done {method.name} L{layers[column]}", file=sys.stderr, flush=True)
    (out / "survey.json").write_text(json.dumps(result, indent=1))
    mixed = meta["mixed_per_emotion"]
    lines = [
        f"# {meta['model']}: {meta['per_emotion']} stories per emotion"
        + (f" (+ {mixed} mixed-form texts)" if mixed else "")
        + " (geometry, 171 emotions)"
        + ("" if trans is None else ", 12 per transfer emotion (transfer, 24 emotions)"),
        "",
        "| corpus | method | layer | var PC1-3 | PC1~valence r | PC2~arousal r | PC1~arousal r "
        "| valence best PC (abs r) | arousal best PC (abs r) | basic antonyms > 0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in result["geometry"]:
        lines.append(
            f"| {g['corpus']} | {g['method']} | {g['layer']} | "
            + "/".join(f"{v:.2f}" for v in g["explained"][:3])
            + f" | {_r(g['pc1_valence'])} | {_r(g['pc2_arousal'])} | {_r(g['pc1_arousal'])}"
            + f" | PC{g['best_pc']['valence']} ({g['best_abs_r']['valence']:.2f})"
            + f" | PC{g['best_pc']['arousal']} ({g['best_abs_r']['arousal']:.2f})"
            + f" | {', '.join(g['positive_basic']) or 'none'} |"
        )
    if trans is None:
        (out / "survey.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    n_dev = result["transfer"][0]["basic6/pooled"]["n"]
    lines += [
        "",
        f"| method | layer | 6-way dev pooled (n={n_dev}) | form mean | 2nd person | diary "
        "| dialogue | social | 24-way dev | in-domain 24-way |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in result["transfer"]:
        forms = [t[f"basic6/{f}"]["value"] for f in ("second_person", "diary", "dialogue")]
        lines.append(
            f"| {t['method']} | {t['layer']} | {_rate(t['basic6/pooled'])} "
            f"| {t['basic6/form_mean']:.3f} | "
            + " | ".join(f"{v:.2f}" for v in forms)
            + f" | {t['basic6/social_post']['value']:.2f} | {_rate(t['set24/pooled'])}"
            f" | {_rate(t['in_domain24'])} |"
        )
    (out / "survey.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def dose(out: Path) -> None:
    from affectlens.experiments.dose import DEFAULT_TEMPLATES, run_dose
    from affectlens.models import load_model

    survey = load_survey(out)
    meta = survey.meta
    model = load_model(meta["model"])
    data = geometry_data(survey) if meta["geometry_only"] else transfer_data(survey)
    rows = []
    for method in METHODS:
        for column, layer in enumerate(data.layers):
            artifact, _ = raw_space_artifact(data, method, column)
            artifact.provenance["model"] = {"id": model.name, "fingerprint": model.fingerprint()}
            for curve in run_dose(
                model, artifact, dict(DEFAULT_TEMPLATES), ["afraid", "calm"], units="raw"
            ):
                rows.append({"method": method.name, "layer": layer, **asdict(curve)})
                print(
                    f"{method.name} L{layer} {curve.template} {curve.emotion}: rho "
                    f"{curve.rho:+.2f} [{curve.rho_low:+.2f}, {curve.rho_high:+.2f}]"
                )
    (out / "dose.json").write_text(json.dumps({"model": meta["model"], "curves": rows}, indent=1))


def word_halves(words: list[str]) -> tuple[list[str], list[str]]:
    """The prespecified halves A and B: sorted words shuffled by ``Random(16)``, split in two."""
    shuffled = sorted(words)
    random.Random(WORD_HALF_SEED).shuffle(shuffled)
    half = len(shuffled) // 2
    return shuffled[:half], shuffled[half:]


def _half_r(aligned: dict, words: list[str], column: int, key: str) -> dict:
    x = [aligned["scores"][w][column] for w in words]
    y = [aligned[key][w] for w in words]
    return pearson_fisher(x, y)


CURVE_K = (3, 6, 9, 12)
CURVE_SEEDS = range(5)


def learning_curve(survey: Survey, norms) -> list[dict]:
    """|r(PC1, valence)| of the default method from k stories + k mixed texts per emotion.

    Each k is drawn per emotion with ``random.Random(seed)`` for the prespecified seeds; the
    whole corpus (k equal to the texts there are) is one draw, whatever the seed.
    """
    stories: dict[str, list[int]] = defaultdict(list)
    mixed: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(survey.texts["train"]):
        (stories if text.form == "story" else mixed)[text.emotion].append(i)
    emotions = sorted(stories)
    full = min(min(len(v) for v in stories.values()), min(len(v) for v in mixed.values()))
    rows = []
    for k in (k for k in CURVE_K if k <= full):
        draws: dict[int, list[float]] = defaultdict(list)
        for seed in CURVE_SEEDS if k < full else [0]:
            rng = random.Random(seed)
            keep = sorted(
                i for e in emotions for i in rng.sample(stories[e], k) + rng.sample(mixed[e], k)
            )
            data = _data(survey, keep, emotions)
            for column, layer in enumerate(data.layers):
                _, aligned = aligned_vectors(data, DEFAULT, column, norms, n_boot=100)
                draws[layer].append(abs(aligned["correlations"]["pc1_valence"]["pearson"]["r"]))
        for layer, values in draws.items():
            rows.append({"k": k, "layer": layer, "abs_r": values, "mean": float(np.mean(values))})
            print(f"k={k} L{layer}: mean |r(PC1, valence)| {rows[-1]['mean']:.3f}")
    return rows


def grid_rows(data: SearchData, grid: tuple[Method, ...], norms) -> tuple[list[dict], tuple]:
    """Every layer x method of ``grid``: PC1-valence and PC2-arousal on all words and on the
    word halves A and B, variance of PC1/PC2, and the antonym cosines."""
    rows: list[dict] = []
    halves = None
    for column, layer in enumerate(data.layers):
        for method in grid:
            vectors, aligned = aligned_vectors(data, method, column, norms, n_boot=200)
            if halves is None:
                halves = word_halves(list(aligned["matched"]))
            a, b = halves
            corr = aligned["correlations"]
            rows.append(
                {
                    "method": method.name,
                    "layer": layer,
                    "pc1_valence": {
                        "all": corr["pc1_valence"]["pearson"],
                        "A": _half_r(aligned, a, 0, "valence"),
                        "B": _half_r(aligned, b, 0, "valence"),
                    },
                    "pc2_arousal": {
                        "all": corr["pc2_arousal"]["pearson"],
                        "A": _half_r(aligned, a, 1, "arousal"),
                        "B": _half_r(aligned, b, 1, "arousal"),
                    },
                    "explained": aligned["explained_variance"][:3],
                    **basic_antonyms(data.emotions, vectors, layer),
                }
            )
            print(f"L{layer} {method.name}: PC1-valence all {_r(rows[-1]['pc1_valence']['all'])}")
    return rows, halves


def grid_result(survey: Survey, rows: list[dict], halves: tuple, protocol: str) -> dict:
    """The method chosen on half A and whether its half-B figure meets the goals."""
    chosen = max(rows, key=lambda r: abs(r["pc1_valence"]["A"]["r"]))
    return {
        "capture": survey.meta,
        "protocol": protocol,
        "halves": {"A": halves[0], "B": halves[1]},
        "rows": rows,
        "chosen": {"method": chosen["method"], "layer": chosen["layer"]},
        "met": abs(chosen["pc1_valence"]["B"]["r"]) >= 0.81,
        "antonyms_met": not chosen["positive_basic"],
    }


def grid_lines(title: str, result: dict) -> list[str]:
    """The markdown table of every method and the verdict line of the chosen one."""
    halves, chosen = result["halves"], result["chosen"]
    lines = [
        f"# {title}: {result['capture']['model']} (n words: A {len(halves['A'])}, "
        f"B {len(halves['B'])}; Pearson r, Fisher 95% CI)",
        "",
        "| layer | method | PC1-valence A | PC1-valence B | PC1-valence all "
        "| PC2-arousal B | PC2-arousal all | var PC1, PC2 | happy/sad, afraid/safe "
        "| positive basic pairs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    key = (chosen["method"], chosen["layer"])
    best = next(r for r in result["rows"] if (r["method"], r["layer"]) == key)
    for r in result["rows"]:
        lines.append(
            f"| {r['layer']} | {r['method']}{' **(chosen on A)**' if r is best else ''} "
            f"| {_r(r['pc1_valence']['A'])} "
            f"| {_r(r['pc1_valence']['B'])} | {_r(r['pc1_valence']['all'])} "
            f"| {_r(r['pc2_arousal']['B'])} | {_r(r['pc2_arousal']['all'])} "
            f"| {r['explained'][0]:.3f}, {r['explained'][1]:.3f} "
            f"| {r['antonyms']['happy/sad']:+.2f}, {r['antonyms']['afraid/safe']:+.2f} "
            f"| {', '.join(r['positive_basic']) or 'none'} |"
        )
    verdict = "met" if result["met"] else "not met"
    antonyms = "met" if result["antonyms_met"] else "not met"
    lines += ["", f"Chosen on A: L{chosen['layer']} {chosen['method']}; on B: "
              f"{_r(best['pc1_valence']['B'])}, goal 0.81: **{verdict}**; antonym goal "
              f"(no positive basic pair): **{antonyms}**."]  # fmt: skip
    return lines


def _write(out: Path, name: str, result: dict, lines: list[str]) -> None:
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _family(out: Path, norms_path: Path, step: str, grid: tuple[Method, ...], protocol: str):
    """Load the capture (stories and mixed-form texts) and score one prespecified family."""
    norms = load_norms(norms_path)
    survey = load_survey(out)
    if not survey.meta["mixed_per_emotion"]:
        sys.exit(f"{step}: the capture has no mixed-form texts (capture --mixed-per-emotion)")
    data = geometry_data(survey, with_mixed=True)
    rows, halves = grid_rows(data, grid, norms)
    return survey, data, norms, grid_result(survey, rows, halves, protocol)


def whitening(out: Path, norms_path: Path) -> None:
    """The prespecified whitening-strength sweep and learning curve (the module docstring)."""
    protocol = "docs/prespecified/2026-12-07-qwen15-whitening-strength.md"
    survey, data, norms, result = _family(out, norms_path, "whitening", WHITENING_GRID, protocol)
    result["curve"] = learning_curve(survey, norms)
    by = {(c["k"], c["layer"]): c["mean"] for c in result["curve"]}
    measured = all((k, layer) in by for k in (9, 12) for layer in data.layers)
    result["plateau"] = (
        all(by[12, layer] - by[9, layer] < 0.02 for layer in data.layers) if measured else None
    )
    lines = grid_lines("Whitening strength", result)
    lines += ["", "## PC1-valence by texts per emotion (default within@0.5, all words)", "",
              "| k stories + k mixed | layer | mean \\|r\\| | range over draws | draws |",
              "|---|---|---|---|---|"]  # fmt: skip
    for c in result["curve"]:
        lines.append(
            f"| {c['k']} | {c['layer']} | {c['mean']:.3f} | {min(c['abs_r']):.3f}-"
            f"{max(c['abs_r']):.3f} | {len(c['abs_r'])} |"
        )
    plateau = "not measured" if result["plateau"] is None else result["plateau"]
    lines += ["", f"Plateau (mean rises < 0.02 from k = 9 to 12 at both layers): **{plateau}**."]
    _write(out, "whitening", result, lines)


def pooling(out: Path, norms_path: Path) -> None:
    """The prespecified second family: pooling x neutral share x shrinkage (module docstring)."""
    protocol = "docs/prespecified/2026-12-07-qwen15-pooling-neutral.md"
    _, _, _, result = _family(out, norms_path, "pooling", POOLING_GRID, protocol)
    _write(out, "pooling", result, grid_lines("Pooling and neutral share", result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("step", choices=["capture", "report", "dose", "whitening", "pooling"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--layers", default="6,10,14,18")
    parser.add_argument("--per-emotion", type=int, default=4)
    parser.add_argument("--norms", type=Path, default=NORMS)
    parser.add_argument("--geometry-only", action="store_true")
    parser.add_argument("--mixed-per-emotion", type=int, default=0)
    args = parser.parse_args()
    if args.step == "capture":
        layers = [int(x) for x in args.layers.split(",")]
        capture(
            args.model, layers, args.per_emotion, args.out, args.geometry_only,
            args.mixed_per_emotion,
        )  # fmt: skip
    elif args.step == "dose":
        dose(args.out)
    elif args.step == "whitening":
        whitening(args.out, args.norms)
    elif args.step == "pooling":
        pooling(args.out, args.norms)
    else:
        report(args.out, args.norms)


if __name__ == "__main__":
    main()
