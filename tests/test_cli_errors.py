"""Bad input to the command line: one ``error:`` line on stderr, exit 2, no output file left.

``affectlens extract`` runs on a tiny random model saved to a folder (``--model FOLDER``) and a
tiny corpus, so the cases that fail only after the model loads stay fast. Nothing here may touch
the network: the hub is put in offline mode and sockets refuse to connect.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from affectlens.cli import main
from affectlens.errors import AffectlensError
from affectlens.models.packs import PACKS, install_command
from affectlens.vectors import EmotionVectors
from conftest import build_emotion_vectors, fake_offline_pack

EMOTIONS = ["happy", "afraid", "angry"]
WORDS = {
    "happy": "sunny laughter joy smile bright warm",
    "afraid": "dark shadow tremble creak scream cold",
    "angry": "slam shout fury red clenched boil",
}


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


@pytest.mark.parametrize(
    ("extra", "method"),
    [([], "from2/nv0.5/within@0.5"), (["--whiten", "none"], "from2/nv0.5/none"),
     (["--whiten-shrinkage", "0.25"], "from2/nv0.5/within@0.25")],
)  # fmt: skip
def test_whitening_options_reach_the_provenance(emo_model_dir, inputs, out, extra, method):
    _, corpus, neutral = inputs
    argv = extract_argv(emo_model_dir, corpus, neutral, out, "--layers", "1", "--no-calibrate")
    assert main([*argv, *extra]) == 0
    provenance = EmotionVectors.load(out).provenance
    assert provenance["method"] == method
    assert provenance["settings"]["whiten"] == method.split("/")[-1].split("@")[0]


def test_a_kill_during_calibration_keeps_the_extraction_and_resume_starts_there(
    emo_model_dir, inputs, out, monkeypatch, capsys
):
    import affectlens.cli.extract_cmd as extract_cmd
    import affectlens.extract as extract_module

    _, corpus, neutral = inputs
    argv = extract_argv(emo_model_dir, corpus, neutral, out, "--layers", "1-2")
    real_calibrate = extract_cmd.calibrate

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # what a kill during calibration does to the run

    monkeypatch.setattr(extract_cmd, "calibrate", killed)
    assert main(argv) != 0
    assert not out.exists()
    kept = sorted(p.name for p in out.parent.iterdir())
    assert kept == [out.name + ".ckpt", out.name + ".extracted.safetensors"]

    passes = {"n": 0}
    real_means = extract_module.batch_means

    def counting(*args, **kwargs):
        passes["n"] += 1
        return real_means(*args, **kwargs)

    monkeypatch.setattr(extract_module, "batch_means", counting)
    monkeypatch.setattr(extract_cmd, "calibrate", real_calibrate)
    assert main([*argv, "--resume"]) == 0
    assert passes["n"] == 0  # no story or neutral pass: it resumed at calibration
    assert EmotionVectors.load(out).calibration
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


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
    [
        ("happy,bored", "no stories for 'bored' in the corpus"),
        (" , ", "--emotions names no emotion"),
    ],
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
        (["--whiten-shrinkage", "-0.5"], "--whiten-shrinkage must be in [0, 1]"),
        (["--whiten-shrinkage", "2"], "--whiten-shrinkage must be in [0, 1]"),
        (["--forms", "story,poem"], "forms must be some of story, first_person, second_person"),
        (["--forms", "dialogue"], "the corpus has no training stories"),
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
def fake_pack(fake_chunks, monkeypatch):
    """Registers an installed three-chunk pack; returns a function setting its pinned SHA."""
    modules, contents = fake_chunks

    def register(sha256: str, chunk_modules=modules) -> str:
        pack = fake_offline_pack(chunk_modules, sha256, name="fake-pack")
        monkeypatch.setitem(PACKS, pack.name, pack)
        return pack.name

    register.digest = hashlib.sha256(b"".join(contents)).hexdigest()
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
    assert f"is not installed: {install_command('fake')}" in one_error(capsys)
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


# --- outputs that cannot be written: refused before any work starts ---


def _unwritable_folder(tmp_path) -> Path:
    """A folder this process cannot create files in, honestly, also as root.

    Root ignores permission bits, so a ``chmod 555`` folder is writable for it (and the
    command would then succeed): as root, use sysfs's top folder, which refuses new files even
    to root.
    """
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    folder = Path("/sys")
    try:
        handle, probe = tempfile.mkstemp(dir=folder)
    except OSError:
        return folder
    os.close(handle)
    os.unlink(probe)
    pytest.skip("no folder here refuses new files to root")


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the command gets as far as loading a model: the check must come first."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the output path must be checked before the model loads")

    monkeypatch.setattr("affectlens.models.loading.load_model", refuse)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("read-only folder", "cannot be written"),
        ("new subfolder of a read-only folder", "cannot be written (its nearest existing folder"),
        ("under a file", "/dev/null is not a folder"),
        ("an existing folder", "is a folder; name a file in it"),
    ],
)
@pytest.mark.parametrize("command", ["extract", "export-control-vector", "corpus generate"])
def test_unwritable_output_fails_before_any_work(
    command, where, message, inputs, emo_model, tmp_path, capsys, no_model_load
):
    _, corpus, neutral = inputs
    suffix = {"extract": "v.safetensors", "export-control-vector": "calm.gguf"}.get(
        command, "stories.jsonl"
    )
    if where == "read-only folder":
        target = _unwritable_folder(tmp_path) / suffix
    elif where == "new subfolder of a read-only folder":
        target = _unwritable_folder(tmp_path) / "new" / "deeper" / suffix
    elif where == "under a file":
        target = Path("/dev/null") / suffix
    else:
        target = tmp_path / "existing" / suffix
        target.mkdir(parents=True)
    vectors = build_emotion_vectors(emo_model, emotions=["calm", "afraid"])
    vectors_path = vectors.save(tmp_path / "in" / "emo.safetensors")
    argv = {
        "extract": extract_argv("unused-model", corpus, neutral, target),
        "export-control-vector": [
            "export-control-vector", "--vectors", str(vectors_path), "--emotion", "calm",
            "--out", str(target),
        ],
        "corpus generate": [
            "corpus", "generate", "--emotions", "calm", "--per-emotion", "1", "--out", str(target),
        ],
    }[command]  # fmt: skip
    assert main(argv) == 2
    error = one_error(capsys)
    assert error.startswith(f"error: --out {target}") and message in error
    assert not (target.is_file() or target.with_name(target.name + ".partial").exists())


@pytest.mark.parametrize(
    "command",
    [
        ["validate", "--out", "{target}"],
        ["experiment", "dose", "--out", "{target}"],
        ["experiment", "reward-hacking", "--out", "{target}"],
        ["monitor", "--text", "hi", "--units", "raw", "--html", "{target}/page.html"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_unwritable_report_fails_before_any_work(
    command, emo_model, tmp_path, capsys, no_model_load
):
    vectors_path = build_emotion_vectors(emo_model, emotions=["calm", "afraid"]).save(
        tmp_path / "emo.safetensors"
    )
    target = str(Path("/dev/null") / "report")
    argv = [arg.replace("{target}", target) for arg in command]
    assert main([*argv, "--vectors", str(vectors_path)]) == 2
    assert "/dev/null is not a folder" in one_error(capsys)


# --- devices ---


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu9", "unknown device 'tpu9': use cpu, cuda, cuda:N or mps"),
        ("cuda", "cannot use device 'cuda'"),
        ("cuda:7", "cannot use device 'cuda:7'"),
    ],
)
def test_unusable_device_is_one_line(device, message, emo_model_dir, inputs, out, tmp_path, capsys):
    if device.startswith("cuda") and torch.cuda.device_count() > int(device.partition(":")[2] or 0):
        pytest.skip(f"this machine has {device}")
    _, corpus, neutral = inputs
    assert main(extract_argv(emo_model_dir, corpus, neutral, out, "--device", device)) == 2
    error = one_error(capsys)
    assert message in error
    assert_no_output(out, tmp_path)


# --- a misspelt model with no network: said at once ---


def test_misspelt_model_without_a_route_fails_at_once(monkeypatch, inputs, out, tmp_path, capsys):
    """Hub mode on but no route (sockets refuse): no minute of retries, the packs suggested."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    _, corpus, neutral = inputs
    started = time.monotonic()
    assert main(extract_argv("qwen2.5-coder-0.5b-instruc", corpus, neutral, out)) == 2
    assert time.monotonic() - started < 15
    error = one_error(capsys)
    assert "cannot load model 'qwen2.5-coder-0.5b-instruc'" in error
    assert "the hub cannot be reached" in error
    assert "did you mean qwen2.5-coder-0.5b-instruct?" in error
    assert all(name in error for name in PACKS)
    assert_no_output(out, tmp_path)


