"""Reader -> writer round trips: counts, every timestamp, durations, depth, colour, size,
rotation, VFR, and every output codec read back with the right size/depth/alpha."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vidfx.core.frame import ClipInfo, ColourTags, EndOfStream, Frame
from vidfx.io import copy_media, make_sink, open_source, probe

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_media"
CLIPS = REPO.parent / "shared" / "data" / "clips"
needs_clips = pytest.mark.usefixtures("shared_clips")  # tests/conftest.py


def transcode(src, dst, touch=False, **options):
    """Read every frame of ``src`` and write it to ``dst``; returns (frames, sink)."""
    return copy_media(src, dst, touch_pixels=touch, **options)


def timeline(path):
    """(pts in seconds of every decoded frame, end of the last frame in seconds), by PyAV."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [(f.pts, f.duration) for f in c.decode(stream)]
        tb = stream.time_base
    times = [f[0] * tb for f in frames]
    return times, (frames[-1][0] + frames[-1][1]) * tb, tb


def read_all(path, **params):
    reader = open_source(str(path), **params)
    frames = []
    n = 0
    try:
        while True:
            frames.append(reader.read(n).data)
            n += 1
    except EndOfStream:
        pass
    return reader.info, frames


@needs_clips
@pytest.mark.parametrize("name", ["pillow.mp4", "teddy.mp4"])
def test_shared_clip_timing_survives(tmp_path, name):
    src = CLIPS / name
    out = tmp_path / "out.mp4"
    n, sink = transcode(src, out, preset="ultrafast")
    ref_times, ref_end, _ = timeline(src)
    times, end, _ = timeline(out)
    assert n == len(ref_times) == probe(out).num_frames
    assert times == ref_times  # every timestamp, exactly
    frame = 1 / probe(src).fps
    # H.264 reorders frames, so the very last frame's own duration can only be approximated
    # in MP4 (it is a sample delta); the total stays within one frame of the source
    assert abs(end - ref_end) < frame
    assert sink.fast_frames == n  # pass-through never converted pixels
    assert probe(out).fps == probe(src).fps or name == "teddy.mp4"


@needs_clips
def test_teddy_exact_duration_intra_codec(tmp_path):
    """Without frame reordering (all-intra H.264) even the odd last-frame duration survives."""
    src = CLIPS / "teddy.mp4"
    out = tmp_path / "teddy.mp4"
    transcode(src, out, gop=1, preset="ultrafast")
    ref_times, ref_end, _ = timeline(src)
    times, end, _ = timeline(out)
    assert times == ref_times and end == ref_end


def test_ten_bit_survives_h265_and_prores(tmp_path):
    src = SAMPLES / "gradient_10bit_h265.mp4"
    info, ref = read_all(src)
    row = ref[0][1, 10, :].numpy()
    assert len(np.unique(np.round(row * 1023))) > 150  # far more than 8 bits could hold
    for out, codec in ((tmp_path / "g.mp4", "auto"), (tmp_path / "g.mov", "prores_422hq")):
        transcode(src, out, codec=codec)
        got = probe(out)
        assert got.bit_depth == 10 and got.colour == info.colour and got.fps == Fraction(24000, 1001)
        out_info, frames = read_all(out)
        assert len(frames) == 36
        err = (frames[5] - ref[5]).abs().mean().item()
        assert err < 2 / 1023, err
        levels = len(np.unique(np.round(frames[0][1, 10, :].numpy() * 1023)))
        assert levels > 150


def test_colour_tags_and_matrix(tmp_path):
    """bt601 tags in -> bt601 tags out, and the pixels convert with that matrix."""
    src = SAMPLES / "motion_320x180.mp4"
    out = tmp_path / "m.mkv"
    transcode(src, out, touch=True, crf=10)
    assert probe(out).colour == ColourTags("bt709", "bt709", "smpte170m", "tv")
    _, a = read_all(src)
    _, b = read_all(out)
    assert (a[10] - b[10]).abs().mean() < 0.02  # x264 + a second chroma subsampling


