"""Jump-cut detection (``vidfx.jumpcut.detect``) on real talking-head footage, and the
detection evaluation's JSON. Uses the dev clips in /work/shared/data/talking/ (fails, never
skips, when they are missing)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from vidfx.jumpcut import detect, identities
from vidfx.jumpcut.evaluate import main as eval_main
from vidfx.jumpcut.video import read_clip

CLIP = "/work/shared/data/talking/2.mp4"


@pytest.fixture(scope="module")
def clip():
    assert os.path.exists(CLIP), f"dev clip missing: {CLIP}"
    frames, fps = read_clip(CLIP)  # full size, as the node and `vidfx eval` see it
    audio = detect.decode_audio(CLIP)
    assert audio is not None
    return frames, float(fps), audio


def splice(frames, fps, audio, start, length):
    """Remove frames start..start+length-1 (and their sound): a jump cut at ``start``."""
    a0 = int(round(start / fps * detect.AUDIO_RATE))
    a1 = int(round((start + length) / fps * detect.AUDIO_RATE))
    return frames[:start] + frames[start + length :], np.concatenate([audio[:a0], audio[a1:]])


def export_cut(src: str, dst: str, start: int, length: int) -> None:
    """Write ``src`` with frames ``start .. start+length-1`` and their sound removed, as an editor's
    export would be: H.264 + AAC (128 kb/s stereo at the source's rate) in .mp4."""
    import av

    with av.open(src) as inp:
        vs, aus = inp.streams.video[0], inp.streams.audio[0]
        fps, rate = vs.average_rate, aus.rate
        frames = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    with av.open(src) as inp:
        rs = av.AudioResampler(format="flt", layout="stereo", rate=rate)
        sound = np.concatenate([o.to_ndarray().reshape(-1, 2) for f in inp.decode(audio=0) for o in rs.resample(f)])
    a0, a1 = round(start / fps * rate), round((start + length) / fps * rate)
    sound = np.concatenate([sound[:a0], sound[a1:]])
    frames = frames[:start] + frames[start + length :]
    with av.open(dst, "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt, v.options = frames[0].shape[1], frames[0].shape[0], "yuv420p", {"crf": "18"}
        a = out.add_stream("aac", rate=rate, layout="stereo")
        a.bit_rate = 128000
        for f in frames:
            out.mux(v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(v.encode(None))
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound.reshape(1, -1)), format="flt", layout="stereo")
        af.sample_rate, af.pts = rate, 0
        out.mux(a.encode(af))
        out.mux(a.encode(None))


# Short cuts in speech, in a real exported file: the picture alone misses them (a talking head
# moves about this much in one frame), the splice in the sound gives them away.
@pytest.mark.parametrize("length,start", [(2, 29), (4, 65)])
def test_sound_finds_short_cut_in_exported_file(tmp_path, length, start):
    path = str(tmp_path / "cut.mp4")
    export_cut(CLIP, path, start, length)
    data = detect.load_clip(path, cache_dir=None)
    assert data.audio is not None
    with_sound = detect.scores(detect.raw_signals(data, np.arange(len(data))))
    found = detect.pick(with_sound)
    assert len(found) == 1 and abs(found[0] - start) <= 1, found
    data.audio = None
    without = detect.scores(detect.raw_signals(data, np.arange(len(data))))
    assert with_sound[start] > 2 * without[start]


def test_no_cut_in_uncut_clip(clip):
    frames, fps, audio = clip
    assert detect.detect_cuts_in_frames(frames, fps, audio) == []


# Removed segments of 2, 12 and 60 frames. A 2-frame cut is found in only ~1 of 5 positions of a
# talking head (docs/jumpcut.md); this one falls in speech, where it is visible.
@pytest.mark.parametrize("length,start", [(2, 78), (12, 22), (60, 23)])
def test_finds_simulated_cut(clip, length, start):
    frames, fps, audio = clip
    cut_frames, cut_audio = splice(frames, fps, audio, start, length)
    cuts = detect.detect_cuts_in_frames(cut_frames, fps, cut_audio)
    assert len(cuts) == 1, cuts
    assert abs(cuts[0] - start) <= 1, cuts


def test_sensitivity_higher_means_fewer_cuts(clip):
    frames, fps, audio = clip
    cut_frames, cut_audio = splice(frames, fps, audio, 22, 12)
    data = detect.clip_data_from_frames(cut_frames, fps, cut_audio)
    counts = [len(detect.detect_in_data(data, s)) for s in (0.05, detect.RATIO, 1e15)]
    assert counts[0] >= counts[1] >= counts[2] == 0
    assert counts[1] == 1


def test_split_is_by_identity():
    assert not set(identities.TRAIN_IDS) & set(identities.VAL_IDS)
    assert len(set(identities.TRAIN_IDS) | set(identities.VAL_IDS)) == 25
    for ident in identities.TRAIN_IDS + identities.VAL_IDS:
        assert os.path.exists(identities.clip_path(ident)), ident


def test_eval_detection_json(tmp_path, capsys):
    out = tmp_path / "det.json"
    rc = eval_main(
        [
            "--detection",
            "--identities",
            "talking/2",
            "--lengths",
            "2,12",
            "--cases",
            "2",
            "--cache",
            str(tmp_path / "cache"),
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    for key in ("recall", "precision", "false_cuts_per_minute", "cases"):
        assert key in res
    assert 0.0 <= res["recall"] <= 1.0
    assert res["false_cuts_per_minute"] >= 0.0
    assert len(res["cases"]) == 4
    assert {c["length"] for c in res["cases"]} == {2, 12}
    assert all(set(c) >= {"clip", "length", "cut", "found", "false"} for c in res["cases"])
    printed = capsys.readouterr().out
    assert "false cuts per minute" in printed and "| 12 |" in printed


def test_node_auto_cuts_use_the_detector(clip):
    import vidfx
    from vidfx.core.registry import create_node

    frames, fps, _ = clip
    cut = frames[:22] + frames[34:]  # 12 frames removed: a cut at frame 22 (no sound in memory)
    node = create_node("jumpcut", cuts=["auto"], frames=6, method="crossfade")
    out = vidfx.apply(node, np.stack(cut), fps=fps)
    assert len(out) == len(cut)
    assert len(node.report) == 1 and abs(node.report[0]["cut"] - 22) <= 1, node.report


def test_splice_jump_flags_a_hard_audio_splice(clip):
    """Speech that flows on across a frame boundary is predictable; joining two moments 12
    frames apart (after an AAC export, as a user's file holds it) breaks the waveform."""
    frames, fps, audio = clip
    exported = detect.ExportedAudio(audio)
    win = detect.AUDIO_WIN
    flowing, spliced = [], []
    for k in range(10, len(frames) - 20):
        t = int(round(k / fps * detect.AUDIO_RATE))
        t12 = int(round((k + 12) / fps * detect.AUDIO_RATE))
        flowing.append(detect.splice_jump(*exported.excerpt(t, t, win)))
        spliced.append(detect.splice_jump(*exported.excerpt(t, t12, win)))
    flowing, spliced = np.array(flowing), np.array(spliced)
    judged = np.isfinite(flowing) & np.isfinite(spliced)
    assert judged.mean() > 0.5  # talking/2 is mostly speech
    assert np.median(flowing[judged]) < 1.5
    p90 = np.percentile(flowing[judged], 90)
    assert np.median(spliced[judged]) > 2.5 * p90
    assert (spliced[judged] > p90).mean() > 0.7
    quiet = np.zeros(2 * win, np.float32)
    assert np.isnan(detect.splice_jump(quiet[:win], quiet[win:]))


def test_aac_generation_keeps_length_and_timing(clip):
    _, _, audio = clip
    x = audio[: 3 * detect.AUDIO_RATE]
    y = detect.aac_generation(x)
    assert y.shape == x.shape and y.dtype == np.float32
    mid = slice(detect.AUDIO_RATE, 2 * detect.AUDIO_RATE)
    lags = range(-40, 41)
    corr = [float(np.dot(x[mid], np.roll(y, -lag)[mid])) for lag in lags]
    assert list(lags)[int(np.argmax(corr))] == 0  # no encoder delay left in
    assert max(corr) / float(np.dot(x[mid], x[mid])) > 0.9


def test_streaming_window_hears_the_same_sound_as_the_whole_clip(clip):
    """The node decides each step on a window of frames whose sound starts at the window's first
    frame; at 30 fps (533.3 samples a frame) its boundaries must fall on the same samples as the
    whole clip's, or the splice signal at a real splice drops by a third."""
    frames, _, audio = clip
    fps, n, reach = 30.0, len(frames), detect.REACH
    thumbs = np.zeros((n, detect.THUMB, detect.THUMB), np.uint8)
    faces = np.full((n, 478, 2), np.nan, np.float32)
    whole = detect.raw_signals(detect.ClipData(thumbs, faces, audio, fps), np.arange(n))
    compared = 0
    for k in range(reach, n - reach):
        lo = k - reach
        sound = audio[int(round(lo / fps * detect.AUDIO_RATE)) :]
        window = detect.ClipData(thumbs[lo : k + reach + 1], faces[lo : k + reach + 1], sound, fps, lo)
        sig = detect.raw_signals(window, np.arange(2 * reach + 1))
        steps = np.arange(2, 2 * reach + 1)  # every step with a full 64 ms of sound before it
        for name in ("audio", "splice"):
            np.testing.assert_array_equal(sig[name][steps], whole[name][lo + steps])
        compared += int(np.isfinite(whole["splice"][k]))
    assert compared > 30


def test_decode_audio_lines_the_sound_up_with_the_first_frame(clip):
    """``start`` is the first picture's time on the file's timeline; talking/2's sound starts
    at 0: from 0.2 s it loses 3200 samples, from -0.05 s it gains 800 of silence."""
    _, _, audio = clip
    later = detect.decode_audio(CLIP, 0.2)
    earlier = detect.decode_audio(CLIP, -0.05)
    np.testing.assert_array_equal(later, audio[3200:])
    np.testing.assert_array_equal(earlier[:800], 0.0)
    np.testing.assert_array_equal(earlier[800:], audio)
