"""probe(): exact rates, decodable frame counts, colour/depth/rotation/audio, clear errors."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vidfx.core.errors import MediaError
from vidfx.io import probe
from vidfx.io.frames import frame_rate, rgb_frames
from vidfx.io.pixfmt import bit_depth_of, has_alpha, is_float, is_grey, is_rgb, is_yuv

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_media"
CLIPS = REPO.parent / "shared" / "data" / "clips"
needs_clips = pytest.mark.usefixtures("shared_clips")  # tests/conftest.py


def decoded_count(path) -> int:
    """What FFmpeg really decodes (the reference for num_frames)."""
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@needs_clips
@pytest.mark.parametrize(
    "name, frames, fps",
    [
        ("pillow.mp4", 147, Fraction(20)),
        ("teddy.mp4", 141, Fraction(1454080, 72773)),
        ("bear.mp4", 82, Fraction(30)),
    ],
)
def test_shared_clips_count_and_rate(name, frames, fps):
    info = probe(CLIPS / name)
    assert info.num_frames == frames == decoded_count(CLIPS / name)
    assert info.fps == fps and isinstance(info.fps, Fraction)
    assert info.bit_depth == 8 and info.pix_fmt == "yuv420p" and info.codec == "h264"
    assert info.time_base is not None and info.audio is None


@needs_clips
def test_every_shared_clip_count_matches_decode():
    for path in sorted(CLIPS.glob("*.mp4")):
        assert probe(path).num_frames == decoded_count(path), path.name


def test_ten_bit_and_colour_tags():
    info = probe(SAMPLES / "gradient_10bit_h265.mp4")
    assert info.fps == Fraction(24000, 1001)
    assert info.bit_depth == 10 and info.pix_fmt == "yuv420p10le" and info.codec == "hevc"
    assert (info.colour.primaries, info.colour.transfer, info.colour.matrix, info.colour.range) == (
        "bt709",
        "bt709",
        "bt709",
        "tv",
    )
    assert info.num_frames == 36


def test_rotation_gives_upright_size():
    info = probe(SAMPLES / "rotated_90.mp4")
    assert info.rotation == 90 and (info.width, info.height) == (96, 160)


def test_odd_size_and_audio():
    info = probe(SAMPLES / "odd_size_642x362.mp4")
    assert (info.width, info.height, info.num_frames) == (642, 362, 30)
    tone = probe(SAMPLES / "tone_flash_640x360.mp4")
    a = tone.audio
    assert a is not None and a.codec == "aac" and a.sample_rate == 48000 and a.channels == 1
    assert a.start == 0.0 and a.copyable and abs(a.duration - 4.0) < 0.03
    assert tone.num_frames == 100 and tone.fps == 25


def test_missing_file():
    with pytest.raises(MediaError, match="nope.mp4: file not found"):
        probe("/definitely/not/here/nope.mp4")


def test_not_media(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    with pytest.raises(MediaError) as err:
        probe(text)
    assert "notes.mp4" in str(err.value) and "\n" not in str(err.value)


def test_empty_and_folder(tmp_path):
    (tmp_path / "empty.mov").write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        probe(tmp_path / "empty.mov")
    with pytest.raises(MediaError, match="folder"):
        probe(tmp_path)


def test_truncated(tmp_path):
    data = (SAMPLES / "motion_320x180.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # moov at the end: the index is lost
    with pytest.raises(MediaError, match="cut.mp4"):
        probe(cut)


def test_truncated_faststart(tmp_path):
    """moov first, mdat cut short: the index points past the end of the file."""
    src = tmp_path / "fast.mp4"
    with (
        av.open(str(SAMPLES / "motion_320x180.mp4")) as inp,
        av.open(str(src), "w", options={"movflags": "+faststart"}) as out,
    ):
        s = out.add_stream_from_template(inp.streams.video[0])
        for p in inp.demux(video=0):
            if p.size:
                p.stream = s
                out.mux(p)
    data = src.read_bytes()
    cut = tmp_path / "fast_cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(MediaError, match="fast_cut.mp4: file is truncated"):
        probe(cut)


def test_no_video_stream(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=48000)
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            f.sample_rate, f.pts = 48000, i * 1024
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    with pytest.raises(MediaError, match="tone.m4a: no video stream"):
        probe(path)
    with pytest.raises(MediaError, match="tone.m4a: no video stream"):
        next(rgb_frames(path))


def test_rgb_frames_decodes_every_frame_in_order():
    path = SAMPLES / "odd_size_642x362.mp4"
    frames = list(rgb_frames(path))
    assert len(frames) == probe(path).num_frames == decoded_count(path)
    assert frames[0].shape == (362, 642, 3) and frames[0].dtype == np.uint8
    first_three = list(rgb_frames(path, max_frames=3))
    assert len(first_three) == 3 and all((a == b).all() for a, b in zip(first_three, frames))
    assert frame_rate(path) == probe(path).fps


@pytest.mark.parametrize(
    "pix_fmt, depth, alpha, grey, yuv, floating, rgb",
    [
        ("yuv420p", 8, False, False, True, False, False),
        ("yuva444p12le", 12, True, False, True, False, False),
        ("gray16le", 16, False, True, False, False, True),
        ("gbrapf32le", 32, True, False, False, True, True),
        ("rgba", 8, True, False, False, False, True),
        ("not_a_format", 8, False, False, False, False, False),
    ],
)
def test_pixel_format_facts(pix_fmt, depth, alpha, grey, yuv, floating, rgb):
    assert bit_depth_of(pix_fmt) == depth
    assert (has_alpha(pix_fmt), is_grey(pix_fmt)) == (alpha, grey)
    assert (is_yuv(pix_fmt), is_float(pix_fmt), is_rgb(pix_fmt)) == (yuv, floating, rgb)


def test_pixel_format_facts_of_no_format():
    assert (bit_depth_of(None), has_alpha(None), is_grey(None)) == (8, False, False)


def write_with_timecode(path, timecode: str, rate: Fraction, codec: str = "mpeg4", on_file: bool = False) -> None:
    """A small video whose stream (or, ``on_file``, whose container) carries a ``timecode``
    tag: FFmpeg's MOV muxer makes a tmcd track of it, MXF and Matroska store it as a tag."""
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        (out if on_file else s).metadata["timecode"] = timecode
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