@pytest.mark.parametrize(
    "matrix, rng, want_y",
    [
        ("smpte170m", "tv", 16 + 219 * 0.299),
        ("bt709", "tv", 16 + 219 * 0.2126),
        ("smpte170m", "pc", 255 * 0.299),
        ("bt709", "pc", 255 * 0.2126),
    ],
)
def test_rgb_to_yuv_uses_the_tagged_matrix(matrix, rng, want_y):
    from vidfx.io.convert import av_to_tensor, tensor_to_av

    red = torch.zeros(3, 16, 16)
    red[0] = 1.0
    colour = ColourTags(matrix=matrix, range=rng)
    vf = tensor_to_av(red, "yuv444p", colour)
    assert abs(vf.to_ndarray()[0].mean() - want_y) < 0.6
    back = av_to_tensor(vf, 3, 8, colour)
    assert (back - red).abs().max() < 0.02


def test_odd_size(tmp_path):
    out = tmp_path / "odd.mp4"
    n, _ = transcode(SAMPLES / "odd_size_642x362.mp4", out, touch=True)
    info = probe(out)
    assert (info.width, info.height, info.num_frames, n) == (642, 362, 30, 30)


def test_odd_dimensions_use_444(tmp_path):
    info = ClipInfo(width=641, height=361, fps=Fraction(25), num_frames=3)
    sink = make_sink(tmp_path / "odd.mp4")
    sink.open(info)
    for i in range(3):
        sink.write(Frame(torch.rand(3, 361, 641), index=i, pts=None))
    sink.close()
    got = probe(tmp_path / "odd.mp4")
    assert (got.width, got.height, got.num_frames) == (641, 361, 3)


def test_rotation_applied(tmp_path):
    info, frames = read_all(SAMPLES / "rotated_90.mp4")
    assert info.rotation == 90 and frames[0].shape == (3, 160, 96)
    # the coded top-left white block is bottom-left once upright (90 degrees counter-clockwise)
    assert frames[0][:, -32:, :32].mean() > 0.9 and frames[0][:, :32, :32].mean() < 0.3
    out = tmp_path / "upright.mp4"
    transcode(SAMPLES / "rotated_90.mp4", out)
    got = probe(out)
    assert got.rotation == 0 and (got.width, got.height) == (96, 160)


def write_vfr(path, pts_list, tb=Fraction(1, 1000)):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = s.codec_context.time_base = tb
        for i, pts in enumerate(pts_list):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            f.pts, f.time_base = pts, tb
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def test_vfr_and_missing_slots_round_trip(tmp_path):
    pts = [0, 40, 80, 200, 240, 250, 290, 400]  # gaps and a burst
    src = tmp_path / "vfr.mkv"
    write_vfr(src, pts)
    ref_times, ref_end, _ = timeline(src)
    for out in (tmp_path / "vfr_out.mp4", tmp_path / "vfr_out.mkv"):
        n, _ = transcode(src, out, touch=True)
        times, end, _ = timeline(out)
        assert n == 8 and times == ref_times, out.name


def test_backward_reads():
    reader = open_source(str(SAMPLES / "motion_320x180.mp4"))
    forward = [reader.read(i).data.clone() for i in range(40)]
    for i in (39, 35, 30, 3, 0, 20):  # inside the recent cache, then real seeks
        assert torch.equal(reader.read(i).data, forward[i]), i
    with pytest.raises(EndOfStream) as end:
        reader.read(500)
    assert end.value.length == 64


