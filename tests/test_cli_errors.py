"""Bad input to the command line: one ``error:`` line on stderr, exit 2, no output file left.

``affectlens extract`` runs on a tiny random model saved to a folder (``--model FOLDER``) and a
tiny corpus, so the cases that fail only after the model loads stay fast. Nothing here may touch
the network: the hub is put in offline mode and sockets refuse to connect.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import socket

import pytest
import torch
from safetensors.torch import save_file

from affectlens.cli import main
from affectlens.models.packs import PACKS, OfflinePack
from affectlens.vectors import EmotionVectors
from conftest import build_emotion_vectors

EMOTIONS = ["happy", "afraid", "angry"]
WORDS = {
    "happy": "sunny laughter joy smile bright warm",
    "afraid": "dark shadow tremble creak scream cold",
    "angry": "slam shout fury red clenched boil",
}
_unique = itertools.count()


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network and no shared cache for any test here."""
    import huggingface_hub.constants

    def refuse(*_args, **_kwargs):
        raise OSError("network access is disabled in tests")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("AFFECTLENS_CACHE", str(tmp_path / "cache"))


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def story_records(per_emotion=3, emotions=EMOTIONS):
    records = []
    for emotion in emotions:
        for i in range(per_emotion):
            text = f"Story {i}: she felt {WORDS[emotion]} " * (1 + i % 2)
            records.append({"emotion": emotion, "split": "train", "topic": "t", "text": text})
        records.append({"emotion": emotion, "split": "test", "topic": "t", "text": "held out"})
    return records


@pytest.fixture
def inputs(tmp_path):
    """A good corpus and neutral file in ``tmp_path/in``; outputs go to ``tmp_path/out``."""
    folder = tmp_path / "in"
    folder.mkdir()
    corpus = write_jsonl(folder / "stories.jsonl", story_records())
    neutral = write_jsonl(
        folder / "neutral.jsonl",
        [
            {"kind": "prose", "text": f"Item {i}: the table has {i} legs and a lamp."}
            for i in range(5)
        ]
        + [{"kind": "chat", "messages": [{"role": "user", "content": "What is 2+2?"}]}],
    )
    return folder, corpus, neutral


@pytest.fixture
def out(tmp_path):
    return tmp_path / "out" / "vectors.safetensors"


def extract_argv(model, corpus, neutral, out, *extra):
    return [
        "extract", "--model", str(model), "--corpus", str(corpus), "--neutral", str(neutral),
        "--out", str(out), "--start-token", "2", "--batch-size", "4", *extra,
    ]  # fmt: skip


