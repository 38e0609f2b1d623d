"""Pipeline-grade outputs: exclusive locks, hidden temporaries, image sequences that only
get their final names on success, start numbers, timecode out (MOV/MP4/MXF, EXR, DPX), DPX
pixels, and the checks `vidfx validate` runs without writing."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import OpenEXR
import pytest
import torch

from vidfx.core.errors import MediaError, ParamError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.core.timecode import Timecode
from vidfx.io import copy_media, dpx, make_sink, open_source
from vidfx.io.exr_header import read_timecode
from vidfx.io.writer import FILE_SINKS, check_output

REPO = Path(__file__).resolve().parents[1]
MOTION = REPO / "sample_media" / "motion_320x180.mp4"  # 64 frames
NTSC = Fraction(30000, 1001)


def decoded_frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def frames(n, h=36, w=64, channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [Frame(torch.rand(channels, h, w, generator=g), index=i, pts=i) for i in range(n)]


def start_writing(path, info, frame_list, **options):
    """A sink for ``path``, opened and fed ``frame_list``, not closed."""
    sink = make_sink(path, **options)
    sink.open(info)
    for f in frame_list:
        sink.write(f)
    return sink


def write_all(path, info, frame_list, **options):
    sink = start_writing(path, info, frame_list, **options)
    sink.close()
    return sink


def pattern_graph(folder, length, outputs):
    """A graph file in ``folder``: a 64x36 test pattern of ``length`` frames to ``outputs``
    (YAML flow mappings)."""
    graph = folder / "g.yaml"
    lines = ["nodes:", f"  src: {{type: pattern, width: 64, height: 36, fps: 24, frames: {length}}}", "outputs:"]
    graph.write_text("\n".join(lines + [f"  - {o}" for o in outputs]) + "\n")
    return graph


def visible(folder):
    return sorted(f for f in os.listdir(folder) if not f.startswith("."))


# --- locks and temporaries ------------------------------------------------------------


def test_second_sink_on_same_output_fails_and_first_is_intact(tmp_path):
    target = tmp_path / "out.mp4"
    reader = open_source(MOTION)
    first = make_sink(target, preset="ultrafast")
    first.open(reader.info)
    second = make_sink(target, preset="ultrafast")
    with pytest.raises(MediaError) as err:
        second.open(reader.info)
    message = str(err.value)
    assert "\n" not in message
    assert f"being written by another output of this vidfx run (pid {os.getpid()})" in message
    with pytest.raises(MediaError, match="being written by another output of this vidfx run"):
        check_output(target, reader.info)
    second.abort()  # the failed sink's clean-up must not touch the first one's files
    for n in range(reader.info.num_frames):
        first.write(reader.read(n))
    first.close()
    reader.close()
    assert decoded_frames(target) == 64
    assert os.listdir(tmp_path) == ["out.mp4"]  # no lock file, no temporary left


HOLDER = textwrap.dedent(
    """
    import sys
    from vidfx.io import make_sink, open_source
    reader = open_source(sys.argv[1])
    sink = make_sink(sys.argv[2], preset="ultrafast")
    sink.open(reader.info)
    for n in range(10):
        sink.write(reader.read(n))
    print("writing", flush=True)
    sys.stdin.readline()
    for n in range(10, reader.info.num_frames):
        sink.write(reader.read(n))
    sink.close()
    """
)


def test_second_process_fails_cleanly_while_first_writes(tmp_path):
    target = tmp_path / "shot.mov"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(MOTION), str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "writing"
        with pytest.raises(MediaError, match=rf"shot.mov: is being written by another vidfx run \(pid {child.pid}\)"):
            copy_media(MOTION, target)
        assert not target.exists()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(timeout=300) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert decoded_frames(target) == 64
    assert os.listdir(tmp_path) == ["shot.mov"]


def test_leftovers_of_a_killed_run_do_not_block(tmp_path):
    target = tmp_path / "out.mkv"
    (tmp_path / ".out.mkv.lock").write_text("12345\n")  # its flock died with the process
    (tmp_path / ".out.mkv.partial-0badf00d.mkv").write_bytes(b"half a file")
    (tmp_path / ".other.mkv.partial-0badf00d.mkv").write_bytes(b"not ours")
    info = ClipInfo(width=64, height=36, fps=Fraction(25), num_frames=2)
    write_all(target, info, frames(2), codec="ffv1")
    assert sorted(os.listdir(tmp_path)) == [".other.mkv.partial-0badf00d.mkv", "out.mkv"]
    assert decoded_frames(target) == 2


def test_temporaries_are_unique_and_hidden(tmp_path):
    info = ClipInfo(width=64, height=36, fps=Fraction(25), num_frames=1)
    a = make_sink(tmp_path / "a.mkv", codec="ffv1")
    b = make_sink(tmp_path / "b.mkv", codec="ffv1")
    a.open(info)
    b.open(info)
    a.write(frames(1)[0])  # the muxer creates its file with the first packet
    b.write(frames(1)[0])
    names = sorted(os.listdir(tmp_path))
    assert all(n.startswith(".") for n in names)
    temps = [n for n in names if ".partial-" in n]
    assert len(temps) == 2 and temps[0].startswith(".a.mkv.partial-") and temps[1].startswith(".b.mkv.partial-")
    a.abort()
    b.abort()
    b.abort()  # idempotent
    assert os.listdir(tmp_path) == []


# --- image sequences ---------------------------------------------------------------------


def test_sequence_is_hidden_until_close(tmp_path):
    info = ClipInfo(width=64, height=36, fps=Fraction(24), num_frames=3)
    sink = start_writing(tmp_path / "f_%04d.png", info, frames(3))
    assert visible(tmp_path) == []
    (temp,) = [n for n in os.listdir(tmp_path) if ".partial-" in n]
    assert temp.startswith(".f_####.png.partial-")
    assert sorted(os.listdir(tmp_path / temp)) == ["f_0000.png", "f_0001.png", "f_0002.png"]
    with pytest.raises(MediaError, match="being written by another output of this vidfx run"):
        make_sink(tmp_path / "f_%04d.png").open(info)
    sink.close()
    assert sorted(os.listdir(tmp_path)) == ["f_0000.png", "f_0001.png", "f_0002.png"]
    sink.abort()  # after close: leaves the finished images alone
    assert visible(tmp_path) == ["f_0000.png", "f_0001.png", "f_0002.png"]


def test_abort_removes_the_temporary_folder(tmp_path):
    info = ClipInfo(width=64, height=36, fps=Fraction(24), num_frames=2)
    sink = start_writing(tmp_path / "shot.%04d.exr", info, frames(2))
    assert len(os.listdir(tmp_path)) == 2  # the hidden folder and the lock
    sink.abort()
    sink.abort()
    assert os.listdir(tmp_path) == []
    with pytest.raises(MediaError, match="not open"):
        sink.write(frames(1)[0])


def test_sigkill_during_sequence_output_leaves_no_final_name(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    graph = pattern_graph(tmp_path, 100000, ["{input: src, path: out/f_%04d.png}"])
    child = subprocess.Popen([sys.executable, "-m", "vidfx.cli", "run", str(graph), "-q"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and child.poll() is None:  # wait until images are being written
            temps = [out / n for n in os.listdir(out) if ".partial-" in n]
            if temps and any(os.listdir(temps[0])):
                break
            time.sleep(0.05)
        assert child.poll() is None, "the run ended before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    assert visible(out) == []
    assert any(".partial-" in n for n in os.listdir(out))
    # the next run writing that output is not blocked and clears the leftovers
    write_all(out / "f_%04d.png", ClipInfo(width=64, height=36, fps=Fraction(24), num_frames=2), frames(2))
    assert sorted(os.listdir(out)) == ["f_0000.png", "f_0001.png"]


def test_start_number_follows_the_clip(tmp_path):
    info = ClipInfo(width=64, height=36, fps=Fraction(24), num_frames=2, first_number=1001)
    (tmp_path / "a").mkdir()
    write_all(tmp_path / "a" / "f_%04d.png", info, frames(2))
    assert visible(tmp_path / "a") == ["f_1001.png", "f_1002.png"]
    (tmp_path / "b").mkdir()
    write_all(tmp_path / "b" / "f_%04d.png", info, frames(2), start_number=5)
    assert visible(tmp_path / "b") == ["f_0005.png", "f_0006.png"]
    (tmp_path / "c").mkdir()
    write_all(tmp_path / "c" / "f.png", info.replace(first_number=None), frames(1))
    assert visible(tmp_path / "c") == ["f_000000.png"]


def test_frames_option_moves_the_start_number(tmp_path):
    """`--frames 30:31` of a clip numbered from 1001 writes frame 1031."""
    from vidfx.nodes.basic import Trim

    src = ClipInfo(width=64, height=36, fps=Fraction(24), num_frames=48, first_number=1001)
    trim = Trim("trim", start=30, end=31)
    info = trim.configure([src], "cpu")
    write_all(tmp_path / "shot_%04d.png", info, frames(1))
    assert visible(tmp_path) == ["shot_1031.png"]


# --- timecode ------------------------------------------------------------------------------


def stream_timecode(path):
    """The timecode FFmpeg reports for a file (the video stream's, else the file's)."""
    with av.open(str(path)) as c:
        return c.streams.video[0].metadata.get("timecode") or c.metadata.get("timecode")


@pytest.mark.parametrize(
    "ext, fps, text",
    [
        ("mov", NTSC, "01:00:00;02"),  # drop-frame
        ("mov", Fraction(24000, 1001), "00:59:59:23"),
        ("mp4", Fraction(25), "10:00:00:00"),
        ("mxf", Fraction(25), "09:59:50:12"),
    ],
)
def test_timecode_written_to_video(tmp_path, ext, fps, text):
    target = tmp_path / f"tc.{ext}"
    info = ClipInfo(width=256, height=128, fps=fps, num_frames=2, timecode=Timecode.parse(text, fps))
    write_all(target, info, frames(2, 128, 256), preset="ultrafast")
    assert stream_timecode(target) == text
    if ext in ("mov", "mp4"):
        with av.open(str(target)) as c:
            tracks = [dict(s.metadata) for s in c.streams if s.type == "data"]
        assert [t.get("timecode") for t in tracks] == [text]  # the tmcd track


@pytest.mark.parametrize("name", ["tc.mxf", "tc.mov", "f_%04d.dpx"])
def test_timecode_at_another_rate_is_left_out(tmp_path, name, caplog):
    """A 29.97 drop-frame timecode on a clip read at 25 fps (a sequence read with the wrong
    fps) does not describe the frames: it is not written, and the output is still made."""
    info = ClipInfo(width=256, height=128, fps=Fraction(25), num_frames=2, timecode=Timecode.parse("01:00:00;02", NTSC))
    write_all(tmp_path / name, info, frames(2, 128, 256), preset="ultrafast")
    assert "not written" in caplog.text
    if name.endswith(".dpx"):
        assert dpx.read_file_header(str(tmp_path / "f_0000.dpx")).timecode_word is None
    else:
        # MXF always has a timecode: FFmpeg's default then
        assert stream_timecode(tmp_path / name) in (None, "00:00:00:00")
        assert decoded_frames(tmp_path / name) == 2


def test_timecode_mov_to_mov(tmp_path):
    first, second = tmp_path / "a.mov", tmp_path / "b.mov"
    info = ClipInfo(width=64, height=36, fps=NTSC, num_frames=3, timecode=Timecode.parse("00:00:59;28", NTSC))
    write_all(first, info, frames(3))
    reader = open_source(first)
    assert reader.info.timecode == info.timecode
    reader.close()
    copy_media(first, second)
    assert stream_timecode(second) == "00:00:59;28"


def test_timecode_in_exr_headers(tmp_path):
    start = Timecode.parse("00:00:59;28", NTSC)  # crosses into minute 1, which drops ;00 and ;01
    info = ClipInfo(width=64, height=36, fps=NTSC, num_frames=3, timecode=start)
    write_all(tmp_path / "f_%04d.exr", info, frames(3))
    want = ["00:00:59;28", "00:00:59;29", "00:01:00;02"]
    for n, label in enumerate(want):
        path = tmp_path / f"f_{n:04d}.exr"
        header = OpenEXR.File(str(path)).header()
        tc = header["timeCode"]
        assert f"{tc.hours:02d}:{tc.minutes:02d}:{tc.seconds:02d};{tc.frame:02d}" == label and tc.dropFrame
        assert str(read_timecode(path.read_bytes(), NTSC)) == label
    pixels = OpenEXR.File(str(tmp_path / "f_0000.exr")).channels()
    assert set(pixels) == {"RGB"}  # the file still decodes after the header grew


@pytest.mark.parametrize(
    "fps, text", [(Fraction(24), "01:00:00:00"), (NTSC, "00:09:59;29"), (Fraction(50), "02:00:00:49")]
)
def test_timecode_in_dpx_headers(tmp_path, fps, text):
    start = Timecode.parse(text, fps)
    info = ClipInfo(width=64, height=36, fps=fps, num_frames=2, timecode=start)
    write_all(tmp_path / "f_%04d.dpx", info, frames(2))
    for n in range(2):
        path = tmp_path / f"f_{n:04d}.dpx"
        header = dpx.read_file_header(str(path))
        assert header.timecode(fps) == start + n
        assert header.frame_rate == pytest.approx(float(fps))
        with av.open(str(path)) as c:  # FFmpeg's DPX decoder reads the same field
            frame = next(c.decode(video=0))
        assert frame.metadata["timecode"] == str(start + n)


# --- DPX pixels --------------------------------------------------------------------------


def dpx_planes(path):
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
    fmt = frame.format.name
    if fmt == "gbrp10le":
        g, b, r = (
            np.frombuffer(memoryview(p), "<u2").reshape(frame.height, -1)[:, : frame.width] for p in frame.planes
        )
        return fmt, np.stack([r, g, b])
    return fmt, frame.to_ndarray().transpose(2, 0, 1)


def test_dpx_10bit_pixels_round_trip(tmp_path):
    data = frames(1, 37, 61)[0]  # odd size on purpose
    info = ClipInfo(width=61, height=37, fps=Fraction(24), num_frames=1, bit_depth=10)
    write_all(tmp_path / "p_%04d.dpx", info, [data])
    path = tmp_path / "p_0000.dpx"
    header = dpx.read_file_header(str(path))
    assert (header.bit_depth, header.descriptor, header.width, header.height) == (10, 50, 61, 37)
    assert header.image_offset == 2048 and path.stat().st_size >= 2048 + 61 * 37 * 4
    fmt, codes = dpx_planes(path)
    assert fmt == "gbrp10le"
    want = np.round(data.data.numpy() * 1023)
    assert np.abs(codes.astype(np.int64) - want).max() <= 1


def test_dpx_16bit_rgba(tmp_path):
    data = frames(1, 20, 30, channels=4)[0]
    info = ClipInfo(width=30, height=20, fps=Fraction(24), num_frames=1, channels=4, bit_depth=16)
    write_all(tmp_path / "a.dpx", info, [data])
    path = tmp_path / "a_000000.dpx"
    header = dpx.read_file_header(str(path))
    assert (header.bit_depth, header.descriptor) == (16, 51)
    fmt, codes = dpx_planes(path)
    assert fmt.startswith("rgba64")
    assert np.abs(codes.astype(np.int64) - np.round(data.data.numpy() * 65535)).max() <= 1


# --- checks without writing ------------------------------------------------------------------

RGB = ClipInfo(width=64, height=36, fps=Fraction(25), num_frames=1)
RGBA = RGB.replace(channels=4)
ODD = RGB.replace(width=65, height=35)


@pytest.mark.parametrize(
    "name, info, options, error, words",
    [
        ("a.mp4", RGB, {"codec": "prores_4444"}, ParamError, "prores_4444 cannot be stored in .mp4 (use .mov or .mkv)"),
        ("a.mxf", RGB, {"codec": "ffv1"}, ParamError, "cannot be stored in .mxf"),
        ("a.mp4", RGB, {"bit_depth": "16"}, ParamError, "8 or 10 bits, not 16"),
        ("a.mov", RGB, {"bit_depth": "16"}, ParamError, "prores_422hq is written with 8 or 10 bits"),
        ("a.mp4", ODD, {"pix_fmt": "yuv420p"}, ParamError, "needs an even width and height, not 65x35"),
        ("a.mkv", ODD, {"codec": "h265", "pix_fmt": "yuv422p"}, ParamError, "needs an even width and height"),
        ("a.mp4", RGB, {"pix_fmt": "yuv422p12le"}, ParamError, "libx264 cannot encode yuv422p12le"),
        ("a.mp4", RGB, {"pix_fmt": "nonsense"}, ParamError, "unknown pixel format"),
        ("a.mxf", RGB, {}, ParamError, "DNxHR needs at least 256x120 pixels"),
        ("f_%04d.dpx", RGBA, {"bit_depth": "10"}, ParamError, "DPX with alpha is written with 8 or 16 bits"),
        ("f_%04d.png", RGB, {"codec": "h264"}, ParamError, "cannot write images"),
        ("a.xyz", RGB, {}, MediaError, "unknown video container .xyz"),
        ("missing/a.mov", RGB, {}, MediaError, "does not exist"),
        ("missing/f_%04d.exr", RGB, {}, MediaError, "does not exist"),
    ],
)
def test_check_errors_match_open(tmp_path, name, info, options, error, words):
    target = tmp_path / name
    with pytest.raises(error) as checked:
        FILE_SINKS.check(str(target), info, **options)
    assert words in str(checked.value) and "\n" not in str(checked.value)
    assert os.listdir(tmp_path) == []  # nothing created
    with pytest.raises(error) as opened:
        make_sink(target, **options).open(info)
    assert str(opened.value) == str(checked.value)
    assert os.listdir(tmp_path) == []


def test_check_passes_and_creates_nothing(tmp_path):
    for name, info, options in [
        ("a.mov", RGBA, {}),
        ("a.mp4", ODD, {}),  # auto picks 4:4:4 for odd sizes
        ("a.mov", ODD, {}),  # ProRes pads odd sizes itself
        ("a.mkv", RGB, {"codec": "ffv1", "bit_depth": "16"}),
        ("f_%04d.dpx", RGBA, {}),
        ("f_%04d.exr", RGB, {}),
    ]:
        FILE_SINKS.check(str(tmp_path / name), info, **options)
    FILE_SINKS.check(str(tmp_path / "a.mp4"), None, codec="h265")  # without a clip: options and paths only
    assert os.listdir(tmp_path) == []


def test_check_sees_locked_sequence_and_unwritable_folder(tmp_path):
    holder = make_sink(tmp_path / "f_%04d.png")
    holder.open(RGB)
    with pytest.raises(
        MediaError, match=rf"f_%04d.png: is being written by another output of this vidfx run \(pid {os.getpid()}\)"
    ):
        FILE_SINKS.check(str(tmp_path / "f_%04d.png"), RGB)
    holder.abort()
    FILE_SINKS.check(str(tmp_path / "f_%04d.png"), RGB)

    locked = tmp_path / "ro"
    locked.mkdir()
    mounted = False
    if os.geteuid() == 0:  # root may write anywhere but on a read-only file system
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(locked)]).returncode == 0
        assert mounted, "could not mount a read-only tmpfs"
    else:
        locked.chmod(0o555)
    try:
        with pytest.raises(MediaError, match="is not writable"):
            FILE_SINKS.check(str(locked / "a.mov"), RGB)
        with pytest.raises(MediaError, match="is not writable"):
            make_sink(locked / "f_%04d.png").open(RGB)
    finally:
        if mounted:
            subprocess.run(["umount", str(locked)])
        else:
            locked.chmod(0o755)


# --- round trips through the readers -------------------------------------------------------


@pytest.mark.parametrize("ext", ["exr", "dpx"])
def test_sequence_round_trip_keeps_numbers_and_timecode(tmp_path, ext):
    start = Timecode.parse("00:00:59;28", NTSC)
    info = ClipInfo(width=64, height=36, fps=NTSC, num_frames=3, timecode=start, first_number=1001, bit_depth=10)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_all(tmp_path / "a" / f"s.%04d.{ext}", info, frames(3))
    source = open_source(str(tmp_path / "a" / f"s.%04d.{ext}"), fps="30000/1001")
    write_all(tmp_path / "b" / f"t.%04d.{ext}", source.info, [source.read(n) for n in range(3)])
    source.close()
    assert visible(tmp_path / "b") == [f"t.{n}.{ext}" for n in (1001, 1002, 1003)]
    reader = open_source(str(tmp_path / "b" / f"t.%04d.{ext}"), fps="30000/1001")
    assert reader.info.first_number == 1001 and reader.info.timecode == start
    reader.close()


def test_cli_frames_on_a_numbered_sequence(tmp_path):
    from vidfx.cli import main

    info = ClipInfo(width=32, height=18, fps=Fraction(24), num_frames=40, first_number=1001)
    (tmp_path / "plates").mkdir()
    (tmp_path / "out").mkdir()
    write_all(tmp_path / "plates" / "p_%04d.png", info, frames(40, 18, 32))
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "inputs:\n  src: {path: plates/p_%04d.png, fps: 24}\noutputs:\n  - {input: src, path: out/o_%04d.png}\n"
    )
    assert main(["run", str(graph), "--frames", "30:31", "-q"]) == 0
    assert visible(tmp_path / "out") == ["o_1031.png"]


def test_two_outputs_of_one_graph_on_one_path(tmp_path, capsys):
    from vidfx.cli import main

    graph = pattern_graph(tmp_path, 3, ["{input: src, path: same.mkv, codec: ffv1}"] * 2)
    assert main(["run", str(graph), "-q"]) == 3
    assert "same.mkv: is being written by another output of this vidfx run" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["g.yaml"]


def test_literal_percent_in_an_output_pattern(tmp_path):
    """``%%`` is a literal ``%`` (printf), as the reader takes it."""
    info = ClipInfo(width=64, height=36, fps=Fraction(24), num_frames=2)
    write_all(tmp_path / "grey_50%%_%04d.png", info, frames(2))
    assert visible(tmp_path) == ["grey_50%_0000.png", "grey_50%_0001.png"]
    reader = open_source(str(tmp_path / "grey_50%%_%04d.png"), fps="24")
    assert reader.info.num_frames == 2
    reader.close()
