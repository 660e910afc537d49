"""A client for any OpenAI-compatible server, usable wherever a story backend is wanted.

:class:`OpenAICompatible` talks to ``affectlens serve``, vLLM, llama.cpp's ``llama-server`` or
any other server of OpenAI's chat-completions API through the official ``openai`` package. It
implements :class:`affectlens.corpus.generate.StoryBackend`: a batch of prompts goes out as
concurrent requests (at most ``max_concurrency`` at a time, so a continuous-batching server
decodes them together), each with its own seed, and the replies come back in prompt order.

Row ``i`` of a batch seeded ``seed`` is sent with seed ``seed + i``, the convention of
:func:`affectlens.generation.generate_batch`, so against ``affectlens serve`` a batch gives
the texts a local model gives for the same prompts and seed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import openai

from affectlens.errors import AffectlensError
from affectlens.generation import Prompt, row_seeds

log = logging.getLogger(__name__)


class OpenAICompatible:
    """Chat (or text) completions from an OpenAI-compatible server at ``base_url``.

    ``base_url`` ends in ``/v1`` (e.g. ``http://127.0.0.1:8000/v1``). ``model`` defaults to
    the first model the server lists at ``GET /v1/models`` (asked once, at construction);
    ``api_key`` to ``$OPENAI_API_KEY``, or ``"none"`` for servers that need no key.
    ``timeout`` is seconds per request; ``max_retries`` retries a failed connection, a
    timeout, a 429 or a 5xx with back-off. Every failure reaches the caller as one
    :class:`AffectlensError` line naming the server.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 300.0,
        max_retries: int = 2,
        max_concurrency: int = 8,
    ) -> None:
        if max_concurrency < 1:
            raise AffectlensError("the backend's concurrency must be at least 1")
        if max_retries < 0 or timeout <= 0:
            raise AffectlensError("the backend's retries cannot be negative, nor its timeout 0")
        self.base_url = base_url.rstrip("/")
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none",
            timeout=timeout,
            max_retries=max_retries,
        )
        self.model = model or self._first_model()
        log.info("backend %s, model %s", self.base_url, self.model)

    def _first_model(self) -> str:
        listed = self._call(lambda: self.client.models.list().data)
        if not listed:
            raise AffectlensError(f"the server at {self.base_url} lists no model")
        return listed[0].id

    def complete(
        self,
        prompts: list[list[dict]] | Sequence[Prompt],
        *,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[str]:
        """One reply per prompt: a chat transcript (list of messages) or a plain text prompt."""
        if not prompts:
            return []
        jobs = list(zip(prompts, row_seeds(len(prompts), seed), strict=True))
        workers = min(self.max_concurrency, len(jobs))

        def one(job: tuple[Prompt, int | None]) -> str:
            prompt, row_seed = job
            return self._call(lambda: self._request(prompt, max_new_tokens, temperature, row_seed))

        if workers == 1:
            return [one(job) for job in jobs]
        with ThreadPoolExecutor(workers, thread_name_prefix="affectlens-backend") as pool:
            futures = [pool.submit(one, job) for job in jobs]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:  # the first failure ends the batch
                    future.cancel()
                raise

    def _request(
        self, prompt: Prompt, max_new_tokens: int, temperature: float, seed: int | None
    ) -> str:
        common = {
            "model": self.model,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
        }
        if seed is not None:
            common["seed"] = seed
        if isinstance(prompt, str):
            reply = self.client.completions.create(prompt=prompt, **common)
            return reply.choices[0].text if reply.choices else ""
        reply = self.client.chat.completions.create(messages=list(prompt), **common)
        return (reply.choices[0].message.content or "") if reply.choices else ""

    def _call(self, action):
        """``action()``, with the client's exceptions turned into one line naming the server."""
        try:
            return action()
        except openai.APITimeoutError:
            raise AffectlensError(
                f"the server at {self.base_url} did not answer within {self.timeout:g} seconds"
            ) from None
        except openai.APIConnectionError:
            raise AffectlensError(
                f"no server at {self.base_url} (connection failed); start one with "
                "'affectlens serve' or check the URL"
            ) from None
        except openai.APIStatusError as error:
            raise AffectlensError(
                f"the server at {self.base_url} refused the request "
                f"(HTTP {error.status_code}): {_message(error)}"
            ) from None
        except openai.OpenAIError as error:
            raise AffectlensError(f"the server at {self.base_url} failed: {error}") from None

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    def __enter__(self) -> OpenAICompatible:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _message(error: openai.APIStatusError) -> str:
    """The server's own error message, on one line."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        text = inner.get("message") if isinstance(inner, dict) else inner
        if text:
            return " ".join(str(text).split())
    return " ".join(str(error.message).split())
