"""Small built-in nodes: resize, crop, pad, colour transfer, alpha over, trim, select,
temporal average, passthrough, and a synthetic test pattern source."""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from ..core.errors import ParamError
from ..core.frame import AudioRef, ClipInfo, ColourTags, EndOfStream, Frame
from ..core.node import HostHints, Node, SourceNode
from ..core.params import Param
from ..ops import colour
from ..ops.resample import KERNELS, resize


class Passthrough(Node):
    """Hands frames on untouched (a pass-through graph never converts pixels)."""

    type_name = "passthrough"
    description = "Output = input, untouched."

    def render(self, n, inputs):
        return inputs[0][0]


class Resize(Node):
    """Scales frames with an antialiased separable kernel."""

    type_name = "resize"
    description = "Resize to width x height (0 keeps the aspect ratio from the other side)."
    host = HostHints(pixel_params={"width": "x", "height": "y"}, defaults={"scale": 1.0})
    params = (
        Param("width", "int", 0, "output width in pixels (0: from height and aspect)", min=0, max=32768),
        Param("height", "int", 0, "output height in pixels (0: from width and aspect)", min=0, max=32768),
        Param("scale", "float", 0.0, "scale factor, used when width and height are 0", min=0, max=16),
        Param("kernel", "choice", "lanczos", "resampling kernel", choices=KERNELS),
    )

    def configure(self, inputs, device):
        info = inputs[0]
        p = self.p
        if p.width == 0 and p.height == 0:
            if p.scale <= 0:
                raise ParamError(f"{self.name}: give width, height or scale")
            w, h = round(info.width * p.scale), round(info.height * p.scale)
        elif p.width == 0:
            h = p.height
            w = round(info.width * h / info.height)
        elif p.height == 0:
            w = p.width
            h = round(info.height * w / info.width)
        else:
            w, h = p.width, p.height
        self.size = (max(1, h), max(1, w))
        return info.replace(width=self.size[1], height=self.size[0])

    def render(self, n, inputs):
        frame = inputs[0][0]
        out = resize(frame.data.to(self.device), *self.size, kernel=self.p.kernel)
        if self.p.kernel in ("bicubic", "lanczos"):
            out = out.clamp(0, 1)  # these kernels overshoot at edges
        return frame.with_data(out)


class Crop(Node):
    """Cuts a rectangle out of each frame."""

    type_name = "crop"
    description = "Keep the rectangle x, y, width, height (0: to the right or bottom edge)."
    host = HostHints(pixel_params={"x": "x", "y": "y", "width": "x", "height": "y"})
    params = (
        Param("x", "int", 0, "left edge", min=0, max=32768),
        Param("y", "int", 0, "top edge", min=0, max=32768),
        Param("width", "int", 0, "width of the kept area (0: to the right edge)", min=0, max=32768),
        Param("height", "int", 0, "height of the kept area (0: to the bottom edge)", min=0, max=32768),
    )

    def configure(self, inputs, device):
        info, p = inputs[0], self.p
        self.width = p.width or info.width - p.x
        self.height = p.height or info.height - p.y
        if self.width < 1 or self.height < 1 or p.x + self.width > info.width or p.y + self.height > info.height:
            raise ParamError(
                f"{self.name}: crop {p.width}x{p.height}+{p.x}+{p.y} exceeds the {info.width}x{info.height} frame"
            )
        return info.replace(width=self.width, height=self.height)

    def render(self, n, inputs):
        p, frame = self.p, inputs[0][0]
        return frame.with_data(frame.data[:, p.y : p.y + self.height, p.x : p.x + self.width])


class Pad(Node):
    """Adds borders (letterbox/pillarbox, or room for an effect)."""

    type_name = "pad"
    description = "Add borders of a constant value; alpha 0 in the border if the input has alpha."
    host = HostHints(pixel_params={"left": "x", "top": "y", "right": "x", "bottom": "y"})
    params = (
        Param("left", "int", 0, "pixels added on the left", min=0, max=32768),
        Param("top", "int", 0, "pixels added on top", min=0, max=32768),
        Param("right", "int", 0, "pixels added on the right", min=0, max=32768),
        Param("bottom", "int", 0, "pixels added at the bottom", min=0, max=32768),
        Param("value", "float", 0.0, "border grey level", min=0, max=1),
    )

    def configure(self, inputs, device):
        info, p = inputs[0], self.p
        return info.replace(width=info.width + p.left + p.right, height=info.height + p.top + p.bottom)

    def render(self, n, inputs):
        p, frame = self.p, inputs[0][0]
        x = frame.data
        out = torch.full(
            (x.shape[0], x.shape[1] + p.top + p.bottom, x.shape[2] + p.left + p.right),
            p.value,
            dtype=x.dtype,
            device=x.device,
        )
        if x.shape[0] == 4:
            out[3] = 0
        out[:, p.top : p.top + x.shape[1], p.left : p.left + x.shape[2]] = x
        return frame.with_data(out)


