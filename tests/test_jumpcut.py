"""jumpcut: keypoint interpolation, attention, cuts, the node's length/audio, bad input, offline models."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vidfx.jumpcut.cuts import detect_cuts, parse_cuts, read_edl, read_otio, thumbnail, timecode_to_frame
from vidfx.jumpcut.interpolate import interpolate_face, interpolate_keypoints, transition_times
from vidfx.jumpcut.keypoints import Keypoints

TALKING = Path(__file__).resolve().parents[2] / "shared" / "data" / "talking"


@pytest.fixture(scope="module")
def talking_data() -> Path:
    """The talking-head clips of the development data (CI has them): without them a test fails."""
    assert (TALKING / "3.mp4").is_file(), f"talking-head clips missing: {TALKING}"
    return TALKING


needs_data = pytest.mark.usefixtures("talking_data")


def rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def face_points(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(478, 3)) * [40, 50, 20]).astype(np.float32)


@pytest.fixture(scope="module")
def clip3():
    """Frames of talking-head clip 3 at 256 x 256 (uint8) and its frame rate."""
    from vidfx.jumpcut.video import read_clip

    return read_clip(str(TALKING / "3.mp4"), size=256, max_frames=80)


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    """Encode RGB uint8 frames as a near-lossless H.264 file."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"crf": "12"})
        s.height, s.width = frames[0].shape[:2]
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())


# --- interpolation ------------------------------------------------------------------------------


def test_interpolated_keypoints_equal_the_cut_frames_at_the_ends():
    fa = face_points(0) + [200, 220, 0]
    fb = (face_points(0) @ rot_y(35).T * 1.2 + [260, 210, 5]).astype(np.float32)
    fb += np.random.default_rng(1).normal(size=fb.shape).astype(np.float32)  # expression change
    ka = Keypoints(fa, np.random.rand(33, 3).astype(np.float32), 1)
    kb = Keypoints(fb, np.random.rand(33, 3).astype(np.float32), 1)
    for easing in ("linear", "smoothstep", "sine"):
        start, end = interpolate_keypoints(ka, kb, [0.0, 1.0], easing)
        np.testing.assert_allclose(start.face, fa, atol=1e-3)
        np.testing.assert_allclose(end.face, fb, atol=1e-3)
        np.testing.assert_allclose(start.body[:, :2], ka.body[:, :2], atol=1e-5)
        np.testing.assert_allclose(end.body[:, :2], kb.body[:, :2], atol=1e-5)
    mids = interpolate_keypoints(ka, kb, transition_times(6))
    assert len(mids) == 6 and all(m.face.shape == (478, 3) for m in mids)


def test_interpolation_turns_the_head_instead_of_squashing_it():
    fa = face_points(2)
    fb = (fa @ rot_y(80).T).astype(np.float32)
    mid = interpolate_face(fa, fb, [0.5], "linear")[0]
    # a rigid turn keeps every distance; a per-point blend would shrink the face
    d = lambda p: np.linalg.norm(p - p.mean(0), axis=1)  # noqa: E731
    np.testing.assert_allclose(d(mid), d(fa), rtol=1e-3)
    naive = 0.5 * (fa + fb)
    assert d(naive).mean() < 0.9 * d(fa).mean()


def test_end_velocities_keep_the_ends_exact_and_follow_a_moving_head():
    base = face_points(3) + [200, 200, 0]
    step = np.array([3.0, 0.0, 0.0], np.float32)  # the head moves 3 px a frame to the right
    pos = lambda i: Keypoints((base + step * i).astype(np.float32), None, 1)  # noqa: E731
    # frames 1..8 are missing: ends A = 0 and B = 9, velocities from frames -1 and 10
    ka, kb, prev_a, next_b = pos(0), pos(9), pos(-1), pos(10)
    start, end = interpolate_keypoints(ka, kb, [0.0, 1.0], "smoothstep", prev_a, next_b, span=9)
    np.testing.assert_allclose(start.face, ka.face, atol=1e-3)
    np.testing.assert_allclose(end.face, kb.face, atol=1e-3)
    # constant motion through the gap: the velocity term brings the eased path closer to it
    times = transition_times(8)
    truth = [base + step * 9 * t for t in times]
    err = lambda kps: np.mean([np.abs(k.face - g).mean() for k, g in zip(kps, truth)])  # noqa: E731
    with_vel = interpolate_keypoints(ka, kb, times, "smoothstep", prev_a, next_b, span=9)
    without = interpolate_keypoints(ka, kb, times, "smoothstep")
    assert err(with_vel) < 0.6 * err(without)


