"""Experiments on a tiny random model with synthetic vectors: shapes, files, resume."""

from __future__ import annotations

import json

import pytest

from affectlens.cli import main
from affectlens.cli.progress_bars import render_progress
from affectlens.cli.vector_options import parse_sweep
from affectlens.errors import AffectlensError
from affectlens.experiments.dose import load_templates, run_dose, write_dose_results
from affectlens.experiments.reward_hacking import (
    ModelPolicy,
    detectable_effect,
    readout_emotions,
    summarise,
    sweep,
    write_report,
)
from affectlens.hacking.agent import RolloutStore
from affectlens.hacking.tasks import get_task
from affectlens.progress import use_progress
from conftest import build_emotion_vectors


def test_parse_sweep_expands_ranges_and_rejects_junk(emo_model):
    vectors = build_emotion_vectors(emo_model, emotions=["desperate", "calm"])
    assert parse_sweep("desperate=-0.1:0.1:5", vectors) == (
        "desperate",
        [-0.1, -0.05, 0.0, 0.05, 0.1],
    )
    assert parse_sweep("calm=0.2", vectors) == ("calm", [0.2])
    for junk in ("calm", "calm=0:1:0", "calm=0:1", "calm=x", "calm=-3:3:3"):
        with pytest.raises(AffectlensError):
            parse_sweep(junk, vectors)
    with pytest.raises(AffectlensError, match="did you mean"):
        parse_sweep("desprate=0.1", vectors)


def test_templates_file_is_validated(tmp_path):
    good = tmp_path / "t.yaml"
    good.write_text("coffee: 'I drank {X} cups of coffee.'\n")
    assert load_templates(good) == {"coffee": "I drank {X} cups of coffee."}
    bad = tmp_path / "bad.yaml"
    bad.write_text("coffee: 'no placeholder'\n")
    with pytest.raises(AffectlensError, match="X"):
        load_templates(bad)


def test_dose_writes_json_and_plot(emo_model, tmp_path):
    vectors = build_emotion_vectors(emo_model, emotions=["afraid", "calm", "happy"])
    templates = {"a": "I took {X} pills.", "b": "I drank {X} ml of water."}
    curves = run_dose(emo_model, vectors, templates, ["afraid", "calm"], units="raw")
    assert len(curves) == 4
    assert all(len(c.readouts) == 8 and -1 <= c.rho <= 1 for c in curves)
    # readouts really differ by dose: a constant curve would mean the prompt was ignored
    assert len(set(curves[0].readouts)) > 1
    paths = write_dose_results(curves, tmp_path, {"units": "raw"})
    data = json.loads(paths["json"].read_text())
    assert {c["template"] for c in data["curves"]} == {"a", "b"}
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(AffectlensError, match="did you mean"):
        run_dose(emo_model, vectors, templates, ["afriad"], units="raw")


def test_reward_hacking_sweep_runs_resumes_and_reports(emo_model, tmp_path):
    vectors = build_emotion_vectors(emo_model, emotions=["desperate", "calm", "frustrated"])
    task = get_task("list_sum_time_budget")
    store = RolloutStore(tmp_path / "rollouts.jsonl")
    options = {"max_new_tokens": 4, "units": "raw"}
    settings = [("desperate", -0.1), ("desperate", 0.1)]
    results = sweep(
        emo_model, vectors, [task], settings, rollouts=1, store=store, max_attempts=2,
        policy_options=options,
    )  # fmt: skip
    assert [len(r) for r in results.values()] == [1, 1]
    rollout = results[("desperate", 0.1)][0]
    assert 1 <= len(rollout.attempts) <= 2
    readouts = rollout.attempts[0].readouts
    assert set(readouts) == {"assistant_turn", "generated_mean"}
    assert set(readouts["assistant_turn"]) == {"desperate", "calm", "frustrated"}
    lines = store.path.read_text().splitlines()
    assert len(lines) == 2
    sweep(emo_model, vectors, [task], settings, rollouts=1, store=store, max_attempts=2,
          policy_options=options)  # fmt: skip
    assert len(store.path.read_text().splitlines()) == 2, "a rerun must skip finished rollouts"
    # alpha 0 is one unsteered condition, run once whichever emotion sweeps through it
    unsteered = [("desperate", 0.0), ("calm", 0.0)]
    shared = sweep(emo_model, vectors, [task], unsteered, rollouts=1, store=store, max_attempts=2,
                   policy_options=options)  # fmt: skip
    assert len(store.path.read_text().splitlines()) == 3
    assert shared[("desperate", 0.0)][0].steer == shared[("calm", 0.0)][0].steer == "none"
    summary = summarise(results)
    assert [row["n"] for row in summary["settings"]] == [1, 1]
    paths = write_report(summary, tmp_path / "report", "affectlens experiment reward-hacking")
    assert "cheat rate" in paths["html"].read_text()
    assert "not even to 100%" in paths["html"].read_text()  # n = 1 detects nothing
    strict = json.loads(paths["json"].read_text(), parse_constant=pytest.fail)
    assert strict["min_detectable_difference"] is None and strict["n_per_setting"] == 1
    with pytest.raises(AffectlensError):
        sweep(emo_model, vectors, [task], [("desperate", 3.0)], rollouts=1, store=store)


