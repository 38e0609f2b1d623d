"""Reading image sequences: PNG (8/16-bit), TIFF (8/16-bit), OpenEXR (half/float), DPX
(10/16-bit), with alpha.

A sequence is named by a printf pattern (``shots/a_%04d.png``), a folder of images, or one
image file (read as that file even if its name holds a ``%``). Frame numbers come from the
file names: ``shot_1001..shot_1100`` are frames 0..99 with ``first_number`` 1001; a missing
number is an error unless the reader fills it (``gaps``). Timecode comes from the first
file's header (DPX, EXR). Files are decoded one at a time with FFmpeg's image codecs
through PyAV; writing is in ``sequence_writer``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import OpenEXR

from vidfx.core.errors import MediaError
from vidfx.core.frame import ClipInfo, ColourTags, EndOfStream, Frame
from vidfx.core.timecode import Timecode, nominal_rate

from . import dpx
from .pixfmt import bit_depth_of, has_alpha, is_grey, is_yuv

if TYPE_CHECKING:
    import torch

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".exr", ".jpg", ".jpeg", ".dpx", ".bmp")
PATTERN = re.compile(r"%(0?\d*)d")
_PLACEHOLDER = re.compile(r"%%|%(0?\d*)d")
_NUMBERED_NAME = re.compile(r"^(.*?)(\d+)(\D*)$")  # prefix, frame number, suffix (extension)
GAP_MODES = ("error", "hold", "black")


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


def find_placeholder(name: str) -> re.Match[str] | None:
    """The frame-number placeholder (``%04d``, ``%d``) in a file name, skipping ``%%``
    (a literal ``%``); None when there is none (``50%_grey.png`` has none)."""
    for match in _PLACEHOLDER.finditer(name):
        if match.group(0) != "%%":
            return match
    return None


def is_image_input(path: str) -> bool:
    """Whether the ``read`` node reads ``path`` as images rather than as a video file.

    A path that exists as a file is that file (an image by its extension), even when its
    name holds a ``%``; a folder is a sequence; otherwise a ``%d`` placeholder in the file
    name makes it a pattern.
    """
    if os.path.isfile(path):
        return path.lower().endswith(IMAGE_EXTENSIONS)
    if os.path.isdir(path):
        return True
    return find_placeholder(os.path.basename(path)) is not None or path.lower().endswith(IMAGE_EXTENSIONS)


@dataclass
class SequenceFiles:
    """The files of an image sequence by frame number.

    ``files`` maps each frame number found to its file; ``numbered`` is False for a folder
    whose names carry no common numbering (its files are numbered 0.. in name order).
    ``name_of(number)`` is the file a number should have (to name missing frames).
    """

    files: dict[int, str]
    numbered: bool
    prefix: str = ""
    width: int = 0
    suffix: str = ""

    @property
    def first(self) -> int:
        """The lowest frame number."""
        return min(self.files)

    @property
    def last(self) -> int:
        """The highest frame number."""
        return max(self.files)

    def missing(self) -> list[int]:
        """Numbers between the first and the last that have no file."""
        return [n for n in range(self.first, self.last + 1) if n not in self.files]

    def name_of(self, number: int) -> str:
        """The path frame ``number`` would have."""
        return f"{self.prefix}{number:0{self.width}d}{self.suffix}"


def _natural_key(name: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _scan_folder(path: str) -> SequenceFiles:
    names = sorted(
        (f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")),
        key=_natural_key,
    )
    parts = [_NUMBERED_NAME.match(f) for f in names]
    stems = {(m.group(1), m.group(3)) for m in parts if m}
    if names and all(parts) and len(stems) == 1:
        prefix, suffix = stems.pop()
        digits = [m.group(2) for m in parts if m]
        width = len(digits[0]) if len({len(d) for d in digits}) == 1 else 0
        files = {int(m.group(2)): os.path.join(path, f) for m, f in zip(parts, names) if m}
        if len(files) == len(names):
            return SequenceFiles(files, True, os.path.join(path, prefix), width, suffix)
    return SequenceFiles({i: os.path.join(path, f) for i, f in enumerate(names)}, False)


def _scan_pattern(path: str, match: re.Match[str]) -> SequenceFiles:
    folder, name = os.path.split(path)
    width = match.group(1)
    digits = rf"\d{{{int(width)},}}" if width else r"\d+"
    head = name[: match.start()].replace("%%", "%")
    tail = name[match.end() :].replace("%%", "%")
    regex = re.compile(re.escape(head) + f"({digits})" + re.escape(tail) + "$")
    if not os.path.isdir(folder or "."):
        raise MediaError(f"{path}: folder {folder} not found")
    files: dict[int, str] = {}
    for f in sorted(os.listdir(folder or ".")):
        if m := regex.match(f):
            number = int(m.group(1))
            if number in files:
                raise MediaError(f"{path}: frame {number} is there twice ({os.path.basename(files[number])}, {f})")
            files[number] = os.path.join(folder, f)
    return SequenceFiles(files, True, os.path.join(folder, head), int(width or 0), tail)


def scan_sequence(path: str) -> SequenceFiles:
    """The files of the sequence ``path`` names; MediaError (naming it) if there are none.

    ``path`` is one image file (read as that file even if its name holds a ``%``), a
    folder of images, or a printf pattern (``shot_%04d.exr``; ``%%`` is a literal ``%``).
    """
    if os.path.isfile(path):
        return SequenceFiles({0: path}, False)
    if os.path.isdir(path):
        found = _scan_folder(path)
    elif match := find_placeholder(os.path.basename(path)):
        found = _scan_pattern(path, match)
    else:
        raise MediaError(f"{path}: file not found")
    if not found.files:
        raise MediaError(f"{path}: no images found")
    return found


def list_sequence(path: str) -> list[str]:
    """The files of a sequence in frame order (numbers ascending, gaps left out); MediaError if none."""
    found = scan_sequence(path)
    return [found.files[n] for n in sorted(found.files)]


def read_image(path: str) -> av.VideoFrame:
    """Decode one image file; MediaError naming it if it is missing or corrupt."""
    try:
        with av.open(path) as container:
            for frame in container.decode(video=0):
                return frame
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{path}: cannot read image ({getattr(exc, 'strerror', None) or exc})") from None
    raise MediaError(f"{path}: no picture in file")


def _describe_missing(found: SequenceFiles, missing: list[int]) -> str:
    shown = ", ".join(f"{n} ({os.path.basename(found.name_of(n))})" for n in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return f"{shown}{more}"


def header_rate(path: str) -> Fraction | None:
    """The frame rate an image file's header states (DPX film/TV header, EXR
    ``framesPerSecond``), or None."""
    lower = path.lower()
    try:
        if lower.endswith(".dpx"):
            return _exact_rate(dpx.read_file_header(path).frame_rate)
        if lower.endswith(".exr"):
            return _exr_rate(OpenEXR.File(path, header_only=True).header().get("framesPerSecond"))
    except Exception:  # an unreadable header states nothing; decoding reports a bad file
        return None
    return None


def image_timecode(path: str, fps: Fraction) -> Timecode | None:
    """The timecode an image file's header stores (DPX television header, EXR ``timeCode``),
    counted at the rate the header states, else at ``fps``; None when it has none."""
    lower = path.lower()
    if lower.endswith(".dpx"):
        header = dpx.read_file_header(path)
        rate = _exact_rate(header.frame_rate) or fps
        return header.timecode(rate)
    if lower.endswith(".exr"):
        return _exr_timecode(path, fps)
    return None


def _exact_rate(value: float | None) -> Fraction | None:
    """A header's float frame rate as an exact rate (29.97 -> 30000/1001); None if undefined."""
    if value is None or not value > 0:
        return None
    for nominal in (24, 30, 48, 60, 120):
        if abs(value - nominal * 1000 / 1001) < 0.005:
            return Fraction(nominal * 1000, 1001)
    return Fraction(value).limit_denominator(1001)


