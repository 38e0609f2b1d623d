"""Audio pass-through: copied or re-encoded, always in sync with the video, also trimmed.

sample_media/tone_flash_640x360.mp4 flashes white on one frame and starts a 1 kHz beep
at every whole second; the test finds both events in what we wrote and compares times.
"""

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest

from vidfx.core.errors import MediaError
from vidfx.core.frame import EndOfStream
from vidfx.io import make_sink, open_source, probe

REPO = Path(__file__).resolve().parents[1]
TONE = REPO / "sample_media" / "tone_flash_640x360.mp4"
TALKING = REPO.parent / "shared" / "data" / "talking" / "1.mp4"


def write(dst, first=0, last=None, audio_ref=None, src=TONE, **options):
    """Frames first..last-1 of src to dst, with the AudioRef changed as a trim node would."""
    reader = open_source(str(src))
    info = reader.info
    if audio_ref:
        info = info.replace(audio=dataclasses.replace(info.audio, **audio_ref))
    options.setdefault("preset", "ultrafast")
    if str(dst).endswith(".mov"):
        options.setdefault("codec", "h264")
    sink = make_sink(str(dst), **options)
    sink.open(info)
    n = first
    try:
        while last is None or n < last:
            sink.write(reader.read(n))
            n += 1
    except EndOfStream:
        pass
    sink.close()
    return sink


def decode_audio(path):
    """(time of the first sample, mono float samples, sample rate)."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        frames = list(c.decode(stream))
        rate = stream.sample_rate
    start = float(frames[0].pts * frames[0].time_base)
    chunks = []
    for f in frames:
        x = f.to_ndarray().astype(np.float32)
        if not f.format.is_planar:
            x = x.reshape(-1, f.layout.nb_channels).T
        if f.format.name.startswith("s16"):
            x /= 32768.0
        chunks.append(x.mean(0))
    return start, np.concatenate(chunks), rate


def events(path):
    """(flash times, beep onset times, audio duration) in seconds of output time."""
    with av.open(str(path)) as c:
        flashes = [float(f.pts * f.time_base) for f in c.decode(video=0) if f.to_ndarray(format="gray").mean() > 200]
    start, x, rate = decode_audio(path)
    loud = np.abs(x) > 0.1
    quiet_before = np.convolve(loud, np.ones(480), "full")[: len(loud)] == 0
    onsets = np.nonzero(loud[1:] & quiet_before[:-1])[0] + 1
    return flashes, [start + i / rate for i in onsets], len(x) / rate


def video_duration(path):
    info = probe(path)
    return info.num_frames / info.fps


@pytest.mark.parametrize(
    "ext, mode, copied", [("mp4", "auto", True), ("mov", "aac", False), ("mkv", "pcm", False), ("mkv", "auto", False)]
)
def test_full_clip_in_sync(tmp_path, ext, mode, copied):
    out = tmp_path / f"out.{ext}"
    sink = write(out, audio=mode)
    assert sink.audio is not None and sink.audio.copy == copied
    flashes, beeps, duration = events(out)
    assert flashes == [0.0, 1.0, 2.0, 3.0]
    assert len(beeps) == 4
    for f, b in zip(flashes, beeps):
        assert abs(f - b) < 0.001  # sample-accurate, far inside one frame (40 ms)
    assert abs(duration - 4.0) < 0.025
    assert probe(out).audio is not None


@pytest.mark.parametrize("ext", ["mp4", "mov"])
def test_trimmed_window_re_encoded_in_sync(tmp_path, ext):
    # frames 30..79 = 1.2 s .. 3.2 s, as the trim node describes it
    out = tmp_path / f"trim.{ext}"
    sink = write(out, 30, 80, audio_ref=dict(start=1.2, duration=2.0, copyable=False), codec="h264")
    assert not sink.audio.copy
    flashes, beeps, duration = events(out)
    assert flashes == [pytest.approx(0.8), pytest.approx(1.8)]
    assert [round(b, 3) for b in beeps] == [0.8, 1.8]
    assert abs(duration - 2.0) < 1 / 25
    assert abs(float(video_duration(out)) - 2.0) < 1e-9


def test_copy_stops_with_the_video(tmp_path):
    out = tmp_path / "short.mp4"
    sink = write(out, 0, 60)  # 2.4 s of video, audio copied
    assert sink.audio.copy
    flashes, beeps, duration = events(out)
    assert flashes == [0.0, 1.0, 2.0] and len(beeps) == 3
    assert abs(duration - 2.4) < 1 / 25


def test_audio_none_and_bad_copy(tmp_path):
    sink = write(tmp_path / "mute.mp4", audio="none")
    assert sink.audio is None and probe(tmp_path / "mute.mp4").audio is None
    with pytest.raises(MediaError, match="cannot be copied"):
        write(tmp_path / "x.mp4", audio_ref=dict(codec="pcm_s24le"), audio="copy")
    assert not (tmp_path / "x.mp4").exists()


def test_copy_keeps_sample_alignment_when_video_starts_late(tmp_path):
    """talking/1.mp4's video starts 33 ms after its audio: the copy keeps that offset to the
    sample (the muxer hides the extra samples with an edit list)."""
    info = probe(TALKING)
    assert info.audio.start > 0.03
    out = tmp_path / "talk.mp4"
    sink = write(out, src=TALKING)
    assert sink.audio.copy
    _, x, rate = decode_audio(TALKING)
    start, y, _ = decode_audio(out)
    offset = round(info.audio.start * rate)
    assert start == 0.0
    assert np.abs(y[:rate] - x[offset : offset + rate]).max() < 1e-6
    # interleaved: the file alternates between streams instead of one long run per stream
    with av.open(str(out)) as c:
        kinds = "".join(p.stream.type[0] for p in c.demux() if p.size)
    assert "v" * 40 not in kinds and "a" * 60 not in kinds


def test_trim_through_the_engine_keeps_sync(tmp_path):
    """End to end: `vidfx run --frames 30:80` (the trim node moves the AudioRef)."""
    from vidfx import cli

    graph = tmp_path / "g.yaml"
    out = tmp_path / "cut.mp4"
    graph.write_text(
        f'inputs: {{src: "{TONE}"}}\n'
        "nodes: {p: {type: passthrough, input: src}}\n"
        f'outputs: [{{input: p, path: "{out}", preset: ultrafast}}]\n'
    )
    assert cli.main(["run", str(graph), "--frames", "30:80", "-q"]) == 0
    flashes, beeps, duration = events(out)
    assert flashes == [pytest.approx(0.8), pytest.approx(1.8)]
    assert [round(b, 3) for b in beeps] == [0.8, 1.8]
    assert abs(duration - 2.0) < 1 / 25 and probe(out).num_frames == 50