# --- attention ----------------------------------------------------------------------------------


@needs_data
def test_attention_prefers_the_source_whose_keypoints_match_the_target(clip3):
    from vidfx.jumpcut.keypoints import MediaPipeDetector
    from vidfx.jumpcut.synthesize import DEFAULT_WEIGHTS, CropContext, crop_box, load_net

    assert os.path.exists(DEFAULT_WEIGHTS), f"shipped synthesizer weights missing: {DEFAULT_WEIGHTS}"
    net = load_net()
    frames = [clip3[0][i] for i in (5, 25, 45, 65)]  # four different head poses / mouth shapes
    det = MediaPipeDetector(with_body=True)
    kps = [det.detect(f) for f in frames]
    ctx = CropContext(frames, kps, crop_box(kps, 256, 256), det.topology, net.cfg.size)
    src_img = torch.stack([ctx.image(i) for i in range(4)])[None]
    src_map = torch.stack([ctx.keymap(i) for i in range(4)])[None]
    for target in range(4):
        with torch.no_grad():
            _, aux = net(
                src_img,
                src_map,
                ctx.keymap(target)[None],
                src_img[:, target],
                torch.from_numpy(ctx.flow(kps[target], [0, 1, 2, 3]))[None],
                flow_frame=src_img[:, target],
            )
        # attention mass each source receives from the target's face positions
        side = int(round(aux["attention"].shape[1] ** 0.5))
        face = torch.nn.functional.adaptive_avg_pool2d(ctx.keymap(target)[2][None, None], side).flatten()
        mass = (aux["attention"][0].sum(-1) * face[:, None]).sum(0)
        assert int(mass.argmax()) == target, f"target {target}: mass per source {mass.tolist()}"


def test_flow_candidate_upgrade_keeps_the_output_and_the_candidate_can_win():
    from vidfx.jumpcut.keymap import KEYMAP_CHANNELS
    from vidfx.jumpcut.model import SynthConfig, SynthNet

    torch.manual_seed(0)
    old = SynthNet(SynthConfig(size=32, dim=8, value_dim=8, base=8, style_dim=8)).eval()
    with torch.no_grad():  # a non-trivial head, so the candidates get different weights
        old.head.weight.normal_(0, 0.05)
        old.head.bias.normal_(0, 1.0)
    b, s, r = 1, 4, 32
    src_img, src_map = torch.rand(b, s, 3, r, r), torch.rand(b, s, KEYMAP_CHANNELS, r, r)
    tgt_map, fade = torch.rand(b, KEYMAP_CHANNELS, r, r), torch.rand(b, 3, r, r)
    kp_flow = torch.rand(b, s, 2, r, r) * 2 - 1
    new = SynthNet.with_flow_candidate(old).eval()
    with torch.no_grad():
        ref, _ = old(src_img, src_map, tgt_map, fade, kp_flow)
        # the flow frame equal to the crossfade: exactly the old output
        same, _ = new(src_img, src_map, tgt_map, fade, kp_flow, flow_frame=fade)
        np.testing.assert_allclose(same.numpy(), ref.numpy(), atol=1e-5)
        # a strongly preferred flow candidate is what comes out
        new.head.bias[-1] = 30.0
        new.head.weight[-1] = 0.0
        new.head.bias[3 * s + 4] = -30.0  # residual gate off
        flow_frame = torch.rand(b, 3, r, r)
        out, aux = new(src_img, src_map, tgt_map, fade, kp_flow, flow_frame=flow_frame)
    assert aux["weights"].shape[1] == s + 2
    np.testing.assert_allclose(out.numpy(), flow_frame.numpy(), atol=1e-4)


