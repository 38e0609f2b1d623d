"""A render job as data: the graph's nodes (class, parameters, wiring) and its one file output,
so that a worker process on any machine can build its own copy of the graph.

Nodes are rebuilt from their class and parameter values, never shipped configured: a
configured node holds open files and loaded models, which belong to one process.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from vidfx.core.errors import GraphError
from vidfx.core.graph import Graph
from vidfx.core.node import Node

from .plan import Order


@dataclass(frozen=True)
class NodeSpec:
    """One node to rebuild: its name, class, parameter values and input names."""

    name: str
    cls: type[Node]
    params: dict[str, Any]
    inputs: list[str]

    def build(self) -> Node:
        """A fresh, unconfigured node."""
        return self.cls(name=self.name, **self.params)


@dataclass(frozen=True)
class Job:
    """A graph with exactly one file output, as the Ray backend renders it.

    ``nodes`` are in dependency order and already include what the output asks for (an
    ``ocio`` node for an output colour space); ``output`` is the node feeding ``path``,
    written with writer ``options``.
    """

    nodes: list[NodeSpec]
    output: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    def build(self) -> Order:
        """Fresh nodes, in dependency order, as ``Graph.order()`` gives them."""
        return [(spec.name, spec.build(), list(spec.inputs)) for spec in self.nodes]

    def fingerprint(self) -> str:
        """A digest of everything that decides the output's frames: node types, parameters,
        wiring, output options, and the size and modification time of every file read.
        A resumed run reuses segments only under the same fingerprint."""
        doc = []
        for spec in self.nodes:
            node = spec.build()
            files = []
            for path in node.files_read():
                try:
                    st = os.stat(os.path.expanduser(path))
                    files.append([path, st.st_size, st.st_mtime_ns])
                except OSError:
                    files.append([path, None, None])
            doc.append([spec.name, f"{spec.cls.__module__}.{spec.cls.__qualname__}", spec.params, spec.inputs, files])
        doc.append([self.output, self.path, self.options])
        text = json.dumps(doc, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def job_from_graph(graph: Graph, device: str = "cpu", frames: tuple[int | None, int | None] | None = None) -> Job:
    """The Job for ``graph``: validated, with exactly one output that is a file path.
    ``frames=(a, b)`` renders output frames a..b-1 only, as ``Graph.run`` does."""
    graph.validate()
    prepared = graph._for_rendering(frames)
    if len(prepared.outputs) != 1:
        raise GraphError(f"the Ray backend renders graphs with one output; this one has {len(prepared.outputs)}")
    out = prepared.outputs[0]
    if out.path is None:
        raise GraphError("the Ray backend writes files: the output must be a path, not a Sink")
    specs = [NodeSpec(name, type(node), dict(vars(node.p)), list(inputs)) for name, node, inputs in prepared.order()]
    return Job(specs, out.input, out.path, dict(out.options), device)
