"""Guardrail policies as data: parsed from YAML/JSON or built in Python, checked before use.

A policy is a list of rules over one row's per-token emotion readouts::

    name: calm-down
    shadow: false          # true: record what the rules would do, change nothing
    units: z               # the readout units the thresholds are in
    rules:
      - name: desperate-hot
        when: {emotion: desperate, stat: ema, window: 8, above: 1.5}
        until: {below: 0.8}              # hysteresis: the steer stays on until this
        action: {steer: {calm: 0.1}}
      - name: afraid-flag
        when: {emotion: afraid, above: 3.0, for: 4}   # 4 tokens in a row
        action: flag
      - name: hostile-stop
        when: {emotion: hostile, above: 4.0}
        action: stop

``stat`` is ``value`` (the token's readout, the default), ``ema`` (exponential moving average
with alpha = 2 / (window + 1)) or ``mean`` (mean of the last ``window`` tokens). ``for`` asks
for that many consecutive tokens above the threshold. Every malformed policy is refused with
one line naming the rule and the field.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from affectlens.errors import AffectlensError

STATS = ("value", "ema", "mean")
UNITS = ("raw", "z", "p99")
_POLICY_KEYS = {"name", "shadow", "units", "rules"}
_RULE_KEYS = {"name", "when", "until", "action"}
_WHEN_KEYS = {"emotion", "stat", "window", "above", "for"}


@dataclass(frozen=True)
class Trigger:
    """When a rule fires: ``stat`` of ``emotion`` above ``above`` for ``consecutive`` tokens."""

    emotion: str
    above: float
    stat: str = "value"
    window: int = 1
    consecutive: int = 1


@dataclass(frozen=True)
class Rule:
    """A trigger and its action: steer (emotion -> alpha, with hysteresis), flag or stop."""

    name: str
    trigger: Trigger
    action: str
    steer: dict[str, float] = field(default_factory=dict)
    release_below: float | None = None

    def to_dict(self) -> dict:
        when: dict = {"emotion": self.trigger.emotion, "stat": self.trigger.stat}
        if self.trigger.stat != "value":
            when["window"] = self.trigger.window
        when["above"] = self.trigger.above
        if self.trigger.consecutive != 1:
            when["for"] = self.trigger.consecutive
        data: dict = {"name": self.name, "when": when}
        if self.action == "steer":
            data["until"] = {"below": self.release_below}
            data["action"] = {"steer": dict(self.steer)}
        else:
            data["action"] = self.action
        return data


def _fail(where: str, message: str):
    raise AffectlensError(f"guardrail policy: {where}: {message}")


def _number(value, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(where, f"{name} must be a finite number, not {value!r}")
    return float(value)


def _unknown(data: Mapping, allowed: set[str], where: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        _fail(where, f"unknown key {extra[0]!r} (expected one of {', '.join(sorted(allowed))})")


def _parse_rule(data, index: int) -> Rule:
    where = f"rule {index + 1}"
    if not isinstance(data, Mapping):
        _fail(where, "a rule must be a mapping with when and action")
    name = data.get("name", f"rule-{index + 1}")
    if not isinstance(name, str) or not name:
        _fail(where, "name must be a non-empty string")
    where = f"rule {name!r}"
    _unknown(data, _RULE_KEYS, where)
    when = data.get("when")
    if not isinstance(when, Mapping):
        _fail(where, "when must be a mapping like {emotion: afraid, above: 3.0}")
    _unknown(when, _WHEN_KEYS, f"{where} when")
    emotion = when.get("emotion")
    if not isinstance(emotion, str) or not emotion:
        _fail(where, "when.emotion must name an emotion")
    if "above" not in when:
        _fail(where, "when.above (the threshold) is missing")
    above = _number(when["above"], where, "when.above")
    stat = when.get("stat", "value")
    if stat not in STATS:
        _fail(where, f"when.stat must be one of {', '.join(STATS)}, not {stat!r}")
    window = when.get("window", 1 if stat == "value" else None)
    if window is None:
        _fail(where, f"when.window (tokens) is needed for stat {stat!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        _fail(where, f"when.window must be a whole number of tokens >= 1, not {window!r}")
    consecutive = when.get("for", 1)
    if isinstance(consecutive, bool) or not isinstance(consecutive, int) or consecutive < 1:
        _fail(where, f"when.for must be a whole number of tokens >= 1, not {consecutive!r}")
    trigger = Trigger(emotion, above, stat, int(window), int(consecutive))
    action = data.get("action")
    if action in ("flag", "stop"):
        if "until" in data:
            _fail(where, "until only applies to steer actions")
        return Rule(name, trigger, action)
    if not (isinstance(action, Mapping) and set(action) == {"steer"}):
        _fail(where, "action must be flag, stop or {steer: {emotion: alpha}}")
    steer = action["steer"]
    if not isinstance(steer, Mapping) or not steer:
        _fail(where, "action.steer must map emotions to alphas")
    alphas = {str(e): _number(a, where, f"action.steer.{e}") for e, a in steer.items()}
    until = data.get("until")
    if not isinstance(until, Mapping) or set(until) != {"below"}:
        _fail(where, "a steer rule needs until: {below: VALUE} (when to switch the steer off)")
    below = _number(until["below"], where, "until.below")
    if below >= above:
        _fail(where, f"until.below ({below:g}) must be lower than when.above ({above:g})")
    return Rule(name, trigger, "steer", alphas, below)


@dataclass(frozen=True)
class GuardrailPolicy:
    """A validated set of rules, applied per request row (see the module docs)."""

    name: str
    rules: tuple[Rule, ...]
    shadow: bool = False
    units: str = "z"

    @classmethod
    def from_dict(cls, data) -> GuardrailPolicy:
        """Parse a policy; one clear :class:`AffectlensError` line for anything malformed."""
        if not isinstance(data, Mapping):
            _fail("policy", "a policy must be a mapping with rules")
        _unknown(data, _POLICY_KEYS, "policy")
        rules = data.get("rules")
        if not isinstance(rules, Sequence) or isinstance(rules, str) or not rules:
            _fail("policy", "rules must be a non-empty list")
        parsed = tuple(_parse_rule(rule, index) for index, rule in enumerate(rules))
        names = [rule.name for rule in parsed]
        if len(set(names)) != len(names):
            _fail("policy", "rule names must be unique")
        shadow = data.get("shadow", False)
        if not isinstance(shadow, bool):
            _fail("policy", f"shadow must be true or false, not {shadow!r}")
        units = data.get("units", "z")
        if units not in UNITS:
            _fail("policy", f"units must be one of {', '.join(UNITS)}, not {units!r}")
        name = data.get("name", "policy")
        if not isinstance(name, str) or not name:
            _fail("policy", "name must be a non-empty string")
        return cls(name, parsed, shadow, units)

    @classmethod
    def from_file(cls, path: str | Path) -> GuardrailPolicy:
        """Read a ``.yaml``/``.yml``/``.json`` policy file."""
        return load_policy(path)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shadow": self.shadow,
            "units": self.units,
            "rules": [rule.to_dict() for rule in self.rules],
        }

    def emotions(self) -> set[str]:
        """Emotions whose readouts the rules need."""
        return {rule.trigger.emotion for rule in self.rules}

    def check(self, emotions: Sequence[str], max_alpha: float = 1.0) -> None:
        """Refuse emotions the artifact lacks and steer alphas outside [-max_alpha, max_alpha]."""
        known = set(emotions)
        for rule in self.rules:
            for emotion in [rule.trigger.emotion, *rule.steer]:
                if emotion not in known:
                    close = difflib.get_close_matches(emotion, list(known), n=1)
                    hint = f"; did you mean {close[0]}?" if close else ""
                    _fail(f"rule {rule.name!r}", f"unknown emotion {emotion!r}{hint}")
            for emotion, alpha in rule.steer.items():
                if abs(alpha) > max_alpha:
                    _fail(
                        f"rule {rule.name!r}",
                        f"alpha {alpha:g} for {emotion!r} is outside [-{max_alpha:g}, "
                        f"{max_alpha:g}]",
                    )

    def start(self):
        """Fresh per-row state for one request."""
        from affectlens.guardrails.run import GuardrailRun

        return GuardrailRun(self)


def load_policy(path: str | Path) -> GuardrailPolicy:
    """A policy from a YAML or JSON file, with one clear line for a missing or bad file."""
    source = Path(path)
    if not source.is_file():
        raise AffectlensError(f"guardrail policy file not found: {source}")
    try:
        text = source.read_text(encoding="utf-8")
        data = json.loads(text) if source.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AffectlensError(f"cannot read guardrail policy {source}: {first}") from None
    return GuardrailPolicy.from_dict(data)