class ColourTransfer(Node):
    """Converts between transfer functions (sRGB, Rec.709, gamma 2.2/2.4, linear)."""

    type_name = "colour"
    description = "Convert the transfer function (e.g. srgb -> linear before compositing). Alpha is untouched."
    params = (
        Param(
            "source",
            "choice",
            "auto",
            "transfer of the input (auto: from the clip's tags)",
            choices=("auto",) + colour.TRANSFERS,
        ),
        Param("target", "choice", "linear", "transfer of the output", choices=colour.TRANSFERS),
    )

    def configure(self, inputs, device):
        info = inputs[0]
        self.source = self.p.source
        if self.source == "auto":
            self.source = colour.transfer_from_tag(info.colour.transfer)
        tags = ColourTags(
            info.colour.primaries, colour.TAG_OF_TRANSFER[self.p.target], info.colour.matrix, info.colour.range
        )
        bit_depth = max(info.bit_depth, 16) if self.p.target == "linear" else info.bit_depth
        return info.replace(colour=tags, bit_depth=bit_depth)

    def render(self, n, inputs):
        frame = inputs[0][0]
        x = frame.data
        rgb = colour.convert(x[:3], self.source, self.p.target)
        return frame.with_data(torch.cat([rgb, x[3:]]) if x.shape[0] == 4 else rgb)


class Over(Node):
    """Porter-Duff 'over': the first input (with alpha) over the second."""

    type_name = "over"
    description = "Composite input 1 (RGBA) over input 2; sizes must match."
    num_inputs = 2
    params = (
        Param("premultiplied", "bool", False, "the foreground's colour is premultiplied by its alpha"),
        Param("opacity", "float", 1.0, "extra opacity of the foreground", min=0, max=1),
    )

    def configure(self, inputs, device):
        fg, bg = inputs
        if (fg.width, fg.height) != (bg.width, bg.height):
            raise ParamError(
                f"{self.name}: foreground is {fg.width}x{fg.height} but background is "
                f"{bg.width}x{bg.height}; resize one first"
            )
        if fg.channels != 4:
            self.warn("foreground has no alpha; it covers the background completely")
        return bg.replace(channels=4 if bg.channels == 4 else 3)

    def render(self, n, inputs):
        fg, bg = inputs[0][0].data, inputs[1][0].data
        if bg.shape[0] == 1:
            bg = bg.expand(3, -1, -1)
        a = (fg[3:4] if fg.shape[0] == 4 else torch.ones_like(fg[:1])) * self.p.opacity
        fg_rgb = fg[:3] if fg.shape[0] >= 3 else fg[:1].expand(3, -1, -1)
        if self.p.premultiplied:
            fg_rgb = fg_rgb * self.p.opacity
        else:
            fg_rgb = fg_rgb * a
        rgb = fg_rgb + bg[:3] * (1 - a)
        if bg.shape[0] == 4:
            alpha = a + bg[3:4] * (1 - a)
            return inputs[1][0].with_data(torch.cat([rgb, alpha]))
        return inputs[1][0].with_data(rgb)


class Trim(Node):
    """Keeps frames start..end-1; timestamps and audio move with the cut."""

    type_name = "trim"
    description = "Keep frames [start, end); end -1 means to the last frame. Audio stays in sync."
    host = HostHints(exposed=False)  # changes the timeline, which a host effect cannot
    params = (
        Param("start", "int", 0, "first frame kept", min=0),
        Param("end", "int", -1, "first frame not kept (-1: the end)", min=-1),
    )

    def configure(self, inputs, device):
        info, p = inputs[0], self.p
        if p.end != -1 and p.end <= p.start:
            raise ParamError(f"{self.name}: end ({p.end}) must be after start ({p.start})")
        if p.start >= info.num_frames:
            raise ParamError(f"{self.name}: start {p.start} is past the last frame ({info.num_frames - 1})")
        length = self.output_length([info.num_frames])
        tb = info.frame_time_base
        self.pts_shift = round(Fraction(p.start) / info.fps / tb)
        audio = info.audio
        if audio is not None and (p.start > 0 or p.end != -1):
            audio = AudioRef(
                **{
                    **vars(audio),
                    "start": audio.start + float(p.start / info.fps),
                    "duration": float(length / info.fps),
                    "copyable": False,
                }
            )
        return info.replace(
            num_frames=length,
            audio=audio,
            timecode=None if info.timecode is None else info.timecode + p.start,
            first_number=None if info.first_number is None else info.first_number + p.start,
        )

    def output_length(self, input_lengths):
        end = input_lengths[0] if self.p.end == -1 else min(self.p.end, input_lengths[0])
        return max(0, end - self.p.start)

    def frames_needed(self, n):
        return [[self.p.start + n]]

    def render(self, n, inputs):
        frame = inputs[0][0]
        pts = None if frame.pts is None else frame.pts - self.pts_shift
        if frame.loaded:
            return frame.with_data(frame.data, index=n, pts=pts)
        # still lazy: keep the decoder's frame so a trimmed pass-through is not converted
        return Frame(index=n, pts=pts, meta=frame.meta, load=lambda: frame.data, native=frame.native)


