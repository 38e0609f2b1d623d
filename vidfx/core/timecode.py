"""SMPTE timecode: reading, writing and moving it by whole frames, drop-frame included.

A ``Timecode`` is a frame count since 00:00:00:00 at a *nominal* integer rate (24, 25, 30,
50, 60...). Drop-frame timecode (29.97 and 59.94 fps) counts at 30 or 60 but skips the
labels :00 and :01 (:00-:03 at 60) at the start of every minute except each tenth one, so
the label stays close to wall-clock time; the frame count itself never skips.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from .errors import ParamError

_PATTERN = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})$")


def nominal_rate(fps: Fraction) -> int:
    """The integer rate timecode counts at for a frame rate (30000/1001 -> 30)."""
    return max(1, round(fps))


def is_drop_rate(fps: Fraction) -> bool:
    """Whether drop-frame timecode applies to this rate (29.97, 59.94: NTSC multiples of 30/1.001)."""
    return fps.denominator == 1001 and nominal_rate(fps) % 30 == 0


@dataclass(frozen=True)
class Timecode:
    """``frames`` since midnight at ``rate`` frames per (timecode) second; ``drop`` for drop-frame."""

    frames: int
    rate: int
    drop: bool = False

    def __post_init__(self) -> None:
        if self.rate < 1:
            raise ValueError(f"timecode rate must be positive, not {self.rate}")
        if self.drop and self.rate % 30:
            raise ValueError(f"drop-frame timecode needs a rate of 30 or 60, not {self.rate}")

    @classmethod
    def parse(cls, text: str, fps: Fraction) -> Timecode:
        """``HH:MM:SS:FF`` (``;`` or ``.`` before the frames: drop-frame) at frame rate ``fps``."""
        match = _PATTERN.match(str(text).strip())
        if not match:
            raise ParamError(f"timecode {text!r}: expected HH:MM:SS:FF")
        hh, mm, ss, sep, ff = match.groups()
        rate = nominal_rate(fps)
        drop = sep in ";.," and is_drop_rate(fps)
        h, m, s, f = int(hh), int(mm), int(ss), int(ff)
        if m > 59 or s > 59 or f >= rate:
            raise ParamError(f"timecode {text!r}: field out of range at {rate} fps")
        frames = ((h * 60 + m) * 60 + s) * rate + f
        if drop:
            per_minute = rate // 15  # 2 labels at 30, 4 at 60
            minutes = h * 60 + m
            if s == 0 and f < per_minute and m % 10:
                raise ParamError(f"timecode {text!r}: that label is dropped in drop-frame timecode")
            frames -= per_minute * (minutes - minutes // 10)
        return cls(frames % (24 * 3600 * rate), rate, drop)

    def fields(self) -> tuple[int, int, int, int]:
        """(hours, minutes, seconds, frames) of the label."""
        count = self.frames
        if self.drop:
            per_minute = self.rate // 15
            ten_minutes = self.rate * 600 - per_minute * 9
            one_minute = self.rate * 60 - per_minute
            tens, rest = divmod(count, ten_minutes)
            count += per_minute * 9 * tens
            if rest > per_minute:
                count += per_minute * ((rest - per_minute) // one_minute)
        f = count % self.rate
        s = count // self.rate
        return (s // 3600) % 24, (s // 60) % 60, s % 60, f

    def __str__(self) -> str:
        h, m, s, f = self.fields()
        return f"{h:02d}:{m:02d}:{s:02d}{';' if self.drop else ':'}{f:02d}"

    def __add__(self, frames: int) -> Timecode:
        """The timecode ``frames`` frames later (wraps at 24 hours)."""
        return Timecode((self.frames + frames) % (24 * 3600 * self.rate), self.rate, self.drop)

    def __sub__(self, other: Timecode) -> int:
        """Frames between two timecodes of one rate."""
        if other.rate != self.rate:
            raise ValueError("timecodes of different rates")
        return self.frames - other.frames