def test_misspelt_model_with_the_hub_switched_off(inputs, out, tmp_path, capsys):
    _, corpus, neutral = inputs
    assert main(extract_argv("gemma-3-270", corpus, neutral, out)) == 2
    error = one_error(capsys)
    assert "the hub is switched off (HF_HUB_OFFLINE)" in error and "gemma-3-270m" in error


def test_model_path_that_does_not_exist(inputs, out, tmp_path, capsys):
    _, corpus, neutral = inputs
    missing = tmp_path / "models" / "mine"
    assert main(extract_argv(missing, corpus, neutral, out)) == 2
    assert f"cannot load model '{missing}': no such file or folder" in one_error(capsys)


# --- emotion names ---


def test_misspelt_emotion_suggests_the_right_one(emo_model_dir, inputs, out, tmp_path, capsys):
    _, corpus, neutral = inputs
    assert main(extract_argv(emo_model_dir, corpus, neutral, out, "--emotions", "hapy")) == 2
    assert one_error(capsys) == ("error: no stories for 'hapy' in the corpus; did you mean happy?")
    assert_no_output(out, tmp_path)


def test_clam_means_calm_and_at_ease_is_the_story_files_name(emo_model, tmp_path, capsys):
    from affectlens.cli.options import parse_emotions

    known = ["calm", "at ease", "afraid"]
    with pytest.raises(AffectlensError, match="did you mean calm"):
        parse_emotions("clam", known, "--emotions")
    assert parse_emotions("at_ease,Calm", known, "--emotions") == ["at ease", "calm"]
    vectors = build_emotion_vectors(emo_model, emotions=known)
    path = vectors.save(tmp_path / "emo.safetensors")
    out = tmp_path / "at_ease.gguf"
    argv = ["export-control-vector", "--vectors", str(path), "--emotion", "at_ease"]
    assert main([*argv, "--out", str(out)]) == 0
    assert out.is_file()
    assert main([*argv[:-1], "clam", "--out", str(out)]) == 2
    assert one_error(capsys) == "error: unknown emotion 'clam'; did you mean calm?"