class Select(Node):
    """Keeps every k-th frame and lowers the rate to match (duration and audio unchanged)."""

    type_name = "select"
    description = "Keep every `every`-th frame starting at `offset`; the frame rate drops by the same factor."
    host = HostHints(exposed=False)  # changes the timeline, which a host effect cannot
    params = (
        Param("every", "int", 2, "keep one frame in this many", min=1),
        Param("offset", "int", 0, "index of the first kept frame", min=0),
    )

    def configure(self, inputs, device):
        info = inputs[0]
        if self.p.offset >= self.p.every:
            raise ParamError(f"{self.name}.offset: must be below every ({self.p.every})")
        # a timecode counts at the source rate: it does not describe the thinned clip
        return info.replace(
            fps=info.fps / self.p.every,
            num_frames=self.output_length([info.num_frames]),
            timecode=None,
            first_number=None,
        )

    def output_length(self, input_lengths):
        return max(0, math.ceil((input_lengths[0] - self.p.offset) / self.p.every))

    def frames_needed(self, n):
        return [[self.p.offset + n * self.p.every]]

    def render(self, n, inputs):
        frame = inputs[0][0]
        return frame.with_data(frame.data, index=n)


class TemporalAverage(Node):
    """Averages each frame with its neighbours (denoise / motion-blur look).

    A real temporal node: output n needs inputs n-radius..n+radius; at the clip's ends the
    edge frames repeat.
    """

    type_name = "temporal_average"
    description = "Mean of frames n-radius..n+radius (box or triangle weights)."
    params = (
        Param("radius", "int", 1, "frames on each side", min=0, max=32),
        Param(
            "weights",
            "choice",
            "box",
            "box: equal weights; triangle: nearer frames count more",
            choices=("box", "triangle"),
        ),
    )

    def frames_needed(self, n):
        r = self.p.radius
        return [list(range(n - r, n + r + 1))]

    def render(self, n, inputs):
        frames = inputs[0]
        r = self.p.radius
        if self.p.weights == "box":
            w = torch.ones(2 * r + 1)
        else:
            w = torch.tensor([r + 1 - abs(i - r) for i in range(2 * r + 1)], dtype=torch.float32)
        w = (w / w.sum()).tolist()
        acc = frames[0].data.to(self.device) * w[0]
        for f, wi in zip(frames[1:], w[1:]):
            acc.add_(f.data.to(self.device), alpha=wi)
        return frames[r].with_data(acc)


class Pattern(SourceNode):
    """A synthetic moving test pattern (benchmarks, tests, smoke runs)."""

    type_name = "pattern"
    description = "Synthetic source: moving gradient and bars, exact frame rate, any length."
    params = (
        Param("width", "int", 640, "width", min=2, max=16384),
        Param("height", "int", 360, "height", min=2, max=16384),
        Param("fps", "str", "24000/1001", "exact frame rate, e.g. 24000/1001 or 25"),
        Param("frames", "int", 48, "number of frames", min=1),
        Param("alpha", "bool", False, "add an alpha channel (a moving disc)"),
    )

    def configure(self, inputs, device):
        try:
            fps = Fraction(self.p.fps)
        except (ValueError, ZeroDivisionError):
            raise ParamError(f"{self.name}.fps: {self.p.fps!r} is not a frame rate") from None
        if fps <= 0:
            raise ParamError(f"{self.name}.fps: must be positive")
        self.fps = fps
        w, h = self.p.width, self.p.height
        ys = torch.linspace(0, 1, h)[:, None].expand(h, w)
        xs = torch.linspace(0, 1, w)[None, :].expand(h, w)
        self.texture = torch.stack(
            [
                0.5 + 0.5 * torch.sin(2 * math.pi * (xs * 3 + ys)),
                0.5 + 0.5 * torch.sin(2 * math.pi * (ys * 2 - xs)),
                ((xs * 8).floor() % 2) * 0.8 + 0.1,
            ]
        ).contiguous()
        if self.p.alpha:
            d = ((xs - 0.5) ** 2 + (ys - 0.5) ** 2).sqrt()
            disc = ((0.25 - d).clamp(0, 0.02) / 0.02)[None]
            self.texture = torch.cat([self.texture, disc])
        return ClipInfo(
            width=w,
            height=h,
            fps=fps,
            num_frames=self.p.frames,
            channels=4 if self.p.alpha else 3,
            time_base=1 / fps,
            colour=ColourTags("bt709", "bt709", "bt709", "tv"),
        )

    def read(self, n):
        if n >= self.p.frames:
            raise EndOfStream(self.p.frames)
        # the picture pans 4 pixels per frame; a band moves down, so every frame differs
        frame = torch.roll(self.texture, shifts=4 * n, dims=2)
        band = (7 * n) % self.p.height
        frame[:3, band : band + max(1, self.p.height // 40)] = 1.0
        return Frame(frame, index=n, pts=n)
