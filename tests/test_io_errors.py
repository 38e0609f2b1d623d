"""Bad input and bad output places: one-line MediaErrors, and never a finished-looking file."""

import os
import random
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest
import torch

from vidfx.core.engine import RunSummary
from vidfx.core.errors import MediaError, ParamError
from vidfx.core.frame import ClipInfo, EndOfStream, Frame
from vidfx.core.graph import Graph
from vidfx.core.registry import create_node
from vidfx.core.sink import ListSink
from vidfx.io import copy_media, make_sink, open_source, probe
from vidfx.io import writer as writer_module

REPO = Path(__file__).resolve().parents[1]
MOTION = REPO / "sample_media" / "motion_320x180.mp4"
TONE = REPO / "sample_media" / "tone_flash_640x360.mp4"


def one_line(exc: BaseException, name: str) -> str:
    text = str(exc)
    assert "\n" not in text and name in text, text
    return text


def copy_all(src, dst, **options):
    return copy_media(src, dst, **options)[0]


def test_read_node_is_registered_and_reports_missing_files(tmp_path):
    node = create_node("read", path=str(tmp_path / "missing.mov"))
    with pytest.raises(MediaError) as err:
        node.configure([], torch.device("cpu"))
    one_line(err.value, "missing.mov")
    with pytest.raises(MediaError) as err:
        open_source(tmp_path / "nothing_%04d.png")
    one_line(err.value, "nothing_%04d.png")
    with pytest.raises(MediaError) as err:
        probe(tmp_path / "nothing_%04d.png")
    one_line(err.value, "nothing_%04d.png")


def test_not_a_media_file(tmp_path):
    bad = tmp_path / "script.mp4"
    bad.write_bytes(b"#!/bin/sh\necho hello\n" * 500)
    with pytest.raises(MediaError) as err:
        open_source(bad)
    one_line(err.value, "script.mp4")


def damaged_copy(tmp_path) -> Path:
    """motion_320x180.mp4 with garbage in the picture data of packets 20..23 (same garbage every run)."""
    data = bytearray(MOTION.read_bytes())
    with av.open(str(MOTION)) as c:
        positions = [e.pos for e in c.streams.video[0].index_entries]
    garbage = random.Random(41)
    for pos in positions[20:24]:
        data[pos + 8 : pos + 400] = garbage.randbytes(392)
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    return bad


def test_damaged_packets_are_skipped_not_fatal(tmp_path):
    """Garbage in the middle of the picture data: decoding goes on (as ffmpeg does)."""
    bad = damaged_copy(tmp_path)
    reader = open_source(bad)
    frames = 0
    try:
        while True:
            _ = reader.read(frames).data  # decode and convert every frame
            frames += 1
    except EndOfStream as end:
        assert end.length == frames
    assert frames >= 56
    assert reader.decoder is not None and len(reader.decoder.damage) >= 1  # counted for the warning


def read_all(path, **read_options) -> RunSummary:
    g = Graph()
    g.read(path, name="read", **read_options)
    g.write("read", sink=ListSink())
    return g.run(device="cpu")


def test_concealed_damage_is_reported_in_the_run_summary(tmp_path):
    summary = read_all(damaged_copy(tmp_path))
    reports = [m for m in summary.messages if "damaged data" in m]
    assert len(reports) == 1, summary.messages
    report = r"read: (\d+) frames? had damaged data and (?:was|were) concealed \(first at frame (\d+)\)"
    match = re.fullmatch(report, reports[0])
    assert match, reports[0]
    count, first = int(match.group(1)), int(match.group(2))
    assert 1 <= count <= 8 and 15 <= first <= 24  # packets 20..23 were damaged
    assert read_all(MOTION).messages == []  # an intact file reports nothing


def test_strict_makes_damaged_data_an_error(tmp_path):
    bad = damaged_copy(tmp_path)
    with pytest.raises(MediaError) as err:
        read_all(bad, strict=True)
    assert "damaged data at frame" in one_line(err.value, "damaged.mp4")
    assert read_all(MOTION, strict=True).frames == {"read": 64}


def test_output_folder_missing(tmp_path):
    target = tmp_path / "no" / "such" / "out.mp4"
    with pytest.raises(MediaError) as err:
        copy_all(MOTION, target)
    assert "does not exist" in one_line(err.value, "out.mp4")
    with pytest.raises(MediaError, match="does not exist"):
        copy_all(MOTION, tmp_path / "nope" / "f_%04d.png")


def test_bad_options(tmp_path):
    with pytest.raises(ParamError, match="codec"):
        make_sink(tmp_path / "a.mp4", codec="mpeg2")
    info = ClipInfo(width=64, height=64, fps=Fraction(25), num_frames=1)
    with pytest.raises(ParamError, match="cannot be stored"):
        make_sink(tmp_path / "a.mp4", codec="prores_4444").open(info)
    with pytest.raises(ParamError, match="8 or 10 bits"):
        make_sink(tmp_path / "a.mp4", bit_depth=16).open(info)
    with pytest.raises(MediaError, match="unknown video container"):
        make_sink(tmp_path / "a.xyz").open(info)
    assert os.listdir(tmp_path) == []


def test_abort_leaves_nothing(tmp_path):
    target = tmp_path / "half.mov"
    reader = open_source(MOTION)
    sink = make_sink(target, codec="h264", preset="ultrafast")
    sink.open(reader.info)
    for i in range(10):
        sink.write(reader.read(i))
    assert not target.exists()  # nothing at the target path until close()
    sink.abort()
    assert os.listdir(tmp_path) == []
    seq = make_sink(tmp_path / "f_%04d.png")
    seq.open(reader.info)
    seq.write(reader.read(0))
    seq.abort()
    assert os.listdir(tmp_path) == []


def test_existing_file_untouched_on_failure(tmp_path):
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"previous render")
    sink = make_sink(target, preset="ultrafast")
    sink.open(ClipInfo(width=64, height=48, fps=Fraction(25), num_frames=2))
    sink.write(Frame(torch.rand(3, 48, 64), index=0, pts=0))
    with pytest.raises(MediaError):
        sink.write(Frame(torch.rand(3, 40, 64), index=1, pts=1))  # wrong size
    sink.abort()
    assert target.read_bytes() == b"previous render"
    assert os.listdir(tmp_path) == ["keep.mp4"]


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A folder on a 96 KiB tmpfs (root), or else writes redirected to /dev/full (ENOSPC)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    mounted = False
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True
            ).returncode
            == 0
        )
    if not mounted:
        real_open = av.open

        def open_full(path, mode="r", **kwargs):
            if mode == "w":
                return real_open("/dev/full", mode, **kwargs)
            return real_open(path, mode, **kwargs)

        monkeypatch.setattr(writer_module.av, "open", open_full)
    yield mount
    if mounted:
        subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.parametrize("name", ["full.mp4", "full.mov"])
def test_full_disk_video(full_disk, name):
    target = full_disk / name
    with pytest.raises(MediaError) as err:
        copy_all(TONE, target, preset="ultrafast")
    one_line(err.value, name)
    assert [f for f in os.listdir(full_disk)] == []


def test_full_disk_images(full_disk, tmp_path):
    if os.statvfs(full_disk).f_blocks * os.statvfs(full_disk).f_frsize > 10**6:
        pytest.skip("no small file system to fill (not root)")
    with pytest.raises(MediaError) as err:
        copy_all(TONE, full_disk / "f_%04d.png")
    one_line(err.value, "f_")
    assert os.listdir(full_disk) == []
