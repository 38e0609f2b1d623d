"""Clips as values: read, chain effects, slice, look at frames, write — the console API.

In the spirit of VapourSynth, a ``Clip`` is a node plus the clips that feed it. Effects
and slices return new clips and compute nothing; pixels are made when a frame is asked
for (``clip.frame(n)``, iteration) or the clip is written::

    import vidfx
    clip = vidfx.read("interview.mov")
    up = clip.vsr(scale=4)[10:20]            # any node type by name: clip.<type>(**params)
    preview = up.frame(0)                    # a Frame: .data is a (C, H, W) float tensor
    up.write("up.mov", codec="prores_422hq")
    clip.apply("my_sharpen", amount=2)       # a node type from another package

A clip keeps its configured nodes (and, through the weights cache, their models) between
``frame`` calls, so looking at frame after frame does not reload anything; ``close()``
(or a ``with`` block) releases them. Iteration streams with memory flat in clip length.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch

from .core.engine import NodeRun, RunSummary, build_runs, resolve_device
from .core.errors import GraphError, ParamError
from .core.frame import ClipInfo, EndOfStream, Frame
from .core.graph import Graph
from .core.node import Node
from .core.registry import create_node, type_names


class Clip:
    """A video: the output of ``node`` fed by ``inputs`` (other clips).

    Build clips with ``vidfx.read``, ``clip.<node type>(**params)``, ``clip.apply``,
    slicing (``clip[a:b]``, ``clip[::2]``) and ``vidfx.Clip.from_frames``.
    """

    def __init__(self, node: Node, inputs: tuple[Clip, ...] = (), device: str | torch.device = "auto"):
        if node.num_inputs >= 0 and len(inputs) != node.num_inputs:
            raise GraphError(f"{node.type_name} takes {node.num_inputs} input clip(s), got {len(inputs)}")
        self.node = node  # a template: each runtime works on its own copy
        self.inputs = inputs
        self.device = device
        self._runtime: dict[int, NodeRun] | None = None

    # --- building ------------------------------------------------------------------------
    @classmethod
    def from_frames(cls, frames: Any, fps: float = 25, device: str | torch.device = "auto") -> Clip:
        """A clip of pictures held in memory (see ``vidfx.to_tensor`` for what is accepted)."""
        from .api import ArraySource

        return cls(ArraySource(frames, fps=fps), device=device)

    def apply(self, node: Node | str, *others: Clip, **params: Any) -> Clip:
        """This clip (then ``others``) through ``node``: an instance, or a type name and parameters."""
        if isinstance(node, str):
            node = create_node(node, **params)
        elif params:
            raise ParamError("pass parameters either to the node or to apply(), not both")
        return Clip(node, (self, *others), self.device)

    def __getattr__(self, name: str) -> Callable[..., Clip]:
        """``clip.vsr(scale=4)``: node types by name (``clip.over(background)`` for two inputs)."""
        if name.startswith("_") or name not in type_names():
            raise AttributeError(f"Clip has no attribute or node type {name!r}")

        def effect(*others: Clip, **params: Any) -> Clip:
            return self.apply(name, *others, **params)

        effect.__name__ = name
        return effect

    def __getitem__(self, index: int | slice) -> Any:
        """``clip[n]``: frame n (a Frame); ``clip[a:b:k]``: a clip of those frames (trim, select)."""
        if isinstance(index, int):
            return self.frame(index)
        if not isinstance(index, slice):
            raise TypeError(f"clip indices are ints or slices, not {type(index).__name__}")
        start, stop, step = index.indices(len(self))
        if step < 1:
            raise ParamError("clip slices go forwards (step >= 1)")
        clip = self
        if (start, stop) != (0, len(self)):
            if stop <= start:
                raise ParamError(f"empty slice [{index.start}:{index.stop}] of a {len(self)}-frame clip")
            clip = clip.apply("trim", start=start, end=stop)
        if step > 1:
            clip = clip.apply("select", every=step)
        return clip

    def to(self, device: str | torch.device) -> Clip:
        """The same clip, rendered on ``device`` (cpu, cuda, auto)."""
        return Clip(self.node, self.inputs, device)

    # --- looking -------------------------------------------------------------------------
    @property
    def info(self) -> ClipInfo:
        """Size, exact rate, length, colour tags, depth and audio of this clip."""
        return self._run().info

    def __len__(self) -> int:
        return self._run().length

    def frame(self, n: int) -> Frame:
        """Frame ``n`` (negative counts from the end). Nodes stay configured for the next call."""
        run = self._run()
        if n < 0:
            n += run.length
        if not 0 <= n < run.length:
            raise IndexError(f"frame {n} of a {run.length}-frame clip")
        return run.get(n)

    def __iter__(self) -> Iterator[Frame]:
        """Every frame in order, from a runtime of its own; memory stays flat in clip length."""
        runs = self._build()
        run = runs[id(self)]
        reader = object()  # a consumer identity for the release marks
        n = 0
        try:
            while n < run.length:
                try:
                    frame = run.get(n)
                except EndOfStream:
                    if n < run.length:
                        raise
                    break
                yield frame
                run.release_below(id(reader), 0, n + 1)
                n += 1
        finally:
            _close(runs)

    # --- writing -------------------------------------------------------------------------
    def graph(self, path: str | None = None, **options: Any) -> Graph:
        """This clip's chain as a Graph (with an output to ``path`` if given)."""
        graph = Graph()
        names: dict[int, str] = {}

        def add(clip: Clip) -> str:
            if id(clip) not in names:
                feeds = [add(c) for c in clip.inputs]
                names[id(clip)] = graph.add(copy.copy(clip.node), *feeds, name=graph.fresh_name(clip.node.name))
            return names[id(clip)]

        top = add(self)
        if path is not None:
            graph.write(top, path, **options)
        return graph

    def write(
        self,
        path: str,
        progress: Callable[..., None] | None = None,
        backend: str = "local",
        backend_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> RunSummary:
        """Render to ``path`` (video file or image sequence; options as in graph outputs:
        codec, bit_depth, ...). Written to a temporary name and renamed when complete.
        ``backend="ray"`` renders on a Ray cluster (``backend_options``: address, workers,
        segment_frames, work_dir, resume; docs/scale-out.md)."""
        graph = self.graph(path, **options)
        return graph.run(device=self.device, progress=progress, backend=backend, **(backend_options or {}))

    # --- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Release the configured nodes kept for ``frame``/``info`` (a later call rebuilds them)."""
        if self._runtime is not None:
            _close(self._runtime)
            self._runtime = None

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __repr__(self) -> str:
        chain = []
        clip: Clip | None = self
        while clip is not None:
            chain.append(clip.node.type_name)
            clip = clip.inputs[0] if clip.inputs else None
        return f"<Clip {' <- '.join(chain)}>"

    def _run(self) -> NodeRun:
        if self._runtime is None:
            self._runtime = self._build()
        return self._runtime[id(self)]

    def _build(self) -> dict[int, NodeRun]:
        """Configure copies of every node upstream; the runtime of each clip by id."""
        order: list[Clip] = []
        seen: set[int] = set()

        def visit(clip: Clip) -> None:
            if id(clip) in seen:
                return
            seen.add(id(clip))
            for c in clip.inputs:
                visit(c)
            order.append(clip)

        visit(self)
        spec = [(str(id(c)), copy.copy(c.node), [str(id(i)) for i in c.inputs]) for c in order]
        runs = build_runs(spec, resolve_device(self.device))
        return {int(k): r for k, r in runs.items()}


def _close(runs: dict[int, NodeRun]) -> None:
    for run in runs.values():
        run.node.close()


def read(path: str, device: str | torch.device = "auto", **params: Any) -> Clip:
    """A clip of a video file or image sequence (params as the ``read`` node: fps, threads, audio)."""
    return Clip(create_node("read", path=str(path), **params), device=device)
