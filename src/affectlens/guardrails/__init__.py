"""Closed-loop guardrails over per-token emotion readouts (policies as data; see ``policy``)."""

from affectlens.guardrails.policy import GuardrailPolicy, Rule, Trigger, load_policy
from affectlens.guardrails.run import GuardrailEvent, GuardrailRun

__all__ = ["GuardrailEvent", "GuardrailPolicy", "GuardrailRun", "Rule", "Trigger", "load_policy"]
