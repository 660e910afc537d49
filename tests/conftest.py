"""Shared test fixtures."""

import itertools

import pytest

# --- Tiny offline models and synthetic emotion vectors (steer / monitor / calibration tests) ---

EMO_SPECIALS = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
EMO_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
EMO_EMOTIONS = ["calm", "desperate", "happy", "afraid", "angry"]


def build_tiny_tokenizer(chat_template: bool = True):
    """A byte-level BPE tokenizer with no merges (one token per byte), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(EMO_SPECIALS + sorted(ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": EMO_SPECIALS[3:]})
    if chat_template:
        tokenizer.chat_template = EMO_CHAT_TEMPLATE
    return tokenizer


def _tiny_config_sizes(tokenizer, num_layers: int) -> dict:
    """The sizes and special tokens every tiny Llama-style config shares (hidden size 64)."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        **_special_token_ids(tokenizer),
    }


def _special_token_ids(tokenizer) -> dict:
    """The tiny tokenizer's bos, eos and pad ids as config keywords."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def build_tiny_causal_lm(tokenizer, family: str = "llama", num_layers: int = 3, seed: int = 0):
    """A random Llama or Qwen2 causal LM with hidden size 64 and ``num_layers`` layers."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_class, model_class = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }[family]
    config = config_class(**_tiny_config_sizes(tokenizer, num_layers))
    torch.manual_seed(seed)
    return model_class(config).eval()


def build_loaded(family: str = "llama", num_layers: int = 3, seed: int = 0):
    """A ``LoadedModel`` around a tiny random model and the tiny tokenizer."""
    from affectlens.models.loading import LoadedModel

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_causal_lm(tokenizer, family, num_layers, seed)
    return LoadedModel(model=model, tokenizer=tokenizer, name=f"tiny-{family}")


def build_emotion_vectors(loaded, emotions=None, layers=None, seed: int = 0, model_id=None):
    """Synthetic ``EmotionVectors`` (random unit directions) that fit ``loaded``."""
    import torch

    from affectlens.vectors import EmotionVectors

    emotions = list(emotions or EMO_EMOTIONS)
    layers = list(range(loaded.num_layers)) if layers is None else list(layers)
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(len(emotions), len(layers), loaded.hidden_size, generator=generator)
    return EmotionVectors(
        emotions=emotions,
        layers=layers,
        vectors=raw / raw.norm(dim=-1, keepdim=True),
        raw_means=raw,
        residual_norms=torch.linspace(2.0, 4.0, len(layers)),
        neutral_pcs={},
        provenance={
            "model": {
                "id": model_id or loaded.name,
                "num_layers": loaded.num_layers,
                "fingerprint": loaded.fingerprint(),
            }
        },
    )


@pytest.fixture(scope="session")
def emo_model():
    """A tiny random Llama (3 layers) wrapped as a ``LoadedModel``; do not modify it."""
    return build_loaded("llama", 3)


@pytest.fixture
def emo_vectors(emo_model):
    """Fresh synthetic emotion vectors for ``emo_model`` at all of its layers."""
    return build_emotion_vectors(emo_model)


@pytest.fixture(scope="session")
def emo_model_dir(tmp_path_factory, emo_model):
    """``emo_model`` saved as a local folder that ``load_model`` can read."""
    folder = tmp_path_factory.mktemp("emo-model")
    emo_model.model.save_pretrained(folder)
    emo_model.tokenizer.save_pretrained(folder)
    return folder


# --- Tiny models of several families (layers / capture / extract / vectors tests) ---

CORE_FAMILIES = ["llama", "qwen2", "gemma3", "gpt2"]


def build_family_model(tokenizer, family: str, num_layers: int = 3, seed: int = 0):
    """A random causal LM of ``family`` (llama, qwen2, gemma3, gpt2) with hidden size 64."""
    import torch
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
    )

    if family in ("llama", "qwen2"):
        return build_tiny_causal_lm(tokenizer, family, num_layers, seed)
    if family == "gemma3":
        config = Gemma3TextConfig(
            **_tiny_config_sizes(tokenizer, num_layers), head_dim=16, sliding_window=16
        )
        model_class = Gemma3ForCausalLM
    elif family == "gpt2":
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=64,
            n_layer=num_layers,
            n_head=4,
            n_positions=512,
            **_special_token_ids(tokenizer),
        )
        model_class = GPT2LMHeadModel
    else:
        raise ValueError(family)
    torch.manual_seed(seed)
    return model_class(config).eval()


