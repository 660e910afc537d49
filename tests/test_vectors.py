"""The EmotionVectors artifact: save/load, refusing foreign files and models, name lookup."""

import pytest
import torch
from safetensors.torch import save_file

from affectlens.errors import AffectlensError
from affectlens.vectors import FORMAT, EmotionVectors, model_provenance
from conftest import build_emotion_vectors, build_family_loaded


def _full_vectors(loaded):
    vectors = build_emotion_vectors(loaded, layers=[0, 2])
    vectors.neutral_pcs = {0: torch.eye(2, loaded.hidden_size), 2: torch.eye(3, loaded.hidden_size)}
    vectors.calibration = {"happy": {"mean": 0.5, "std": 2.0}}
    vectors.provenance["recommended_layer"] = 2
    return vectors


def test_save_load_round_trip(emo_model, tmp_path):
    original = _full_vectors(emo_model)
    path = original.save(tmp_path / "sub" / "vectors.safetensors")
    assert path == tmp_path / "sub" / "vectors.safetensors"
    loaded = EmotionVectors.load(path)
    assert loaded.emotions == original.emotions
    assert loaded.layers == original.layers
    assert torch.equal(loaded.vectors, original.vectors)
    assert torch.equal(loaded.raw_means, original.raw_means)
    assert torch.equal(loaded.residual_norms, original.residual_norms)
    assert sorted(loaded.neutral_pcs) == [0, 2]
    assert all(isinstance(k, int) for k in loaded.neutral_pcs)
    assert torch.equal(loaded.neutral_pcs[2], original.neutral_pcs[2])
    assert loaded.provenance == original.provenance
    assert loaded.calibration == original.calibration
    assert loaded.default_layer == 2
    loaded.check_fits(emo_model)


def test_save_is_atomic_and_overwrites(emo_model, tmp_path):
    path = tmp_path / "v.safetensors"
    first = build_emotion_vectors(emo_model, seed=1)
    first.save(path)
    second = build_emotion_vectors(emo_model, seed=2)
    second.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.safetensors"]
    assert torch.equal(EmotionVectors.load(path).vectors, second.vectors)


def test_load_missing_file(tmp_path):
    with pytest.raises(AffectlensError, match="not found"):
        EmotionVectors.load(tmp_path / "missing.safetensors")


def test_load_random_bytes_raises(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(AffectlensError, match="not a readable safetensors"):
        EmotionVectors.load(path)
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a tensor file\n")
    with pytest.raises(AffectlensError):
        EmotionVectors.load(text)


def test_load_foreign_safetensors_raises(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(AffectlensError, match="not an affectlens emotion-vectors file"):
        EmotionVectors.load(path)
    bare = tmp_path / "bare.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(bare))
    with pytest.raises(AffectlensError, match="not an affectlens"):
        EmotionVectors.load(bare)


def test_load_damaged_artifact_raises(tmp_path):
    path = tmp_path / "damaged.safetensors"
    save_file({"vectors": torch.zeros(1, 1, 4)}, str(path), metadata={"format": FORMAT})
    with pytest.raises(AffectlensError, match="damaged"):
        EmotionVectors.load(path)


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        (
            {
                "vectors": torch.zeros(1, 1, 4),
                "raw_means": torch.zeros(1, 1, 4),
                "residual_norms": torch.ones(1),
                "neutral_pcs.x": torch.zeros(1, 4),
            },
            "damaged",
        ),
        (
            {
                "vectors": torch.zeros(2, 1, 4),
                "raw_means": torch.zeros(2, 1, 4),
                "residual_norms": torch.ones(1),
            },
            "shape",
        ),
    ],
    ids=["bad-neutral-pc-name", "inconsistent-shapes"],
)
def test_load_malformed_artifact_raises_affectlens_error(tmp_path, tensors, match):
    path = tmp_path / "malformed.safetensors"
    metadata = {"format": FORMAT, "emotions": '["a"]', "layers": "[0]", "provenance": "{}"}
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(AffectlensError, match=match):
        EmotionVectors.load(path)


def test_shape_mismatch_refused_at_construction(emo_model):
    vectors = build_emotion_vectors(emo_model)
    with pytest.raises(AffectlensError, match="shape"):
        EmotionVectors(
            emotions=vectors.emotions[:-1],
            layers=vectors.layers,
            vectors=vectors.vectors,
            raw_means=vectors.raw_means,
            residual_norms=vectors.residual_norms,
            neutral_pcs={},
            provenance={},
        )


def test_check_fits_accepts_own_model_after_round_trip(emo_model, tmp_path):
    vectors = build_emotion_vectors(emo_model)
    vectors.provenance["model"] = model_provenance(emo_model)
    EmotionVectors.load(vectors.save(tmp_path / "v.safetensors")).check_fits(emo_model)


@pytest.mark.parametrize(
    ("family", "num_layers", "seed", "reason"),
    [
        ("gpt2", 3, 0, "architecture"),
        ("qwen2", 3, 0, "architecture"),
        ("llama", 2, 0, "num_layers"),
        ("llama", 3, 7, "weights differ"),
    ],
)
def test_check_fits_refuses_other_models(emo_model, family, num_layers, seed, reason):
    vectors = build_emotion_vectors(emo_model, model_id="tiny-llama-original")
    other = build_family_loaded(family, num_layers, seed)
    with pytest.raises(AffectlensError, match=reason) as info:
        vectors.check_fits(other)
    assert "tiny-llama-original" in str(info.value)


def test_check_fits_refuses_other_hidden_size(emo_model):
    vectors = build_emotion_vectors(emo_model)
    other = dict(emo_model.fingerprint(), hidden_size=128)
    vectors.provenance["model"]["fingerprint"] = other
    with pytest.raises(AffectlensError, match="hidden_size"):
        vectors.check_fits(emo_model)


def test_check_fits_without_fingerprint_raises(emo_model):
    vectors = build_emotion_vectors(emo_model)
    vectors.provenance = {}
    with pytest.raises(AffectlensError, match="no model fingerprint"):
        vectors.check_fits(emo_model)


def test_emotion_index_and_suggestions(emo_model):
    vectors = build_emotion_vectors(emo_model)
    assert vectors.emotion_index("happy") == vectors.emotions.index("happy")
    with pytest.raises(AffectlensError, match="did you mean happy"):
        vectors.emotion_index("hapy")
    with pytest.raises(AffectlensError, match="did you mean .*afraid"):
        vectors.emotion_index("afriad")
    with pytest.raises(AffectlensError, match="unknown emotion 'zzzz'") as info:
        vectors.emotion_index("zzzz")
    assert "did you mean" not in str(info.value)


def test_layer_lookup(emo_model):
    vectors = build_emotion_vectors(emo_model, layers=[0, 2])
    assert torch.equal(vectors.vector("calm", 2), vectors.vectors[0, 1])
    assert torch.equal(vectors.at_layer(0), vectors.vectors[:, 0])
    with pytest.raises(AffectlensError, match="layer 1 is not in the vectors file"):
        vectors.layer_index(1)
    assert vectors.hidden_size == emo_model.hidden_size


def test_default_layer_about_two_thirds_deep(emo_model):
    vectors = build_emotion_vectors(emo_model)
    assert vectors.default_layer == 2  # round(3 * 2 / 3)
    vectors.provenance["recommended_layer"] = 0
    assert vectors.default_layer == 0
    vectors.provenance["recommended_layer"] = 99  # not in the file: ignored
    assert vectors.default_layer == 2
