"""Graph: named nodes wired into a DAG, with file outputs; built in code or from YAML.

The YAML format (see docs/graph-format.md)::

    inputs:
      src: clip.mp4                 # or {path: clip.mp4, <read params>}
    nodes:
      small:
        type: resize
        input: src                  # or inputs: [a, b] for nodes with several inputs
        width: 960
        height: 540
    outputs:
      - input: small
        path: out.mov
        codec: prores_422hq

Relative paths inside the file are relative to the file's folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
import yaml

from .engine import NodeRun, RunSummary, build_runs, pull, resolve_device
from .errors import GraphError, VidfxError
from .frame import ClipInfo, Frame
from .node import Node
from .params import parse_text, resolve_params, safe_yaml
from .registry import create_node
from .sink import Sink, file_sinks

TOP_LEVEL_KEYS = {"version", "inputs", "nodes", "outputs"}
# An output option the graph handles itself: convert to this OCIO colour space before writing.
COLOURSPACE_OPTION = "colourspace"


@dataclass
class Output:
    """One graph output: which node feeds it and where its frames go."""

    input: str
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    sink: Sink | None = None

    @property
    def label(self) -> str:
        """How the output is named in messages."""
        return self.path or self.input


class Graph:
    """A DAG of named nodes plus outputs.

    >>> g = Graph()
    >>> src = g.read("clip.mp4")
    >>> small = g.add("resize", src, width=960, height=540)
    >>> g.write(small, "small.mp4")
    >>> g.run()
    """

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.inputs_of: dict[str, list[str]] = {}
        self.outputs: list[Output] = []
        self._preview: tuple[tuple, dict[str, NodeRun]] | None = None  # configured nodes kept by frame()

    # --- building ----------------------------------------------------------------------
    def add(self, node: Node | str, *inputs: str, name: str | None = None, **params: Any) -> str:
        """Add a node (an instance, or a type name plus parameters) fed by ``inputs``.

        Returns the node's name, to wire into later nodes.
        """
        if isinstance(node, str):
            name = name or self.fresh_name(node)
            node = create_node(node, name=name, **params)
        elif params:
            raise GraphError("pass parameters either to the node or to add(), not both")
        else:
            name = name or (node.name if node.name not in self.nodes else self.fresh_name(node.name))
        if name in self.nodes:
            raise GraphError(f"node name {name!r} is used twice")
        node.name = name
        self.nodes[name] = node
        self.inputs_of[name] = list(inputs)
        self.close()
        return name

    def read(self, path: str, name: str | None = None, **params: Any) -> str:
        """Add a media reader (video file or image sequence); returns its name."""
        return self.add("read", name=name or self.fresh_name("input"), path=str(path), **params)

    def write(self, input: str, path: str | None = None, sink: Sink | None = None, **options: Any) -> Output:
        """Send node ``input``'s frames to a file (``path`` plus writer options) or a Sink."""
        if (path is None) == (sink is None):
            raise GraphError("write() needs exactly one of path or sink")
        out = Output(input=input, path=str(path) if path else None, options=options, sink=sink)
        self.outputs.append(out)
        return out

    def set_output_options(self, index: int, options: dict[str, Any]) -> None:
        """Change options of output ``index`` (0 = the first; ``--codec`` and friends)."""
        if not 0 <= index < len(self.outputs):
            raise GraphError(f"output {index + 1}: the graph has {len(self.outputs)} output(s)")
        out = self.outputs[index]
        out.options = {**out.options, **{k: parse_text(v) if isinstance(v, str) else v for k, v in options.items()}}

    def fresh_name(self, base: str) -> str:
        """``base``, or ``base2``, ``base3``... if that node name is taken."""
        if base not in self.nodes:
            return base
        i = 2
        while f"{base}{i}" in self.nodes:
            i += 1
        return f"{base}{i}"

    def set_param(self, node_name: str, param: str, value: Any) -> None:
        """Change one parameter (``--set node.param=value``), validated against the schema."""
        if node_name not in self.nodes:
            raise GraphError(f"--set: no node named {node_name!r} (nodes: {', '.join(self.nodes)})")
        node = self.nodes[node_name]
        values = dict(vars(node.p))
        values[param] = parse_text(value) if isinstance(value, str) else value
        node.p = resolve_params(type(node).params, values, owner=node_name)
        self.close()

    # --- checking ----------------------------------------------------------------------
    def order(self) -> list[tuple[str, Node, list[str]]]:
        """Nodes in dependency order, after checking wiring; GraphError names the problem."""
        for name, inputs in self.inputs_of.items():
            node = self.nodes[name]
            for i in inputs:
                if i not in self.nodes:
                    raise GraphError(f"node {name!r}: input {i!r} is not a node (nodes: {', '.join(self.nodes)})")
            if node.num_inputs >= 0 and len(inputs) != node.num_inputs:
                raise GraphError(
                    f"node {name!r} ({node.type_name}) takes {node.num_inputs} input(s), got {len(inputs)}"
                )
        for out in self.outputs:
            if out.input not in self.nodes:
                raise GraphError(f"output {out.label!r}: input {out.input!r} is not a node")
        state: dict[str, int] = {}  # 1 visiting, 2 done
        order: list[str] = []

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = path[path.index(name) :] + [name]
                raise GraphError(f"the graph has a cycle: {' -> '.join(cycle)}")
            state[name] = 1
            for i in self.inputs_of[name]:
                visit(i, path + [name])
            state[name] = 2
            order.append(name)

        for name in self.nodes:
            visit(name, [])
        return [(n, self.nodes[n], self.inputs_of[n]) for n in order]

    def validate(self) -> None:
        """Check wiring and output options without opening any file."""
        self.order()
        if not self.outputs:
            raise GraphError("the graph has no outputs")
        self._check_no_output_is_an_input()
        for out in self.outputs:
            if out.sink is None:
                options = {k: v for k, v in out.options.items() if k != COLOURSPACE_OPTION}
                resolve_params(file_sinks().params, options, owner=f"output {out.label}")

    def dry_run(self, device: str | torch.device = "cpu") -> dict[str, ClipInfo]:
        """Everything ``run`` checks before rendering, and nothing more: wiring, inputs probed,
        every node configured (models loaded), output options, codec/container and size
        checks by the installed writer. Opens nothing for writing. Returns each output's
        description by label."""
        self.validate()
        graph = self._for_rendering()
        order = graph.order()
        runs = build_runs(order, resolve_device(device))
        try:
            infos = {}
            for out in graph.outputs:
                info = runs[out.input].info
                infos[out.label] = info
                if out.path is not None:
                    file_sinks().check(out.path, info, **out.options)
            return infos
        finally:
            for _, node, _ in order:
                node.close()

    def _check_no_output_is_an_input(self) -> None:
        """GraphError if an output path is a file some node reads (also via links)."""
        read = [(path, name) for name, node in self.nodes.items() for path in node.files_read()]
        for out in self.outputs:
            if out.path is None:
                continue
            for path, name in read:
                if same_file(out.path, path):
                    raise GraphError(
                        f"output {out.path} is the input of {name!r} ({path}); "
                        "vidfx never writes over its own input: choose another output path"
                    )

    # --- running -----------------------------------------------------------------------
    def run(
        self,
        device: str | torch.device = "auto",
        frames: tuple[int | None, int | None] | None = None,
        progress: Callable[..., None] | None = None,
        backend: str = "local",
        **backend_options: Any,
    ) -> RunSummary:
        """Render every output. ``frames=(a, b)`` renders output frames a..b-1 only.

        ``backend="ray"`` renders on a Ray cluster instead (``vidfx[ray]``; options such as
        ``address``, ``workers``, ``segment_frames``, ``work_dir``, ``resume``: see
        docs/scale-out.md); backends are found in the ``vidfx.backends`` entry-point group.
        Returns a RunSummary. On error, outputs written so far are removed (never left
        looking finished) and the error is raised.
        """
        if backend != "local":
            self.validate()
            return load_backend(backend)(self, device=str(device), frames=frames, progress=progress, **backend_options)
        if backend_options:
            raise GraphError(f"options {', '.join(backend_options)} need another backend than local")
        self.validate()
        graph = self._for_rendering(frames)
        started = time.monotonic()
        dev = resolve_device(device)
        order = graph.order()
        runs = build_runs(order, dev)
        targets = []
        for out in graph.outputs:
            if out.sink is not None:
                sink = out.sink
            else:
                assert out.path is not None  # write() takes a path or a sink
                sink = file_sinks()(out.path, **out.options)
            targets.append((out.label, runs[out.input], sink))
        try:
            written = pull(targets, progress)
        finally:
            for _, node, _ in order:
                node.close()
        summary = RunSummary(frames=written, seconds=time.monotonic() - started)
        for _, node, _ in order:
            summary.messages.extend(node.messages)
        return summary

    def _for_rendering(self, frames: tuple[int | None, int | None] | None = None) -> Graph:
        """A copy with what the outputs ask for made explicit: a ``trim`` for a frame range,
        an ``ocio`` node for an output that declares its colour space."""
        g = Graph()
        g.nodes = dict(self.nodes)
        g.inputs_of = {k: list(v) for k, v in self.inputs_of.items()}
        for i, out in enumerate(self.outputs):
            feed, options = out.input, dict(out.options)
            if frames:
                start, end = frames
                feed = g.add(
                    "trim", feed, name=g.fresh_name(f"frames_{feed}"), start=start or 0, end=-1 if end is None else end
                )
            space = options.pop(COLOURSPACE_OPTION, None)
            if space:
                name = g.fresh_name(f"output{i + 1}_colourspace")
                feed = g.add("ocio", feed, name=name, source="", target=str(space))
            g.outputs.append(Output(feed, out.path, options, out.sink))
        return g

    def frame(self, name: str, n: int, device: str | torch.device = "cpu") -> Frame:
        """Frame ``n`` of node ``name`` (console use: look at frames one at a time).

        The configured nodes are kept for the next call (until the graph changes or
        ``close()``), so stepping through frames does not configure or load anything again.
        """
        dev = resolve_device(device)
        key = (dev, tuple(self.nodes), tuple(tuple(v) for v in self.inputs_of.values()))
        if self._preview is None or self._preview[0] != key:
            self.close()
            self._preview = (key, build_runs(self.order(), dev))
        runs = self._preview[1]
        if name not in runs:
            raise GraphError(f"no node named {name!r} (nodes: {', '.join(self.nodes)})")
        return runs[name].get(n)

    def close(self) -> None:
        """Release the nodes that ``frame()`` keeps configured."""
        if self._preview is not None:
            for run in self._preview[1].values():
                run.node.close()
            self._preview = None

    def __repr__(self) -> str:
        wires = ", ".join(f"{n}<-{'+'.join(i) or '∅'}" for n, i in self.inputs_of.items())
        return f"Graph({wires}; outputs: {', '.join(o.label for o in self.outputs)})"


