"""Request and response models of the OpenAI-compatible API, and the ``affectlens`` extension.

Requests follow OpenAI's chat-completions and completions shapes for the fields that apply;
everything emotion-related travels in one extra field, ``affectlens`` (what the official client
sends with ``extra_body={"affectlens": {...}}``). Unknown OpenAI fields are accepted and ignored
so existing clients keep working.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AffectlensOptions(BaseModel):
    """Per-request steering, telemetry and guardrail settings."""

    model_config = ConfigDict(extra="forbid")

    steer: dict[str, float] = Field(default_factory=dict, description="emotion -> alpha")
    layers: list[int] | None = Field(None, description="steering layers (artifact default)")
    positions: Literal["all", "prompt", "generated"] = "all"
    telemetry: Literal["none", "summary", "tokens"] = "summary"
    emotions: list[str] | None = Field(None, description="emotions to report (default: all)")
    readout_layers: list[int] | None = Field(None, description="layers read (artifact default)")
    units: Literal["raw", "z", "p99"] | None = Field(None, description="server default if unset")
    guardrail: dict | str | None = Field(None, description="a policy inline, or a loaded name")


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)  # what torch.Generator takes
    stop: str | list[str] | None = None
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    affectlens: AffectlensOptions | None = None

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_Common):
    prompt: str = Field(min_length=1)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
