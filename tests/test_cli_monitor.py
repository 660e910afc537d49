"""The ``monitor``, ``generate`` and ``chat`` commands on a tiny model saved to disk."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser

import pytest

from affectlens.calibration import calibrate
from affectlens.cli import main
from affectlens.monitor import monitor, user_turn
from affectlens.vectors import EmotionVectors
from conftest import build_emotion_vectors, build_loaded, build_tiny_tokenizer

TRANSCRIPT = [
    {"role": "user", "content": "I lost my keys."},
    {"role": "assistant", "content": "Oh no!"},
    {"role": "user", "content": "Help?"},
]


@pytest.fixture(scope="module")
def vectors_file(tmp_path_factory, emo_model, emo_model_dir):
    """Calibrated synthetic vectors whose provenance names the saved tiny model."""
    vectors = build_emotion_vectors(emo_model, model_id=str(emo_model_dir))
    calibrate(emo_model, vectors, ["A plain sentence.", "Another one here."], ["Joy!", "Fear."])
    return vectors.save(tmp_path_factory.mktemp("vectors") / "emo.safetensors")


@pytest.fixture
def transcript(tmp_path):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(TRANSCRIPT))
    return path


class _Spans(HTMLParser):
    """Collects token spans, select options and external references of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[dict] = []
        self.options: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "span" and "tok" in attributes.get("class", "").split():
            self.tokens.append(attributes)
        if tag == "option":
            self.options.append(attributes["value"])
        for name in ("src", "href"):
            if attributes.get(name):
                self.external.append(attributes[name])


def test_monitor_text_prints_tokens_and_readout(vectors_file, capsys):
    """A chat model reads a --text as a user turn, at the assistant-turn token, by default."""
    assert main(["monitor", "--vectors", str(vectors_file), "--text", "I am so happy"]) == 0
    out = capsys.readouterr().out
    assert "I am so happy" in out and "<|assistant|>" in out
    assert "assistant-turn token" in out and "score (z)" in out


def test_monitor_text_readout_choices_pick_the_token_read(vectors_file, emo_model, capsys):
    base = ["monitor", "--vectors", str(vectors_file), "--text", "I am so happy", "--units", "raw"]
    vectors = EmotionVectors.load(vectors_file)
    assert main([*base, "--readout", "text"]) == 0
    out = capsys.readouterr().out
    assert "last token" in out and "<|assistant|>" not in out
    plain = monitor(emo_model, vectors, "I am so happy", units="raw")
    assert f"(#{len(plain.tokens) - 1}," in out
    assert main([*base, "--readout", "chat"]) == 0
    out = capsys.readouterr().out
    chat = monitor(emo_model, vectors, user_turn("I am so happy"), units="raw")
    assert f"assistant-turn token (#{chat.readout_position()}," in out
    assert chat.readout_position() == chat.assistant_positions[-1]


def test_monitor_defaults_to_the_text_readout_without_a_chat_template(
    vectors_file, emo_model, tmp_path, capsys
):
    base_model = tmp_path / "base"
    emo_model.model.save_pretrained(base_model)
    build_tiny_tokenizer(chat_template=False).save_pretrained(base_model)
    argv = ["monitor", "--vectors", str(vectors_file), "--model", str(base_model)]
    assert main([*argv, "--text", "I am so happy"]) == 0
    assert "last token" in capsys.readouterr().out


def test_monitor_chat_refuses_the_text_readout(vectors_file, transcript, capsys):
    argv = ["monitor", "--vectors", str(vectors_file), "--chat", str(transcript)]
    assert main([*argv, "--readout", "text"]) == 2
    assert "a --chat transcript is read at its assistant turn" in _error(capsys)


