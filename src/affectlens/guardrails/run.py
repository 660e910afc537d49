"""A guardrail policy running over one row: per-token statistics, firings and their effect.

The engine calls :meth:`GuardrailRun.observe` with each generated token's readouts (plain
floats, so it costs microseconds per token), adds :attr:`GuardrailRun.steering` to the row's
steering from the next step on, and ends the row when :attr:`GuardrailRun.stopped` is set.
In shadow mode the same events are recorded, marked ``shadow``, and nothing changes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from affectlens.guardrails.policy import GuardrailPolicy, Rule


@dataclass(frozen=True)
class GuardrailEvent:
    """One firing: which rule, what it did, at which token, and the values that triggered it."""

    rule: str
    action: str
    token_index: int
    values: dict[str, float]
    shadow: bool
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "rule": self.rule,
            "action": self.action,
            "token_index": self.token_index,
            "values": dict(self.values),
            "shadow": self.shadow,
            "detail": dict(self.detail),
        }


class _RuleState:
    """One rule's statistic, consecutive-token count and (for steer rules) on/off state."""

    __slots__ = ("rule", "ema", "recent", "total", "streak", "active", "fired")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.ema: float | None = None
        self.recent: deque[float] = deque(maxlen=rule.trigger.window)
        self.total = 0.0
        self.streak = 0
        self.active = False
        self.fired = False

    def statistic(self, value: float) -> float:
        trigger = self.rule.trigger
        if trigger.stat == "ema":
            alpha = 2.0 / (trigger.window + 1)
            self.ema = value if self.ema is None else alpha * value + (1 - alpha) * self.ema
            return self.ema
        if trigger.stat == "mean":
            if len(self.recent) == self.recent.maxlen:
                self.total -= self.recent[0]
            self.recent.append(value)
            self.total += value
            return self.total / len(self.recent)
        return value


class GuardrailRun:
    """The state of one policy over one request's tokens."""

    def __init__(self, policy: GuardrailPolicy) -> None:
        self.policy = policy
        self._states = [_RuleState(rule) for rule in policy.rules]
        self.steering: dict[str, float] = {}
        self.stopped = False
        self.events: list[GuardrailEvent] = []

    def observe(self, token_index: int, readouts: Mapping[str, float]) -> list[GuardrailEvent]:
        """Update every rule with one token's readouts; return the events it fired."""
        fired: list[GuardrailEvent] = []
        changed = False
        shadow = self.policy.shadow
        for state in self._states:
            rule = state.rule
            value = state.statistic(float(readouts[rule.trigger.emotion]))
            state.streak = state.streak + 1 if value > rule.trigger.above else 0
            values = {rule.trigger.emotion: value}
            if rule.action == "steer":
                if not state.active and state.streak >= rule.trigger.consecutive:
                    state.active = changed = True
                    fired.append(self._event(rule, "steer_on", token_index, values, rule.steer))
                elif state.active and value < rule.release_below:
                    state.active, changed = False, True
                    fired.append(self._event(rule, "steer_off", token_index, values, rule.steer))
            elif state.streak >= rule.trigger.consecutive and not state.fired:
                # a flag fires once per crossing; it re-arms when the value falls back
                state.fired = True
                fired.append(self._event(rule, rule.action, token_index, values, {}))
                if rule.action == "stop" and not shadow:
                    self.stopped = True
            if state.streak == 0:
                state.fired = False
        if changed and not shadow:
            self.steering = self._active_steering()
        self.events.extend(fired)
        return fired

    def _active_steering(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for state in self._states:
            if state.active:
                for emotion, alpha in state.rule.steer.items():
                    total[emotion] = total.get(emotion, 0.0) + alpha
        return total

    def _event(self, rule: Rule, action: str, index: int, values, steer) -> GuardrailEvent:
        detail = {"steer": dict(steer)} if steer else {}
        return GuardrailEvent(rule.name, action, index, values, self.policy.shadow, detail)
