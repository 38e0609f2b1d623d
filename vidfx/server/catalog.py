"""The catalogue of host effects: which node types the OFX plugin exposes, and how.

Each node class declares how a host presents it (``Node.host``, a ``HostHints``); this
module turns those declarations into the ``nodes`` reply the plugin reads (format in
docs/ofx.md).
"""

from __future__ import annotations

from typing import Any

from vidfx.core.node import Node, SourceNode
from vidfx.core.registry import node_types


def is_cut_transition(cls: type[Node]) -> bool:
    """A one-input node shown as a transition across a cut between two host clips."""
    return cls.host.context == "cut_transition"


def ofx_inputs(cls: type[Node]) -> int:
    """Image inputs of the OFX effect (2 for a cut transition made of a 1-input node)."""
    return 2 if is_cut_transition(cls) else cls.num_inputs


def hidden_params(cls: type[Node]) -> tuple[str, ...]:
    """Parameters the bridge sets itself (not shown in the host)."""
    live = transition_param(cls)
    return cls.host.hidden + ((live,) if live else ())


def ofx_nodes() -> dict[str, type[Node]]:
    """Node types that become OFX effects: exposed by their hints, with one or two image inputs."""
    out = {}
    for name, cls in node_types().items():
        if not cls.host.exposed or issubclass(cls, SourceNode) or cls.num_inputs not in (1, 2):
            continue
        out[name] = cls
    return out


def context_of(cls: type[Node]) -> str:
    """``filter`` for one input, ``transition`` (SourceFrom, SourceTo, Transition) for two."""
    return "transition" if ofx_inputs(cls) == 2 else "filter"


def transition_param(cls: type[Node]) -> str:
    """The float parameter the host's Transition value drives, or '' if the node has none."""
    name = cls.host.transition_param
    if name and not any(p.name == name and p.kind == "float" for p in cls.params):
        raise ValueError(f"{cls.type_name}: host.transition_param {name!r} is not a float parameter")
    return name


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def describe_fields() -> dict[str, object]:
    """The reply fields of the ``nodes`` request (format in docs/ofx.md)."""
    fields: dict[str, object] = {}
    nodes = ofx_nodes()
    fields["count"] = len(nodes)
    for i, (name, cls) in enumerate(nodes.items()):
        pre = f"node.{i}."
        fields[pre + "name"] = name
        fields[pre + "label"] = name.replace("_", " ").title()
        doc = (cls.description or cls.__doc__ or "").strip()
        fields[pre + "doc"] = doc.splitlines()[0] if doc else ""
        fields[pre + "context"] = context_of(cls)
        fields[pre + "inputs"] = ofx_inputs(cls)
        fields[pre + "transition_param"] = transition_param(cls)
        params = [p for p in cls.params if p.name not in hidden_params(cls)]
        fields[pre + "params"] = len(params)
        for j, p in enumerate(params):
            pp = f"{pre}param.{j}."
            fields[pp + "name"] = p.name
            fields[pp + "kind"] = p.kind
            fields[pp + "default"] = _text(cls.host.defaults.get(p.name, p.default))
            fields[pp + "min"] = _text(p.min)
            fields[pp + "max"] = _text(p.max)
            fields[pp + "choices"] = _text(p.choices)
            fields[pp + "doc"] = p.doc
            fields[pp + "required"] = int(p.required)
    return fields
