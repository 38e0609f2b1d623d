"""Per-instance render state in the server: one configured node per OFX effect instance.

The plugin sends everything an instance needs with every request (node type, parameter
values, frame rate, input frame ranges), so a restarted server rebuilds its state from
the next request alone. Here that description is turned into a configured ``Node`` (kept
while the description is unchanged) and output frames are rendered from pixels in shared
memory.
"""

from __future__ import annotations

import collections
import hashlib
import mmap
import os
import threading
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from vidfx.core.errors import VidfxError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.node import Node, SequenceNode
from vidfx.core.registry import node_type
from vidfx.core.scheduler import ChunkRunner, clamp, needed_frames
from vidfx.ops.resample import resize

from .catalog import is_cut_transition, mask_clip, ofx_inputs, transition_param, uses_mask

INPUT_CACHE_BYTES = 512 << 20  # input frames kept per instance for reuse


class RenderAborted(Exception):
    """The plugin asked to abort this render (the host stopped it)."""


class RequestError(VidfxError):
    """A request is malformed or refers to something the server does not have."""


class MissingFrames(RequestError):
    """The plugin referred to input frames the server no longer holds; it resends them."""


@dataclass(frozen=True)
class ClipRange:
    """An input clip's frames on the host's timeline: ``first``..``last`` inclusive."""

    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def clamp(self, index: int) -> int:
        """A node-side index clamped to the clip (edge frames repeat, as in the engine)."""
        return clamp(index, self.count)


def parse_ranges(fields: dict[str, str], num_inputs: int) -> list[ClipRange]:  # noqa: D103
    """``range.<k>=first,last`` for every input."""
    out = []
    for k in range(num_inputs):
        text = fields.get(f"range.{k}")
        if text is None:
            raise RequestError(f"request lacks range.{k}")
        first, last = (int(round(float(v))) for v in text.split(","))
        out.append(ClipRange(first, max(first, last)))
    return out


