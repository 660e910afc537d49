"""``affectlens serve``: an OpenAI-compatible HTTP server with emotion telemetry and guardrails."""
