"""The streamed chunks are exactly ``json.dumps`` of the chunk's dict, byte for byte."""

from __future__ import annotations

import json

import pytest

from affectlens.serve.sse import ChunkEncoder

HEAD = {"id": "chatcmpl-ab\u00e9", "created": 1700000000, "model": 'tiny "q" \u4e2d'}


def _whole(obj: str, choices: list, extra=None, usage=None) -> str:
    """The chunk as one dict encoded whole (what the server sent before the encoder)."""
    data: dict = {"id": HEAD["id"], "object": obj, "created": HEAD["created"],
                  "model": HEAD["model"], "choices": choices}  # fmt: skip
    if extra is not None:
        data["affectlens"] = extra
    if usage is not None:
        data["usage"] = usage
    return f"data: {json.dumps(data)}\n\n"


def _encoder(chat: bool) -> ChunkEncoder:
    obj = "chat.completion.chunk" if chat else "text_completion"
    return ChunkEncoder(HEAD["id"], obj, HEAD["created"], HEAD["model"], chat=chat)


READOUTS = [
    {"afraid": -0.1, "calm": 1e-17, "joyful\u00e9": 3.5e300},
    {"afraid": float("nan"), "calm": -0.0, "joyful\u00e9": 2.0},
]


@pytest.mark.parametrize("chat", [True, False])
def test_every_chunk_matches_the_dict_encoded_whole(chat):
    obj = "chat.completion.chunk" if chat else "text_completion"
    encoder = _encoder(chat)

    def choice(text, finish=None):
        if chat:
            return {"index": 0, "finish_reason": finish, "delta": text}
        return {"index": 0, "finish_reason": finish, "text": text.get("content", "")}

    texts = ['a "quoted"\n line', "\u00e9\u4e2d\U0001f600"]
    for index, (text, readouts) in enumerate(zip(texts, READOUTS, strict=True)):
        expected = _whole(obj, [choice({"content": text})],
                          {"token_index": index, "readouts": readouts})  # fmt: skip
        assert encoder.token(text, index, readouts) == expected
    assert encoder.token("plain", 2, None) == _whole(obj, [choice({"content": "plain"})])
    assert encoder.chunk({"role": "assistant", "content": ""}) == _whole(
        obj, [choice({"role": "assistant", "content": ""})]
    )
    guard = {"guardrail": {"rule": "r", "action": "flag", "token_index": 1}}
    assert encoder.chunk({}, extra=guard) == _whole(obj, [choice({})], guard)
    closing = {"finish_reason": "length", "assistant_turn": READOUTS[0],
               "summary": {"afraid": {"mean": 0.5, "max": 1.0, "argmax_token": 0}},
               "guardrail_events": []}  # fmt: skip
    assert encoder.chunk({}, "length", closing) == _whole(obj, [choice({}, "length")], closing)
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert encoder.chunk(usage=usage, choices=False) == _whole(obj, [], usage=usage)