@pytest.mark.parametrize(
    "text, rate, frames, drop",
    [
        ("01:00:00:00", Fraction(25), 90000, False),
        ("00:59:59:24", Fraction(25), 89999, False),
        ("01:00:00;02", Fraction(30000, 1001), 107894, True),
        ("00:10:00;00", Fraction(30000, 1001), 17982, True),
    ],
)
def test_timecode_from_a_mov_tmcd_track(tmp_path, capsys, text, rate, frames, drop):
    from vidfx.cli import main

    path = tmp_path / "tc.mov"
    write_with_timecode(path, text, rate)
    with av.open(str(path)) as c:  # the file really has the tmcd track
        assert [s.type for s in c.streams] == ["video", "data"]
    info = probe(path)
    assert info.timecode is not None
    assert (info.timecode.frames, info.timecode.drop, str(info.timecode)) == (frames, drop, text)
    assert main(["probe", str(path)]) == 0
    assert f"timecode: {text}" in capsys.readouterr().out


def test_no_timecode_is_none():
    assert probe(SAMPLES / "motion_320x180.mp4").timecode is None


@pytest.mark.parametrize(
    "name, codec, on_file",
    [("tc.mxf", "mpeg2video", True), ("tc.mkv", "mpeg4", False), ("tc_file.mkv", "mpeg4", True)],
)
def test_timecode_from_mxf_and_matroska_tags(tmp_path, name, codec, on_file):
    path = tmp_path / name
    write_with_timecode(path, "10:00:00:05", Fraction(25), codec, on_file)
    assert str(probe(path).timecode) == "10:00:00:05"