def test_monitor_chat_writes_a_self_contained_heatmap(
    vectors_file, transcript, tmp_path, emo_model, capsys
):
    page = tmp_path / "out" / "trace.html"
    argv = ["monitor", "--vectors", str(vectors_file), "--chat", str(transcript)]
    argv += ["--layers", "1-2", "--units", "p99", "--html", str(page), "--top-k", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "assistant-turn token" in out and "score (p99)" in out
    parser = _Spans()
    parser.feed(page.read_text(encoding="utf-8"))
    vectors = EmotionVectors.load(vectors_file)
    trace = monitor(emo_model, vectors, TRANSCRIPT, layers=[1, 2], units="p99")
    assert len(parser.tokens) == len(trace.tokens)
    assert [int(span["data-index"]) for span in parser.tokens] == list(range(len(trace.tokens)))
    top = json.loads(parser.tokens[3]["data-top"])
    assert [name for name, _ in top] == [name for name, _ in trace.top_k(3, 5)]
    assert len(parser.options) == len(trace.emotions)
    assert parser.external == []
    assert not list(page.parent.glob("*.partial"))


def test_generate_steered_and_sweep(vectors_file, capsys):
    base = ["generate", "--vectors", str(vectors_file), "--prompt", "Hi", "--max-new-tokens", "4"]
    assert main([*base, "--steer", "calm=0.2,happy=-0.1", "--positions", "generated"]) == 0
    capsys.readouterr()
    assert main([*base, "--steer", "calm=0.1,afraid=-0.5:0.5:3"]) == 0
    out = capsys.readouterr().out
    assert "--- afraid=-0.500" in out and "--- afraid=+0.000" in out and "--- afraid=+0.500" in out
    # The old spelling still works, hidden from --help.
    assert main([*base, "--steer", "calm=0.1", "--sweep", "afraid=-0.5:0.5:3"]) == 0
    assert capsys.readouterr().out == out


def test_chat_loop_steers_and_reads_each_reply(vectors_file, monkeypatch, capsys):
    script = (
        "Hello\n/steer calm=0.2\nHow are you?\n/emotions\n/bogus\n/steer calm=3\n/reset\n/quit\n"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    argv = ["chat", "--vectors", str(vectors_file), "--max-new-tokens", "3", "--units", "raw"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("at the assistant turn") == 2
    assert "steering: calm=+0.2" in out
    assert "calm, desperate, happy, afraid, angry" in out
    assert "unknown command '/bogus'" in out
    assert "sane range" in out and "conversation reset" in out


def test_chat_ends_on_eof(vectors_file, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("/emotions\n"))
    assert main(["chat", "--vectors", str(vectors_file), "--units", "raw"]) == 0


def _error(capsys) -> str:
    """The single ``error:`` line (model loading may print progress bars before it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0]
    return errors[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steer", "desparate=0.1"], "did you mean desperate"),
        (["--steer", "calm=1.5"], "sane range"),
        (["--steer", "calm"], "not like 'calm=0.1'"),
        (["--layers", "7"], "layer 7 is not in the vectors file"),
        (["--steer", "calm=0:1"], "not like 'calm=-0.5:0.5:5'"),
        (["--steer", "calm=0:1:3", "--steer", "happy=0:1:3"], "at most one sweep"),
    ],
)
def test_generate_bad_input_is_one_line(vectors_file, capsys, extra, message):
    argv = ["generate", "--vectors", str(vectors_file), "--prompt", "Hi", *extra]
    assert main(argv) == 2
    assert message in _error(capsys)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", "not valid JSON"),
        (json.dumps([{"role": "robot", "content": "x"}]), "role 'robot'"),
        (json.dumps({"role": "user"}), "non-empty JSON list"),
    ],
)
def test_malformed_transcript_writes_nothing(vectors_file, tmp_path, capsys, content, message):
    transcript = tmp_path / "bad.json"
    transcript.write_text(content)
    page = tmp_path / "page.html"
    argv = ["monitor", "--vectors", str(vectors_file), "--chat", str(transcript)]
    assert main([*argv, "--html", str(page)]) == 2
    assert message in _error(capsys)
    assert not page.exists()


def test_monitor_refuses_bad_layers_and_foreign_vectors(
    vectors_file, emo_model_dir, tmp_path, capsys
):
    page = tmp_path / "page.html"
    argv = ["monitor", "--vectors", str(vectors_file), "--text", "hi", "--html", str(page)]
    assert main([*argv, "--layers", "0-5"]) == 2
    assert "is not in the vectors file" in _error(capsys)
    foreign = build_emotion_vectors(build_loaded("llama", 3, seed=9), model_id="someone/else")
    foreign_file = foreign.save(tmp_path / "foreign.safetensors")
    argv = ["monitor", "--vectors", str(foreign_file), "--text", "hi", "--units", "raw"]
    assert main([*argv, "--model", str(emo_model_dir), "--html", str(page)]) == 2
    assert "made for someone/else and do not fit" in _error(capsys)
    assert not page.exists()


def test_uncalibrated_vectors_need_raw_units(emo_model, emo_model_dir, tmp_path, capsys):
    vectors = build_emotion_vectors(emo_model, model_id=str(emo_model_dir))
    path = vectors.save(tmp_path / "raw.safetensors")
    assert main(["monitor", "--vectors", str(path), "--text", "hi"]) == 2
    assert "--units raw" in _error(capsys)
    assert main(["monitor", "--vectors", str(path), "--text", "hi", "--units", "raw"]) == 0


OPENS_WITH_ASSISTANT = [
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "I lost my keys."},
]


def test_transcript_opening_with_an_assistant_turn_is_read(vectors_file, emo_model, tmp_path):
    """Its first assistant turn begins right after the template's opening, before its content."""
    from affectlens.models.chat import assistant_turn_positions, encode, format_chat

    tokenizer = emo_model.tokenizer
    positions = assistant_turn_positions(tokenizer, OPENS_WITH_ASSISTANT)
    ids = encode(
        tokenizer, format_chat(tokenizer, OPENS_WITH_ASSISTANT, add_generation_prompt=True)
    )
    assert tokenizer.decode(ids[: positions[0] + 1]) == "<s><|assistant|>"
    assert positions[1] == len(ids) - 1
    path = tmp_path / "opens.json"
    path.write_text(json.dumps(OPENS_WITH_ASSISTANT))
    assert main(["monitor", "--vectors", str(vectors_file), "--chat", str(path)]) == 0


def test_transcript_the_template_refuses_is_one_line(vectors_file, emo_model, tmp_path, capsys):
    """A template demanding that the user speaks first (as Gemma's does): one error line."""
    from conftest import EMO_CHAT_TEMPLATE

    folder = tmp_path / "strict"
    emo_model.model.save_pretrained(folder)
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = (
        "{% if messages and messages[0]['role'] == 'assistant' %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
        "{% endif %}" + EMO_CHAT_TEMPLATE
    )
    tokenizer.save_pretrained(folder)
    path = tmp_path / "opens.json"
    path.write_text(json.dumps(OPENS_WITH_ASSISTANT))
    argv = ["monitor", "--vectors", str(vectors_file), "--model", str(folder), "--chat", str(path)]
    assert main(argv) == 2
    assert _error(capsys) == (
        "error: the model's chat template refuses this transcript: "
        "Conversation roles must alternate user/assistant/user/assistant"
    )


def test_chat_runs_a_guardrail_and_shows_its_firings(vectors_file, tmp_path, monkeypatch, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "units: raw\nrules:\n  - name: always\n    when: {emotion: afraid, above: -1000000.0}\n"
        "    action: flag\n"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello\n/quit\n"))
    argv = ["chat", "--vectors", str(vectors_file), "--max-new-tokens", "3", "--units", "raw"]
    assert main([*argv, "--guardrail", str(policy)]) == 0
    assert "guardrail always: flag at token 0" in capsys.readouterr().out
    policy.write_text(
        "rules:\n  - name: x\n    when: {emotion: afriad, above: 1}\n    action: flag\n"
    )
    assert main([*argv, "--guardrail", str(policy)]) == 2
    assert "did you mean afraid" in _error(capsys)
