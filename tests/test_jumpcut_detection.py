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