BACKEND_ENTRY_POINT_GROUP = "vidfx.backends"


def load_backend(name: str) -> Callable[..., RunSummary]:
    """The run function of an installed backend (entry point group ``vidfx.backends``)."""
    for ep in entry_points(group=BACKEND_ENTRY_POINT_GROUP, name=name):
        run: Callable[..., RunSummary] = ep.load()
        return run
    known = sorted({"local"} | {ep.name for ep in entry_points(group=BACKEND_ENTRY_POINT_GROUP)})
    raise GraphError(f"unknown backend {name!r}; known: {', '.join(known)}")


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same path after resolving links, or the same
    inode (a hard link). Image patterns compare as resolved text."""
    a, b = os.path.expanduser(a), os.path.expanduser(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


# --- YAML ----------------------------------------------------------------------------------


def load(
    path: str | Path, input: str | None = None, output: str | None = None, set: dict[str, Any] | None = None
) -> Graph:
    """Read a graph file. ``input``/``output`` replace the first input's/output's path;
    ``set`` maps ``"node.param"`` to a value (as ``--set``)."""
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"{path}: graph file not found")
    try:
        doc = safe_yaml(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise GraphError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except (VidfxError, UnicodeDecodeError) as exc:
        raise GraphError(f"{path}: {exc}") from None
    try:
        graph = from_dict(doc or {}, base=path.parent, input=input, output=output)
        for key, value in (set or {}).items():
            node, _, param = key.partition(".")
            if not param:
                raise GraphError(f"--set {key}: expected node.param=value")
            graph.set_param(node, param, value)
    except VidfxError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    return graph


def from_dict(doc: dict, base: Path = Path("."), input: str | None = None, output: str | None = None) -> Graph:
    """Build a Graph from the parsed YAML document (see the module docstring)."""
    if not isinstance(doc, dict):
        raise GraphError("the graph file must be a mapping with inputs, nodes and outputs")
    unknown = set(doc) - TOP_LEVEL_KEYS
    if unknown:
        raise GraphError(f"unknown top-level key {sorted(unknown)[0]!r} (valid: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    graph = Graph()

    def local(p: object, where: str) -> str:
        if not isinstance(p, str) or not p:
            raise GraphError(f"{where}: path must be text, got {p!r}")
        return p if Path(p).is_absolute() else str(base / p)

    inputs = doc.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise GraphError("inputs: expected a mapping of name: path")
    for i, (name, spec) in enumerate(inputs.items()):
        if not isinstance(spec, (str, dict)):
            raise GraphError(f"input {name!r}: expected a path or a mapping with path, got {spec!r}")
        params = dict(spec) if isinstance(spec, dict) else {"path": spec}
        if "path" not in params:
            raise GraphError(f"input {name!r}: missing path")
        params["path"] = input if (i == 0 and input) else local(params["path"], f"input {name!r}")
        graph.add("read", name=str(name), **params)
    if input and not inputs:
        raise GraphError("-i was given but the graph has no inputs")

    nodes = doc.get("nodes") or {}
    if not isinstance(nodes, dict):
        raise GraphError("nodes: expected a mapping of name: {type: ..., input: ..., params}")
    for name, spec in nodes.items():
        if not isinstance(spec, dict) or "type" not in spec:
            raise GraphError(f"node {name!r}: needs a 'type'")
        params = dict(spec)
        type_name = params.pop("type")
        if not isinstance(type_name, str):
            raise GraphError(f"node {name!r}: type must be a node type name, got {type_name!r}")
        wired = params.pop("inputs", None)
        if wired is None:
            one = params.pop("input", None)
            wired = [] if one is None else [one]
        elif "input" in params:
            raise GraphError(f"node {name!r}: give input or inputs, not both")
        if not isinstance(wired, list):
            wired = [wired]
        if not all(isinstance(w, str) for w in wired):
            raise GraphError(f"node {name!r}: inputs are node names, got {wired!r}")
        graph.add(str(type_name), *[str(w) for w in wired], name=str(name), **params)

    outputs = doc.get("outputs") or []
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if not isinstance(outputs, list):
        raise GraphError("outputs: expected a list of {input: node, path: file, options...}")
    last = next(reversed(graph.nodes), None)
    for i, spec in enumerate(outputs):
        if not isinstance(spec, (str, dict)):
            raise GraphError(f"output {i + 1}: expected a path or a mapping with input and path, got {spec!r}")
        spec = {"path": spec} if isinstance(spec, str) else dict(spec)
        if "path" not in spec and not (i == 0 and output):
            raise GraphError(f"output {i + 1}: missing path")
        path = output if (i == 0 and output) else local(spec.pop("path"), f"output {i + 1}")
        spec.pop("path", None)
        feed = spec.pop("input", last)
        if not isinstance(feed, str):
            raise GraphError(f"output {i + 1}: input must be a node name, got {feed!r}")
        graph.write(feed, path, **spec)
    if output and not outputs:
        if last is None:
            raise GraphError("-o was given but the graph has no nodes")
        graph.write(last, output)
    return graph
