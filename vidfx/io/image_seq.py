"""Reading image sequences: PNG (8/16-bit), TIFF (8/16-bit), OpenEXR (half/float), with alpha.

A sequence is named by a printf pattern (``shots/a_%04d.png``) or a folder of images.
Files are decoded one at a time with FFmpeg's image codecs through PyAV; writing is in
``sequence_writer``.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction

import av
import torch

from vidfx.core.errors import MediaError
from vidfx.core.frame import ClipInfo, ColourTags, EndOfStream, Frame

from .convert import av_to_tensor
from .pixfmt import bit_depth_of, has_alpha, is_grey, is_yuv

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".exr", ".jpg", ".jpeg", ".dpx", ".bmp")
PATTERN = re.compile(r"%(0?\d*)d")


def is_sequence_path(path: str) -> bool:
    """Whether ``path`` names an image sequence (a %d pattern, a folder, or one image)."""
    return (
        bool(PATTERN.search(os.path.basename(path))) or os.path.isdir(path) or path.lower().endswith(IMAGE_EXTENSIONS)
    )


def parse_fps(value: str | float | int | Fraction) -> Fraction:
    """An exact rate from ``25``, ``"24000/1001"``, ``"29.97"`` (-> 30000/1001) and the like."""
    text = str(value).strip()
    try:
        fps = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise MediaError(f"bad frame rate {value!r}") from None
    ntsc = {
        "23.976": Fraction(24000, 1001),
        "29.97": Fraction(30000, 1001),
        "59.94": Fraction(60000, 1001),
        "47.952": Fraction(48000, 1001),
    }
    fps = ntsc.get(text, fps)
    if fps <= 0:
        raise MediaError(f"bad frame rate {value!r}")
    return fps


def list_sequence(path: str) -> list[str]:
    """The files of a sequence in frame order (numbers ascending); MediaError if none."""
    if os.path.isdir(path):
        files = [
            os.path.join(path, f)
            for f in os.listdir(path)
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        ]
        key = lambda f: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", f)]  # noqa: E731
        files.sort(key=key)
    else:
        folder, name = os.path.split(path)
        folder = folder or "."
        match = PATTERN.search(name)
        if not match:
            files = [path] if os.path.exists(path) else []
        else:
            width = match.group(1)
            digits = rf"\d{{{int(width)},}}" if width else r"\d+"
            regex = re.compile(re.escape(name[: match.start()]) + f"({digits})" + re.escape(name[match.end() :]) + "$")
            if not os.path.isdir(folder):
                raise MediaError(f"{path}: folder {folder} not found")
            numbered = [(int(m.group(1)), f) for f in os.listdir(folder) if (m := regex.match(f))]
            files = [os.path.join(folder, f) for _, f in sorted(numbered)]
    if not files:
        raise MediaError(f"{path}: no images found")
    return files


def read_image(path: str) -> av.VideoFrame:
    """Decode one image file; MediaError naming it if it is missing or corrupt."""
    try:
        with av.open(path) as container:
            for frame in container.decode(video=0):
                return frame
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{path}: cannot read image ({getattr(exc, 'strerror', None) or exc})") from None
    raise MediaError(f"{path}: no picture in file")


class ImageSequenceDecoder:
    """Reads frame ``n`` of a sequence as a lazy Frame (pts = n, time base = 1/fps)."""

    def __init__(self, path: str, fps: Fraction):
        self.path = path
        self.fps = fps
        self.files: list[str] = []
        self.info: ClipInfo | None = None

    def open(self) -> ClipInfo:
        """List the files and describe the sequence from its first image."""
        self.files = list_sequence(self.path)
        first = read_image(self.files[0])
        pix_fmt = first.format.name
        depth = bit_depth_of(pix_fmt)
        is_exr = self.files[0].lower().endswith(".exr")
        # JPEG-style images are Y'CbCr with the BT.601 matrix at full range, whatever their size
        colour = ColourTags(
            primaries="bt709",
            transfer="linear" if is_exr else "iec61966-2-1",
            matrix="smpte170m" if is_yuv(pix_fmt) else None,
            range="pc",
        )
        self.info = ClipInfo(
            width=first.width,
            height=first.height,
            fps=self.fps,
            num_frames=len(self.files),
            channels=4 if has_alpha(pix_fmt) else 1 if is_grey(pix_fmt) else 3,
            bit_depth=depth,
            colour=colour,
            time_base=1 / self.fps,
            source=self.path,
            pix_fmt=pix_fmt,
            codec=os.path.splitext(self.files[0])[1].lstrip(".").lower(),
        )
        return self.info

    def get(self, n: int) -> Frame:
        """Frame ``n``; EndOfStream past the last file."""
        info = self.info if self.info is not None else self.open()
        if n >= len(self.files):
            raise EndOfStream(len(self.files))
        path = self.files[n]

        def load() -> torch.Tensor:
            vf = read_image(path)
            if (vf.width, vf.height) != (info.width, info.height):
                raise MediaError(
                    f"{path}: size {vf.width}x{vf.height} differs from the sequence's {info.width}x{info.height}"
                )
            return av_to_tensor(vf, info.channels, info.bit_depth, info.colour)

        return Frame(index=n, pts=n, load=load, meta={"duration": 1, "file": path})

    def close(self) -> None:
        """Nothing to release (files are opened per frame)."""
