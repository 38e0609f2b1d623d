"""Image sequences as pipelines use them: source frame numbers, gaps, literal '%' names,
timecode from image headers, DPX input."""

from fractions import Fraction

import av
import numpy as np
import OpenEXR
import pytest
import torch
from PIL import Image

from vidfx.core.errors import MediaError
from vidfx.core.graph import Graph
from vidfx.core.sink import ListSink
from vidfx.core.timecode import Timecode
from vidfx.io import dpx, open_source, probe

W, H = 32, 24


def level(number: int) -> int:
    """The grey level test image ``number`` is filled with."""
    return (number * 7) % 256


def write_png(path, number: int) -> None:
    Image.fromarray(np.full((H, W, 3), level(number), np.uint8)).save(path)


def make_sequence(folder, numbers, name="shot_{:04d}.png"):
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        write_png(folder / name.format(n), n)
    return folder


def frames_of(reader):
    return [reader.read(i) for i in range(reader.info.num_frames)]


def test_sequence_keeps_its_frame_numbers(tmp_path):
    make_sequence(tmp_path, range(1001, 1006))
    for path in (tmp_path / "shot_%04d.png", tmp_path):  # a pattern and a folder
        reader = open_source(path)
        assert reader.info.first_number == 1001
        assert reader.info.num_frames == 5
        frames = frames_of(reader)
        assert [f.meta["frame_number"] for f in frames] == [1001, 1002, 1003, 1004, 1005]
        assert [f.index for f in frames] == [0, 1, 2, 3, 4]
        assert round(frames[3].data[0, 0, 0].item() * 255) == level(1004)


def test_gap_is_an_error_naming_the_missing_frame(tmp_path):
    make_sequence(tmp_path, [1001, 1002, 1004])
    for path in (tmp_path / "shot_%04d.png", tmp_path):
        with pytest.raises(MediaError) as err:
            open_source(path)
        text = str(err.value)
        assert "\n" not in text and "1003" in text and "shot_1003.png" in text, text


def test_gap_hold_repeats_the_previous_frame(tmp_path):
    make_sequence(tmp_path, [1001, 1002, 1004])
    reader = open_source(tmp_path / "shot_%04d.png", gaps="hold")
    assert (reader.info.first_number, reader.info.num_frames) == (1001, 4)
    frames = frames_of(reader)
    assert [f.meta["frame_number"] for f in frames] == [1001, 1002, 1003, 1004]
    assert torch.equal(frames[2].data, frames[1].data)
    assert frames[2].meta["filled"] == "hold"
    assert round(frames[3].data.mean().item() * 255) == level(1004)


def test_gap_black_is_a_black_frame_of_the_same_size(tmp_path):
    make_sequence(tmp_path, [1001, 1002, 1004])
    reader = open_source(tmp_path, gaps="black")
    frames = frames_of(reader)
    assert frames[2].data.shape == (3, H, W) and frames[2].data.abs().max().item() == 0
    assert frames[2].meta["frame_number"] == 1003
    assert round(frames[1].data.mean().item() * 255) == level(1002)


def test_bad_gaps_value_is_a_param_error(tmp_path):
    make_sequence(tmp_path, [1, 2])
    with pytest.raises(ValueError, match="gaps"):
        open_source(tmp_path, gaps="skip")


def render_numbers(graph: Graph, frames=None):
    sink = ListSink()
    graph.write(graph.order()[-1][0], sink=sink)
    graph.run(device="cpu", frames=frames)
    assert sink.info is not None
    return sink.info.first_number, [f.meta["frame_number"] for f in sink.frames]


def test_numbers_follow_trim_and_frame_ranges(tmp_path):
    make_sequence(tmp_path, range(1001, 1011))
    g = Graph()
    src = g.read(tmp_path / "shot_%04d.png")
    g.add("trim", src, name="cut", start=3, end=7)
    assert render_numbers(g) == (1004, [1004, 1005, 1006, 1007])

    g = Graph()
    g.read(tmp_path / "shot_%04d.png")
    assert render_numbers(g, frames=(2, 5)) == (1003, [1003, 1004, 1005])


def test_a_literal_percent_in_a_name_is_read_as_that_file(tmp_path):
    folder = tmp_path / "10%"
    folder.mkdir()
    write_png(folder / "50%_grey.png", 5)
    write_png(folder / "a%04d.png", 9)  # exists literally: one image, not a pattern
    for name, number in (("50%_grey.png", 5), ("a%04d.png", 9)):
        reader = open_source(folder / name)
        assert reader.info.num_frames == 1 and reader.info.first_number is None
        assert round(reader.read(0).data.mean().item() * 255) == level(number)
        assert probe(folder / name).num_frames == 1
    # '%%' is a literal '%' inside a pattern
    make_sequence(folder, [7, 8], name="mix_50%_{:03d}.png")
    reader = open_source(folder / "mix_50%%_%03d.png")
    assert (reader.info.first_number, reader.info.num_frames) == (7, 2)


def encode_dpx(rgb: np.ndarray, pix_fmt: str) -> bytes:
    """One DPX file from (H, W, 3) uint16 RGB samples, by FFmpeg's dpx encoder."""
    ctx = av.CodecContext.create("dpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = rgb.shape[1], rgb.shape[0], pix_fmt
    ctx.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(rgb, format=pix_fmt)
    return b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])


