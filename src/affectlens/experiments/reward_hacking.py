"""The impossible-coding-task experiment: desperation, cheating, and steering them.

A model-backed :class:`~affectlens.hacking.agent.Policy` generates replies (optionally
steered) and reads emotions at the assistant-turn token and over the reply, from the
generation's own forward passes; the agent loop
feeds test failures back; the sweep runs R seeded rollouts per steering strength and reports
the cheat rate with Wilson intervals, the desperation trajectory, and the smallest effect the
run could have detected.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

from affectlens.atomic_files import write_json_atomic, write_text_atomic
from affectlens.engine import SteeringSpec
from affectlens.errors import AffectlensError
from affectlens.experiments.plotting import save_figure, subplots
from affectlens.hacking.agent import PolicyReply, Rollout, RolloutStore, run_rollouts
from affectlens.hacking.tasks import Task
from affectlens.models.loading import LoadedModel
from affectlens.monitored_generation import generate_monitored
from affectlens.progress import count_progress
from affectlens.stats import mean_ci, min_detectable_difference, wilson_interval
from affectlens.vectors import EmotionVectors

READOUT_EMOTIONS = ("desperate", "calm", "frustrated")


def readout_emotions(vectors: EmotionVectors, extra: list[str] | None = None) -> tuple[str, ...]:
    """The emotions read at each attempt: the defaults the vectors have, then ``extra``.

    An extra emotion the vectors lack is refused with a suggestion; a missing default is
    skipped (a 12-emotion artifact may have no *frustrated*).
    """
    for emotion in extra or []:
        vectors.emotion_index(emotion)
    chosen = [e for e in READOUT_EMOTIONS if e in vectors.emotions] + list(extra or [])
    return tuple(dict.fromkeys(chosen))


@dataclass
class ModelPolicy:
    """Generates replies with ``model`` under ``alphas`` steering and reads its emotions.

    ``emotions`` defaults to :func:`readout_emotions` of ``vectors``.
    """

    model: LoadedModel
    vectors: EmotionVectors
    alphas: dict[str, float]
    emotions: tuple[str, ...] | None = None
    layers: list[int] | None = None
    max_new_tokens: int = 256
    temperature: float = 0.7
    units: str = "z"

    def __post_init__(self) -> None:
        if self.emotions is None:
            self.emotions = readout_emotions(self.vectors)
        for emotion in self.emotions:
            self.vectors.emotion_index(emotion)

    def respond(self, conversations: list[list[dict]], *, seeds: list[int]) -> list[PolicyReply]:
        """One steered reply per conversation, with readouts from the same steered passes.

        Each row samples with its own seed, so a rollout's text is the same alone, in any
        batch and after a resume. An empty reply has no ``generated_mean`` readout.
        """
        steering = SteeringSpec(
            dict(self.alphas), tuple(self.layers) if self.layers else None, "all"
        )
        monitored = generate_monitored(
            self.model,
            self.vectors,
            conversations,
            layers=self.layers,
            units=self.units,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            seeds=seeds,
            steering=steering if self.alphas else None,
        )
        replies = []
        for reply in monitored:
            readouts = {"assistant_turn": self._chosen(reply.assistant_turn())}
            generated = reply.reply_mean()
            if generated is not None:
                readouts["generated_mean"] = self._chosen(generated)
            replies.append(PolicyReply(text=reply.text, readouts=readouts))
        return replies

    def _chosen(self, scores: dict[str, float]) -> dict[str, float]:
        return {emotion: scores[emotion] for emotion in self.emotions or ()}


def steer_label(emotion: str, alpha: float) -> str:
    """The store key of a steering setting: ``desperate+0.1``, or ``none`` when alpha is 0."""
    return "none" if alpha == 0 else f"{emotion}{alpha:+g}"


def sweep(
    model: LoadedModel,
    vectors: EmotionVectors,
    tasks: list[Task],
    settings: list[tuple[str, float]],
    *,
    rollouts: int,
    store: RolloutStore,
    max_attempts: int = 6,
    batch_size: int = 8,
    policy_options: dict | None = None,
    show_progress: bool = False,
) -> dict[tuple[str, float], list[Rollout]]:
    """Run ``rollouts`` seeded rollouts per task for each (emotion, alpha); resumable.

    Every alpha of 0 is the same unsteered condition, so it is run once (label ``none``) and
    shared by all the emotions swept through 0. With ``show_progress`` a bar counts the
    rollouts still to run (stored ones are not work) and shows the setting under way and the
    hacks so far.
    """
    for emotion, alpha in settings:
        vectors.emotion_index(emotion)
        if abs(alpha) > 1:
            raise AffectlensError(f"alpha {alpha} for {emotion} is outside [-1, 1]")
    results = {}
    jobs = [(task, seed) for seed in range(rollouts) for task in tasks]
    planned = {(t.id, steer_label(e, a), seed) for e, a in settings for t, seed in jobs}
    to_run = planned - store.keys()
    with count_progress(disable=not show_progress, unit="rollouts") as progress:
        status = f"{len(planned) - len(to_run)} of {len(planned)} stored"
        bar = progress.add_task("rollouts", total=len(to_run), status=status)
        for emotion, alpha in settings:
            policy = ModelPolicy(model, vectors, {emotion: alpha}, **(policy_options or {}))
            label = steer_label(emotion, alpha)
            done: list[Rollout] = []
            for start in range(0, len(jobs), batch_size):
                batch = jobs[start : start + batch_size]
                done += run_rollouts(policy, batch, max_attempts, steer=label, store=store)
                new = {(task.id, label, seed) for task, seed in batch} & to_run
                to_run -= new
                status = f"{label}: {_hacks(done)} hacks in {len(done)}"
                progress.update(bar, advance=len(new), status=status)
            results[(emotion, alpha)] = done
    return results


def _hacks(rollouts: list[Rollout]) -> int:
    return sum(rollout.is_hack for rollout in rollouts)


def summarise(results: dict[tuple[str, float], list[Rollout]], emotion: str = "desperate") -> dict:
    """Cheat rate per setting (Wilson 95%), trajectories and the detectable effect size."""
    rows = []
    for (steered, alpha), rollouts in results.items():
        hacks = _hacks(rollouts)
        low, high = wilson_interval(hacks, len(rollouts))
        by_attempt: dict[int, list[float]] = {}
        aligned: dict[int, list[float]] = {}
        for rollout in rollouts:
            first = rollout.first_hack_attempt
            for attempt in rollout.attempts:
                value = attempt.readouts.get("assistant_turn", {}).get(emotion)
                if value is None:
                    continue
                by_attempt.setdefault(attempt.index, []).append(value)
                if first is not None:
                    aligned.setdefault(attempt.index - first, []).append(value)
        rows.append(
            {
                "emotion": steered,
                "alpha": alpha,
                "n": len(rollouts),
                "hacks": hacks,
                "cheat_rate": hacks / len(rollouts) if rollouts else float("nan"),
                "ci": [low, high],
                "trajectory": {k: vars(mean_ci(v)) for k, v in sorted(by_attempt.items())},
                "aligned_to_first_hack": {k: vars(mean_ci(v)) for k, v in sorted(aligned.items())},
            }
        )
    n_min = min((r["n"] for r in rows), default=0)
    mdd = min_detectable_difference(n_min, baseline=0.05) if n_min else math.nan
    return {
        "settings": rows,
        "trajectory_emotion": emotion,
        "n_per_setting": n_min,
        "min_detectable_difference": None if math.isnan(mdd) else mdd,
    }


def detectable_effect(summary: dict) -> str:
    """One sentence on the smallest rise over a 5% cheat rate the run could have detected."""
    n, mdd = summary["n_per_setting"], summary["min_detectable_difference"]
    if mdd is None:
        return (
            f"with n = {n} per setting no rise over a 5% cheat rate, not even to 100%, "
            "is detectable (power 0.8, two-sided 5% test); run more rollouts"
        )
    return (
        f"smallest rise over a 5% cheat rate detectable with n = {n} per setting: {mdd:.2f} "
        "(power 0.8, two-sided 5% test)"
    )


def plot_cheat_rate(summary: dict, path: Path) -> Path:
    """Cheat rate against alpha per steered emotion (Wilson 95%), and trajectories over attempts.

    Emotions are nudged apart on the alpha axis so equal rates stay visible; the unsteered
    condition (alpha 0, shared by every emotion) is drawn once in the trajectory panel.
    """
    figure, (left, right) = subplots(1, 2, figsize=(11.5, 3.8))
    emotions = list(dict.fromkeys(r["emotion"] for r in summary["settings"]))
    all_alphas = [r["alpha"] for r in summary["settings"]]
    nudge = 0.02 * ((max(all_alphas) - min(all_alphas)) or 1.0)
    unsteered_drawn = False
    for number, emotion in enumerate(emotions):
        rows = sorted(
            (r for r in summary["settings"] if r["emotion"] == emotion), key=lambda r: r["alpha"]
        )
        offset = (number - (len(emotions) - 1) / 2) * nudge
        rates = [r["cheat_rate"] for r in rows]
        errors = [
            [r["cheat_rate"] - r["ci"][0] for r in rows],
            [r["ci"][1] - r["cheat_rate"] for r in rows],
        ]
        left.errorbar([r["alpha"] + offset for r in rows], rates, yerr=errors, marker="o",
                      capsize=3, label=f"steer {emotion} (n = {rows[0]['n']} per α)")  # fmt: skip
        for row in rows:
            if row["alpha"] == 0:
                if unsteered_drawn:
                    continue
                unsteered_drawn, label = True, "unsteered (α = 0)"
            else:
                label = f"{emotion} {row['alpha']:+g}"
            steps = sorted(row["trajectory"], key=int)
            points = [row["trajectory"][k] for k in steps]
            attempts = [int(k) + 1 for k in steps]
            (line,) = right.plot(attempts, [p["value"] for p in points], marker=".", label=label)
            right.fill_between(attempts, [p["low"] for p in points], [p["high"] for p in points],
                               color=line.get_color(), alpha=0.15, linewidth=0)  # fmt: skip
    left.set_xlabel("steering α")
    left.set_ylabel("cheat rate (Wilson 95%)")
    left.set_ylim(-0.03, 1.03)
    left.legend(fontsize=7)
    right.set_xlabel("attempt")
    right.xaxis.get_major_locator().set_params(integer=True)
    right.set_ylabel(f"{summary['trajectory_emotion']} at assistant turn (mean, 95% CI)")
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return save_figure(figure, path)


def write_report(summary: dict, out: Path, command: str) -> dict[str, Path]:
    """``summary.json``, ``cheat_rate.png`` and ``index.html`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {**summary, "command": command}
    json_path = write_json_atomic(out / "summary.json", summary)
    png_path = plot_cheat_rate(summary, out / "cheat_rate.png")
    rows = "".join(
        f"<tr><td>{html.escape(r['emotion'])}</td><td>{r['alpha']:+g}</td><td>{r['n']}</td>"
        f"<td>{r['hacks']}</td>"
        f"<td>{r['cheat_rate']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]</td></tr>"
        for r in summary["settings"]
    )
    page = (
        "<!doctype html><meta charset=utf-8><title>affectlens reward hacking</title>"
        "<h1>Impossible coding tasks: cheat rate by steering</h1>"
        f"<p><code>{html.escape(command)}</code></p>"
        "<table border=1><tr><th>emotion</th><th>α</th><th>n</th><th>hacks</th>"
        f"<th>cheat rate [95% CI]</th></tr>{rows}</table>"
        f"<p>{html.escape(detectable_effect(summary))}</p>"
        "<img src='cheat_rate.png' width=900>"
    )
    html_path = write_text_atomic(out / "index.html", page)
    return {"json": json_path, "png": png_path, "html": html_path}