def one_error(capsys) -> str:
    """The single ``error:`` line, last on stderr (model loading may log lines before it)."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], captured.err
    assert "Traceback" not in captured.err
    return errors[0]


def assert_no_output(out, tmp_path):
    """Neither the artifact nor a ``.partial``/``.ckpt`` sibling, nor a cached model file."""
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    cache = tmp_path / "cache"
    leftovers = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert leftovers == []


def test_good_extraction_on_a_model_folder(emo_model_dir, inputs, out, tmp_path, capsys):
    """The baseline the error cases vary: this exact command succeeds."""
    _, corpus, neutral = inputs
    assert main(extract_argv(emo_model_dir, corpus, neutral, out, "--layers", "1-2")) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: 3 emotions x 2 layers x 64")
    vectors = EmotionVectors.load(out)
    assert vectors.layers == [1, 2] and vectors.calibration
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no .ckpt or .partial


# --- extract: the corpus ---


@pytest.mark.parametrize(
    ("corpus_kind", "message"),
    [
        ("missing", "corpus not found"),
        ("empty file", "the corpus is empty"),
        ("blank lines", "the corpus is empty"),
        ("empty folder", "the corpus is empty"),
        ("not json", "stories.jsonl:2: not valid JSON"),
        ("no text", "story record lacks 'text'"),
        ("test split only", "the corpus has no training stories"),
        ("one angry story", "too few training stories (need 2) for: angry"),
    ],
)
def test_bad_corpus(emo_model_dir, inputs, out, tmp_path, capsys, corpus_kind, message):
    folder, corpus, neutral = inputs
    records = story_records()
    if corpus_kind == "missing":
        corpus = folder / "nope.jsonl"
    elif corpus_kind == "empty file":
        corpus.write_text("")
    elif corpus_kind == "blank lines":
        corpus.write_text("\n  \n\n")
    elif corpus_kind == "empty folder":
        corpus = folder / "empty"
        corpus.mkdir()
    elif corpus_kind == "not json":
        corpus.write_text(json.dumps(records[0]) + "\n{oops\n")
    elif corpus_kind == "no text":
        write_jsonl(corpus, [{"emotion": "happy", "split": "train"}])
    elif corpus_kind == "test split only":
        write_jsonl(corpus, [r for r in records if r["split"] == "test"])
    else:
        angry_train = [r for r in records if r["emotion"] == "angry" and r["split"] == "train"]
        write_jsonl(corpus, [r for r in records if r not in angry_train[1:]])
    assert main(extract_argv(emo_model_dir, corpus, neutral, out)) == 2
    assert message in one_error(capsys)
    assert_no_output(out, tmp_path)


@pytest.mark.parametrize(
    ("emotions", "message"),
    [("happy,bored", "no stories for: bored"), (" , ", "--emotions names no emotion")],
)
def test_emotions_option(emo_model_dir, inputs, out, tmp_path, capsys, emotions, message):
    _, corpus, neutral = inputs
    argv = extract_argv(emo_model_dir, corpus, neutral, out, "--emotions", emotions)
    assert main(argv) == 2
    assert message in one_error(capsys)
    assert_no_output(out, tmp_path)


@pytest.mark.parametrize("content", ["", '{"kind": "prose"}\n'])
def test_bad_neutral_corpus(emo_model_dir, inputs, out, tmp_path, capsys, content):
    _, corpus, neutral = inputs
    neutral.write_text(content)
    assert main(extract_argv(emo_model_dir, corpus, neutral, out)) == 2
    error = one_error(capsys)
    assert "the neutral corpus is empty" in error or "exactly one of text/messages" in error
    assert_no_output(out, tmp_path)


# --- extract: options ---


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layers", "0-7"], "layer(s) [3, 4, 5, 6, 7] out of range: the model has layers 0-2"),
        (["--layers", "3"], "out of range"),
        (["--layers", "-1"], "out of range"),
        (["--layers", "5-3"], "--layers names no layer"),
        (["--layers", "two"], "bad --layers 'two'"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--max-stories", "0"], "--max-stories must be at least 1"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be at least 1"),
        (["--start-token", "-1"], "--start-token must be at least 0"),
        (["--neutral-variance", "0"], "--neutral-variance must be in (0, 1]"),
        (["--neutral-variance", "1.5"], "--neutral-variance must be in (0, 1]"),
    ],
)
def test_bad_extract_options(emo_model_dir, inputs, out, tmp_path, capsys, extra, message):
    _, corpus, neutral = inputs
    assert main(extract_argv(emo_model_dir, corpus, neutral, out, *extra)) == 2
    assert message in one_error(capsys)
    assert_no_output(out, tmp_path)


@pytest.mark.parametrize("name", ["vectors.pt", "vectors", "vectors.safetensors.bak"])
def test_out_must_be_safetensors(emo_model_dir, inputs, tmp_path, capsys, name):
    _, corpus, neutral = inputs
    out = tmp_path / "out" / name
    assert main(extract_argv(emo_model_dir, corpus, neutral, out)) == 2
    assert "--out must end in .safetensors" in one_error(capsys)
    assert_no_output(out, tmp_path)


# --- extract: the model ---


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("hub id", "cannot load model 'no-such-org/no-such-model-7f3a'"),
        ("bare name", "cannot load model 'no-such-model-7f3a'"),
        ("missing gguf", "GGUF file not found"),
        ("empty folder", "is a folder without config.json"),
        ("garbage gguf", "as a GGUF model"),
        ("truncated gguf", "as a GGUF model"),
    ],
)
def test_unusable_model(inputs, out, tmp_path, capsys, kind, message):
    folder, corpus, neutral = inputs
    model = {
        "hub id": "no-such-org/no-such-model-7f3a",
        "bare name": "no-such-model-7f3a",
        "missing gguf": str(folder / "missing.gguf"),
    }.get(kind)
    if kind == "empty folder":
        model = folder / "model"
        model.mkdir()
    elif kind == "garbage gguf":
        model = folder / "garbage.gguf"
        model.write_bytes(bytes(range(256)) * 8)
    elif kind == "truncated gguf":
        model = folder / "truncated.gguf"
        model.write_bytes(b"GGUF\x03\x00\x00\x00\x01")
    assert main(extract_argv(model, corpus, neutral, out)) == 2
    assert message in one_error(capsys)
    assert_no_output(out, tmp_path)


@pytest.fixture
def fake_pack(tmp_path, monkeypatch):
    """Registers an installed three-chunk pack; returns a function setting its pinned SHA."""
    root = tmp_path / "site"
    tag = next(_unique)
    modules, whole = [], b""
    for i in range(1, 4):
        name = f"affectlens_cli_fake_chunk_{tag}_part{i}"
        (root / name / "data").mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        blob = b"not really a GGUF file " * (100 * i)
        (root / name / "data" / f"part{i}.bin").write_bytes(blob)
        modules.append(name)
        whole += blob
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()

    def register(sha256: str, chunk_modules=tuple(modules)) -> str:
        pack = OfflinePack(
            name="fake-pack",
            description="a fake pack",
            extra="fake",
            chunk_modules=chunk_modules,
            chunk_glob="part*.bin",
            sha256=sha256,
            gguf_name="fake.gguf",
        )
        monkeypatch.setitem(PACKS, pack.name, pack)
        return pack.name

    register.digest = hashlib.sha256(whole).hexdigest()
    return register


def test_pack_failing_its_sha256_check(fake_pack, inputs, out, tmp_path, capsys):
    _, corpus, neutral = inputs
    name = fake_pack("0" * 64)
    assert main(extract_argv(name, corpus, neutral, out)) == 2
    error = one_error(capsys)
    assert f"pack 'fake-pack' failed its SHA-256 check (got {fake_pack.digest[:12]}" in error
    assert error.endswith("reinstall it")
    assert_no_output(out, tmp_path)  # no assembled or half-assembled GGUF in the cache


def test_pack_with_the_right_sha256_but_no_model_inside(fake_pack, inputs, out, tmp_path, capsys):
    _, corpus, neutral = inputs
    name = fake_pack(fake_pack.digest)
    assert main(extract_argv(name, corpus, neutral, out)) == 2
    assert "fake.gguf as a GGUF model" in one_error(capsys)
    assert_no_output(out, tmp_path)  # the assembled file is removed again


def test_pack_not_installed(fake_pack, inputs, out, tmp_path, capsys):
    _, corpus, neutral = inputs
    name = fake_pack("", chunk_modules=("affectlens_cli_no_such_chunk_module",))
    assert main(extract_argv(name, corpus, neutral, out)) == 2
    assert "pip install 'affectlens[fake]'" in one_error(capsys)
    assert_no_output(out, tmp_path)


# --- commands reading a vectors file ---


def _vectors_file(kind, folder, emo_model):
    path = folder / "vectors.safetensors"
    if kind == "random bytes":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "foreign safetensors":
        save_file({"weight": torch.zeros(2, 2)}, str(path), metadata={"format": "pt"})
    elif kind == "truncated artifact":
        build_emotion_vectors(emo_model).save(path)
        path.write_bytes(path.read_bytes()[:-100])
    elif kind == "damaged metadata":
        build_emotion_vectors(emo_model).save(path)
        good = EmotionVectors.load(path)
        tensors = {"vectors": good.vectors, "raw_means": good.raw_means}
        tensors["residual_norms"] = good.residual_norms
        metadata = {"format": "affectlens.emotion_vectors/1", "emotions": "[not json"}
        save_file(tensors, str(path), metadata=metadata)
    elif kind == "a folder":
        path.mkdir()
    return path


VECTOR_KINDS = {
    "random bytes": "is not a readable safetensors file",
    "empty file": "is not a readable safetensors file",
    "foreign safetensors": "is not an affectlens emotion-vectors file",
    "truncated artifact": "is not a readable safetensors file",
    "damaged metadata": "is a damaged affectlens vectors file",
    "missing": "vectors file not found",
    "a folder": "vectors file not found",
}
COMMANDS = {
    "summary": [],
    "monitor": ["--text", "hello"],
    "generate": ["--prompt", "hello"],
    "chat": [],
    "validate": ["--out", "{out}"],
    "calibrate": [],
    "export-control-vector": ["--emotion", "calm", "--out", "{out}/calm.gguf"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", list(VECTOR_KINDS))
def test_corrupt_or_foreign_vectors_file(emo_model, tmp_path, capsys, command, kind):
    folder = tmp_path / "in"
    folder.mkdir()
    path = _vectors_file(kind, folder, emo_model)
    before = path.read_bytes() if path.is_file() else None
    out = tmp_path / "out"
    extra = [arg.replace("{out}", str(out)) for arg in COMMANDS[command]]
    assert main([command, "--vectors", str(path), *extra]) == 2
    assert VECTOR_KINDS[kind] in one_error(capsys)
    assert not out.exists()
    assert (path.read_bytes() if path.is_file() else None) == before  # calibrate: untouched
    assert sorted(p.name for p in folder.iterdir()) == ([path.name] if kind != "missing" else [])