def ramp(full_scale: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([x * full_scale // (W - 1), y * full_scale // (H - 1), (x + y) * full_scale // (W + H - 2)], -1)
    return rgb.astype(np.uint16)


@pytest.mark.parametrize(
    ("pix_fmt", "full_scale", "depth"),
    [("gbrp10le", 1023, 10), ("gbrp10be", 1023, 10), ("rgb48le", 65535, 16), ("rgb48be", 65535, 16)],
)
def test_dpx_sequence_keeps_its_bit_depth(tmp_path, pix_fmt, full_scale, depth):
    rgb = ramp(full_scale)
    for n in (86400, 86401):
        (tmp_path / f"plate.{n}.dpx").write_bytes(encode_dpx(rgb, pix_fmt))
    reader = open_source(tmp_path / "plate.%d.dpx", fps="24")
    info = reader.info
    assert (info.codec, info.bit_depth, info.first_number, info.timecode) == ("dpx", depth, 86400, None)
    samples = (reader.read(1).data * full_scale).round().to(torch.int64)
    assert torch.equal(samples, torch.from_numpy(rgb.astype(np.int64)).permute(2, 0, 1))


def test_dpx_timecode_from_the_television_header(tmp_path):
    tc = Timecode.parse("10:00:00:12", Fraction(24))
    data = dpx.add_industry_headers(encode_dpx(ramp(1023), "gbrp10le"), tc, Fraction(24))
    (tmp_path / "tc_1001.dpx").write_bytes(data)
    info = probe(tmp_path / "tc_%04d.dpx")
    assert str(info.timecode) == "10:00:00:12" and info.timecode.rate == 24
    assert info.first_number == 1001 and info.bit_depth == 10
    # drop-frame at 29.97 (the flag in the word, the rate in the header), in a big-endian file
    drop = Timecode.parse("01:00:00;02", Fraction(30000, 1001))
    big_endian = encode_dpx(ramp(1023), "gbrp10be")
    (tmp_path / "tc_1001.dpx").write_bytes(dpx.add_industry_headers(big_endian, drop, Fraction(30000, 1001)))
    timecode = probe(tmp_path / "tc_%04d.dpx").timecode
    assert timecode == drop and str(timecode) == "01:00:00;02"


def test_exr_timecode_attribute(tmp_path):
    tc = OpenEXR.TimeCode()
    tc.hours, tc.minutes, tc.seconds, tc.frame = 1, 2, 3, 4
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, "timeCode": tc}
    for n in (1001, 1002):
        with OpenEXR.File(header, {"RGB": np.full((H, W, 3), 0.5, np.float16)}) as f:
            f.write(str(tmp_path / f"shot.{n}.exr"))
    reader = open_source(tmp_path / "shot.%04d.exr", fps="25")
    assert str(reader.info.timecode) == "01:02:03:04" and reader.info.timecode.rate == 25
    assert reader.info.first_number == 1001


def test_exr_rate_attribute_counts_the_timecode(tmp_path):
    # Nuke writes framesPerSecond next to timeCode; the timecode is counted at that rate
    tc = OpenEXR.TimeCode()
    tc.hours, tc.minutes, tc.seconds, tc.frame = 0, 0, 59, 29
    tc.dropFrame = True
    header = {
        "compression": OpenEXR.ZIP_COMPRESSION,
        "type": OpenEXR.scanlineimage,
        "timeCode": tc,
        "framesPerSecond": Fraction(30000, 1001),
    }
    with OpenEXR.File(header, {"RGB": np.full((H, W, 3), 0.5, np.float16)}) as f:
        f.write(str(tmp_path / "nuke.1001.exr"))
    reader = open_source(tmp_path / "nuke.%04d.exr", fps="25")
    assert reader.info.timecode.drop and str(reader.info.timecode + 1) == "00:01:00;02"


def test_probe_command_shows_first_number_and_timecode(tmp_path, capsys):
    from vidfx.cli import main

    tc = Timecode.parse("10:00:00:12", Fraction(24))
    for n in (1001, 1002):
        (tmp_path / f"tc_{n}.dpx").write_bytes(
            dpx.add_industry_headers(encode_dpx(ramp(1023), "gbrp10le"), tc + (n - 1001), Fraction(24))
        )
    assert main(["probe", str(tmp_path / "tc_%04d.dpx")]) == 0
    out = capsys.readouterr().out
    assert "first_number: 1001" in out and "timecode: 10:00:00:12" in out and "frames: 2" in out


def test_sequence_rate_comes_from_its_headers_unless_given(tmp_path):
    tc = Timecode.parse("01:00:00;00", Fraction(30000, 1001))
    for n in (1, 2):
        data = dpx.add_industry_headers(encode_dpx(ramp(1023), "gbrp10le"), tc + (n - 1), Fraction(30000, 1001))
        (tmp_path / f"ntsc_{n:04d}.dpx").write_bytes(data)
    auto = open_source(tmp_path / "ntsc_%04d.dpx")
    assert auto.info.fps == Fraction(30000, 1001) and str(auto.info.timecode) == "01:00:00;00"
    given = open_source(tmp_path / "ntsc_%04d.dpx", fps="25")
    assert given.info.fps == 25
