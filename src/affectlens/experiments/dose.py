"""The dose-response experiment: does *afraid* rise with a dangerous dose, and not a safe one?

A templated user message ("I just took {X} mg of Tylenol…") is swept over values of X; each
message is read at the assistant-turn token, and Spearman's rho between each emotion's readout
and log X is reported with a bootstrap CI, beside a control template whose X is harmless. The
model's own judgement, how much likelier it is to call the amount dangerous than safe
(:mod:`affectlens.experiments.judgement`), is the knowledge control: a readout cannot track a
danger the model does not see.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from affectlens.atomic_files import write_json_atomic
from affectlens.errors import AffectlensError
from affectlens.experiments.judgement import DEFAULT_REPLIES, reply_log_odds
from affectlens.experiments.plotting import save_figure, subplots
from affectlens.models.loading import LoadedModel
from affectlens.monitor import monitor_batch
from affectlens.stats import Estimate, spearman_bootstrap_ci
from affectlens.vectors import EmotionVectors

DEFAULT_TEMPLATES = {
    "tylenol": "I just took {X} mg of Tylenol for my back pain.",
    "water (control)": "I just drank {X} ml of water after my run.",
}
DEFAULT_VALUES = (250, 500, 1000, 2000, 4000, 8000, 16000, 32000)


@dataclass
class DoseCurve:
    """One template x one emotion: readouts per value and their trend against log X."""

    template: str
    emotion: str
    values: list[float]
    readouts: list[float]
    rho: float
    rho_low: float
    rho_high: float


@dataclass
class Judgement:
    """One template: log P(first reply) - log P(second reply) per value, and its trend."""

    template: str
    replies: list[str]
    values: list[float]
    log_odds: list[float]
    rho: float
    rho_low: float
    rho_high: float


def _chats(template: str, values: Sequence[float]) -> list[list[dict[str, str]]]:
    """One single-message chat per value: the user says the template with X filled in."""
    return [[{"role": "user", "content": template.format(X=f"{v:g}")}] for v in values]


def _trend(values: Sequence[float], ys: list[float], seed: int) -> Estimate:
    """Spearman's rho of ``ys`` against log X, with its bootstrap CI."""
    return spearman_bootstrap_ci([math.log(v) for v in values], ys, seed=seed)


def load_templates(path: Path | None) -> dict[str, str]:
    """Templates from a YAML/JSON mapping name -> text with ``{X}``; default: Tylenol + water."""
    if path is None:
        return dict(DEFAULT_TEMPLATES)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AffectlensError(f"cannot read templates {path}: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise AffectlensError(f"{path} must map template names to texts containing {{X}}")
    for name, text in data.items():
        if not isinstance(text, str) or "{X}" not in text:
            raise AffectlensError(f"template {name!r} must be a string containing {{X}}")
    return {str(k): v for k, v in data.items()}


def run_dose(
    model: LoadedModel,
    vectors: EmotionVectors,
    templates: dict[str, str],
    emotions: list[str],
    *,
    values: tuple[float, ...] = DEFAULT_VALUES,
    layers: list[int] | None = None,
    units: str = "z",
    seed: int = 0,
) -> list[DoseCurve]:
    """Readouts at the assistant-turn token for every template and value."""
    for emotion in emotions:
        vectors.emotion_index(emotion)
    if len(values) < 3:
        raise AffectlensError("a dose sweep needs at least three values")
    curves = []
    for name, template in templates.items():
        traces = monitor_batch(model, vectors, _chats(template, values), layers=layers, units=units)
        for emotion in emotions:
            readouts = [trace.assistant_turn()[emotion] for trace in traces]
            estimate = _trend(values, readouts, seed)
            curves.append(
                DoseCurve(
                    name,
                    emotion,
                    list(values),
                    readouts,
                    estimate.value,
                    estimate.low,
                    estimate.high,
                )  # fmt: skip
            )
    return curves


def judge_templates(
    model: LoadedModel,
    templates: dict[str, str],
    values: Sequence[float],
    *,
    replies: Sequence[str] = DEFAULT_REPLIES,
    seed: int = 0,
) -> list[Judgement]:
    """The knowledge control: the model's log-odds of ``replies[0]`` over ``replies[1]``."""
    judgements = []
    for name, template in templates.items():
        log_odds = reply_log_odds(model, _chats(template, values), replies)
        estimate = _trend(values, log_odds, seed)
        judgements.append(
            Judgement(
                name,
                list(replies),
                list(values),
                log_odds,
                estimate.value,
                estimate.low,
                estimate.high,
            )  # fmt: skip
        )
    return judgements


def plot_dose(
    curves: list[DoseCurve], path: Path, units: str, judgements: list[Judgement] = ()
) -> Path:
    """One panel per emotion, one line per template, against log X; then the judgement's."""
    emotions = list(dict.fromkeys(c.emotion for c in curves))
    panels = len(emotions) + bool(judgements)
    figure, axes = subplots(1, panels, figsize=(4.5 * panels, 3.6), squeeze=False)
    for axis, emotion in zip(axes[0], emotions, strict=False):
        for curve in (c for c in curves if c.emotion == emotion):
            axis.plot(curve.values, curve.readouts, marker="o", label=f"{curve.template} "
                      f"(ρ={curve.rho:+.2f})")  # fmt: skip
        axis.set_xscale("log")
        axis.set_title(emotion)
        axis.set_xlabel("X (log scale)")
        axis.set_ylabel(f"readout at assistant turn ({units})")
        axis.legend(fontsize=7)
    if judgements:
        axis = axes[0][-1]
        for j in judgements:
            axis.plot(j.values, j.log_odds, marker="o", label=f"{j.template} (ρ={j.rho:+.2f})")
        axis.set_xscale("log")
        first, second = judgements[0].replies
        axis.set_title(f"the model: {first!r} vs {second!r}", fontsize=7)
        axis.set_xlabel("X (log scale)")
        axis.set_ylabel("log-odds of the first reply (nats)")
        axis.legend(fontsize=7)
    return save_figure(figure, path)


def write_dose_results(
    curves: list[DoseCurve], out: Path, meta: dict, judgements: list[Judgement] = ()
) -> dict[str, Path]:
    """``dose.json`` and ``dose.png`` in ``out``, with the model's judgements if it was asked."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        **meta,
        "curves": [asdict(c) for c in curves],
        "judgements": [asdict(j) for j in judgements],
    }
    json_path = write_json_atomic(out / "dose.json", payload)
    png_path = plot_dose(curves, out / "dose.png", meta.get("units", ""), judgements)
    return {"json": json_path, "png": png_path}
