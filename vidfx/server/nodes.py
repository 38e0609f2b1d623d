"""Which nodes the OFX plugin exposes, and how their schemas are described to it."""
from __future__ import annotations

from vidfx.core.node import Node, SourceNode
from vidfx.core.registry import node_types

# Modules whose nodes read or write files: they make no sense as effects inside a host.
_FILE_NODE_MODULES = ("vidfx.io.",)
# Names a two-input node may give its blend parameter; the host's Transition drives it.
TRANSITION_PARAM_NAMES = ("transition", "t", "mix", "amount")
# Single-input nodes that smooth a cut inside one clip, exposed as OFX transitions: the
# outgoing clip (SourceFrom) and the incoming one (SourceTo) are joined into one clip with a
# cut at the transition's centre, and the transition's length is the effect's duration. The
# parameters named here are set that way, so the host does not show them.
CUT_TRANSITIONS = {"jumpcut": ("cuts", "frames", "seconds")}
# Defaults that suit an effect in a host better than the node's own (which suit `vidfx run`):
# in an editor, Segment is mostly used to key people out, as an alpha channel.
OFX_DEFAULTS = {"segment": {"mode": "person", "output": "alpha"}}


def ofx_inputs(cls: type[Node]) -> int:
    """Image inputs of the OFX effect (2 for a cut transition made of a 1-input node)."""
    return 2 if cls.type_name in CUT_TRANSITIONS else cls.num_inputs


def hidden_params(cls: type[Node]) -> tuple[str, ...]:
    """Parameters the bridge sets itself (not shown in the host)."""
    return CUT_TRANSITIONS.get(cls.type_name, ()) + ((transition_param(cls),) if transition_param(cls) else ())


def ofx_nodes() -> dict[str, type[Node]]:
    """Node types that become OFX plugins: one or two image inputs, not file readers/writers."""
    out = {}
    for name, cls in sorted(node_types().items()):
        if issubclass(cls, SourceNode) or cls.num_inputs not in (1, 2):
            continue
        if cls.__module__.startswith(_FILE_NODE_MODULES):
            continue
        if cls.output_length is not Node.output_length:
            continue  # trims and selects change the timeline, which a host effect cannot
        out[name] = cls
    return out


def context_of(cls: type[Node]) -> str:
    """``filter`` for one input, ``transition`` (SourceFrom, SourceTo, Transition) for two."""
    return "transition" if ofx_inputs(cls) == 2 else "filter"


def transition_param(cls: type[Node]) -> str:
    """The float parameter the host's Transition value feeds, or '' if the node has none."""
    if cls.num_inputs != 2:
        return ""
    for p in cls.params:
        if p.kind == "float" and p.name in TRANSITION_PARAM_NAMES:
            return p.name
    return ""


def _text(value) -> str:
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
            fields[pp + "default"] = _text(OFX_DEFAULTS.get(name, {}).get(p.name, p.default))
            fields[pp + "min"] = _text(p.min)
            fields[pp + "max"] = _text(p.max)
            fields[pp + "choices"] = _text(p.choices)
            fields[pp + "doc"] = p.doc
            fields[pp + "required"] = int(p.required)
    return fields
