"""Calibration: neutral mean/std and story p99 per layer and emotion, and the units they define."""

from __future__ import annotations

import json

import pytest
import torch

from affectlens.calibration import calibrate, to_units
from affectlens.cli.progress_bars import render_progress
from affectlens.errors import AffectlensError
from affectlens.monitor import monitor
from affectlens.progress import use_progress

NEUTRAL = ["The meeting is at ten.", "Water boils at one hundred degrees.", "Turn left here."]
STORIES = ["She screamed and ran from the fire!", "He wept with joy at the news.", "Calm seas."]


def test_statistics_match_token_projections(emo_model, emo_vectors):
    calibration = calibrate(emo_model, emo_vectors, NEUTRAL, STORIES)
    assert emo_vectors.calibration is calibration
    assert json.loads(json.dumps(calibration)) == calibration
    layers, emotions = emo_vectors.layers, emo_vectors.emotions
    for name in ("neutral_mean", "neutral_std", "story_p99"):
        assert torch.tensor(calibration[name]).shape == (len(layers), len(emotions))
    raw = [
        monitor(emo_model, emo_vectors, text, layers=[1], units="raw").scores for text in NEUTRAL
    ]
    neutral = torch.cat(raw)
    torch.testing.assert_close(torch.tensor(calibration["neutral_mean"][1]), neutral.mean(0))
    torch.testing.assert_close(torch.tensor(calibration["neutral_std"][1]), neutral.std(0))
    assert calibration["neutral_tokens"] == neutral.shape[0]
    stories = torch.cat(
        [monitor(emo_model, emo_vectors, text, layers=[2], units="raw").scores for text in STORIES]
    )
    expected_p99 = torch.quantile(stories, 0.99, dim=0)
    torch.testing.assert_close(torch.tensor(calibration["story_p99"][2]), expected_p99)


def test_units_follow_the_calibration(emo_model, emo_vectors):
    calibration = calibrate(emo_model, emo_vectors, NEUTRAL, STORIES)
    text = "He wept with joy at the news."
    raw = monitor(emo_model, emo_vectors, text, layers=[1], units="raw").scores
    z = monitor(emo_model, emo_vectors, text, layers=[1], units="z")
    p99 = monitor(emo_model, emo_vectors, text, layers=[1], units="p99")
    mean = torch.tensor(calibration["neutral_mean"][1])
    std = torch.tensor(calibration["neutral_std"][1])
    top = torch.tensor(calibration["story_p99"][1])
    assert z.units == "z" and p99.units == "p99"
    torch.testing.assert_close(z.scores, (raw - mean) / std)
    torch.testing.assert_close(p99.scores, (raw - mean) / (top - mean))


def test_p99_of_stories_maps_to_one(emo_model, emo_vectors):
    calibration = calibrate(emo_model, emo_vectors, NEUTRAL, STORIES)
    top = torch.tensor(calibration["story_p99"])[:, None, :]
    scaled = to_units(top, emo_vectors, emo_vectors.layers, "p99")
    torch.testing.assert_close(scaled, torch.ones_like(scaled))


def test_calibration_survives_save_and_load(emo_model, emo_vectors, tmp_path):
    calibrate(emo_model, emo_vectors, NEUTRAL, STORIES)
    from affectlens.vectors import EmotionVectors

    loaded = EmotionVectors.load(emo_vectors.save(tmp_path / "v.safetensors"))
    text = "Turn left here."
    torch.testing.assert_close(
        monitor(emo_model, loaded, text, units="z").scores,
        monitor(emo_model, emo_vectors, text, units="z").scores,
    )


def test_missing_or_stale_calibration_is_explained(emo_model, emo_vectors):
    with pytest.raises(AffectlensError, match="need calibration"):
        monitor(emo_model, emo_vectors, "hi", units="p99")
    calibrate(emo_model, emo_vectors, NEUTRAL, STORIES)
    emo_vectors.calibration["layers"] = [0]
    with pytest.raises(AffectlensError, match="lacks layer"):
        monitor(emo_model, emo_vectors, "hi", layers=[2], units="z")
    with pytest.raises(AffectlensError, match="at least one"):
        calibrate(emo_model, emo_vectors, [], STORIES)


def test_progress_counts_every_text(emo_model, emo_vectors, capsys):
    calibrate(emo_model, emo_vectors, NEUTRAL, STORIES, show_progress=True)
    assert capsys.readouterr().err == ""  # a library prints nothing unless the caller renders
    with use_progress(render_progress):
        calibrate(emo_model, emo_vectors, NEUTRAL, STORIES, show_progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    total = len(NEUTRAL) + len(STORIES)
    assert lines[-1].startswith(f"calibration: 100% ({total}/{total} texts")
    calibrate(emo_model, emo_vectors, NEUTRAL, STORIES)
    assert capsys.readouterr().err == ""
