"""Typed node parameters: one schema for YAML, ``--set``, Python kwargs and OFX parameters."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import yaml

from .errors import ParamError

KINDS = ("int", "float", "bool", "str", "choice", "list")


@dataclass(frozen=True)
class Param:
    """One parameter of a node.

    kind: ``int``, ``float``, ``bool``, ``str``, ``choice`` (one of ``choices``) or ``list``
    (a list of strings; with ``choices`` every item must be one of them).
    ``min``/``max`` bound numbers. ``default=None`` with ``required=True`` means the user
    must give it.
    """

    name: str
    kind: str
    default: Any = None
    doc: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    required: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown param kind {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"choice parameter {self.name!r} has no choices")

    def describe(self) -> str:
        """A one-line human description: type, range/choices, default."""
        kind = self.kind
        if self.choices:
            kind += "{" + ",".join(self.choices) + "}"
        if self.min is not None or self.max is not None:
            lo = "" if self.min is None else f"{self.min:g}"
            hi = "" if self.max is None else f"{self.max:g}"
            kind += f"[{lo}..{hi}]"
        default = "required" if self.required else f"default {self.default!r}"
        return f"{self.name}: {kind}, {default}. {self.doc}".strip()

    def coerce(self, value: Any, owner: str) -> Any:
        """Check and convert one value; raise ParamError naming ``owner.name`` if it is bad."""
        where = f"{owner}.{self.name}"
        if isinstance(value, str) and self.kind not in ("str", "choice"):
            value = parse_text(value)
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise ParamError(f"{where}: expected true or false, got {value!r}")
        if self.kind in ("int", "float") and isinstance(value, float) and not math.isfinite(value):
            raise ParamError(f"{where}: expected a finite number, got {value!r}")
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise ParamError(f"{where}: expected an integer, got {value!r}")
            return self._check_range(int(value), where)
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParamError(f"{where}: expected a number, got {value!r}")
            return self._check_range(float(value), where)
        if self.kind == "str":
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ParamError(f"{where}: expected text, got {value!r}")
            return str(value)
        if self.kind == "choice":
            value = str(value)
            assert self.choices  # checked in __post_init__
            if value not in self.choices:
                raise ParamError(f"{where}: {value!r} is not one of {', '.join(self.choices)}")
            return value
        # list
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ParamError(f"{where}: expected a list, got {value!r}")
        items = [str(v) for v in value]
        if self.choices:
            bad = [v for v in items if v not in self.choices]
            if bad:
                raise ParamError(f"{where}: unknown value(s) {', '.join(bad)}; valid: {', '.join(self.choices)}")
        return items

    def _check_range(self, value: float, where: str) -> float:
        if self.min is not None and value < self.min:
            raise ParamError(f"{where}: {value} is below the minimum {self.min:g}")
        if self.max is not None and value > self.max:
            raise ParamError(f"{where}: {value} is above the maximum {self.max:g}")
        return value


MAX_YAML_VALUES = 100_000  # far beyond any real graph; bounds YAML alias ("billion laughs") expansion


def count_values(doc: Any, limit: int = MAX_YAML_VALUES) -> int:
    """The number of scalars, lists and mappings in a parsed YAML document, counting shared
    (aliased) parts every time they appear, as a consumer would expand them. Stops early
    and raises ParamError past ``limit``, without expanding further."""
    count = 0
    stack = [doc]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            raise ParamError(f"the YAML expands to more than {limit} values (nested aliases?)")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def safe_yaml(text: str) -> Any:
    """``yaml.safe_load`` with alias expansion bounded (``count_values``)."""
    doc = yaml.safe_load(text)
    count_values(doc)
    return doc


def parse_text(text: str) -> Any:
    """Parse a value given as text (``--set``): YAML scalars and lists, so ``4``, ``0.5``,
    ``true`` and ``[sky, road]`` all work."""
    try:
        return safe_yaml(text)
    except yaml.YAMLError:
        return text


def resolve_params(schema: Sequence[Param], values: dict[str, Any], owner: str) -> SimpleNamespace:
    """Validate user values against a schema and fill in defaults.

    Unknown names raise ParamError listing the valid ones.
    """
    known = {p.name: p for p in schema}
    unknown = [k for k in values if k not in known]
    if unknown:
        valid = ", ".join(known) or "none"
        raise ParamError(f"{owner}: unknown parameter {unknown[0]!r} (valid: {valid})")
    out = {}
    for p in schema:
        if p.name in values and values[p.name] is not None:
            out[p.name] = p.coerce(values[p.name], owner)
        elif p.required:
            raise ParamError(f"{owner}.{p.name}: required parameter is missing")
        else:
            out[p.name] = p.default
    return SimpleNamespace(**out)
