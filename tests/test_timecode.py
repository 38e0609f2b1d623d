"""SMPTE timecode arithmetic, drop-frame included."""

from __future__ import annotations

from fractions import Fraction

import pytest

from vidfx.core.errors import ParamError
from vidfx.core.timecode import Timecode

NTSC = Fraction(30000, 1001)


def test_non_drop_round_trip_and_offsets():
    tc = Timecode.parse("01:00:00:00", Fraction(25))
    assert tc.frames == 90000 and str(tc) == "01:00:00:00"
    assert str(tc + 30) == "01:00:01:05"
    assert str(Timecode.parse("00:59:59:23", Fraction(24000, 1001)) + 1) == "01:00:00:00"
    assert str(Timecode.parse("23:59:59:24", Fraction(25)) + 1) == "00:00:00:00"  # wraps at 24 h


def test_drop_frame_labels_skip_at_each_minute_but_the_tenth():
    start = Timecode.parse("00:00:59;29", NTSC)
    assert start.drop and str(start + 1) == "00:01:00;02"  # ;00 and ;01 do not exist
    assert str(Timecode.parse("00:09:59;29", NTSC) + 1) == "00:10:00;00"  # every tenth minute keeps them
    # one hour of 29.97 fps is 107892 frames: drop-frame labels it exactly 01:00:00;00
    assert str(Timecode(107892, 30, drop=True)) == "01:00:00;00"
    for frames in (0, 1799, 1800, 17981, 17982, 100000, 2589407):
        tc = Timecode(frames, 30, drop=True)
        assert Timecode.parse(str(tc), NTSC).frames == frames
    sixty = Timecode.parse("00:00:59;59", Fraction(60000, 1001))
    assert str(sixty + 1) == "00:01:00;04"


def test_bad_timecodes_are_parameter_errors():
    for text in ("1:2:3", "00:00:00:25", "00:61:00:00", "aa:bb:cc:dd"):
        with pytest.raises(ParamError):
            Timecode.parse(text, Fraction(25))
    with pytest.raises(ParamError, match="dropped"):
        Timecode.parse("00:01:00;00", NTSC)


def test_trim_moves_timecode_and_frame_numbers_select_drops_them():
    import torch

    from vidfx.core.frame import ClipInfo
    from vidfx.core.registry import create_node

    info = ClipInfo(
        width=4,
        height=4,
        fps=Fraction(25),
        num_frames=50,
        timecode=Timecode.parse("01:00:00:00", Fraction(25)),
        first_number=1001,
    )
    out = create_node("trim", start=10, end=20).configure([info], torch.device("cpu"))
    assert str(out.timecode) == "01:00:00:10" and out.first_number == 1011
    thinned = create_node("select", every=2).configure([info], torch.device("cpu"))
    assert thinned.timecode is None and thinned.first_number is None


@pytest.mark.parametrize("out_name", ["out.mov", "out_%04d.exr"])
def test_timecode_through_the_command_line_with_frames(tmp_path, out_name):
    """A drop-frame MOV through `vidfx run --frames 10:14`: the output's timecode starts ten
    frames later, in a MOV and in every EXR header."""
    from vidfx.cli import main
    from vidfx.io.probe import probe

    graph = tmp_path / "make.yaml"
    graph.write_text(
        "nodes:\n  src: {type: pattern, width: 64, height: 36, fps: 30000/1001, frames: 30}\n"
        "outputs:\n  - {input: src, path: source.mov, codec: prores_422hq}\n"
    )
    assert main(["run", str(graph), "-q"]) == 0
    # stamp the source with a timecode the way a camera file carries it (a tmcd track)
    from vidfx.io.nodes import open_source
    from vidfx.io.writer import make_sink

    reader = open_source(tmp_path / "source.mov")
    stamped = tmp_path / "stamped.mov"
    sink = make_sink(str(stamped), codec="prores_422hq")
    sink.open(reader.info.replace(timecode=Timecode.parse("00:00:59;25", NTSC)))
    for n in range(reader.info.num_frames):
        sink.write(reader.read(n))
    sink.close()
    reader.close()
    assert str(probe(stamped).timecode) == "00:00:59;25"

    copy = tmp_path / "copy.yaml"
    copy.write_text(f"inputs: {{src: stamped.mov}}\noutputs:\n  - {{input: src, path: {out_name}}}\n")
    assert main(["run", str(copy), "-q", "--frames", "10:14"]) == 0
    out = probe(tmp_path / out_name)
    assert out.num_frames == 4 and str(out.timecode) == "00:01:00;07"  # 59;25 + 10 frames skips ;00 and ;01
    assert out.fps == NTSC
