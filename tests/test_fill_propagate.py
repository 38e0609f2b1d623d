"""Flow-guided propagation for the ``fill`` node: membrane fill, flow completion, propagation on
synthetic pans and on a real clip."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vidfx.fill.propagate import Flows, PropagationConfig, Propagator, complete_flow, membrane_fill


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12)))


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture (three octaves of upsampled noise, lightly blurred), (h, w, 3) in 0..1."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for s in (4, 16, 64):
        small = rng.random((h // s + 2, w // s + 2, 3)).astype(np.float32)
        big = cv2.resize(small, ((w // s + 2) * s, (h // s + 2) * s), interpolation=cv2.INTER_CUBIC)
        img += big[:h, :w]
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return (img - img.min()) / (img.max() - img.min())


def pan(t_count: int, h: int, w: int, dx: int, dy: int, seed: int = 0) -> np.ndarray:
    """Crops of one texture, shifted by (dx, dy) px per frame: (T, h, w, 3) float32."""
    bg = texture(h + abs(dy) * t_count, w + abs(dx) * t_count, seed)
    ox = 0 if dx >= 0 else -dx * (t_count - 1)
    oy = 0 if dy >= 0 else -dy * (t_count - 1)
    return np.stack([bg[oy + dy * t : oy + dy * t + h, ox + dx * t : ox + dx * t + w] for t in range(t_count)])


def test_membrane_fill_keeps_known_and_reproduces_a_ramp():
    h, w = 64, 96
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.stack([xx / w, 0.3 + 0.5 * yy / h], axis=-1)
    known = np.ones((h, w), bool)
    known[10:50, 20:70] = False
    values = ramp.copy()
    values[~known] = 5.0  # garbage under the hole
    out = membrane_fill(values, known)
    assert out.shape == ramp.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[known], values[known])
    assert np.abs(out[~known] - ramp[~known]).max() < 0.02


def test_membrane_fill_edge_cases():
    values = np.random.default_rng(1).random((8, 8, 2)).astype(np.float32)
    np.testing.assert_array_equal(membrane_fill(values, np.ones((8, 8), bool)), values)
    assert not membrane_fill(values, np.zeros((8, 8), bool)).any()
    grey = membrane_fill(np.full((8, 8), 0.5, np.float32), np.eye(8, dtype=bool))
    assert grey.shape == (8, 8) and np.allclose(grey, 0.5)


def test_complete_flow_replaces_the_object_motion():
    flow = np.zeros((60, 80, 2), np.float32)
    flow[..., 0] = 2.0  # background moves right
    hole = np.zeros((60, 80), bool)
    hole[20:40, 30:50] = True
    flow[hole] = (-7.0, 4.0)  # the object's own motion
    done = complete_flow(flow, hole)
    assert np.allclose(done[..., 0], 2.0, atol=1e-4) and np.allclose(done[..., 1], 0.0, atol=1e-4)


@pytest.mark.parametrize("moving_hole", [False, True])
def test_pan_is_filled_with_the_true_background(moving_hole):
    t_count, h, w = 11, 120, 160
    frames = pan(t_count, h, w, dx=2, dy=4)
    holes = np.zeros((t_count, h, w), bool)
    for t in range(t_count):
        x0 = 60 + (3 * t if moving_hole else 0)
        holes[t, 40:72, x0 : x0 + 32] = True
    filled, remaining = Propagator().run(frames, holes)
    mid = t_count // 2
    hole = holes[mid]
    assert not remaining[mid].any()
    err = np.abs(filled[mid][hole] - frames[mid][hole])
    assert err.mean() < 0.01
    assert psnr(filled[mid][hole], frames[mid][hole]) > 35
    np.testing.assert_array_equal(filled[mid][~hole], frames[mid][~hole])


def test_static_camera_and_hole_leave_everything_remaining():
    t_count, h, w = 6, 80, 100
    frames = np.repeat(texture(h, w)[None], t_count, axis=0)
    holes = np.zeros((t_count, h, w), bool)
    holes[:, 20:50, 30:60] = True
    filled, remaining = Propagator().run(frames, holes)
    np.testing.assert_array_equal(remaining, holes)
    np.testing.assert_array_equal(filled, frames)


def test_empty_hole_is_a_no_op(monkeypatch):
    frames = pan(4, 40, 50, 1, 1)
    propagator = Propagator()
    monkeypatch.setattr(propagator, "flows", lambda *a, **k: pytest.fail("flow computed for an empty hole"))
    filled, remaining = propagator.run(frames, np.zeros((4, 40, 50), bool))
    assert filled is not frames
    np.testing.assert_array_equal(filled, frames)
    assert not remaining.any()


def test_region_never_visible_stays_remaining():
    # The hole moves with the background: that patch of the world is covered in every frame.
    t_count, h, w = 9, 100, 140
    frames = pan(t_count, h, w, dx=3, dy=0)
    holes = np.zeros((t_count, h, w), bool)
    for t in range(t_count):
        x0 = 90 - 3 * t
        holes[t, 30:60, x0 : x0 + 30] = True
    filled, remaining = Propagator().run(frames, holes)
    np.testing.assert_array_equal(remaining, holes)
    np.testing.assert_array_equal(filled, frames)


def test_forward_backward_check_stops_inconsistent_chains():
    # Flows that disagree (forward and backward both +4 px) must never be followed.
    t_count, h, w = 5, 40, 60
    frames = pan(t_count, h, w, dx=4, dy=0)
    holes = np.zeros((t_count, h, w), bool)
    holes[:, 10:30, 20:32] = True
    bad = np.zeros((h, w, 2), np.float32)
    bad[..., 0] = 4.0
    flows = Flows(first=0, forward=[bad] * (t_count - 1), backward=[bad] * (t_count - 1))
    _, remaining = Propagator().propagate(frames, holes, flows, range(t_count))
    np.testing.assert_array_equal(remaining, holes)
    good = Flows(first=0, forward=[bad] * (t_count - 1), backward=[-bad] * (t_count - 1))
    _, remaining = Propagator().propagate(frames, holes, good, range(t_count))
    assert not remaining[2].any()


def test_targets_only_fill_those_frames():
    t_count, h, w = 7, 60, 80
    frames = pan(t_count, h, w, dx=3, dy=2)
    holes = np.zeros((t_count, h, w), bool)
    holes[:, 20:36, 30:46] = True
    filled, remaining = Propagator().run(frames, holes, targets=[3])
    assert not remaining[3].any()
    np.testing.assert_array_equal(remaining[0], holes[0])
    np.testing.assert_array_equal(filled[0], frames[0])


def read_bear(clips: Path, count: int) -> np.ndarray:
    frames = []
    with av.open(str(clips / "bear.mp4")) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            frames.append(cv2.resize(rgb, (427, 240), interpolation=cv2.INTER_AREA))
            if len(frames) == count:
                break
    return np.stack(frames).astype(np.float32) / 255.0


def test_real_clip_beats_telea(shared_clips):
    frames = read_bear(shared_clips, 12)
    t_count, h, w, _ = frames.shape
    holes = np.zeros((t_count, h, w), bool)
    for t in range(t_count):  # a box over the stone wall, moving against the pan
        x0, y0 = 150 - 4 * t, 20 + t
        holes[t, y0 : y0 + 40, x0 : x0 + 50] = True
    filled, remaining = Propagator().run(frames, holes)
    assert remaining.sum() < 0.05 * holes.sum()
    ours, telea = [], []
    for t in range(t_count):
        done = holes[t] & ~remaining[t]
        rgb8 = np.round(frames[t] * 255).astype(np.uint8)
        inpainted = cv2.inpaint(rgb8, holes[t].astype(np.uint8), 3, cv2.INPAINT_TELEA).astype(np.float32) / 255
        ours.append(psnr(filled[t][done], frames[t][done]))
        telea.append(psnr(inpainted[done], frames[t][done]))
    assert np.mean(ours) > np.mean(telea) + 6, (np.mean(ours), np.mean(telea))
    assert min(o - t for o, t in zip(ours, telea)) > 3


def test_seam_correction_follows_an_exposure_change():
    t_count, h, w = 11, 120, 160
    frames = pan(t_count, h, w, dx=3, dy=4) * 0.8
    mid = t_count // 2
    frames[mid] += 0.1  # this frame alone is brighter
    holes = np.zeros((t_count, h, w), bool)
    holes[:, 40:72, 60:92] = True
    hole = holes[mid]
    errors = {}
    for blend in (False, True):
        filled, remaining = Propagator(PropagationConfig(blend=blend)).run(frames, holes)
        assert not remaining[mid].any()
        errors[blend] = float(np.abs(filled[mid][hole] - frames[mid][hole]).mean())
    assert errors[False] > 0.08
    assert errors[True] < 0.015, errors


def test_seam_correction_follows_an_exposure_drift():
    # Brightness rises frame by frame: each source frame needs its own seam offset.
    t_count, h, w = 11, 120, 160
    ramp = 0.02 * np.arange(t_count, dtype=np.float32)[:, None, None, None]
    frames = pan(t_count, h, w, dx=3, dy=4) * 0.7 + ramp
    holes = np.zeros((t_count, h, w), bool)
    holes[:, 40:72, 60:92] = True
    mid, hole = t_count // 2, holes[t_count // 2]
    filled, remaining = Propagator().run(frames, holes)
    assert not remaining[mid].any()
    assert psnr(filled[mid][hole], frames[mid][hole]) > 40


def test_nothing_is_propagated_across_a_cut():
    """Two shots of different pictures, a hole that moves: frames of one shot never fill the
    other (the cut is found from the flows' forward-backward agreement)."""
    shots = []
    for seed in (1, 2):
        world = cv2.GaussianBlur(np.random.default_rng(seed).random((60, 200, 3)).astype(np.float32), (0, 0), 2.0)
        world = (world - world.min()) / (world.max() - world.min())
        shots.append(np.stack([world[:, 4 * t : 4 * t + 96] for t in range(6)]))
    frames = np.concatenate(shots)
    holes = np.zeros(frames.shape[:3], bool)
    for t in range(12):
        holes[t, 20:40, 10 + 5 * t : 30 + 5 * t] = True
    prop = Propagator(PropagationConfig(window=8))
    flows = prop.flows(frames, holes)
    assert flows.cuts == [k == 5 for k in range(11)]
    filled, remaining = prop.propagate(frames, holes, flows, range(12))
    for t in (4, 5, 6, 7):  # next to the cut
        got = holes[t] & ~remaining[t]
        if got.any():
            err = np.abs(filled[t][got] - frames[t][got]).mean()
            assert err < 0.05, (t, err)
