"""Layer discovery, LoadedModel, fingerprints and load_model errors on tiny random models."""

import time

import pytest
import torch
from torch import nn

from affectlens.errors import AffectlensError
from affectlens.models.layers import (
    find_final_norm,
    find_layers,
    find_unembedding,
    hidden_size_of,
    num_layers_of,
)
from affectlens.models.loading import LoadedModel, fingerprint_mismatch, load_model
from conftest import build_family_loaded, build_tiny_tokenizer

EXPECTED_PATHS = {
    "llama": ("model.layers", "model.norm"),
    "qwen2": ("model.layers", "model.norm"),
    "gemma3_text": ("model.layers", "model.norm"),
    "gpt2": ("transformer.h", "transformer.ln_f"),
}


def _get(root, path):
    for name in path.split("."):
        root = getattr(root, name)
    return root


def test_find_layers_norm_and_unembedding(family_model):
    model = family_model.model
    layer_path, norm_path = EXPECTED_PATHS[family_model.architecture]
    assert find_layers(model) is _get(model, layer_path)
    assert len(find_layers(model)) == 3
    assert find_final_norm(model) is _get(model, norm_path)
    assert find_unembedding(model) is model.lm_head
    assert family_model.layers is _get(model, layer_path)
    assert family_model.final_norm is _get(model, norm_path)
    assert family_model.unembedding is model.lm_head


def test_loaded_model_properties(family_model):
    assert family_model.num_layers == 3
    assert family_model.hidden_size == 64
    assert family_model.device == torch.device("cpu")
    assert family_model.architecture in EXPECTED_PATHS
    assert not family_model.model.training


class _Config:
    def __init__(self, **values):
        self.__dict__.update(values)


class _OddModel(nn.Module):
    """A model whose layers live at an unknown path, with a decoy list of another length."""

    def __init__(self, num_layers=3):
        super().__init__()
        self.config = _Config(num_layers=num_layers, d_model=8)
        self.decoy = nn.ModuleList([nn.Linear(8, 8) for _ in range(num_layers + 2)])
        self.backbone = nn.Module()
        self.backbone.blocks = nn.ModuleList([nn.Linear(8, 8) for _ in range(num_layers)])


def test_find_layers_falls_back_to_module_list_of_layer_count():
    model = _OddModel()
    assert find_layers(model) is model.backbone.blocks


def test_find_layers_without_candidates_raises():
    model = _OddModel()
    model.config.num_layers = 7
    with pytest.raises(AffectlensError, match="decoder layers"):
        find_layers(model)


def test_find_final_norm_missing_raises():
    with pytest.raises(AffectlensError, match="final norm"):
        find_final_norm(_OddModel())


def test_find_unembedding_missing_raises():
    model = _OddModel()
    model.get_output_embeddings = lambda: None
    with pytest.raises(AffectlensError, match="output embedding"):
        find_unembedding(model)


def test_config_sizes_read_from_nested_text_config():
    config = _Config(text_config=_Config(num_hidden_layers=5, hidden_size=32))
    assert num_layers_of(config) == 5
    assert hidden_size_of(config) == 32
    gpt2_style = _Config(n_layer=2, n_embd=16)
    assert num_layers_of(gpt2_style) == 2
    assert hidden_size_of(gpt2_style) == 16
    with pytest.raises(AffectlensError):
        num_layers_of(_Config())
    with pytest.raises(AffectlensError):
        hidden_size_of(_Config())


def test_loaded_model_sets_missing_pad_token_to_eos(emo_model):
    tokenizer = build_tiny_tokenizer()
    tokenizer.pad_token = None
    assert tokenizer.pad_token_id is None
    loaded = LoadedModel(model=emo_model.model, tokenizer=tokenizer, name="x")
    assert loaded.tokenizer.pad_token_id == tokenizer.eos_token_id


def test_fingerprint_contents(family_model):
    fp = family_model.fingerprint()
    assert fp["architecture"] == family_model.architecture
    assert fp["hidden_size"] == 64
    assert fp["num_layers"] == 3
    assert fp["vocab_size"] == len(family_model.tokenizer)
    assert len(fp["embedding_signature"]) == 16
    assert sum(fp["embedding_signature"]) > 0
    assert fingerprint_mismatch(fp, family_model.fingerprint()) is None


def test_fingerprint_mismatch_reasons():
    llama = build_family_loaded("llama", 3, seed=0).fingerprint()
    assert "architecture" in fingerprint_mismatch(
        llama, build_family_loaded("qwen2", 3).fingerprint()
    )
    assert "num_layers" in fingerprint_mismatch(
        llama, build_family_loaded("llama", 2).fingerprint()
    )
    other_seed = build_family_loaded("llama", 3, seed=1).fingerprint()
    assert "weights differ" in fingerprint_mismatch(llama, other_seed)


def test_fingerprint_tolerates_dtype_change_but_not_finetune():
    loaded = build_family_loaded("llama", 2)
    before = loaded.fingerprint()
    loaded.model.to(torch.bfloat16)
    assert fingerprint_mismatch(before, loaded.fingerprint()) is None
    loaded.model.to(torch.float32)
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight.mul_(1.2)
    assert "weights differ" in fingerprint_mismatch(before, loaded.fingerprint())


def test_load_model_unknown_id_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # huggingface_hub reads the variable once at import; make the running process see it too.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    started = time.perf_counter()
    with pytest.raises(AffectlensError, match="definitely-not-a-model"):
        load_model("definitely-not-a-model", device="cpu")
    assert time.perf_counter() - started < 20


def test_load_model_missing_gguf_raises(tmp_path):
    with pytest.raises(AffectlensError, match="GGUF file not found"):
        load_model(str(tmp_path / "nope.gguf"), device="cpu")


def test_load_model_from_local_folder(emo_model_dir, emo_model):
    loaded = load_model(str(emo_model_dir), device="cpu")
    assert loaded.num_layers == emo_model.num_layers
    assert loaded.model.dtype == torch.float32
    assert fingerprint_mismatch(emo_model.fingerprint(), loaded.fingerprint()) is None