def _exr_rate(field: object) -> Fraction | None:
    """An EXR ``framesPerSecond`` attribute (OpenEXR gives a Fraction, older bindings a pair)."""
    if isinstance(field, Fraction):
        return field if field > 0 else None
    if isinstance(field, (tuple, list)) and len(field) == 2 and field[1]:
        return Fraction(int(field[0]), int(field[1]))
    return None


def _exr_timecode(path: str, fps: Fraction) -> Timecode | None:
    try:
        header = OpenEXR.File(path, header_only=True).header()
    except Exception:  # OpenEXR raises RuntimeError and others; FFmpeg reports a bad file
        return None
    tc = header.get("timeCode")
    if tc is None:
        return None
    rate = _exr_rate(header.get("framesPerSecond"))
    if rate is not None:
        fps = rate
    frame = tc.frame
    if nominal_rate(fps) > 30:  # SMPTE 12-1 counts frame pairs above 30 fps; the phase bit marks the second
        frame = 2 * frame + (1 if tc.fieldPhase or tc.bgf2 else 0)
    label = f"{tc.hours:02d}:{tc.minutes:02d}:{tc.seconds:02d}{';' if tc.dropFrame else ':'}{frame:02d}"
    try:
        return Timecode.parse(label, fps)
    except ValueError:  # a label that cannot exist at this rate: no usable timecode
        return None


