"""``load_model``: one entry point for hub ids, local folders, GGUF files and offline packs.

GGUF files are dequantized once by transformers and cached as safetensors, so later loads take
about a second instead of ~45 s.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import shutil
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import torch
from safetensors.torch import save_file
from torch import nn

from affectlens.errors import AffectlensError
from affectlens.models.layers import (
    find_final_norm,
    find_layers,
    find_unembedding,
    hidden_size_of,
    num_layers_of,
)
from affectlens.models.packs import PACKS, assemble, cache_root, sha256_file

logger = logging.getLogger(__name__)

SIGNATURE_ROWS = 16
SIGNATURE_RTOL = 0.02
HUB_PROBE_TIMEOUT_S = 2.0


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer and the parts affectlens hooks into."""

    model: nn.Module
    tokenizer: object
    name: str
    layers: nn.ModuleList = field(init=False)

    def __post_init__(self) -> None:
        self.model.eval()
        self.layers = find_layers(self.model)
        if getattr(self.tokenizer, "pad_token_id", None) is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @property
    def num_layers(self) -> int:
        """Number of decoder layers."""
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        """Width of the residual stream."""
        return hidden_size_of(self.model.config)

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.model.parameters()).device

    @property
    def architecture(self) -> str:
        """The config's ``model_type`` (e.g. ``qwen2``)."""
        return str(self.model.config.model_type)

    @property
    def final_norm(self) -> nn.Module:
        """The norm before the unembedding (for the logit lens)."""
        return find_final_norm(self.model)

    @property
    def unembedding(self) -> nn.Module:
        """The vocabulary projection (for the logit lens)."""
        return find_unembedding(self.model)

    def fingerprint(self) -> dict:
        """What a vectors artifact records to recognise this model later.

        Architecture, sizes and the norms of a few embedding rows: the norms tell fine-tunes and
        unrelated checkpoints of one architecture apart while tolerating a dtype change.
        """
        embedding = self.model.get_input_embeddings().weight
        rows = torch.linspace(0, embedding.shape[0] - 1, SIGNATURE_ROWS).long()
        signature = embedding[rows.to(embedding.device)].float().norm(dim=-1).tolist()
        return {
            "architecture": self.architecture,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "vocab_size": int(embedding.shape[0]),
            "embedding_signature": [round(v, 6) for v in signature],
        }