class DirectLayout:
    """Node input k is the host's input clip k; node index i is host time ``first_k + i``.

    With ``mask`` (``HostHints.mask_input``), input 1 is the mask clip, which follows the
    source's host times instead (node index i is host time ``first_0 + i`` of both clips,
    clamped to the mask clip's frames), so the node sees two clips of the same length.
    """

    def __init__(self, ranges: list[ClipRange], mask: bool = False):
        self.clips = ranges
        self.mask = mask
        self.node_ranges = [ranges[0]] * len(ranges) if mask else ranges  # what the node is configured with
        self.key = ("direct", tuple(ranges), mask)  # equal keys: same host frame -> node index mapping

    def n_of(self, time: float) -> int:
        """The node's output index for a host time."""
        return int(round(time)) - self.clips[0].first

    def source(self, k: int, index: int) -> tuple[int, int]:
        """(host clip, host time) of the node's input k, frame ``index`` (clamped)."""
        if self.mask and k == 1:
            r0, r = self.clips[0], self.clips[1]
            return 1, min(max(r0.first + r0.clamp(index), r.first), r.last)
        r = self.clips[k]
        return k, r.first + r.clamp(index)

    def index_of(self, clip: int, time: int) -> int:
        """The node-side index of host clip ``clip``'s frame at ``time``."""
        return time - self.clips[0 if self.mask else clip].first

    def node_sizes(self, sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return sizes


class CutLayout:
    """A 1-input cut-smoothing node as an OFX transition (``HostHints.context == "cut_transition"``).

    The node sees one clip: SourceFrom up to the cut, SourceTo from the cut on, with
    ``margin`` frames of context beyond each end of the transition (the effect's frame
    range ``out``). The cut sits at the transition's centre, so the node replaces exactly
    the frames of the transition.
    """

    def __init__(self, ranges: list[ClipRange], out: ClipRange, margin: int):
        self.clips = ranges
        self.duration = out.count
        self.start = out.first - margin  # host time of the node's frame 0
        self.length = self.duration + 2 * margin
        self.cut = margin + self.duration // 2
        self.node_ranges = [ClipRange(0, self.length - 1)]
        self.key = ("cut", tuple(ranges), self.start, self.length, self.cut)

    mask = False

    def index_of(self, clip: int, time: int) -> int:
        return time - self.start

    def n_of(self, time: float) -> int:
        return int(round(time)) - self.start

    def source(self, k: int, index: int) -> tuple[int, int]:
        v = min(max(index, 0), self.length - 1)
        clip = 0 if v < self.cut else 1
        r = self.clips[clip]
        return clip, min(max(self.start + v, r.first), r.last)

    def node_sizes(self, sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return sizes[:1]


def describe_request(fields: dict[str, str]) -> tuple[str, dict[str, str], DirectLayout | CutLayout]:
    """Node type, node parameter values (text) and input layout that a request describes."""
    type_name = fields.get("node", "")
    if not fields.get("instance") or not type_name:
        raise RequestError("request lacks instance or node")
    cls = node_type(type_name)
    params = {k[6:]: v for k, v in fields.items() if k.startswith("param.")}
    # a mask clip is input 1 when the plugin sends it (connected, gives images) and its switch is on
    mask = bool(mask_clip(cls)) and "range.1" in fields and uses_mask(cls, params)
    ranges = parse_ranges(fields, ofx_inputs(cls) + int(mask))
    if not is_cut_transition(cls):
        return type_name, params, DirectLayout(ranges, mask)
    if "range.out" in fields:
        first, last = (int(round(float(v))) for v in fields["range.out"].split(","))
    else:  # the span where both clips have frames
        first, last = max(r.first for r in ranges), min(r.last for r in ranges)
    context = next((p for p in cls.params if p.name == "context"), None)
    margin = 1 + (int(float(params.get("context") or context.default)) if context else 0)
    layout = CutLayout(ranges, ClipRange(first, max(first, last)), margin)
    for name in cls.host.hidden:
        params.pop(name, None)
    params.update(cuts=f"[{layout.cut}]", frames=str(layout.duration))
    return type_name, params, layout


def request_scale(fields: dict[str, str]) -> tuple[float, float]:
    """The host's render scale of a request (``scale=sx,sy``; 1,1 when absent)."""
    text = fields.get("scale")
    if not text:
        return (1.0, 1.0)
    sx, sy = (float(v) for v in text.split(","))
    if not (0 < sx <= 1 and 0 < sy <= 1):
        raise RequestError(f"render scale {text} is not in (0, 1]")
    return (sx, sy)


def scaled_params(cls: type[Node], params: dict[str, str], scale: tuple[float, float]) -> dict[str, str]:
    """Parameter values for a render at ``scale`` (``HostHints.pixel_params``, mode "scaled").

    Positions and sizes are rounded down, so a rectangle inside the full picture stays inside
    the scaled one; a non-zero size stays at least 1 (0 keeps its meaning, e.g. "to the edge").
    """
    if scale == (1.0, 1.0) or cls.host.scale_mode != "scaled" or not cls.host.pixel_params:
        return params
    out = dict(params)
    kinds = {p.name: p.kind for p in cls.params}
    for name, axis in cls.host.pixel_params.items():
        text = params.get(name, "")
        if text in ("", None) or name not in kinds:
            continue
        f = scale[0] if axis == "x" else scale[1] if axis == "y" else (scale[0] + scale[1]) / 2
        value = float(text) * f
        if kinds[name] == "int":
            v = int(value + 1e-9) if value >= 0 else -int(-value + 1e-9)
            out[name] = str(max(v, 1) if float(text) >= 1 else v)
        else:
            out[name] = repr(value)
    return out


def map_fd(fd: int, name: str, size: int) -> mmap.mmap:
    """Map ``size`` bytes of an open shared-memory descriptor (closed here) of buffer ``name``."""
    try:
        if os.fstat(fd).st_size < size:
            raise RequestError(f"shared memory {name} is smaller than {size} bytes")
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


class ShmMapper:
    """Keeps recently used shared-memory buffers mapped (the plugin reuses its buffers)."""

    def __init__(self, keep: int = 16):
        self._maps: collections.OrderedDict[tuple[str, int], mmap.mmap] = collections.OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def get(self, name: str, size: int) -> mmap.mmap:
        """The mapping of shared-memory object ``name`` (at least ``size`` bytes)."""
        if "/" in name.strip("/") or not name.strip("/").startswith("vidfx-"):
            raise RequestError(f"refusing shared-memory name {name!r}")
        key = (name, size)
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
        mm = self._open(name, size)
        with self._lock:
            self._maps[key] = mm
            while len(self._maps) > self._keep:
                self._maps.popitem(last=False)  # closed when the last view of it is gone
        return mm

    def _open(self, name: str, size: int) -> mmap.mmap:
        """Map a buffer (Linux: the file under /dev/shm); subclasses map it their platform's way."""
        return map_fd(os.open("/dev/shm/" + name.strip("/"), os.O_RDWR), name, size)

    def forget(self, instance_id: str) -> None:
        """Drop the mappings of one instance's buffers (its names contain ``-<id>-``)."""
        with self._lock:
            for key in [k for k in self._maps if f"-{instance_id}-" in k[0]]:
                del self._maps[key]


def _fingerprint(t: torch.Tensor) -> bytes:
    """A cheap content key for a frame: shape plus a strided sample of its values."""
    flat = t.reshape(-1)
    step = max(1, flat.numel() // 4096)
    return hashlib.blake2b(flat[::step].numpy().tobytes() + str(tuple(t.shape)).encode(), digest_size=16).digest()


class Instance:
    """One OFX effect instance: its node, configured for the current inputs."""

    def __init__(self, instance_id: str, type_name: str, params: dict[str, str], device: torch.device):
        self.id = instance_id
        self.type_name = type_name
        self.cls = node_type(type_name)
        self.live_param = transition_param(self.cls)  # changes every frame; set in place
        self.params = dict(params)
        self.device = device
        self.node: Node = self._make_node(params)
        self.config_key: tuple | None = None
        self.out_info: ClipInfo | None = None
        # other ready configurations: key -> (node, output info, full_sizes, scaled_out)
        self.configured: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
        self.lock = threading.Lock()
        self.chunk_runner = ChunkRunner(self.node) if isinstance(self.node, SequenceNode) else None
        # recent input frames by (clip, host time): (fingerprint, Frame, alpha), so the plugin
        # sends only frames it has not sent with the same content
        self.inputs: collections.OrderedDict[tuple[int, int], tuple] = collections.OrderedDict()
        self.inputs_layout: tuple | None = None  # the layout key the stored frames' indices follow
        self.scale = (1.0, 1.0)  # render scale of the current configuration
        self.full_sizes: list[tuple[int, int]] | None = None  # scale_mode "full": the node's input sizes
        self.scaled_out: tuple[int, int] | None = None  # scale_mode "full": output size at the scale

    def take_inputs(
        self, entries: list[tuple[int, int, str, np.ndarray | None]], index_of, layout_key: tuple
    ) -> tuple[int, int]:
        """Store sent frames and check referenced ones; call with ``lock`` held.

        ``entries`` are (clip, time, fingerprint, planes or None); None means "the frame you
        hold with this fingerprint". ``index_of(clip, time)`` gives the node-side index.
        Returns (received, reused); raises MissingFrames if a referenced frame is gone.
        """
        if layout_key != self.inputs_layout:
            self.inputs.clear()
            self.inputs_layout = layout_key
        received = reused = 0
        missing = []
        for clip, t, fp, planes in entries:
            key = (clip, t)
            if planes is not None:
                frame, alpha = frame_from_planes(planes, index_of(clip, t))
                self.inputs[key] = (fp, frame, alpha)
                received += 1
            elif key in self.inputs and self.inputs[key][0] == fp:
                reused += 1
            else:
                missing.append(t)
            if key in self.inputs:
                self.inputs.move_to_end(key)
        if missing:
            raise MissingFrames(f"server no longer holds frames {missing}")
        # keep about four windows (a host rendering several frames at once interleaves their
        # windows), within INPUT_CACHE_BYTES (always at least this request's)
        keep = max(8, 4 * len(entries))

        def size() -> int:
            return sum(f.data.numel() * 4 + a.numel() * 4 for _, f, a in self.inputs.values())

        while len(self.inputs) > keep or (len(self.inputs) > len(entries) and size() > INPUT_CACHE_BYTES):
            self.inputs.popitem(last=False)
        return received, reused

    def input_frame(self, clip: int, t: int) -> tuple:
        """(Frame, alpha) of a stored input frame."""
        if (clip, t) not in self.inputs:
            raise RequestError(f"plugin did not send frame {t} of input {clip}")
        return self.inputs[(clip, t)][1:]

    def _make_node(self, params: dict[str, str], scale: tuple[float, float] = (1.0, 1.0)) -> Node:
        params = scaled_params(self.cls, params, scale)
        values = {k: v for k, v in params.items() if v != "" or k == self.live_param}
        return self.cls(name=self.type_name, **values)

    def same_description(self, type_name: str, params: dict[str, str]) -> bool:
        """Whether a request describes this instance with the same (non-live) parameters."""
        if type_name != self.type_name:
            return False
        a = {k: v for k, v in params.items() if k != self.live_param}
        b = {k: v for k, v in self.params.items() if k != self.live_param}
        return a == b

    def set_live_param(self, fields: dict[str, str]) -> None:
        """Update the transition parameter (``param.<name>`` in a request's fields) without
        rebuilding or reconfiguring the node. Call with ``lock`` held."""
        key = f"param.{self.live_param}"
        if self.live_param and key in fields:
            value = fields[key]
            p = next(p for p in self.cls.params if p.name == self.live_param)
            setattr(self.node.p, self.live_param, p.coerce(value, self.type_name))
            self.params[self.live_param] = value

    def configure(
        self,
        sizes: list[tuple[int, int]],
        ranges: list[ClipRange],
        fps: Fraction,
        scale: tuple[float, float] = (1.0, 1.0),
    ) -> ClipInfo:
        """Configure the node for inputs of these sizes at this render scale (only when they change).

        ``sizes`` are the host's image sizes (already scaled). In scale mode "scaled" the node
        gets those and its pixel parameters scaled; in mode "full" it is configured for the
        full-resolution sizes and the returned info has the output size at the render scale.
        The last two configurations stay ready (each its own node object), so a host that
        switches between proxy and full resolution does not reload models at every switch.
        """
        full = self.cls.host.scale_mode == "full" and scale != (1.0, 1.0)
        key = (tuple(sizes), tuple(ranges), fps, scale)
        if key == self.config_key:
            return self.out_info
        if self.config_key is not None:
            self.configured[self.config_key] = (self.node, self.out_info, self.full_sizes, self.scaled_out)
        if key in self.configured:
            self.node, self.out_info, self.full_sizes, self.scaled_out = self.configured.pop(key)
        else:
            node_sizes = [(round(w / scale[0]), round(h / scale[1])) for w, h in sizes] if full else list(sizes)
            node = self._make_node(self.params, scale)
            infos = [
                ClipInfo(width=w, height=h, fps=fps, num_frames=r.count, channels=3, bit_depth=32, time_base=1 / fps)
                for (w, h), r in zip(node_sizes, ranges)
            ]
            node.device = self.device
            out_info = node.configure(infos, self.device)
            self.full_sizes, self.scaled_out = None, None
            if full:
                self.full_sizes = node_sizes
                self.scaled_out = (max(1, round(out_info.width * scale[0])), max(1, round(out_info.height * scale[1])))
                out_info = out_info.replace(width=self.scaled_out[0], height=self.scaled_out[1])
            if self.config_key is None:
                self.node.close()
            self.node, self.out_info = node, out_info
        self.config_key = key
        self.scale = scale
        if isinstance(self.node, SequenceNode) and (
            self.chunk_runner is None or self.chunk_runner.node is not self.node
        ):
            self.chunk_runner = ChunkRunner(self.node)
        while len(self.configured) > 1:  # the other ready configuration
            _, (node, *_) = self.configured.popitem(last=False)
            node.close()
        return self.out_info

    def ready_info(self, sizes, ranges, fps, scale) -> ClipInfo | None:
        """The output info of a configuration already made, or None; needs no lock."""
        key = (tuple(sizes), tuple(ranges), fps, scale)
        if key == self.config_key:
            return self.out_info
        ready = self.configured.get(key)
        return ready[1] if ready else None

    def alpha_kind(self, out: ClipInfo, sizes: list[tuple[int, int]]) -> str:
        """Where the output's alpha comes from: ``node`` (the node makes it: RGBA or a matte,
        straight), ``source`` (input 0's alpha, same size) or ``opaque`` (1)."""
        if out.channels in (1, 2, 4):
            return "node"
        return "source" if sizes and (out.width, out.height) == tuple(sizes[0]) else "opaque"

    def plan(self, n: int, ranges: list[ClipRange], configure_args: tuple | None) -> list[list[int]]:
        """Input indices needed for output frame n, without waiting for a running render.

        A configured node (any configuration: temporal windows do not depend on the picture
        size) answers from its declared window at once; only an instance never configured
        takes the lock to configure first (``configure_args``: sizes, ranges, fps), for
        windows that depend on configure (jumpcut's plan).
        """
        node = self.node
        if self.config_key is None and configure_args is not None:
            with self.lock:
                if self.config_key is None:
                    self.configure(*configure_args)
                node = self.node
        return needed_frames(node, n, [r.count for r in ranges])

    def close(self) -> None:
        """Release every configured node."""
        self.node.close()
        for node, *_ in self.configured.values():
            node.close()
        self.configured.clear()

    # --- temporal windows and rendering (the engine's rules: vidfx.core.scheduler) -----------
    def frames_needed(self, n: int, ranges: list[ClipRange]) -> list[list[int]]:
        """Input indices (clamped) needed for output frame n, per input."""
        return needed_frames(self.node, n, [r.count for r in ranges])

    def render(self, n: int, ranges: list[ClipRange], get_frame, aborted: threading.Event) -> torch.Tensor:
        """Output frame n as a (C, H, W) tensor; ``get_frame(k, index)`` gives input frames.

        In scale mode "full" at a render scale below 1 the inputs are resampled to full
        resolution and the output back to the render scale.
        """
        full_sizes, scaled_out = self.full_sizes, self.scaled_out
        if full_sizes is None or scaled_out is None:
            return self._render(n, ranges, get_frame, aborted)
        cache: dict = {}

        def full_frame(k: int, i: int) -> Frame:
            if (k, i) not in cache:
                f = get_frame(k, i)
                w, h = full_sizes[k]
                cache[(k, i)] = f.with_data(resize(f.data, h, w, kernel="bilinear"))
            return cache[(k, i)]

        out = self._render(n, ranges, full_frame, aborted)
        return resize(out.float(), scaled_out[1], scaled_out[0], kernel="bilinear")

    def _render(self, n: int, ranges: list[ClipRange], get_frame, aborted: threading.Event) -> torch.Tensor:
        if self.chunk_runner is not None:

            def fetch(i: int) -> list[Frame]:
                if aborted.is_set():
                    raise RenderAborted()
                return [get_frame(k, clamp(i, r.count)) for k, r in enumerate(ranges)]

            # chunks are cached by their input content: consecutive frames run each chunk once
            def content(frames: list[Frame]) -> tuple:
                return tuple(_fingerprint(f.data) for f in frames)

            with torch.inference_mode():
                return self.chunk_runner.render(n, ranges[0].count, fetch, content)[0]
        inputs = [[get_frame(k, i) for i in idxs] for k, idxs in enumerate(self.frames_needed(n, ranges))]
        if aborted.is_set():
            raise RenderAborted()
        with torch.inference_mode():
            return self.node.render(n, inputs).data


class InstanceTable:
    """All live instances by id, with a cap (least recently used go first)."""

    def __init__(self, device: torch.device, keep: int = 64):
        self.device = device
        self._items: collections.OrderedDict[str, Instance] = collections.OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def get(self, fields: dict[str, str]) -> tuple[Instance, DirectLayout | CutLayout]:
        """The instance a request describes (made or rebuilt as needed), and its input layout."""
        type_name, params, layout = describe_request(fields)
        instance_id = fields["instance"]
        with self._lock:
            inst = self._items.get(instance_id)
            if inst is None or not inst.same_description(type_name, params):
                inst = None
            else:
                self._items.move_to_end(instance_id)
        if inst is None:
            inst = Instance(instance_id, type_name, params, self.device)
            dropped = []
            with self._lock:
                old = self._items.pop(instance_id, None)
                self._items[instance_id] = inst
                while len(self._items) > self._keep:
                    dropped.append(self._items.popitem(last=False)[1])
            for gone in dropped:
                with gone.lock:  # a render of it that is running finishes first
                    gone.close()
            if old is not None:
                with old.lock:  # a parameter changed: the input frames are still good
                    old.close()
                    inst.inputs, inst.inputs_layout = old.inputs, old.inputs_layout
        return inst, layout

    def forget(self, instance_id: str) -> None:
        """Drop an instance (the host destroyed it or purged its caches); a render of it that
        is running finishes first (its node is not closed under it)."""
        with self._lock:
            inst = self._items.pop(instance_id, None)
        if inst is not None:
            with inst.lock:
                inst.close()

    def __len__(self) -> int:
        return len(self._items)


def frame_from_planes(planes: np.ndarray, index: int) -> tuple[Frame, torch.Tensor]:
    """A Frame with the RGB of a (4, H, W) float array, and its alpha as (1, H, W).

    The planes are copied out of shared memory (a plain memcpy, since they are already
    planar): a node may keep input tensors (temporal history) after the request.
    """
    rgb = torch.from_numpy(planes[:3].copy())
    alpha = torch.from_numpy(planes[3:4].copy())
    return Frame(rgb, index=index, pts=index), alpha


def write_planes(
    out: np.ndarray, data: torch.Tensor, rgb_fallback: torch.Tensor | None, alpha_fallback: torch.Tensor | None
) -> None:
    """Write a node's (C, H, W) output into a (4, H, W) float array (R, G, B, A planes).

    RGB keeps alpha from the source frame when sizes agree (else opaque); a one-channel
    output is a matte: the source's RGB with the matte as alpha.
    """
    data = data.detach().to("cpu", torch.float32)
    c, h, w = data.shape

    def same(t):
        return t is not None and tuple(t.shape[1:]) == (h, w)

    src = data.numpy()
    if c >= 3:
        out[:3] = src[:3]
        if c == 4:
            out[3] = src[3]
        elif same(alpha_fallback):
            out[3] = alpha_fallback[0].numpy()
        else:
            out[3] = 1.0
    else:
        out[:3] = rgb_fallback.numpy() if same(rgb_fallback) else src[:1]
        out[3] = src[0]