def test_extract_accepts_at_ease_for_the_at_ease_stories(emo_model_dir, inputs, tmp_path, capsys):
    _, _, neutral = inputs
    WORDS["at ease"] = "loose warm slow easy soft settled"
    try:
        records = story_records(emotions=["at ease", "afraid"])
    finally:
        del WORDS["at ease"]
    corpus = write_jsonl(tmp_path / "in" / "ease.jsonl", records)
    out = tmp_path / "out" / "ease.safetensors"
    argv = extract_argv(emo_model_dir, corpus, neutral, out, "--emotions", "at_ease,afraid")
    assert main([*argv, "--layers", "1", "--no-calibrate"]) == 0
    assert EmotionVectors.load(out).emotions == ["at ease", "afraid"]


# --- corpus generate that keeps nothing ---


def test_generate_that_accepts_nothing_leaves_no_file(emo_model_dir, tmp_path, capsys):
    """A tiny random model's few tokens are never a story: an error line and no empty file."""
    out = tmp_path / "stories" / "new.jsonl"
    argv = ["corpus", "generate", "--emotions", "calm", "--per-emotion", "1", "--out", str(out)]
    argv += ["--model", str(emo_model_dir), "--max-new-tokens", "3", "--max-attempts", "1"]
    assert main([*argv, "--no-progress"]) == 2
    assert "no story was accepted, so nothing was written" in one_error(capsys)
    assert not out.exists()


def test_dose_judgement_with_one_reply_twice_fails_before_the_model_loads(
    emo_model, tmp_path, capsys, no_model_load
):
    vectors_path = build_emotion_vectors(emo_model, emotions=["calm", "afraid"]).save(
        tmp_path / "emo.safetensors"
    )
    out = tmp_path / "dose"
    argv = ["experiment", "dose", "--vectors", str(vectors_path), "--out", str(out)]
    assert main([*argv, "--judge", "It is.", "It is."]) == 2
    assert "two different, non-empty replies" in one_error(capsys)
    assert not out.exists()