# --- cuts ---------------------------------------------------------------------------------------


def test_timecodes_frames_and_seconds():
    fps = Fraction(25)
    assert timecode_to_frame("120", fps) == 120
    assert timecode_to_frame("00:00:04:12", fps) == 112
    assert timecode_to_frame("2.5s", fps) == 62 or timecode_to_frame("2.5s", fps) == 63
    assert timecode_to_frame("00:00:02.000", Fraction(1350, 61)) == 44
    # SMPTE drop-frame: 00:01:00;02 is frame 1800 at 29.97
    assert timecode_to_frame("00:01:00;02", Fraction(30000, 1001)) == 1800
    assert parse_cuts(["auto"], fps) is None
    assert parse_cuts(["50", "00:00:01:00"], fps) == [25, 50]


def test_edl_and_otio_cut_lists(tmp_path):
    edl = tmp_path / "cuts.edl"
    edl.write_text(
        "TITLE: interview\nFCM: NON-DROP FRAME\n\n"
        "001  AX       V     C        00:00:00:00 00:00:02:00 01:00:00:00 01:00:02:00\n"
        "* FROM CLIP NAME: take1.mov\n"
        "002  AX       V     C        00:00:03:00 00:00:05:00 01:00:02:00 01:00:04:00\n"
        "003  AX       V     C        00:00:07:10 00:00:08:00 01:00:04:00 01:00:04:15\n"
    )
    assert read_edl(str(edl), Fraction(25)) == [50, 100]

    def clip(name: str, start: int, duration: int) -> dict:
        time = lambda value: {"OTIO_SCHEMA": "RationalTime.1", "rate": 25, "value": value}  # noqa: E731
        return {
            "OTIO_SCHEMA": "Clip.2",
            "name": name,
            "source_range": {"OTIO_SCHEMA": "TimeRange.1", "start_time": time(start), "duration": time(duration)},
        }

    clips = [clip("a", 0, 40), clip("b", 90, 30), clip("c", 200, 10)]
    track = {"OTIO_SCHEMA": "Track.1", "kind": "Video", "children": clips}
    timeline = {"OTIO_SCHEMA": "Timeline.1", "name": "t", "tracks": {"OTIO_SCHEMA": "Stack.1", "children": [track]}}
    path = tmp_path / "cut.otio"
    path.write_text(json.dumps(timeline))
    assert read_otio(str(path), Fraction(25)) == [40, 70]
    assert parse_cuts([str(path)], Fraction(25)) == [40, 70]
    import opentimelineio as otio  # the editorial extra; installed with vidfx[all]

    tl = otio.schema.Timeline(name="edit")
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    for start, dur in ((0, 48), (100, 24), (300, 12)):
        track.append(
            otio.schema.Clip(
                name=f"c{start}",
                source_range=otio.opentime.TimeRange(
                    otio.opentime.RationalTime(start, 24), otio.opentime.RationalTime(dur, 24)
                ),
            )
        )
    tl.tracks.append(track)
    made = tmp_path / "made.otio"
    otio.adapters.write_to_file(tl, str(made))
    assert read_otio(str(made), Fraction(24)) == [48, 72]
    assert read_otio(str(made), Fraction(48)) == [96, 144]


@needs_data
def test_auto_detection_finds_a_jump_cut_and_nothing_in_continuous_video(clip3):
    frames, _ = clip3
    thumbs = [thumbnail(f) for f in frames]
    assert detect_cuts(thumbs) == []
    jumped = thumbs[:30] + thumbs[55:]  # 25 frames (1 s) removed
    assert detect_cuts(jumped) == [30]


# --- the node -----------------------------------------------------------------------------------


def run_node(clip, fps=25, **params):
    from vidfx.core.registry import create_node

    node = create_node("jumpcut", **params)
    import vidfx

    out = vidfx.apply(node, clip, fps=fps)
    return node, out


