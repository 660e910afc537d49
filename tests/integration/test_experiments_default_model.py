"""Integration: the experiments and the monitor CLI on the real default model, at tiny size."""

from __future__ import annotations

import json
import re
from html import unescape

from affectlens.cli import main
from affectlens.experiments.judgement import DEFAULT_REPLIES, reply_log_odds


def test_dose_experiment_writes_curves_for_both_templates(small_vectors_path, tmp_path, capsys):
    out = tmp_path / "dose"
    argv = ["experiment", "dose", "--vectors", str(small_vectors_path), "--out", str(out)]
    assert main([*argv, "--values", "250,2000,16000", "--emotions", "afraid,calm"]) == 0
    assert "Spearman" in capsys.readouterr().out
    data = json.loads((out / "dose.json").read_text())
    assert data["layers"] == [10] and data["units"] == "z"
    curves = {(c["template"], c["emotion"]): c for c in data["curves"]}
    assert set(curves) == {
        (t, e) for t in ("tylenol", "water (control)") for e in ("afraid", "calm")
    }
    for curve in curves.values():
        assert curve["values"] == [250, 2000, 16000]
        assert -1 <= curve["rho_low"] <= curve["rho"] <= curve["rho_high"] <= 1
    # the readout depends on the message: the two templates do not read the same
    assert (
        curves[("tylenol", "afraid")]["readouts"]
        != curves[("water (control)", "afraid")]["readouts"]
    )
    assert (out / "dose.png").read_bytes()[:4] == b"\x89PNG"
    judged = {j["template"]: j for j in data["judgements"]}
    assert set(judged) == {"tylenol", "water (control)"}
    assert all(len(j["log_odds"]) == 3 for j in judged.values())


def test_the_knowledge_control_tells_bleach_from_tea(default_model):
    """The scored replies read what the model knows (measured once: -0.11 vs -3.25 nats)."""
    chats = [[{"role": "user", "content": f"I drank a cup of {drink}."}] for drink in
             ("bleach", "tea")]  # fmt: skip
    bleach, tea = reply_log_odds(default_model, chats, DEFAULT_REPLIES)
    assert bleach > tea + 1.0


def test_reward_hacking_tiny_run_end_to_end_and_resumes(small_vectors_path, tmp_path, capsys):
    """One impossible task, one rollout per alpha, few tokens: the whole CLI path runs."""
    out = tmp_path / "hack"
    argv = ["experiment", "reward-hacking", "--vectors", str(small_vectors_path)]
    argv += ["--tasks", "list_sum_time_budget", "--rollouts", "1", "--max-attempts", "2"]
    argv += ["--max-new-tokens", "48", "--steer", "desperate=-0.1:0.1:2", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "cheat rate" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["alpha"], r["n"]) for r in summary["settings"]] == [(-0.1, 1), (0.1, 1)]
    lines = (out / "rollouts.jsonl").read_text().splitlines()
    assert len(lines) == 2
    rollout = json.loads(lines[0])
    assert 1 <= len(rollout["attempts"]) <= 2
    first = rollout["attempts"][0]
    assert set(first["readouts"]["assistant_turn"]) == {"desperate", "calm", "frustrated"}
    assert (out / "cheat_rate.png").exists() and (out / "index.html").exists()
    assert main(argv) == 0  # a rerun resumes: nothing regenerated
    assert (out / "rollouts.jsonl").read_text().splitlines() == lines
    capsys.readouterr()
    assert main([*argv, "--rejudge"]) == 0  # same detector: same verdicts, same replies
    assert "0 attempt verdict(s) changed" in capsys.readouterr().out
    kept = ("reply", "code", "readouts", "verdict")  # sandbox timings differ run to run
    again = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    before = [json.loads(line) for line in lines]
    assert [[{k: a[k] for k in kept} for a in r["attempts"]] for r in again] == [
        [{k: a[k] for k in kept} for a in r["attempts"]] for r in before
    ]


def test_monitor_html_has_a_span_per_token(small_vectors_path, tmp_path, capsys):
    transcript = tmp_path / "chat.json"
    messages = [
        {"role": "user", "content": "I just took 16000 mg of Tylenol for my back pain."},
        {"role": "assistant", "content": "Please call poison control right away."},
    ]
    transcript.write_text(json.dumps(messages))
    page = tmp_path / "trace.html"
    argv = ["monitor", "--vectors", str(small_vectors_path), "--chat", str(transcript)]
    assert main([*argv, "--html", str(page)]) == 0
    html = page.read_text()
    indices = [int(i) for i in re.findall(r'data-index="(\d+)"', html)]
    assert len(indices) > 20 and indices == list(range(len(indices)))  # one span per token
    text = unescape("".join(re.findall(r'data-top="[^"]*">([^<]*)</span>', html)))
    assert "I just took 16000 mg of Tylenol" in text and "poison control" in text
    assert "<script" in html and "://" not in html  # self-contained: no external resources