@pytest.mark.parametrize(
    "codec, ext, channels, want_fmt, want_depth",
    [
        ("prores_4444", "mov", 4, "yuva444p12le", 12),  # FFmpeg decodes 4444 to 12 bits
        ("prores_422hq", "mov", 3, "yuv422p10le", 10),
        ("dnxhr_hqx", "mxf", 3, "yuv422p10le", 10),
        ("dnxhr_hqx", "mov", 3, "yuv422p10le", 10),
        ("ffv1", "mkv", 4, "gbrap10le", 10),
        ("ffv1", "mkv", 1, "gray16le", 16),
        ("h265", "mkv", 3, "yuv420p10le", 10),
    ],
)
def test_codecs_read_back(tmp_path, codec, ext, channels, want_fmt, want_depth):
    h, w = (128, 256) if codec == "dnxhr_hqx" else (64, 96)  # DNxHR's minimum is 256x120
    depth = 16 if want_fmt.endswith("16le") else 10
    info = ClipInfo(
        width=w,
        height=h,
        fps=Fraction(30000, 1001),
        num_frames=4,
        channels=channels,
        bit_depth=depth,
        colour=ColourTags("bt709", "bt709", "bt709", "tv"),
        time_base=Fraction(1, 30000),
    )
    gen = torch.Generator().manual_seed(0)
    frames = [torch.rand(channels, h, w, generator=gen).mul(0.6).add(0.2) for _ in range(4)]
    for f in frames:
        if channels == 4:
            f[3, :, : w // 2] = 0.0  # half transparent, half opaque
            f[3, :, w // 2 :] = 1.0
    path = tmp_path / f"out.{ext}"
    sink = make_sink(path, codec=codec)
    sink.open(info)
    for i, f in enumerate(frames):
        sink.write(Frame(f.clone(), index=i, pts=i * 1001))
    sink.close()
    got = probe(path)
    assert (got.width, got.height, got.num_frames) == (w, h, 4)
    assert got.pix_fmt == want_fmt and got.bit_depth == want_depth and got.channels == channels
    assert got.fps == Fraction(30000, 1001)
    _, back = read_all(path)
    assert back[0].shape == (channels, h, w)
    if channels == 4:
        assert back[0][3, :, : w // 2].max() < 0.01 and back[0][3, :, w // 2 :].min() > 0.99
    if codec == "ffv1":  # lossless up to quantisation
        assert (back[2] - frames[2]).abs().max() < 1.5 / (2**want_depth - 1) + 1e-4


@pytest.mark.parametrize(
    "pattern, channels, want_fmt, tol, extra",
    [
        ("img_%04d.png", 3, "rgb48be", 1 / 65535, {"bit_depth": "16"}),
        ("img_%04d.png", 4, "rgba", 1 / 255, {"bit_depth": "8"}),
        ("img_%04d.tif", 3, "rgb48le", 1 / 65535, {"bit_depth": "16"}),
        ("img_%04d.tif", 1, "gray16le", 1 / 65535, {"bit_depth": "16"}),
        ("img_%04d.exr", 4, "gbrapf16le", 1e-3, {"exr": "half"}),
        ("img_%04d.exr", 3, "gbrpf32le", 1e-6, {"exr": "float"}),
        ("img_%04d.dpx", 3, "gbrp10le", 0.5 / 1023, {}),  # DPX: 10-bit by default
        ("img_%04d.dpx", 4, "rgba64le", 1 / 65535, {}),  # with alpha: 16-bit
    ],
)
def test_image_sequences(tmp_path, pattern, channels, want_fmt, tol, extra):
    h, w = 24, 40
    info = ClipInfo(width=w, height=h, fps=Fraction(24), num_frames=3, channels=channels, bit_depth=16)
    gen = torch.Generator().manual_seed(1)
    frames = [torch.rand(channels, h, w, generator=gen) for _ in range(3)]
    if pattern.endswith(".exr"):
        frames[0][0, 0, 0] = 4.0  # HDR values survive in EXR
    sink = make_sink(tmp_path / pattern, **extra)
    sink.open(info)
    for i, f in enumerate(frames):
        sink.write(Frame(f.clone(), index=i, pts=i))
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    ext = pattern.rsplit(".", 1)[1]
    assert files == [f"img_{i:04d}.{ext}" for i in range(3)]
    for source in (str(tmp_path / pattern), str(tmp_path)):
        got, back = read_all(source, fps="24000/1001")
        assert got.pix_fmt == want_fmt and got.channels == channels and got.num_frames == 3
        assert got.fps == Fraction(24000, 1001)
        assert len(back) == 3 and back[1].shape == (channels, h, w)
        assert (back[1] - frames[1]).abs().max() <= tol + 1e-7
    if pattern.endswith(".exr"):
        assert abs(back[0][0, 0, 0].item() - 4.0) < 1e-2
