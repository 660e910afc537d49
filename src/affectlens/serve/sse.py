"""The server-sent-event chunks of one streamed completion, encoded with as little work per token
as the text allows.

Every chunk is exactly the text ``json.dumps`` gives for its dict (same keys, order and
separators), so a client sees what it saw when each chunk was a dict encoded whole. What is
saved: the part every chunk of a response shares (``id``, ``object``, ``created``, ``model``)
and the fixed frame of a token's chunk are encoded once per response, and each token's
readouts (171 emotions by default) are encoded once: the same text goes into the token's chunk
and, with ``telemetry: "tokens"``, into the closing chunk's ``affectlens.tokens`` list, which
used to encode all of the reply's readouts a second time.
"""

from __future__ import annotations

import json


class ChunkEncoder:
    """The ``data: ...`` lines of one streamed response (``chat``: chat deltas, else text)."""

    def __init__(self, ident: str, obj: str, created: int, model: str, *, chat: bool) -> None:
        head = json.dumps({"id": ident, "object": obj, "created": created, "model": model})
        self._head = "data: " + head[:-1]  # the object left open for the keys that follow
        self._chat = chat
        text_key = '"delta": {"content": ' if chat else '"text": '
        choice = '"choices": [{"index": 0, "finish_reason": null, '
        self._token_open = f"{self._head}, {choice}{text_key}"
        self._token_close = "}}]" if chat else "}]"
        self._readouts: list[str] = []

    def chunk(
        self,
        delta: dict | None = None,
        finish: str | None = None,
        extra: dict | None = None,
        usage: dict | None = None,
        *,
        choices: bool = True,
    ) -> str:
        """Any chunk: one choice (``delta``, ``finish``) or none, then ``affectlens`` and
        ``usage`` when given. An ``extra`` whose last key is ``tokens``, holding the readouts
        this encoder streamed, reuses their text."""
        parts = [self._head, ', "choices": ']
        if choices:
            choice: dict = {"index": 0, "finish_reason": finish}
            if self._chat:
                choice["delta"] = delta or {}
            else:
                choice["text"] = (delta or {}).get("content", "")
            parts.append(json.dumps([choice]))
        else:
            parts.append("[]")
        if extra is not None:
            parts += [', "affectlens": ', self._extra(extra)]
        if usage is not None:
            parts += [', "usage": ', json.dumps(usage)]
        parts.append("}\n\n")
        return "".join(parts)

    def token(self, text: str, index: int, readouts: dict[str, float] | None) -> str:
        """A token's chunk: its text, and with ``readouts`` its index and readouts."""
        parts = [self._token_open, json.dumps(text), self._token_close]
        if readouts is not None:
            encoded = json.dumps(readouts)
            self._readouts.append(encoded)
            parts += [', "affectlens": {"token_index": ', json.dumps(index), ', "readouts": ',
                      encoded, "}"]  # fmt: skip
        parts.append("}\n\n")
        return "".join(parts)

    def _extra(self, extra: dict) -> str:
        tokens = extra.get("tokens")
        if tokens is None or list(extra)[-1] != "tokens" or len(tokens) != len(self._readouts):
            return json.dumps(extra)
        rest = json.dumps({key: value for key, value in extra.items() if key != "tokens"})
        joined = ", ".join(self._readouts)
        return f'{rest[:-1]}{", " if len(extra) > 1 else ""}"tokens": [{joined}]}}'
