"""Frames far ahead are reached by seeking (a segment of a clip rendered on another machine
starts there), with exactly the frames and timestamps a sequential decode gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vidfx.io.video_reader as video_reader
from vidfx.io.video_reader import VideoDecoder

REPO = Path(__file__).resolve().parents[1]
CLIPS = [
    REPO / "sample_media" / "tone_flash_640x360.mp4",
    REPO / "sample_media" / "gradient_10bit_h265.mp4",
    REPO.parent / "shared" / "data" / "clips" / "pillow.mp4",  # missing frame slots
    REPO.parent / "shared" / "data" / "clips" / "teddy.mp4",  # an odd average rate
]


def _count_decodes(decoder: VideoDecoder, monkeypatch) -> list[int]:
    """A list that grows by one for every frame the decoder decodes."""
    decoded: list[int] = []
    advance = decoder._advance
    monkeypatch.setattr(decoder, "_advance", lambda vf=None: decoded.append(1) or advance(vf))
    return decoded


@pytest.mark.parametrize("path", CLIPS, ids=lambda p: p.name)
def test_seeking_ahead_gives_the_sequential_frames(path, monkeypatch):
    assert path.is_file(), f"development data missing: {path}"
    whole = VideoDecoder(str(path))
    whole.open()
    frames = []
    while whole._length is None:
        try:
            frame = whole.get(len(frames))
        except video_reader.EndOfStream:
            break
        frames.append((frame.pts, frame.data.clone()))
    whole.close()
    monkeypatch.setattr(video_reader, "SEEK_AHEAD", 4)
    for target in (len(frames) // 3, len(frames) - 3):
        jumper = VideoDecoder(str(path))
        jumper.open()
        decoded = _count_decodes(jumper, monkeypatch)
        for n in (target, target + 1, target + 2):
            frame = jumper.get(n)
            assert frame.pts == frames[n][0]
            assert torch.equal(frame.data, frames[n][1])
        assert jumper._packet_pts is not None  # it did seek
        assert len(decoded) <= target + 3  # never more than a sequential decode
        jumper.close()


def test_seeking_ahead_decodes_from_the_keyframe_before(tmp_path, monkeypatch):
    from vidfx.cli import main

    graph = tmp_path / "g.yaml"
    graph.write_text(
        "nodes: {src: {type: pattern, width: 64, height: 36, frames: 120}}\n"
        "outputs: [{input: src, path: gop10.mp4, codec: h264, gop: 10}]\n"
    )
    assert main(["run", str(graph), "-q"]) == 0
    sequential = VideoDecoder(str(tmp_path / "gop10.mp4"))
    sequential.open()
    expected = [sequential.get(n).data.clone() for n in range(120)]
    jumper = VideoDecoder(str(tmp_path / "gop10.mp4"))
    jumper.open()
    decoded = _count_decodes(jumper, monkeypatch)
    assert torch.equal(jumper.get(105).data, expected[105])
    assert len(decoded) <= 10  # from the keyframe at 100, not from frame 0
    assert torch.equal(jumper.get(119).data, expected[119])
