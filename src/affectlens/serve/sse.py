"""The server-sent-event chunks of one streamed completion, encoded with as little work per token
as the text allows.

Every chunk is exactly the text ``json.dumps`` gives for its dict (same keys, order and
separators), so a client sees what it saw when each chunk was a dict encoded whole. What is
saved: the part every chunk of a response shares (``id``, ``object``, ``created``, ``model``)
and the fixed frame of a token's chunk are encoded once per response.
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
        ``usage`` when given."""
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
            parts += [', "affectlens": ', json.dumps(extra)]
        if usage is not None:
            parts += [', "usage": ', json.dumps(usage)]
        parts.append("}\n\n")
        return "".join(parts)

    def token(self, text: str, index: int, readouts: dict[str, float] | None) -> str:
        """A token's chunk: its text, and with ``readouts`` its index and readouts."""
        parts = [self._token_open, json.dumps(text), self._token_close]
        if readouts is not None:
            parts += [', "affectlens": {"token_index": ', json.dumps(index), ', "readouts": ',
                      json.dumps(readouts), "}"]  # fmt: skip
        parts.append("}\n\n")
        return "".join(parts)
