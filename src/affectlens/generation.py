"""``generate``: one text completion or chat reply, greedy or sampled, optionally batched.

Prompts are tokenized exactly as monitoring tokenizes them (chat template for message lists),
so a steered or monitored generation sees the same tokens. Batches are left-padded so every
row's continuation starts at the same column.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from affectlens.errors import AffectlensError
from affectlens.models.chat import encode, format_chat, validate_messages
from affectlens.models.loading import LoadedModel

Prompt = str | list[dict]


def prompt_ids(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids of a plain prompt, or of a transcript with the assistant's turn opened."""
    if isinstance(prompt, str):
        return encode(tokenizer, prompt)
    messages = validate_messages(prompt)
    return encode(tokenizer, format_chat(tokenizer, messages, add_generation_prompt=True))


def _pad_left(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        if row:
            ids[index, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[index, width - len(row) :] = 1
    return ids, mask


@torch.no_grad()
def generate_tokens(
    model: LoadedModel,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int | None = None,
) -> torch.Tensor:
    """New token ids [batch, generated] of a left-padded batch; temperature 0 means greedy.

    Rows that end early are filled with the pad token. Sampling is plain temperature sampling
    (the checkpoint's top-k/top-p defaults are overridden) so runs are comparable across
    models; ``seed`` seeds torch's global RNG.
    """
    if max_new_tokens < 1:
        raise AffectlensError("max_new_tokens must be at least 1")
    if temperature < 0:
        raise AffectlensError("temperature cannot be negative")
    if not prompts:
        raise AffectlensError("no prompts to generate from")
    rows = [prompt_ids(model.tokenizer, prompt) for prompt in prompts]
    if any(not row for row in rows):
        raise AffectlensError("cannot generate from an empty prompt")
    tokenizer = model.tokenizer
    ids, mask = _pad_left(rows, tokenizer.pad_token_id)
    if seed is not None:
        torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    output = model.model.generate(
        input_ids=ids.to(model.device),
        attention_mask=mask.to(model.device),
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        **(sampling if temperature > 0 else {"do_sample": False}),
    )
    return output[:, ids.shape[1] :].cpu()


def generate_batch(
    model: LoadedModel,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int | None = None,
) -> list[str]:
    """Continuations of several prompts (see :func:`generate_tokens` for the sampling)."""
    if not prompts:
        return []
    new_tokens = generate_tokens(
        model, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
    )
    return [model.tokenizer.decode(row, skip_special_tokens=True) for row in new_tokens.tolist()]


def generate(
    model: LoadedModel,
    prompt: Prompt,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int | None = None,
) -> str:
    """The continuation of a text prompt, or the assistant's reply to a transcript."""
    return generate_batch(
        model, [prompt], max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
    )[0]
