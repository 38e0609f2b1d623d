"""The Python API: load or build graphs, and run one node on frames held in memory.

Console use (Resolve, Nuke, a notebook)::

    import vidfx
    frames = vidfx.apply("temporal_average", clip_array, radius=2)   # no files
    vidfx.load("graph.yaml", input="in.mov", output="out.mov").run()
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from .core.engine import RunSummary, build_runs, pull, resolve_device
from .core.errors import ParamError
from .core.frame import ClipInfo, EndOfStream, Frame
from .core.graph import Graph, load
from .core.node import Node, SourceNode
from .core.registry import create_node
from .core.registry import node_types as _installed_node_types
from .core.sink import ListSink, Sink


def to_tensor(image: Any) -> torch.Tensor:
    """One picture as a (C, H, W) float32 tensor in 0..1.

    Accepts a torch tensor (C, H, W) or a numpy array (H, W), (H, W, C) in uint8, uint16
    or float.
    """
    if isinstance(image, torch.Tensor):
        t = image
        if t.dim() == 2:
            t = t[None]
        if not torch.is_floating_point(t):
            t = t.float() / (255.0 if t.dtype == torch.uint8 else 65535.0)
        return t.float()
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ParamError(f"expected an image of shape (H, W) or (H, W, C), got {a.shape}")
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    else:
        a = a.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


class ArraySource(SourceNode):
    """Frames held in memory as a source (not a graph-file node: it has no file to name)."""

    type_name = "array"

    def __init__(
        self, frames: Sequence[Any] | np.ndarray | torch.Tensor, fps: float | Fraction = 25, name: str = "frames"
    ):
        super().__init__(name=name)
        self.frames = [to_tensor(f) for f in frames]
        if not self.frames:
            raise ParamError("apply: no frames given")
        shapes = {tuple(f.shape) for f in self.frames}
        if len(shapes) != 1:
            raise ParamError(f"apply: frames differ in shape: {sorted(shapes)}")
        self.fps = Fraction(fps).limit_denominator(1001000)

    def configure(self, inputs, device):
        c, h, w = self.frames[0].shape
        return ClipInfo(
            width=w, height=h, fps=self.fps, num_frames=len(self.frames), channels=c, time_base=1 / self.fps
        )

    def read(self, n):
        if n >= len(self.frames):
            raise EndOfStream(len(self.frames))
        return Frame(self.frames[n], index=n, pts=n)


def apply(
    node: Node | str,
    frames: Any,
    /,
    *more_inputs: Any,
    fps: float | Fraction = 25,
    device: str | torch.device = "cpu",
    sink: Sink | None = None,
    **params: Any,
) -> list[torch.Tensor]:
    """Run one node on in-memory frames through the real engine; no files involved.

    ``frames`` (and ``more_inputs`` for nodes with several inputs) is a sequence of
    pictures (see ``to_tensor``) or one (T, ...) array. Returns the output frames as
    (C, H, W) float tensors on the CPU. With ``sink`` the output frames go to that sink
    instead, one at a time (nothing is kept, so memory stays flat on long clips), and an
    empty list is returned.
    """
    if isinstance(node, str):
        node = create_node(node, **params)
    elif params:
        raise ParamError("pass parameters either to the node or to apply(), not both")
    graph = Graph()
    feeds = [graph.add(ArraySource(f, fps=fps, name=f"frames{i}")) for i, f in enumerate((frames,) + more_inputs)]
    graph.add(node, *feeds)
    collected = ListSink() if sink is None else None
    target = collected or sink
    assert target is not None
    graph.write(node.name, sink=target)
    runs = build_runs(graph.order(), resolve_device(device))
    try:
        pull([("frames", runs[node.name], target)])
    finally:
        node.close()
    return [f.data.cpu() for f in collected.frames] if collected is not None else []


def node_types() -> dict[str, type[Node]]:
    """Every node type by name."""
    return _installed_node_types()


__all__ = ["Graph", "load", "apply", "node_types", "to_tensor", "RunSummary", "ArraySource"]