class ImageSequenceDecoder:
    """Reads frame ``n`` of a sequence as a lazy Frame (pts = n, time base = 1/fps).

    Frame ``n`` is the file numbered ``first + n`` (``ClipInfo.first_number`` = ``first``;
    each frame's ``meta["frame_number"]``). A number without a file is a MediaError at
    ``open`` naming the missing files, unless ``gaps`` is ``"hold"`` (repeat the frame
    before it) or ``"black"`` (a black frame of the same size).
    """

    def __init__(self, path: str, fps: Fraction | None = None, gaps: str = "error"):
        if gaps not in GAP_MODES:
            raise MediaError(f"{path}: gaps must be one of {', '.join(GAP_MODES)}, not {gaps!r}")
        self.path = path
        self.fps = fps  # None: the rate the first file's header states, else 25
        self.gaps = gaps
        self.found: SequenceFiles | None = None
        self.info: ClipInfo | None = None

    @property
    def files(self) -> list[str]:
        """The files found, in frame order."""
        found = self.found
        return [] if found is None else [found.files[n] for n in sorted(found.files)]

    def open(self) -> ClipInfo:
        """List the files and describe the sequence from its first image."""
        found = self.found = scan_sequence(self.path)
        missing = found.missing()
        if missing and self.gaps == "error":
            raise MediaError(
                f"{self.path}: {len(missing)} missing frame{'s' if len(missing) > 1 else ''}: "
                f"{_describe_missing(found, missing)} (read option gaps: hold or black fills them)"
            )
        first_file = found.files[found.first]
        fps = self.fps or header_rate(first_file) or Fraction(25)
        first = read_image(first_file)
        pix_fmt = first.format.name
        depth = bit_depth_of(pix_fmt)
        is_exr = first_file.lower().endswith(".exr")
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
            fps=fps,
            num_frames=found.last - found.first + 1,
            channels=4 if has_alpha(pix_fmt) else 1 if is_grey(pix_fmt) else 3,
            bit_depth=depth,
            colour=colour,
            time_base=1 / fps,
            source=self.path,
            pix_fmt=pix_fmt,
            codec=os.path.splitext(first_file)[1].lstrip(".").lower(),
            timecode=image_timecode(first_file, fps),
            first_number=found.first if found.numbered else None,
        )
        return self.info

    def get(self, n: int) -> Frame:
        """Frame ``n``; EndOfStream past the last file."""
        # pixels need torch; opening and probing a sequence do not (`vidfx probe` stays light)
        import torch

        from .convert import av_to_tensor

        info = self.info if self.info is not None else self.open()
        found = self.found
        assert found is not None  # set by open()
        if n < 0:
            raise IndexError(f"{self.path}: negative frame index {n}")
        if n >= info.num_frames:
            raise EndOfStream(info.num_frames)
        number = found.first + n
        meta: dict[str, object] = {"duration": 1}
        if found.numbered:
            meta["frame_number"] = number
        if number not in found.files:
            meta["filled"] = self.gaps
            if self.gaps == "black":
                shape = (info.channels, info.height, info.width)
                return Frame(torch.zeros(shape), index=n, pts=n, meta=meta)
            number = max(k for k in found.files if k < number)  # hold: the frame before the gap
        path = found.files[number]
        meta["file"] = path

        def load() -> torch.Tensor:
            vf = read_image(path)
            if (vf.width, vf.height) != (info.width, info.height):
                raise MediaError(
                    f"{path}: size {vf.width}x{vf.height} differs from the sequence's {info.width}x{info.height}"
                )
            return av_to_tensor(vf, info.channels, info.bit_depth, info.colour)

        return Frame(index=n, pts=n, load=load, meta=meta)

    def close(self) -> None:
        """Nothing to release (files are opened per frame)."""
