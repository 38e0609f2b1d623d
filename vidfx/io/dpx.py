"""DPX (SMPTE 268M) header fields vidfx reads and writes: size, bit depth, frame rate and
the SMPTE timecode of the television header.

FFmpeg's ``dpx`` encoder writes only the file, image and orientation headers (1664 bytes,
image data right after them) and no timecode. ``add_industry_headers`` turns such a file
into one with the film and television headers (2048 bytes of header) carrying the frame
rate and the timecode; ``read_header`` reads any DPX, either byte order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

from vidfx.core.errors import MediaError
from vidfx.core.timecode import Timecode

from . import smpte

# Byte offsets from SMPTE 268M-2003 (all numbers in the byte order the magic announces).
MAGIC = 0  # "SDPX" big-endian, "XPDS" little-endian
IMAGE_OFFSET = 4  # u32: where the image data starts
FILE_SIZE = 16  # u32: total file size
GENERIC_SIZE = 24  # u32: size of file + image + orientation headers (1664)
INDUSTRY_SIZE = 28  # u32: size of film + television headers (384, or 0 when absent)
PIXELS_PER_LINE = 772  # u32
LINES_PER_ELEMENT = 776  # u32
ELEMENT = 780  # first image element (72 bytes each)
DESCRIPTOR = ELEMENT + 20  # u8: 50 RGB, 51 RGBA, 6 luma
BIT_SIZE = ELEMENT + 23  # u8: 8, 10, 12, 16
ELEMENT_DATA_OFFSET = ELEMENT + 28  # u32: where this element's data starts
FILM_HEADER = 1664  # film industry header, 256 bytes
FILM_FRAME_RATE = 1724  # f32: frames per second of the original
TV_HEADER = 1920  # television industry header, 128 bytes
TV_TIMECODE = 1920  # u32: SMPTE 12M packed timecode (smpte.pack)
TV_USER_BITS = 1924  # u32
TV_FRAME_RATE = 1940  # f32: temporal sampling rate
HEADER_WITH_INDUSTRY = 2048
# ASCII fields of the film header (undefined = NUL); every other new byte is 0xFF (undefined)
_FILM_TEXT = ((1664, 16), (1680, 32), (1732, 132), (1864, 56))
_TV_RESERVED = (1972, 76)


@dataclass(frozen=True)
class DpxHeader:
    """What vidfx needs from a DPX header. ``timecode_word`` is the packed SMPTE word (None when
    unset or absent); ``frame_rate`` the TV (else film) header's rate, None when undefined."""

    big_endian: bool
    image_offset: int
    width: int
    height: int
    descriptor: int
    bit_depth: int
    timecode_word: int | None
    frame_rate: float | None

    def timecode(self, fps: Fraction) -> Timecode | None:
        """The header's timecode at rate ``fps`` (None when it has none)."""
        return None if self.timecode_word is None else smpte.unpack(self.timecode_word, fps)


def _endian(data: bytes, where: str) -> str:
    magic = bytes(data[:4])
    if magic == b"SDPX":
        return ">"
    if magic == b"XPDS":
        return "<"
    raise MediaError(f"{where}: not a DPX file (magic {magic!r})")


def _rate(value: float) -> float | None:
    return value if value == value and 0 < value < 1000 else None  # NaN/0xFFFFFFFF: undefined


def read_header(data: bytes, where: str = "DPX") -> DpxHeader:
    """Parse the header of a DPX file's bytes (at least its first 2048, or all of a shorter
    file); MediaError naming ``where`` if it is not DPX."""
    if len(data) < FILM_HEADER:
        raise MediaError(f"{where}: DPX header is cut off ({len(data)} bytes)")
    e = _endian(data, where)
    u32 = lambda offset: struct.unpack_from(e + "I", data, offset)[0]  # noqa: E731
    f32 = lambda offset: struct.unpack_from(e + "f", data, offset)[0]  # noqa: E731
    offset = u32(IMAGE_OFFSET)
    has_tv = offset >= HEADER_WITH_INDUSTRY and len(data) >= HEADER_WITH_INDUSTRY
    word = u32(TV_TIMECODE) if has_tv else smpte.UNSET
    rate = _rate(f32(TV_FRAME_RATE)) if has_tv else None
    if rate is None and has_tv:
        rate = _rate(f32(FILM_FRAME_RATE))
    return DpxHeader(
        big_endian=e == ">",
        image_offset=offset,
        width=u32(PIXELS_PER_LINE),
        height=u32(LINES_PER_ELEMENT),
        descriptor=data[DESCRIPTOR],
        bit_depth=data[BIT_SIZE],
        timecode_word=None if word == smpte.UNSET else word,
        frame_rate=rate,
    )


def read_file_header(path: str) -> DpxHeader:
    """``read_header`` of a file on disk (reads its first 2048 bytes)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(HEADER_WITH_INDUSTRY)
    except OSError as exc:
        raise MediaError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return read_header(data, path)


def add_industry_headers(data: bytes, timecode: Timecode | None, fps: Fraction | None) -> bytes:
    """A DPX file's bytes with film and television headers carrying ``fps`` and ``timecode``.

    A file whose image data starts at 1664 (FFmpeg's) gets 384 header bytes inserted there
    and its offsets and sizes moved; a file that has the headers already gets the fields set.
    """
    e = _endian(data, "DPX")
    offset = struct.unpack_from(e + "I", data, IMAGE_OFFSET)[0]
    out = bytearray(data)
    if offset < HEADER_WITH_INDUSTRY:
        if offset != FILM_HEADER:
            raise MediaError(f"DPX: unexpected image data offset {offset}")
        industry = bytearray(b"\xff" * (HEADER_WITH_INDUSTRY - FILM_HEADER))
        for start, size in _FILM_TEXT + (_TV_RESERVED,):
            industry[start - FILM_HEADER : start - FILM_HEADER + size] = bytes(size)
        out[FILM_HEADER:FILM_HEADER] = industry
        struct.pack_into(e + "I", out, IMAGE_OFFSET, HEADER_WITH_INDUSTRY)
        struct.pack_into(e + "I", out, ELEMENT_DATA_OFFSET, HEADER_WITH_INDUSTRY)
        struct.pack_into(e + "I", out, FILE_SIZE, len(out))
        struct.pack_into(e + "I", out, INDUSTRY_SIZE, HEADER_WITH_INDUSTRY - FILM_HEADER)
    word = smpte.UNSET if timecode is None else smpte.pack(timecode)
    struct.pack_into(e + "I", out, TV_TIMECODE, word)
    if fps:
        struct.pack_into(e + "f", out, FILM_FRAME_RATE, float(fps))
        struct.pack_into(e + "f", out, TV_FRAME_RATE, float(fps))
    return bytes(out)