def fingerprint_mismatch(expected: dict, actual: dict) -> str | None:
    """Why two fingerprints differ, or ``None`` when they describe the same model."""
    for key in ("architecture", "hidden_size", "num_layers", "vocab_size"):
        if expected.get(key) != actual.get(key):
            return f"{key} is {actual.get(key)!r}, the vectors need {expected.get(key)!r}"
    want = torch.tensor(expected["embedding_signature"])
    have = torch.tensor(actual["embedding_signature"])
    if want.shape != have.shape or not torch.allclose(want, have, rtol=SIGNATURE_RTOL):
        return "its weights differ (embedding fingerprint mismatch)"
    return None


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` (default: CUDA when available, else CPU), refused at once if unusable here."""
    if device is None:
        return default_device()
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise AffectlensError(
            f"unknown device {str(device)!r}: use cpu, cuda, cuda:N or mps"
        ) from None
    if chosen.type == "cpu":
        return chosen
    backend = getattr(torch, chosen.type, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        why = (
            "this torch build has no CUDA"
            if chosen.type == "cuda" and torch.version.cuda is None
            else f"no {chosen.type} device is available"
        )
        raise AffectlensError(f"cannot use device {str(device)!r}: {why}; use --device cpu")
    count = getattr(backend, "device_count", None)
    if chosen.index is not None and count is not None and chosen.index >= count():
        raise AffectlensError(
            f"cannot use device {str(device)!r}: only {count()} {chosen.type} device(s) here"
        )
    return chosen


def _hub_offline() -> bool:
    """Whether the hub is switched off (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``)."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(
        flag.strip().upper() in {"1", "ON", "YES", "TRUE"} for flag in flags
    )


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the hub's host resolves and accepts a TCP connection within ``timeout_s``.

    Run in a daemon thread so that a slow resolver cannot hang the caller: without a route,
    the hub client would otherwise retry for most of a minute before failing.
    """
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


def _cached_on_hub(repo_id: str) -> bool:
    """Whether the hub cache already holds ``repo_id``'s config (loadable without network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id at all
        return False


def _check_hub_id(spec: str) -> bool:
    """Refuse at once a name that is no local model when the hub cannot be reached.

    Returns whether the model must be read from the local hub cache only.
    """
    packs = ", ".join(PACKS)
    if _cached_on_hub(spec):
        return _hub_offline() or not hub_reachable()
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:  # a path, not org/name
        raise AffectlensError(
            f"cannot load model {spec!r}: no such file or folder (offline packs: {packs})"
        )
    if _hub_offline():
        why = "the hub is switched off (HF_HUB_OFFLINE)"
    elif not hub_reachable():
        why = "the hub cannot be reached (no network)"
    else:
        return False
    close = difflib.get_close_matches(spec, list(PACKS), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise AffectlensError(
        f"cannot load model {spec!r}: it is not an offline pack, a local folder or a .gguf "
        f"file, and {why}; {hint}use an offline pack ({packs}) or a local folder"
    )


def default_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU (bf16 matmuls are slow there), bf16 on accelerators."""
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _convert_gguf(gguf_path: Path, target: Path, source_sha256: str) -> None:
    """Dequantize a GGUF file with transformers and save it as a safetensors folder.

    Written to a sibling temporary folder and renamed, so an interrupted conversion leaves no
    half-written cache behind.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to safetensors (once; takes about a minute)…", gguf_path.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError, IndexError, EOFError, struct.error) as exc:
        raise AffectlensError(
            f"cannot read {gguf_path} as a GGUF model ({_first_line(exc)})"
        ) from exc
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, staging / "model.safetensors", metadata={"format": "pt"})
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.config.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "affectlens-source.json").write_text(
        json.dumps({"gguf": gguf_path.name, "sha256": source_sha256})
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _cached_folder(key: str, sha256: str) -> Path | None:
    folder = cache_root() / "models" / key
    marker = folder / "affectlens-source.json"
    if marker.exists() and json.loads(marker.read_text()).get("sha256") == sha256:
        return folder
    return None


def resolve_pack(name: str) -> Path:
    """The converted safetensors folder of an offline pack, assembling and converting once."""
    pack = PACKS[name]
    key = pack.sha256 or name
    folder = _cached_folder(name, key)
    if folder is not None:
        return folder
    gguf_dir = cache_root() / "gguf"
    logger.info("assembling offline pack %s and checking its SHA-256…", name)
    gguf_path = assemble(pack, gguf_dir)
    target = cache_root() / "models" / name
    try:
        _convert_gguf(gguf_path, target, key)
    finally:
        gguf_path.unlink(missing_ok=True)
    return target


def resolve_gguf(path: Path) -> Path:
    """The converted safetensors folder of a local GGUF file (cached by its SHA-256)."""
    digest = sha256_file(path)
    key = f"{path.stem}-{digest[:12]}"
    folder = _cached_folder(key, digest)
    if folder is not None:
        return folder
    target = cache_root() / "models" / key
    _convert_gguf(path, target, digest)
    return target


def pack_is_cached(name: str) -> bool:
    """Whether an offline pack has already been converted."""
    pack = PACKS[name]
    return _cached_folder(name, pack.sha256 or name) is not None


def load_model(
    spec: str,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> LoadedModel:
    """Load a causal LM from an offline pack name, a ``.gguf`` file, a folder or a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    dtype = dtype or default_dtype(device)
    path = Path(spec).expanduser()
    local_only = False
    if spec in PACKS:
        source: str | Path = resolve_pack(spec)
    elif path.suffix == ".gguf":
        if not path.is_file():
            raise AffectlensError(f"GGUF file not found: {path}")
        source = resolve_gguf(path)
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise AffectlensError(
                f"{path} is a folder without config.json, not a saved model "
                "(write one with save_pretrained)"
            )
        source = path
    else:
        source = spec
        local_only = _check_hub_id(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, local_files_only=local_only
        )
    except (OSError, ValueError) as exc:
        first = _first_line(exc)
        packs = ", ".join(PACKS)
        raise AffectlensError(
            f"cannot load model {spec!r} (not an offline pack [{packs}], a local folder, "
            f"a .gguf file, or a reachable hub id): {first}"
        ) from exc
    model.to(device)
    return LoadedModel(model=model, tokenizer=tokenizer, name=spec)


__all__ = [
    "LoadedModel",
    "fingerprint_mismatch",
    "hidden_size_of",
    "load_model",
    "num_layers_of",
    "hub_reachable",
    "pack_is_cached",
    "resolve_device",
]
