"""Turning chat messages into model input, and locating the assistant-turn token.

The paper reads emotions at the token where the assistant's turn begins: the last token of the
prompt once the template has opened the assistant's turn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from affectlens.errors import AffectlensError

Message = dict[str, str]

_ROLES = {"system", "user", "assistant"}


def validate_messages(messages: object) -> list[Message]:
    """Check that ``messages`` is a list of ``{role, content}`` objects; return it typed."""
    if not isinstance(messages, list) or not messages:
        raise AffectlensError("a transcript must be a non-empty JSON list of messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise AffectlensError(f"message {index} needs a string 'content'")
        if message.get("role") not in _ROLES:
            raise AffectlensError(
                f"message {index} has role {message.get('role')!r}; use system, user or assistant"
            )
    return messages  # type: ignore[return-value]


def _plain_template(messages: Sequence[Message], add_generation_prompt: bool) -> str:
    """A template for base models without one: ``Role: content`` blocks."""
    parts = [f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages]
    if add_generation_prompt:
        parts.append("Assistant:")
    return "".join(parts)


def format_chat(tokenizer, messages: Sequence[Message], *, add_generation_prompt: bool) -> str:
    """The prompt text for ``messages``, with the tokenizer's template or a plain fallback.

    A transcript the model's template refuses (some demand that user and assistant alternate,
    starting with the user) fails with one :class:`AffectlensError` naming the template's reason.
    """
    if not getattr(tokenizer, "chat_template", None):
        return _plain_template(messages, add_generation_prompt)
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except (TemplateError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AffectlensError(
            f"the model's chat template refuses this transcript: {reason}"
        ) from None


def _opening_of_first_turn(tokenizer, message: Message) -> str:
    """The text before the content of ``message`` when it opens the transcript.

    Templates cannot render an empty conversation, so the opening is the common prefix of the
    message rendered with two different contents.
    """
    renders = [
        format_chat(tokenizer, [{**message, "content": probe}], add_generation_prompt=False)
        for probe in ("A", "B")
    ]
    return os.path.commonprefix(renders)


def assistant_turn_positions(tokenizer, messages: Sequence[Message]) -> list[int]:
    """Token index, in the tokenized full transcript, where each assistant turn begins.

    For a transcript ending in a user message, the last entry is the final prompt token once
    the assistant's turn is opened (where generation would start).
    """
    positions = []
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            prefix = (
                format_chat(tokenizer, messages[:index], add_generation_prompt=True)
                if index
                else _opening_of_first_turn(tokenizer, message)
            )
            positions.append(len(encode(tokenizer, prefix)) - 1)
    if messages[-1]["role"] != "assistant":
        prompt = format_chat(tokenizer, messages, add_generation_prompt=True)
        positions.append(len(encode(tokenizer, prompt)) - 1)
    return positions


def encode(tokenizer, text: str) -> list[int]:
    """Token ids for text that already carries any special tokens it needs.

    Chat templates write their own BOS; plain text gets the tokenizer's BOS if it uses one.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    wants_bos = bos is not None and getattr(tokenizer, "add_bos_token", False)
    if wants_bos and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids
