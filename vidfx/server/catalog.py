"""The catalogue of host effects: which node types the OFX plugin exposes, and how.

Each node class declares how a host presents it (``Node.host``, a ``HostHints``); this
module turns those declarations into the ``nodes`` reply the plugin reads (format in
docs/ofx.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from vidfx.core.node import Node, SourceNode
from vidfx.core.registry import node_types


def is_cut_transition(cls: type[Node]) -> bool:
    """A one-input node shown as a transition across a cut between two host clips."""
    return cls.host.context == "cut_transition"


def ofx_inputs(cls: type[Node]) -> int:
    """Required image inputs of the OFX effect (2 for a cut transition made of a 1-input node,
    1 for a filter with a mask clip: the mask is an optional extra, see ``mask_clip``)."""
    if cls.host.mask_input:
        return 1
    return 2 if is_cut_transition(cls) else cls.num_inputs


def mask_clip(cls: type[Node]) -> str:
    """The name of the effect's optional mask clip (``HostHints.mask_input``), or ''.

    Such a node takes the source and, optionally, the mask as input 1; ``HostHints.mask_switch``
    must name a bool parameter of it.
    """
    name, switch = cls.host.mask_input, cls.host.mask_switch
    if name and not any(p.name == switch and p.kind == "bool" for p in cls.params):
        raise ValueError(f"{cls.type_name}: host.mask_switch {switch!r} is not a bool parameter")
    return name


def uses_mask(cls: type[Node], params: dict[str, str]) -> bool:
    """Whether the mask switch is on in these parameter values (text, as the plugin sends them)."""
    if not mask_clip(cls):
        return False
    p = next(p for p in cls.params if p.name == cls.host.mask_switch)
    text = params.get(p.name, "")
    return bool(p.coerce(text, cls.type_name)) if text != "" else bool(p.default)


def hidden_params(cls: type[Node]) -> tuple[str, ...]:
    """Parameters the bridge sets itself (not shown in the host)."""
    live = transition_param(cls)
    return cls.host.hidden + ((live,) if live else ())


def ofx_nodes() -> dict[str, type[Node]]:
    """Node types that become OFX effects: exposed by their hints, with one or two image inputs
    (or the source and an optional mask clip, ``HostHints.mask_input``)."""
    out = {}
    for name, cls in node_types().items():
        inputs_ok = cls.num_inputs in (1, 2) or (cls.host.mask_input and cls.num_inputs == -1)
        if not cls.host.exposed or issubclass(cls, SourceNode) or not inputs_ok:
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


def _display_range(p, default: Any) -> tuple[str, str]:
    """A slider range for a number parameter (hosts such as Resolve clamp to it): the
    parameter's own bounds where it has them, else a span around its default."""
    if p.kind not in ("int", "float"):
        return "", ""
    d = float(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else 0.0
    lo = p.min if p.min is not None else min(0.0, d)
    hi = p.max if p.max is not None else max(1.0, abs(d) * 4, lo + 1)
    if p.max is not None and p.max > 4096 and p.kind == "int":
        hi = max(4096, d)  # pixel sizes: a usable slider; typing larger values still works
    return _text(lo), _text(hi)


def _bounds(p) -> tuple[str, str]:
    """Hard bounds; numbers without them get wide ones (a host that needs a range gets one)."""
    if p.kind == "int":
        return _text(p.min if p.min is not None else -(10**6)), _text(p.max if p.max is not None else 10**6)
    if p.kind == "float":
        return _text(p.min if p.min is not None else -1e6), _text(p.max if p.max is not None else 1e6)
    return _text(p.min), _text(p.max)


def describe_fields() -> dict[str, object]:
    """The reply fields of the ``nodes`` request (format in docs/ofx.md).

    ``node.i.hash`` digests what the plugin relies on (inputs, context, parameters and their
    kinds, choices and defaults): the plugin compares it with its build-time manifest before
    using a live server. ``node.i.alpha``: ``HostHints.alpha``. ``node.i.mask``: the name of
    the optional mask clip ('' for none).
    """
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
        fields[pre + "mask"] = mask_clip(cls)
        params = [p for p in cls.params if p.name not in hidden_params(cls)]
        fields[pre + "alpha"] = cls.host.alpha
        fields[pre + "params"] = len(params)
        digest = [name, context_of(cls), str(ofx_inputs(cls)), transition_param(cls)]
        if mask_clip(cls):  # (absent for others: their hash stays as it was)
            digest += ["mask", mask_clip(cls), cls.host.mask_switch]
        for j, p in enumerate(params):
            pp = f"{pre}param.{j}."
            default = cls.host.defaults.get(p.name, p.default)
            fields[pp + "name"] = p.name
            fields[pp + "kind"] = p.kind
            fields[pp + "default"] = _text(default)
            fields[pp + "min"], fields[pp + "max"] = _bounds(p)
            fields[pp + "display_min"], fields[pp + "display_max"] = _display_range(p, default)
            fields[pp + "choices"] = _text(p.choices)
            fields[pp + "doc"] = p.doc
            fields[pp + "required"] = int(p.required)
            digest += [p.name, p.kind, _text(default), _text(p.choices)]
        fields[pre + "hash"] = hashlib.blake2b("\n".join(digest).encode(), digest_size=8).hexdigest()
    return fields
