"""Offline packs: chunk discovery and SHA-checked assembly, with fake chunk packages.

The ``fake_chunks`` fixture and :func:`fake_offline_pack` are in ``conftest.py``.
"""

import hashlib
import re

import pytest

from affectlens.errors import AffectlensError
from affectlens.models import packs
from affectlens.models.packs import PACKS, OfflinePack, assemble, cache_root, sha256_file
from conftest import fake_offline_pack


def test_assemble_concatenates_in_order_and_verifies(fake_chunks, tmp_path):
    modules, contents = fake_chunks
    whole = b"".join(contents)
    pack = fake_offline_pack(modules, hashlib.sha256(whole).hexdigest())
    assert pack.is_installed()
    assert [p.name for p in pack.chunk_paths()] == ["part1.bin", "part2.bin", "part3.bin"]
    target = assemble(pack, tmp_path / "out")
    assert target == tmp_path / "out" / "fake.gguf"
    assert target.read_bytes() == whole
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fake.gguf"]


def test_wrong_hash_raises_and_leaves_no_file(fake_chunks, tmp_path):
    modules, _ = fake_chunks
    pack = fake_offline_pack(modules, "0" * 64)
    out = tmp_path / "out"
    with pytest.raises(AffectlensError, match="SHA-256"):
        assemble(pack, out)
    assert list(out.iterdir()) == []


def test_wrong_hash_does_not_clobber_previous_good_file(fake_chunks, tmp_path):
    modules, contents = fake_chunks
    out = tmp_path / "out"
    good = assemble(fake_offline_pack(modules, hashlib.sha256(b"".join(contents)).hexdigest()), out)
    with pytest.raises(AffectlensError):
        assemble(fake_offline_pack(modules, "f" * 64), out)
    assert good.read_bytes() == b"".join(contents)
    assert sorted(p.name for p in out.iterdir()) == ["fake.gguf"]


def test_empty_pinned_hash_skips_the_check_with_a_warning(fake_chunks, tmp_path, caplog):
    modules, contents = fake_chunks
    with caplog.at_level("WARNING", logger="affectlens.models.packs"):
        target = assemble(fake_offline_pack(modules, ""), tmp_path)
    assert target.read_bytes() == b"".join(contents)
    digest = hashlib.sha256(b"".join(contents)).hexdigest()
    assert [r.getMessage() for r in caplog.records] == [
        f"pack 'fake' has no pinned SHA-256, so it is used unverified (got {digest})"
    ]


def test_pinned_pack_assembles_silently(fake_chunks, tmp_path, capsys):
    modules, contents = fake_chunks
    assemble(fake_offline_pack(modules, hashlib.sha256(b"".join(contents)).hexdigest()), tmp_path)
    assert capsys.readouterr().err == ""


def test_missing_chunk_package_raises(fake_chunks, tmp_path):
    modules, _ = fake_chunks
    pack = fake_offline_pack((*modules, "affectlens_fake_chunk_not_installed"), "")
    assert not pack.is_installed()
    with pytest.raises(AffectlensError, match=re.escape(packs.install_command("fake"))):
        assemble(pack, tmp_path / "out")
    assert not (tmp_path / "out" / "fake.gguf").exists()


def test_ambiguous_chunk_folder_raises(fake_chunks, tmp_path):
    modules, _ = fake_chunks
    data = tmp_path / "site" / modules[1] / "data"
    (data / "part2b.bin").write_bytes(b"extra")
    with pytest.raises(AffectlensError, match="expected one chunk"):
        fake_offline_pack(modules, "").chunk_paths()


def test_assemble_with_monkeypatched_chunk_paths(tmp_path, monkeypatch):
    chunks = []
    for i in range(2):
        chunk = tmp_path / f"c{i}"
        chunk.write_bytes(b"x" * (3 << 20) if i == 0 else b"tail")  # spans several 1 MiB blocks
        chunks.append(chunk)
    whole = b"x" * (3 << 20) + b"tail"
    pack = fake_offline_pack(("unused",), hashlib.sha256(whole).hexdigest())
    monkeypatch.setattr(OfflinePack, "chunk_paths", lambda self: chunks)
    assert assemble(pack, tmp_path / "out").read_bytes() == whole


def test_sha256_file_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    data = bytes(range(256)) * 9000  # > 2 MiB, read in blocks
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_cache_root_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECTLENS_CACHE", str(tmp_path / "cache"))
    assert cache_root() == tmp_path / "cache"
    monkeypatch.delenv("AFFECTLENS_CACHE")
    assert cache_root().name == "affectlens"


def test_registered_packs_are_well_formed():
    assert packs.DEFAULT_PACK in PACKS
    for name, pack in PACKS.items():
        assert pack.name == name
        assert pack.chunk_modules
        assert pack.gguf_name.endswith(".gguf")
        # every shipped pack is pinned: an unpinned one would only be used with a warning
        assert re.fullmatch(r"[0-9a-f]{64}", pack.sha256), name
    assert PACKS["qwen2.5-coder-1.5b-instruct"].sha256 == (
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    )
