"""SMPTE 12M packed timecode: the 32-bit BCD word that DPX and OpenEXR headers store.

Layout (least significant bit first): frame units (bits 0-3), frame tens (4-5), drop-frame
flag (6), colour frame (7), second units (8-11), second tens (12-14), field/phase mark (15),
minute units (16-19), minute tens (20-22), (23), hour units (24-27), hour tens (28-29),
(30-31). Read as a number this is ``0xHHMMSSFF`` in BCD, which is how DPX tools print it.
Rates above 30 count frame *pairs* (the frames field holds up to 39) and mark the second
frame of a pair with the field/phase bit: bit 15 at 60 fps, bit 31 at 50 fps (SMPTE 12-1,
as FFmpeg and OpenEXR do).
"""

from __future__ import annotations

from fractions import Fraction

from vidfx.core.timecode import Timecode, is_drop_rate, nominal_rate

DROP_FRAME_BIT = 1 << 6
UNSET = 0xFFFFFFFF  # DPX's "undefined" value for the field


def _bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


def _from_bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0xF)


def _phase_bit(rate: int) -> int:
    return 1 << 31 if rate in (50, 48) else 1 << 15


def pack(timecode: Timecode) -> int:
    """The packed 32-bit word of a timecode."""
    h, m, s, f = timecode.fields()
    word = 0
    if timecode.rate > 30:
        f, odd = divmod(f, 2)
        if odd:
            word |= _phase_bit(timecode.rate)
    word |= _bcd(h) << 24 | _bcd(m) << 16 | _bcd(s) << 8 | _bcd(f)
    if timecode.drop:
        word |= DROP_FRAME_BIT
    return word


def unpack(word: int, fps: Fraction) -> Timecode | None:
    """The timecode in a packed word at frame rate ``fps``; None for an unset (all ones) or
    invalid word."""
    if word == UNSET:
        return None
    h = _from_bcd(word >> 24 & 0x3F)
    m = _from_bcd(word >> 16 & 0x7F)
    s = _from_bcd(word >> 8 & 0x7F)
    f = _from_bcd(word & 0x3F)
    rate = nominal_rate(fps)
    if rate > 30:
        f = 2 * f + (1 if word & _phase_bit(rate) else 0)
    drop = bool(word & DROP_FRAME_BIT) and is_drop_rate(fps)
    if h > 23 or m > 59 or s > 59 or f >= rate:
        return None
    sep = ";" if drop else ":"
    try:
        return Timecode.parse(f"{h:02d}:{m:02d}:{s:02d}{sep}{f:02d}", fps)
    except Exception:  # a dropped label, say: the word is not a valid timecode
        return None
