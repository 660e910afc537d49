"""Every command that loads a model honours ``--model``, ``--device`` and ``--dtype``."""

from __future__ import annotations

import pytest
import torch

from affectlens.calibration import calibrate
from affectlens.cli import main
from affectlens.errors import AffectlensError
from affectlens.models import loading
from conftest import build_emotion_vectors

COMMANDS = [
    ["experiment", "dose"],
    ["experiment", "reward-hacking"],
    ["validate"],
    ["calibrate"],
    ["summary"],
    ["monitor", "--text", "hi"],
    ["generate", "--prompt", "hi"],
    ["chat"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_model_options_reach_the_loader(command, emo_model, tmp_path, monkeypatch, capsys):
    vectors = build_emotion_vectors(emo_model, model_id="recorded-model")
    calibrate(emo_model, vectors, ["A plain sentence.", "Another one."], ["Joy!", "Fear."])
    path = vectors.save(tmp_path / "vectors.safetensors")
    calls = []

    def fake_load_model(spec, **options):
        calls.append((spec, options))
        raise AffectlensError("loader reached")

    monkeypatch.setattr(loading, "load_model", fake_load_model)
    argv = [*command, "--vectors", str(path), "--device", "cpu", "--dtype", "bfloat16"]
    assert main(argv) != 0
    assert "loader reached" in capsys.readouterr().err
    assert calls == [("recorded-model", {"dtype": torch.bfloat16, "device": "cpu"})]
    calls.clear()
    assert main([*argv, "--model", "other"]) != 0
    assert calls[0][0] == "other"