@needs_data
def test_transition_keeps_the_frame_count_and_passes_other_frames(clip3):
    frames, fps = clip3
    clip = frames[:30] + frames[50:70]  # a jump cut at output frame 30
    node, out = run_node(clip, fps=fps, cuts=["30"], frames=6, method="flow")
    assert len(out) == len(clip)
    for n in list(range(0, 27)) + list(range(33, len(clip))):
        np.testing.assert_allclose(out[n].permute(1, 2, 0).numpy(), clip[n] / 255.0, atol=1e-6)
    assert any(np.abs(out[n].permute(1, 2, 0).numpy() - clip[n] / 255.0).max() > 0.02 for n in range(27, 33))
    assert node.report and node.report[0]["method"] == "flow" and node.report[0]["frames"] == [27, 32]


@needs_data
def test_ours_runs_through_the_engine(clip3):
    from vidfx.jumpcut.synthesize import DEFAULT_WEIGHTS

    assert os.path.exists(DEFAULT_WEIGHTS), f"shipped synthesizer weights missing: {DEFAULT_WEIGHTS}"
    frames, fps = clip3
    clip = frames[:24] + frames[44:64]
    node, out = run_node(clip, fps=fps, cuts=["24"], frames=4, adapt_steps=1, context=4)
    assert len(out) == len(clip)
    assert node.report[0]["method"] == "ours", node.report
    assert all(torch.isfinite(o).all() and o.min() >= 0 and o.max() <= 1 for o in out)


@needs_data
def test_audio_duration_and_frame_count_survive_the_writer(tmp_path):
    import av

    from vidfx.core.graph import from_dict

    src = TALKING / "3.mp4"
    dst = tmp_path / "smoothed.mp4"
    graph = from_dict(
        {
            "inputs": {"src": str(src)},
            "nodes": {"jc": {"type": "jumpcut", "input": "src", "cuts": [60], "frames": 6, "method": "crossfade"}},
            "outputs": [{"input": "jc", "path": str(dst), "preset": "ultrafast"}],
        }
    )
    graph.run()

    def durations(path):
        with av.open(str(path)) as c:
            v = sum(1 for _ in c.decode(video=0))
        with av.open(str(path)) as c:
            a = c.streams.audio[0]
            samples = sum(f.samples for f in c.decode(a))
            return v, samples / a.sample_rate

    v_in, a_in = durations(src)
    v_out, a_out = durations(dst)
    assert v_out == v_in
    assert abs(a_out - a_in) < 0.05


# --- bad input ----------------------------------------------------------------------------------


def test_cut_at_the_ends_and_close_cuts_fall_back_and_are_reported():
    frames = [np.full((64, 64, 3), i * 4, np.uint8) for i in range(40)]
    node, out = run_node(frames, cuts=["0", "39", "15", "18"], frames=6, method="flow")
    assert len(out) == 40
    text = " | ".join(node.messages)
    assert "frame 0" in text and "frame 39" in text and "closer than the transition length" in text
    methods = {r["cut"]: r["method"] for r in node.report}
    assert methods[15] == "crossfade" and methods[18] == "crossfade"


