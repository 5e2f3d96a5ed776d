"""The one way a setting is checked: a `Rule` per key, stated once, read by every config.

Settings reach dimsearch from YAML files (a space's sections, ``data:``, ``train:``), from JSON
records (a trial's ``arch``) and from Python. Each key has one `Rule` (its kind, bounds,
choices, whether it may be null), and that rule is everything the code needs:

* the check, with YAML's strictness repaired: a bool never passes as a number, a string never
  becomes an int, ``1e-3`` (which PyYAML reads as a string) is a number where a number is meant;
* the message, always ``"<where> must be <expected>, got <value>"``, where ``<where>`` is a
  `Where` (file and key path, ``spaces/pit.yaml: train.epochs``) that also picks the exception
  class of the owner (`SpaceError`, `DataError`, `TrainingError`, `ArchError`);
* the JSON Schema of the key (`Rule.schema`), so ``dimsearch schema`` and an editor see the
  rules the loader applies.

`check_section` reads a settings mapping (unknown keys refused with the known ones listed);
`check_fields` checks a frozen config's fields when it is made. Rules between keys (``min_lr
<= lr``) stay with their owner, in code that states them.

Only the standard library is imported here: validating a file must not load torch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dimsearch._values import is_int, is_number
from dimsearch.errors import DimsearchError, SpaceError

__all__ = [
    "RULE_KINDS",
    "Rule",
    "Where",
    "as_number",
    "check_fields",
    "check_keys",
    "check_section",
    "kind_name",
    "section_schema",
    "shown",
]

# int and number are finite and never bools; choice is one of `Rule.choices` (strings); str is
# any string (``low`` and ``high`` are then its least and greatest length).
RULE_KINDS = ("int", "number", "bool", "choice", "str")

_JSON_TYPES = {"int": "integer", "number": "number", "bool": "boolean", "str": "string"}


@dataclass(frozen=True)
class Where:
    """A key path inside one source, so every error can say exactly where it is.

    ``Where("spaces/pit.yaml") / "arch" / "depth" / "low"`` reads ``arch.depth.low``; an int
    index reads ``arch.depth[2]``. Without a file the path leads the message (``train.lr must
    be ...``); ``raises`` is the owner's exception class.
    """

    file: str = ""
    path: str = ""
    raises: type[DimsearchError] = SpaceError

    def __truediv__(self, key: str | int) -> Where:
        if isinstance(key, int):
            return Where(self.file, f"{self.path}[{key}]", self.raises)
        return Where(self.file, f"{self.path}.{key}" if self.path else key, self.raises)

    def error(self, message: str) -> DimsearchError:
        """The owner's error reading ``"<file>: <key path> <message>"``."""
        head = f"{self.file}: " if self.file else ""
        return self.raises(head + (f"{self.path} {message}" if self.path else message))


def as_number(value: Any) -> Any:
    """``"1e-6"`` -> ``1e-6``: PyYAML reads exponents without a dot as strings (YAML 1.1).

    Anything that is not a numeric string comes back unchanged, for the rule to reject.
    """
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def kind_name(value: Any) -> str:
    """``null``, ``list``, ``str``...: what a value is, for "must be a mapping, got list"."""
    return "null" if value is None else type(value).__name__


_SHOWN = 60  # characters of a rejected value an error repeats; the rest is counted


