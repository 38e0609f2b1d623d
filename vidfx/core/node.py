"""Node: the unit of work. A node says which input frames it needs for output frame n,
what its output looks like, and computes frames. It never touches files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .frame import ClipInfo, Frame
from .params import Param, resolve_params

if TYPE_CHECKING:  # a node's module imports torch; this one stays light for listing node types
    import torch

log = logging.getLogger("vidfx")


@dataclass(frozen=True)
class HostHints:
    """How an editing host (the OFX bridge) presents a node; declared on the node class.

    ``exposed``: whether the node becomes a host effect at all (readers, trims and other
    nodes that change the timeline are not). ``context``: ``"filter"`` (one image input),
    ``"transition"`` (two inputs, SourceFrom/SourceTo) or ``"cut_transition"`` (a one-input
    node that smooths a cut: the host's two clips are joined with a cut at the
    transition's centre); empty means "filter" for one input, "transition" for two.
    ``defaults``: parameter defaults that suit a host better than the node's own.
    ``hidden``: parameters the bridge sets itself. ``transition_param``: the float
    parameter the host's Transition value drives (two-input transitions only).

    Render scale (proxy renders): ``pixel_params`` names the parameters measured in
    pixels of the full-resolution picture, with the axis they follow (``"x"``, ``"y"``, or
    ``"xy"`` for a length along both, e.g. a blur radius); in ``scale_mode="scaled"`` (the
    default) the node runs on the host's scaled images with those parameters multiplied by
    the render scale (positions and sizes rounded down, sizes at least 1). ``scale_mode=
    "full"``: the node's result depends on the absolute resolution (models), so it runs on
    the inputs resampled to full resolution and its output is resampled to the render
    scale. ``alpha``: ``"straight"`` (default) if the node expects un-premultiplied colour
    (premultiplied host inputs are unpremultiplied before it and premultiplied again
    after), ``"any"`` if it treats every channel alike and needs no conversion.

    Mask clip: ``mask_input`` names an optional second clip that the host shows as a mask
    (e.g. ``"Mask"``; empty: none) on a filter whose node takes the source and, optionally,
    a mask clip as input 1 (``num_inputs = -1``). ``mask_switch`` names the node's bool
    parameter that turns the clip on. The node gets 2 inputs when the switch is on and the
    host's clip is connected and gives an image, else 1. The mask's frames follow the
    source's host times and reach the node as one channel, the clip's alpha (or, where the
    alpha is 1 everywhere, as RGB: its grey level).
    """

    exposed: bool = True
    context: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    hidden: tuple[str, ...] = ()
    transition_param: str = ""
    pixel_params: dict[str, str] = field(default_factory=dict)
    scale_mode: str = "scaled"
    alpha: str = "straight"
    mask_input: str = ""
    mask_switch: str = ""


class Node:
    """Base class of every effect.

    Subclasses set ``type_name``, ``params`` and ``num_inputs`` and implement ``render``.
    Override ``configure`` (check inputs, load models, describe the output),
    ``frames_needed`` (temporal window) and ``output_length`` (trims, selects) as needed.

    Parameter values are validated at construction and live in ``self.p``.
    ``splittable`` False (on the class, or per instance when it depends on parameters): the
    node's output depends on more of the clip than its declared window (a recurrent history,
    a whole-clip analysis), so it cannot be rendered in separate time segments; the Ray
    backend keeps it whole.
    """

    type_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[Sequence[Param]] = ()
    num_inputs: ClassVar[int] = 1
    host: ClassVar[HostHints] = HostHints()
    splittable: bool = True

    def __init__(self, name: str | None = None, **values):
        self.name = name or self.type_name
        self.p = resolve_params(self.params, values, owner=self.name)
        import torch

        self.device = torch.device("cpu")
        self.messages: list[str] = []

    def warn(self, message: str) -> None:
        """Report something the user should know (a fallback, a skipped cut); it is logged
        and listed in the run summary."""
        text = f"{self.name}: {message}"
        log.warning(text)
        self.messages.append(text)

    # --- what the engine calls -------------------------------------------------------
    def configure(self, inputs: list[ClipInfo], device: torch.device) -> ClipInfo:
        """Check the inputs, prepare (load models on ``device``) and return the output ClipInfo.

        The default keeps the first input's description.
        """
        return inputs[0]

    def frames_needed(self, n: int) -> list[list[int]]:
        """For output frame ``n``, the input frame indices needed, one list per input.

        Indices outside the input's range are clamped by the engine (edge frames repeat).
        The default is frame ``n`` of every input.
        """
        return [[n] for _ in range(self.num_inputs)]

    def output_length(self, input_lengths: list[int]) -> int:
        """Number of output frames given the inputs' lengths (default: the first input's)."""
        return input_lengths[0]

    def render(self, n: int, inputs: list[list[Frame]]) -> Frame:
        """Compute output frame ``n``; ``inputs[i]`` holds the frames of ``frames_needed(n)[i]``."""
        raise NotImplementedError

    def files_read(self) -> list[str]:
        """Paths of the media files this node reads (a reader's source, an image pattern).

        The graph refuses any output that resolves to one of them, so a run never
        overwrites its own input. Default: none.
        """
        return []

    def close(self) -> None:
        """Release resources held after a run (models, files). Optional."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, {vars(self.p)})"


class SequenceNode(Node):
    """A node that processes runs of consecutive frames at once (recurrent, bidirectional).

    The engine cuts the input into overlapping chunks of ``chunk_length`` frames with
    ``chunk_overlap`` frames shared by neighbours (chunks follow the first input; other
    inputs give the same frame numbers), calls ``render_chunk`` once per chunk,
    and cross-fades outputs inside the overlaps, so memory is bounded by the chunk and there
    is no jump at chunk borders. Output frame n is made from input frames around n only.
    """

    chunk_length: int = 16
    chunk_overlap: int = 4

    def render_chunk(self, frames: list[Frame], *others: list[Frame]) -> list[torch.Tensor]:
        """Process consecutive input frames; return one (C, H, W) tensor per input frame.

        ``others``: for a node with more than one input, the same frame numbers of each
        other input (clamped to its length), one list per input.
        """
        raise NotImplementedError

    def render(self, n: int, inputs: list[list[Frame]]) -> Frame:  # pragma: no cover
        raise RuntimeError("sequence nodes are rendered by the engine in chunks")


class SourceNode(Node):
    """A node with no inputs that produces frames (a file reader, a test pattern, arrays).

    ``read(n)`` is asked for frames in mostly increasing order; it raises ``EndOfStream``
    past the last frame it can produce.
    """

    num_inputs: ClassVar[int] = 0
    host: ClassVar[HostHints] = HostHints(exposed=False)

    def configure(self, inputs: list[ClipInfo], device: torch.device) -> ClipInfo:
        """Open the source and describe it."""
        raise NotImplementedError

    def read(self, n: int) -> Frame:
        """Produce frame ``n``."""
        raise NotImplementedError

    def render(self, n: int, inputs: list[list[Frame]]) -> Frame:
        return self.read(n)