def test_a_run_of_close_auto_cuts_does_not_crash():
    """A montage: a hard cut every 10 frames with a 12-frame transition. The close cuts share
    crossfades of at most two transition lengths; the rest are left as they are; all reported."""
    rng = np.random.default_rng(0)
    colours = rng.uniform(0, 255, (16, 3))
    frames = [np.broadcast_to(colours[i // 10], (64, 64, 3)).astype(np.uint8) for i in range(160)]
    node, out = run_node(frames, cuts=["auto"], frames=12, method="crossfade")
    assert len(out) == 160
    cuts = {r["cut"]: r["method"] for r in node.report}
    assert set(cuts) == set(range(10, 160, 10))
    assert set(cuts.values()) == {"crossfade", "skipped"}
    out = np.asarray(out).transpose(0, 2, 3, 1)  # (N, H, W, C)
    skipped = [r["cut"] for r in node.report if r["method"] == "skipped"]
    assert skipped
    for c in skipped:  # a skipped cut is left as it is: both of its frames pass through
        for i in (c - 1, c):
            np.testing.assert_allclose(out[i], frames[i] / 255.0, atol=1 / 255)


def test_a_cut_next_to_one_near_the_start_shares_its_crossfade():
    from vidfx.jumpcut.cuts import check_cuts

    usable, bad = check_cuts([5, 8, 36], 40, 12)  # 5 and 36 are too near the ends for 12 frames
    assert usable == [] and {c for c, _ in bad} == {5, 8, 36}
    usable, bad = check_cuts([5, 20], 40, 12)
    assert usable == [20] and [c for c, _ in bad] == [5]
    frames = [np.full((32, 32, 3), 0 if i < 5 else (120 if i < 8 else 240), np.uint8) for i in range(40)]
    node, out = run_node(frames, cuts=["5", "8"], frames=12, method="crossfade")
    assert len(out) == 40
    assert {r["cut"]: r["method"] for r in node.report} == {5: "crossfade", 8: "crossfade"}
    assert len(node._plan) == 1  # one crossfade over both, not a crossfade overlapping a transition


@pytest.mark.parametrize("spacing", [3, 5, 10])
def test_close_cuts_are_reported_as_they_are_rendered(spacing):
    """Every cut of a run of close cuts is either crossfaded (frame c-1 or c changed) or left as
    it is (both passed through), as ``node.report`` says."""
    rng = np.random.default_rng(spacing)
    colours = rng.uniform(0, 255, (100 // spacing + 1, 3))
    frames = [np.broadcast_to(colours[i // spacing], (32, 32, 3)).astype(np.uint8) for i in range(100)]
    cuts = list(range(spacing, 100, spacing))
    node, out = run_node(frames, cuts=[str(c) for c in cuts], frames=12, method="crossfade")
    out = np.asarray(out).transpose(0, 2, 3, 1)
    assert len(out) == 100
    outcome = {r["cut"]: r["method"] for r in node.report}
    assert set(outcome) == set(cuts)
    for c in cuts:
        kept = [np.allclose(out[i], frames[i] / 255.0, atol=1 / 255) for i in (c - 1, c)]
        assert all(kept) == (outcome[c] == "skipped"), (c, outcome[c], kept)


def test_no_face_falls_back_to_crossfade_without_crashing():
    from vidfx.jumpcut.synthesize import DEFAULT_WEIGHTS

    assert os.path.exists(DEFAULT_WEIGHTS), f"shipped synthesizer weights missing: {DEFAULT_WEIGHTS}"
    rng = np.random.default_rng(0)
    frames = [(rng.random((96, 96, 3)) * 40 + i * 3).astype(np.uint8) for i in range(30)]
    node, out = run_node(frames, cuts=["15"], frames=4, method="ours", adapt_steps=0)
    assert len(out) == 30
    assert any("no face" in m for m in node.messages)
    assert node.report[-1]["method"] == "crossfade"
    a, b = frames[12] / 255.0, frames[17] / 255.0
    np.testing.assert_allclose(out[13].permute(1, 2, 0).numpy(), 0.8 * a + 0.2 * b, atol=1e-5)


@needs_data
def test_several_faces_fall_back_to_crossfade(clip3):
    from vidfx.jumpcut.synthesize import DEFAULT_WEIGHTS

    assert os.path.exists(DEFAULT_WEIGHTS), f"shipped synthesizer weights missing: {DEFAULT_WEIGHTS}"
    frames, _ = clip3
    two = [np.concatenate([f[:, 32:224], f[:, 32:224]], 1) for f in frames[:24]]
    node, out = run_node(two, cuts=["12"], frames=4, method="ours", adapt_steps=0)
    assert len(out) == 24
    assert any("faces" in m for m in node.messages), node.messages


# --- models load offline ------------------------------------------------------------------------


@needs_data
def test_landmark_models_load_offline_and_find_the_face(clip3):
    from vidfx.jumpcut.keypoints import DlibDetector, MediaPipeDetector

    frame = clip3[0][10]
    mp = MediaPipeDetector(with_body=True)
    k = mp.detect(frame)
    assert k.face.shape == (478, 3) and k.body.shape == (75, 3) and k.num_faces == 1  # pose + 2 hands
    kd = DlibDetector().detect(frame)
    assert kd.face.shape == (68, 3)
    # both agree on where the face is (nose tip 1 vs 30)
    assert np.linalg.norm(k.face[1, :2] - kd.face[30, :2]) < 12


def test_a_glitched_end_detection_cannot_fling_the_keypoints():
    fa = face_points(4) + [200, 200, 0]
    ka, kb = Keypoints(fa, None, 1), Keypoints(fa + [4, 0, 0], None, 1)
    glitch = Keypoints(fa + [-300, 0, 0], None, 1)  # the frame before A: a wrong detection far away
    mids = interpolate_keypoints(ka, kb, transition_times(12), "smoothstep", glitch, kb, span=13)
    size = np.ptp(fa[:, :2], axis=0).max()
    assert max(np.abs(m.face - fa).max() for m in mids) < 0.2 * size


# --- training -----------------------------------------------------------------------------------


@needs_data
def test_training_writes_weights_checkpoint_and_args_and_resumes(clip3, tmp_path):

    from vidfx.jumpcut import train
    from vidfx.jumpcut.synthesize import load_net
    from vidfx.ops.weights import load_checkpoint

    data = tmp_path / "clips"
    data.mkdir()
    write_clip(data / "short.mp4", clip3[0][:20])
    run = tmp_path / "run"
    args = [
        "--data",
        str(data),
        "--out",
        str(run / "prior.pt"),
        "--checkpoint",
        str(run / "last.ckpt"),
        "--size",
        "128",
        "--exclude",
        "0,0,0",
        "--cache",
        "",
        "--batch",
        "1",
        "--save-every",
        "1",
        "--threads",
        "1",
    ]
    assert train.main(args + ["--steps", "1"]) == 0
    assert load_checkpoint(run / "last.ckpt")["step"] == 1
    record = json.loads((run / "args.json").read_text())
    assert record["args"]["steps"] == 1 and "vidfx_version" in record
    assert train.main(args + ["--steps", "2"]) == 0  # resumes from the checkpoint
    assert load_checkpoint(run / "last.ckpt")["step"] == 2
    assert load_net(str(run / "prior.pt")).cfg.size == 128
    assert sorted(p.name for p in run.iterdir()) == ["args.json", "last.ckpt", "prior.pt"]
    # the adversarial loss trains a discriminator, kept in the checkpoint for resuming
    sharp = load_checkpoint(run / "last.ckpt")["sharp"]
    assert sharp["opt_d"]["state"], "the discriminator was never updated"


# --- identities, sharpness, the keypoint map ------------------------------------------------------


def test_face_clips_are_square_crops_around_the_face():
    from vidfx.jumpcut import identities as ids
    from vidfx.jumpcut.keypoints import MediaPipeDetector

    path = ids.clip_path("talking_more/LivePortrait_s18")  # 1280x720
    assert os.path.exists(path), f"talking_more clip missing: {path}"
    frames, rate = ids.read_face_clip(path, size=256, max_frames=3)
    assert len(frames) == 3 and frames[0].shape == (256, 256, 3) and rate == 30
    det = MediaPipeDetector(with_body=False)
    face = det.detect(frames[0]).face
    det.close()
    assert face is not None
    cx = float(np.median(face[:, 0]))
    assert 64 < cx < 192, cx  # the face is inside the square, not cut off at its side


def test_sharpness_is_one_for_real_frames_and_lower_for_blurred_ones(clip3):
    import cv2

    from vidfx.jumpcut.evaluate import face_box, sharpness

    frames = [f.astype(np.float32) / 255 for f in clip3[0][:3]]
    box = face_box(None, frames[0].shape)
    assert sharpness([frames[0]], [frames[0], frames[0]], box) == pytest.approx(1.0)
    blurred = [cv2.GaussianBlur(f, (0, 0), 1.5) for f in frames[1:2]]
    assert sharpness(blurred, [frames[0], frames[2]], box) < 0.5
    fade = [0.5 * frames[0] + 0.5 * frames[2]]
    assert sharpness(fade, [frames[0], frames[2]], box) < 1.0


def test_keymap_draws_irises_and_hands():
    from vidfx.jumpcut.keymap import KEYMAP_CHANNELS, render_keymap
    from vidfx.jumpcut.keypoints import HAND_ROWS, MediaPipeDetector

    det = MediaPipeDetector(with_body=False)
    topo = det.topology
    det.close()
    body = np.zeros((75, 3), np.float32)
    body[HAND_ROWS["left"], :2] = np.stack([np.linspace(20, 60, 21), np.linspace(80, 120, 21)], 1)
    body[HAND_ROWS["left"], 2] = 1.0
    no_hand = render_keymap(Keypoints(None, np.zeros((75, 3), np.float32)), topo, 128, 128)
    hand = render_keymap(Keypoints(None, body), topo, 128, 128)
    assert KEYMAP_CHANNELS == 10 and hand.shape == (10, 128, 128)
    assert no_hand[9].sum() == 0 and hand[9].sum() > 20
    assert hand[9, 100, 40] > 0 and hand[9, 10, 120] == 0  # on the hand's line, not elsewhere


def test_a_synthesizer_from_before_the_new_channels_reads_the_first_eight():
    from vidfx.jumpcut.model import SynthConfig, SynthNet

    old = SynthNet(SynthConfig(size=32, dim=16, value_dim=16, base=8, style_dim=8, keymap_channels=8))
    b, s, r = 1, 4, 32
    args = (torch.rand(b, s, 3, r, r), torch.rand(b, s, 10, r, r), torch.rand(b, 10, r, r), torch.rand(b, 3, r, r))
    flow = torch.zeros(b, s, 2, r, r)
    full, _ = old(*args, flow)
    trimmed, _ = old(args[0], args[1][:, :, :8], args[2][:, :8], args[3], flow)
    assert torch.allclose(full, trimmed)


def test_eval_transition_rows_have_sharpness(clip3, tmp_path, capsys):

    from vidfx.jumpcut.evaluate import main as eval_main

    path = tmp_path / "clip.mp4"
    write_clip(path, clip3[0][:40])
    out = tmp_path / "rows.json"
    args = ["--methods", "crossfade,flow", "--cases", "1", "--frames", "6", "--context", "6", "--size", "128"]
    assert eval_main([*args, "--strips", "", "--json", str(out), str(path)]) == 0
    rows = json.loads(out.read_text())
    assert {r["method"] for r in rows} == {"crossfade", "flow"}
    for r in rows:
        assert set(r) >= {"method", "clip", "psnr", "ssim", "landmark_error_px", "seconds", "sharpness"}
        assert 0.2 < r["sharpness"] < 1.5 and r["psnr"] > 20
    assert "best PSNR in" in capsys.readouterr().out


def test_carried_detail_puts_the_top_sources_fine_detail_into_a_soft_blend():
    from vidfx.jumpcut.model import carried_detail

    torch.manual_seed(0)
    sharp = torch.rand(1, 3, 32, 32)
    other = torch.rand(1, 3, 32, 32)
    frames = torch.stack([sharp, other], 1)  # (1, 2, 3, 32, 32)
    weights = torch.zeros(1, 2, 32, 32)
    weights[:, 0] = 0.6
    weights[:, 1] = 0.4
    blend = 0.6 * sharp + 0.4 * other
    out = blend + carried_detail(frames, weights, blend, scale=1.0)
    # the fine band is now the top source's; the coarse band is the blend's
    assert (out - sharp).abs().mean() < (blend - sharp).abs().mean()
    same = torch.stack([blend, blend], 1)
    assert carried_detail(same, weights, blend, 1.0).abs().max() < 1e-5  # nothing to carry
    flat = torch.full((1, 2, 3, 32, 32), 0.5)
    assert carried_detail(flat, weights, flat[:, 0], 1.0).abs().max() < 1e-5  # no detail anywhere
    # where the whole-frame candidates (not the sources) carry the weight, nothing is carried
    assert carried_detail(frames, torch.zeros(1, 2, 32, 32), blend, 1.0).abs().max() == 0


def test_detail_energy_restoration_sharpens_a_blend_of_unaligned_frames_and_leaves_aligned_ones(clip3):
    from vidfx.jumpcut.evaluate import high_frequency_energy
    from vidfx.jumpcut.model import detail_energy, restore_detail_energy

    frames, _ = clip3
    to_t = lambda f: torch.from_numpy(f.astype(np.float32) / 255).permute(2, 0, 1)[None]  # noqa: E731
    a = to_t(frames[10])
    b = to_t(np.roll(frames[30], 3, axis=1))  # another moment, 3 px away: its detail does not line up
    blend = 0.5 * (a + b)
    scale = 2.0  # a 128 px working grid under a 256 px picture
    target = 0.5 * (detail_energy(a, scale) + detail_energy(b, scale))
    out = restore_detail_energy(blend, target, 1.0, scale)
    box = (32, 32, 224, 224)
    hf = lambda x: high_frequency_energy(x[0].permute(1, 2, 0).numpy(), box)  # noqa: E731
    ref = 0.5 * (hf(a) + hf(b))
    assert hf(blend) < 0.75 * ref  # the average loses detail...
    assert 0.9 * ref < hf(out) < 1.3 * ref  # ...and gets it back, not more
    assert (out - blend).abs().mean() < 0.02  # only the fine band changed
    # never softens: a picture with more detail than the target is left as it is
    assert torch.allclose(restore_detail_energy(a, 0.25 * detail_energy(a, scale), 1.0, scale), a, atol=1e-6)
    # bounded: an absurd target amplifies the finest detail at most 2x per pass
    wild = restore_detail_energy(blend, 1e6 * target, 1.0, scale)
    assert hf(blend) < hf(wild) <= 70 * hf(blend)
    assert torch.equal(restore_detail_energy(blend, target, 0.0, scale), blend)  # amount 0: off
    half = restore_detail_energy(blend, target, 0.5, scale)
    assert torch.allclose(half, 0.5 * (blend + out), atol=1e-6)  # amount mixes linearly


def test_still_weight_is_one_where_nothing_moves_and_zero_where_it_does(clip3):
    from vidfx.jumpcut.baselines import dis_flow
    from vidfx.jumpcut.synthesize import still_weight

    frames, _ = clip3
    a = frames[10].astype(np.float32) / 255
    assert still_weight(dis_flow(a, a), 1.0).min() > 0.99
    moved = np.roll(a, 4, axis=1)  # the whole picture 4 px to the side
    w = still_weight(dis_flow(a, moved), 1.0)[40:-40, 40:-40]
    assert w.shape[-1] == 1 and np.median(w) < 0.05


@needs_data
def test_ours_is_the_crossfade_where_nothing_moves(clip3):
    from vidfx.jumpcut.synthesize import Synthesizer

    frames, _ = clip3
    still = frames[20].astype(np.float32) / 255
    synth = Synthesizer.load(adapt_steps=0)
    out = synth.transition([still] * 8, [still] * 8, 4)
    for o in out:  # A = B: every pixel is still, so ours is the (exact) crossfade, detail and all
        assert np.abs(o - still).mean() < 0.003
    moving = [np.roll(frames[20 + i], 2 * i, axis=1).astype(np.float32) / 255 for i in range(16)]
    out = Synthesizer.load(adapt_steps=0, still=0.0).transition(moving[:8], moving[8:], 4)
    fade = 0.5 * (moving[7] + moving[8])
    assert np.abs(out[2] - fade).mean() > 0.003  # the gate off: ours is not the crossfade