def test_policy_refuses_unknown_emotion(emo_model):
    vectors = build_emotion_vectors(emo_model, emotions=["desperate", "calm", "frustrated"])
    policy = ModelPolicy(emo_model, vectors, {"desprate": 0.1}, max_new_tokens=2)
    with pytest.raises(AffectlensError, match="did you mean"):
        policy.respond([[{"role": "user", "content": "hi"}]], seeds=[0])


def test_readout_emotions_skip_missing_defaults_and_check_extras(emo_model):
    vectors = build_emotion_vectors(emo_model, emotions=["calm", "afraid", "desperate"])
    assert readout_emotions(vectors) == ("desperate", "calm")
    assert readout_emotions(vectors, ["afraid", "calm"]) == ("desperate", "calm", "afraid")
    with pytest.raises(AffectlensError, match="did you mean"):
        readout_emotions(vectors, ["afriad"])


def test_policy_reads_the_emotions_asked_for(emo_model):
    vectors = build_emotion_vectors(emo_model, emotions=["calm", "afraid", "desperate"])
    conversation = [{"role": "user", "content": "hi"}]
    default = ModelPolicy(emo_model, vectors, {}, max_new_tokens=2, units="raw")
    [reply] = default.respond([conversation], seeds=[0])
    assert set(reply.readouts["assistant_turn"]) == {"desperate", "calm"}
    extra = ModelPolicy(emo_model, vectors, {}, ("afraid",), max_new_tokens=2, units="raw")
    [reply] = extra.respond([conversation], seeds=[0])
    assert set(reply.readouts["generated_mean"]) == {"afraid"}
    with pytest.raises(AffectlensError, match="did you mean"):
        ModelPolicy(emo_model, vectors, {}, ("afriad",))


def test_reward_hacking_command_refuses_unknown_readouts(emo_model, tmp_path, capsys):
    path = build_emotion_vectors(emo_model).save(tmp_path / "vectors.safetensors")
    argv = ["experiment", "reward-hacking", "--vectors", str(path), "--readouts", "afriad"]
    assert main([*argv, "--units", "raw", "--out", str(tmp_path / "out")]) != 0
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "did you mean afraid?" in error
    assert not (tmp_path / "out").exists()


def test_detectable_effect_names_n_and_the_difference():
    text = detectable_effect({"n_per_setting": 16, "min_detectable_difference": 0.4213})
    assert "n = 16" in text and "0.42" in text


def test_sweep_reports_progress_in_rollouts(emo_model, tmp_path, capsys):
    vectors = build_emotion_vectors(emo_model, emotions=["desperate", "calm", "frustrated"])
    store = RolloutStore(tmp_path / "rollouts.jsonl")
    task = get_task("list_sum_time_budget")
    with use_progress(render_progress):  # the CLI's renderer: the library itself prints nothing
        sweep(emo_model, vectors, [task], [("calm", 0.1)], rollouts=2, store=store,
              max_attempts=1, policy_options={"max_new_tokens": 2, "units": "raw"},
              show_progress=True)  # fmt: skip
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("rollouts: 100% (2/2 rollouts")
    assert lines[-1].endswith("calm+0.1: 0 hacks in 2)")
    settings = [("calm", 0.1), ("calm", 0.0), ("desperate", 0.0)]  # 2 stored, 2 new, 1 shared
    with use_progress(render_progress):
        sweep(emo_model, vectors, [task], settings, rollouts=2, store=store, max_attempts=1,
              policy_options={"max_new_tokens": 2, "units": "raw"}, show_progress=True)  # fmt: skip
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("rollouts: 100% (2/2 rollouts")
