"""The OpenEXR ``timeCode`` and ``framesPerSecond`` header attributes: added to the files FFmpeg's ``exr`` encoder
writes (it writes none), and read back.

A single-part scan-line EXR is: magic and version (8 bytes), header attributes (``name\\0
type\\0`` int32 size, value) ending with a NUL byte, then the offset table (one uint64 file
offset per chunk of scan lines), then the chunks. Inserting an attribute moves every chunk
by its size, so the offset table is moved with it.
"""

from __future__ import annotations

import struct
from fractions import Fraction

from vidfx.core.errors import MediaError
from vidfx.core.timecode import Timecode

from . import smpte

EXR_MAGIC = b"\x76\x2f\x31\x01"
_SINGLE_PART_FLAGS = 0x1E00  # tiled, long names, deep, multi-part: none of these is handled
# scan lines per chunk for each compression code (none, rle, zips, zip, piz, pxr24, b44, b44a, dwaa, dwab)
_LINES_PER_CHUNK = (1, 1, 1, 16, 32, 16, 32, 32, 32, 256)


def _attributes(data: bytes, where: str) -> tuple[dict[str, tuple[str, int, int]], int]:
    """{name: (type, value offset, value size)} and the offset of the header's closing NUL."""
    if data[:4] != EXR_MAGIC:
        raise MediaError(f"{where}: not an OpenEXR file")
    if struct.unpack_from("<I", data, 4)[0] & _SINGLE_PART_FLAGS:
        raise MediaError(f"{where}: only single-part scan-line OpenEXR headers are handled")
    attrs: dict[str, tuple[str, int, int]] = {}
    pos = 8
    while data[pos] != 0:
        name_end = data.index(b"\0", pos)
        type_end = data.index(b"\0", name_end + 1)
        size = struct.unpack_from("<i", data, type_end + 1)[0]
        value = type_end + 5
        attrs[data[pos:name_end].decode("latin-1")] = (data[name_end + 1 : type_end].decode("latin-1"), value, size)
        pos = value + size
    return attrs, pos


def add_attribute(data: bytes, name: str, kind: str, value: bytes, where: str = "EXR") -> bytes:
    """An EXR file's bytes with one more header attribute (or that attribute's value replaced,
    when the file has it with a value of the same size)."""
    attrs, end = _attributes(data, where)
    if name in attrs and attrs[name][2] == len(value):
        _, at, _ = attrs[name]
        return data[:at] + value + data[at + len(value) :]
    if name in attrs:
        raise MediaError(f"{where}: header attribute {name} has an unexpected size")
    _, window, _ = attrs["dataWindow"]
    _, y_min, _, y_max = struct.unpack_from("<iiii", data, window)
    _, compression, _ = attrs["compression"]
    chunks = -(-(y_max - y_min + 1) // _LINES_PER_CHUNK[data[compression]])
    attribute = f"{name}\0{kind}\0".encode("latin-1") + struct.pack("<i", len(value)) + value
    table_start = end + 1
    offsets = struct.unpack_from(f"<{chunks}Q", data, table_start)
    table = struct.pack(f"<{chunks}Q", *(o + len(attribute) for o in offsets))
    return data[:end] + attribute + data[end:table_start] + table + data[table_start + 8 * chunks :]


def add_timecode(data: bytes, timecode: Timecode, where: str = "EXR") -> bytes:
    """An EXR file's bytes with a ``timeCode`` attribute (packed SMPTE word, no user bits)."""
    return add_attribute(data, "timeCode", "timecode", struct.pack("<II", smpte.pack(timecode), 0), where)


def add_rate(data: bytes, fps: Fraction, where: str = "EXR") -> bytes:
    """An EXR file's bytes with the standard ``framesPerSecond`` attribute (a rational)."""
    return add_attribute(data, "framesPerSecond", "rational", struct.pack("<iI", fps.numerator, fps.denominator), where)


def read_timecode(data: bytes, fps: Fraction, where: str = "EXR") -> Timecode | None:
    """The ``timeCode`` attribute of an EXR file's bytes (its header is enough), None if absent."""
    attrs, _ = _attributes(data, where)
    if "timeCode" not in attrs or attrs["timeCode"][0] != "timecode":
        return None
    return smpte.unpack(struct.unpack_from("<I", data, attrs["timeCode"][1])[0], fps)