def build_family_loaded(family: str, num_layers: int = 3, seed: int = 0):
    """``LoadedModel`` around :func:`build_family_model` and the tiny byte-level tokenizer."""
    from affectlens.models.loading import LoadedModel

    tokenizer = build_tiny_tokenizer()
    model = build_family_model(tokenizer, family, num_layers, seed)
    return LoadedModel(model=model, tokenizer=tokenizer, name=f"tiny-{family}")


@pytest.fixture(scope="session", params=CORE_FAMILIES)
def family_model(request):
    """One tiny random model per family in ``CORE_FAMILIES`` (3 layers); do not modify it."""
    return build_family_loaded(request.param, 3)


# --- Fake offline packs: installed chunk packages (packs / CLI error tests) ---

_fake_chunk_tags = itertools.count()


@pytest.fixture
def fake_chunks(tmp_path, monkeypatch):
    """Three installed chunk packages with distinct module names; returns (modules, contents).

    Each is a package folder with ``data/partN.bin`` on a temporary ``sys.path`` entry; the
    contents differ per chunk, so their order shows in the assembled file.
    """
    import importlib

    root = tmp_path / "site"
    tag = next(_fake_chunk_tags)
    modules, contents = [], []
    for i in range(1, 4):
        name = f"affectlens_fake_chunk_{tag}_part{i}"
        data = root / name / "data"
        data.mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        blob = bytes([i]) * (1000 * i) + f"chunk{i}".encode()
        (data / f"part{i}.bin").write_bytes(blob)
        modules.append(name)
        contents.append(blob)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    return tuple(modules), contents


def fake_offline_pack(modules, sha256: str, name: str = "fake"):
    """An ``OfflinePack`` over ``modules`` (``part*.bin`` chunks) pinned to ``sha256``."""
    from affectlens.models.packs import OfflinePack

    return OfflinePack(
        name=name,
        description="a fake pack",
        extra="fake",
        chunk_modules=modules,
        chunk_glob="part*.bin",
        sha256=sha256,
        gguf_name="fake.gguf",
    )


# --- The real offline default model, for tests under tests/integration/ ---
#
# The model loads once per session (from the safetensors cache after the first conversion), and a
# small vectors artifact of the emotions the experiments read is extracted once at one layer, so
# the experiment tests exercise the real pipeline without a full 171-emotion extraction.

SMALL_EMOTIONS = [
    "afraid", "angry", "calm", "desperate", "frustrated", "happy", "sad", "proud",
    "disgusted", "bored", "grateful", "jealous", "lonely", "surprised", "guilty",
]  # fmt: skip
SMALL_LAYER = 10


def pytest_collection_modifyitems(items):
    """Everything here needs the offline pack: mark it, and skip it where it is missing."""
    from affectlens.models.packs import DEFAULT_PACK, PACKS

    skip = pytest.mark.skip(reason="offline default pack not installed (pip install .[offline])")
    installed = PACKS[DEFAULT_PACK].is_installed()
    for item in items:
        if "/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
            if not installed:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def default_model():
    """The default offline model (Qwen2.5-Coder-0.5B-Instruct), fp32 on CPU."""
    from affectlens.models import load_model
    from affectlens.models.packs import DEFAULT_PACK

    return load_model(DEFAULT_PACK)


@pytest.fixture(scope="session")
def small_vectors_path(default_model, tmp_path_factory):
    """Vectors for :data:`SMALL_EMOTIONS` at layer :data:`SMALL_LAYER`, calibrated, on disk."""
    from affectlens.calibration import calibrate
    from affectlens.corpus.stories import load_neutral, load_stories
    from affectlens.extract import (
        ExtractionSettings,
        calibration_sample,
        extract_vectors,
        neutral_texts,
    )

    wanted = set(SMALL_EMOTIONS)
    stories = [s for s in load_stories() if s.emotion in wanted]
    neutral = load_neutral()[:80]
    settings = ExtractionSettings(layers=(SMALL_LAYER,), batch_size=8)
    vectors = extract_vectors(default_model, stories, neutral, settings, show_progress=False)
    sample = [s.text for s in calibration_sample(stories)]
    calibrate(default_model, vectors, neutral_texts(default_model, neutral), sample)
    return vectors.save(tmp_path_factory.mktemp("vectors") / "small.safetensors")