def shown(value: Any) -> str:
    """``repr(value)``, cut to `_SHOWN` characters so an error stays one line."""
    text = repr(value)
    if len(text) <= _SHOWN:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[:_SHOWN]}...{size}"


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Rule:
    """What one setting accepts.

    Attributes:
        kind: one of `RULE_KINDS`.
        low, high: bounds of an ``int`` or ``number``; ``None`` means unbounded. For a
            ``str``, the least and greatest length (``low`` 1: not empty).
        low_open, high_open: the bound itself is excluded (``> 0`` rather than ``>= 0``).
        choices: the names a ``choice`` accepts, in the order messages list them.
        optional: ``null`` is accepted too (meaning "off" or "the default").
        text: how messages state the rule, when the wording derived from the fields is not
            the one users know (``a positive integer``); see `expected`.
        test: a condition the fields above cannot say (checked after them).
        schema_extra: JSON Schema for ``test``, merged into `schema`.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False
    text: str = ""
    test: Callable[[Any], bool] | None = None
    schema_extra: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in RULE_KINDS:  # a bug in a rule table, not user input
            raise ValueError(f"Rule.kind must be one of {list(RULE_KINDS)}, got {self.kind!r}")

    @property
    def expected(self) -> str:
        """The rule in words: ``an integer >= 1``, ``null or a number in [0, 1)``."""
        if self.text:
            return self.text
        if self.kind == "bool":
            said = "true or false"
        elif self.kind == "choice":
            said = f"one of {list(self.choices)}"
        elif self.kind == "str":
            said = "a non-empty string" if self.low else "a string"
            if self.high is not None:
                said += f" of at most {_bound(self.high)} characters"
        else:
            noun = "an integer" if self.kind == "int" else "a number"
            low, high = self.low, self.high
            if low is not None and high is not None:
                left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
                said = f"{noun} in {left}{_bound(low)}, {_bound(high)}{right}"
            elif low is not None:
                said = f"{noun} {'>' if self.low_open else '>='} {_bound(low)}"
            elif high is not None:
                said = f"{noun} {'<' if self.high_open else '<='} {_bound(high)}"
            else:
                said = noun
        return f"null or {said}" if self.optional else said

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (already converted, see `parse`) meets the rule."""
        if value is None:
            return self.optional
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if self.kind == "str":
            ok = isinstance(value, str) and len(value) >= (self.low or 0)
            ok = ok and (self.high is None or len(value) <= self.high)
        else:
            ok = (is_int(value) if self.kind == "int" else is_number(value)) and self._within(value)
        return ok and (self.test is None or self.test(value))

    def _within(self, value: float) -> bool:
        low, high = self.low, self.high
        if low is not None and (value <= low if self.low_open else value < low):
            return False
        return not (high is not None and (value >= high if self.high_open else value > high))

    def check(self, value: Any, where: Where) -> None:
        """Raise ``where``'s error, stating the rule and the value, unless ``value`` passes."""
        if not self.accepts(value):
            raise where.error(f"must be {self.expected}, got {shown(value)}")

    def parse(self, value: Any, where: Where) -> Any:
        """A value read from a file, checked and normalised.

        Numbers may be written as strings (``1e-3``, see `as_number`) and come back as floats
        (``lr: 1`` is ``1.0``, as the config and its JSON hold it); paths may be `os.PathLike`
        and come back as strings. Nothing else is converted: ``"3"`` is not an integer.
        """
        if self.kind == "number":
            value = as_number(value)
        elif self.kind == "str" and isinstance(value, os.PathLike):
            value = os.fspath(value)
        self.check(value, where)
        return float(value) if self.kind == "number" and value is not None else value

    def schema(self) -> dict[str, Any]:
        """The rule as JSON Schema (2020-12); ``test`` only through ``schema_extra``."""
        out: dict[str, Any]
        if self.kind == "choice":
            out = {"enum": [*self.choices, *([None] if self.optional else [])]}
        else:
            kind = _JSON_TYPES[self.kind]
            out = {"type": [kind, "null"] if self.optional else kind}
            if self.kind == "str":
                if self.low:
                    out["minLength"] = self.low
                if self.high is not None:
                    out["maxLength"] = self.high
            else:
                if self.low is not None:
                    out["exclusiveMinimum" if self.low_open else "minimum"] = self.low
                if self.high is not None:
                    out["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        out.update(self.schema_extra or {})
        out["description"] = f"must be {self.expected}"
        return out


def check_section(
    raw: Any,
    where: Where,
    rules: Mapping[str, Rule],
    unknown: str = "is not a known key; known keys are {known}",
) -> dict[str, Any]:
    """The keys a settings mapping sets, each checked and normalised by its rule (`Rule.parse`).

    ``None`` is an empty mapping (a YAML section left blank). Omitted keys are not in the
    result: the owner's dataclass defaults fill them, so a default has one home.

    Args:
        raw: the mapping read from a file.
        where: where it is (errors name ``where / key``).
        rules: the rule of every known key, in the order keys are checked and listed.
        unknown: the message for an unknown key (see `check_keys`).

    Raises:
        DimsearchError: of ``where``'s class: not a mapping, an unknown key (checked first,
            in file order), or a value that breaks its rule (in rule order).
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise where.error(f"must be a mapping with keys {list(rules)}, got {kind_name(raw)}")
    check_keys(raw, where, list(rules), unknown)
    return {key: rule.parse(raw[key], where / key) for key, rule in rules.items() if key in raw}


def check_keys(
    raw: Mapping[Any, Any],
    where: Where,
    known: Sequence[str],
    unknown: str = "is not a known key; known keys are {known}",
) -> None:
    """Refuse the first key of ``raw`` (in file order) that is not ``known``, listing those.

    ``unknown`` is the message; ``{known}`` is the list of known keys, ``{sorted}`` the same
    sorted. A misspelt key must fail: ignored, it would leave a default the reader of the file
    believes was changed.
    """
    for key in raw:
        if key not in known:
            message = unknown.format(known=list(known), sorted=sorted(known))
            raise (where / str(key)).error(message)


def check_fields(obj: Any, rules: Mapping[str, Rule], where: Where) -> None:
    """Check the fields of a config being made (its ``__post_init__``), in rule order.

    Values are taken as given, with no conversion: this is Python input, not a file.
    """
    for key, rule in rules.items():
        rule.check(getattr(obj, key), where / key)


def section_schema(
    rules: Mapping[str, Rule], owner: type | None = None, description: str = ""
) -> dict[str, Any]:
    """JSON Schema of a mapping checked by `check_section`: no other keys, each by its rule.

    ``owner`` (a dataclass built from the mapping) supplies the defaults shown to editors.
    """
    defaults: dict[str, Any] = {}
    if owner is not None:
        for f in dataclasses.fields(owner):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
    properties = {}
    for key, rule in rules.items():
        prop = rule.schema()
        if key in defaults:
            prop["default"] = defaults[key]
        properties[key] = prop
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if description:
        out["description"] = description
    return out
