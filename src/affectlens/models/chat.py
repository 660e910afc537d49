"""Turning chat messages into model input, and locating the assistant-turn token.

The paper reads emotions at the token where the assistant's turn begins: the last token of the
prompt once the template has opened the assistant's turn.
"""

from __future__ import annotations

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
    """The prompt text for ``messages``, with the tokenizer's template or a plain fallback."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
    return _plain_template(messages, add_generation_prompt)


def assistant_turn_positions(tokenizer, messages: Sequence[Message]) -> list[int]:
    """Token index, in the tokenized full transcript, where each assistant turn begins.

    For a transcript ending in a user message, the last entry is the final prompt token once
    the assistant's turn is opened (where generation would start).
    """
    positions = []
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            prefix = format_chat(tokenizer, messages[:index], add_generation_prompt=True)
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
