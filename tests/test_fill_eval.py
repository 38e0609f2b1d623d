"""`vidfx eval fill`: masked metrics, the Fréchet distance and the JSON rows of a short real run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vidfx.fill import evaluate as fe
from vidfx.ops.features import frechet_distance, patch_features

CLIP = fe.DATA_ROOT / "clips" / "bear.mp4"


def _texture(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture (flow-trackable), (H, W, 3) float32 0..1."""
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.5)
    return (img - img.min()) / (img.max() - img.min())


def _holes(t: int, h: int = 48, w: int = 64) -> np.ndarray:
    holes = np.zeros((t, h, w), bool)
    holes[:, 16:32, 20:44] = True
    return holes


def test_masked_psnr_identical_is_capped_and_noise_gives_expected_value():
    truth = np.stack([_texture(seed=i) for i in range(3)])
    holes = _holes(3)
    assert fe.masked_psnr(truth, truth, holes) == fe.PSNR_CAP
    # +-0.1 inside the hole only (sign alternates), outside garbage that must be ignored.
    out = truth.copy()
    signs = np.where(np.random.default_rng(1).random(truth.shape) < 0.5, -1.0, 1.0).astype(np.float32)
    out[holes] += 0.1 * signs[holes]
    out[~holes] = 1.0 - out[~holes]
    assert fe.masked_psnr(out, truth, holes) == pytest.approx(20.0, abs=1e-3)  # 10 log10(1 / 0.01)
    assert math.isnan(fe.masked_psnr(out, truth, np.zeros_like(holes)))


def test_masked_ssim_is_one_for_identical_and_lower_for_noise():
    truth = np.stack([_texture(seed=i) for i in range(2)])
    holes = _holes(2)
    assert fe.masked_ssim(truth, truth, holes) == pytest.approx(1.0, abs=1e-5)
    noisy = np.clip(truth + np.random.default_rng(0).normal(0, 0.2, truth.shape), 0, 1).astype(np.float32)
    noisy = np.where(holes[..., None], noisy, truth)
    assert fe.masked_ssim(noisy, truth, holes) < 0.8


def test_masked_ssim_on_crop_equals_whole_frame():
    import kornia
    import torch

    truth = _texture(seed=2)[None]
    out = np.clip(truth + np.random.default_rng(3).normal(0, 0.05, truth.shape), 0, 1).astype(np.float32)
    holes = _holes(1)
    t = lambda x: torch.from_numpy(x[0]).permute(2, 0, 1)[None]
    full = kornia.metrics.ssim(t(out), t(truth), 11, max_val=1.0)[0].mean(0).numpy()
    assert fe.masked_ssim(out, truth, holes) == pytest.approx(float(full[holes[0]].mean()), abs=1e-5)


def test_warp_error_zero_for_static_output_and_positive_for_flicker():
    frame = _texture(seed=4)
    truth = np.stack([frame] * 5)
    holes = _holes(5)
    assert fe.warp_error(truth, truth, holes) == pytest.approx(0.0, abs=1e-4)
    flicker = truth.copy()
    flicker[1::2][holes[1::2]] = np.clip(flicker[1::2][holes[1::2]] + 0.2, 0, 1)
    err = fe.warp_error(flicker, truth, holes)
    assert err > 5.0  # x100: about 20 where the texture is below 0.8
    # The flow is reused when given, with the same result.
    assert fe.warp_error(flicker, truth, holes, fe.truth_flows(truth)) == pytest.approx(err)


def test_frechet_distance_zero_for_same_set_and_grows_with_mean_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 96))  # fewer samples than dimensions + 1: needs the ridge
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    d1 = frechet_distance(a, a + 0.5)
    d2 = frechet_distance(a, a + 1.0)
    assert d1 == pytest.approx(96 * 0.25, rel=1e-6)
    assert d2 == pytest.approx(96 * 1.0, rel=1e-6)
    assert frechet_distance(a, rng.normal(size=(50, 96))) > 0


def test_patch_features_shape_and_sensitivity():
    import torch

    g = torch.Generator().manual_seed(0)
    patches = torch.rand(4, 3, 64, 64, generator=g)
    f = patch_features(patches)
    assert f.shape == (4, 96) and np.isfinite(f).all()
    assert np.allclose(patch_features(patches), f)
    flat = patch_features(torch.full((4, 3, 64, 64), 0.5))
    assert np.abs(flat - f).max() > 1e-3
    assert patch_features(torch.rand(2, 3, 48, 48, generator=g)).shape == (2, 96)  # resized to 64


def test_patch_boxes_are_square_inside_the_frame():
    holes = np.zeros((2, 40, 60), bool)
    holes[0, 0:10, 50:60] = True  # in a corner: shifted inside
    boxes = fe.patch_boxes(holes)
    assert len(boxes) == 1
    t, y0, y1, x0, x1 = boxes[0]
    assert t == 0 and y1 - y0 == x1 - x0 == 15 and 0 <= y0 and y1 <= 40 and 0 <= x0 and x1 <= 60
    assert fe.crop_patches(np.zeros((2, 40, 60, 3), np.float32), boxes).shape == (1, 3, 64, 64)


def test_clip_seed_is_stable():
    assert fe.clip_seed("bear", 0) == fe.clip_seed("bear", 0)
    assert fe.clip_seed("bear", 0) != fe.clip_seed("apple", 0)
    assert fe.clip_seed("bear", 0) != fe.clip_seed("bear", 1)


def test_main_json_rows(tmp_path: Path, capsys):
    assert CLIP.exists(), f"development data missing: {CLIP}"
    out = tmp_path / "rows.json"
    args = [str(CLIP), "--frames", "6", "--width", "320", "--methods", "telea", "ns", "--shape-files", "10"]
    assert fe.main([*args, "--regime", "moving", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    keys = {"method", "regime", "clip", "psnr_masked", "ssim_masked", "warp_error", "fd", "seconds_per_frame"}
    assert all(set(r) == keys for r in rows)
    assert {(r["method"], r["clip"]) for r in rows} == {(m, c) for m in ("telea", "ns") for c in ("bear", "average")}
    assert all(r["regime"] == "moving" for r in rows)
    for r in rows:
        assert 5 < r["psnr_masked"] < 60 and 0 < r["ssim_masked"] < 1
        assert r["warp_error"] >= 0 and r["fd"] >= 0 and r["seconds_per_frame"] > 0
    # One clip: the average row repeats it.
    by = {(r["method"], r["clip"]): r for r in rows}
    assert by[("telea", "average")]["psnr_masked"] == pytest.approx(by[("telea", "bear")]["psnr_masked"])
    assert "| bear | telea |" in capsys.readouterr().out
    assert not list(tmp_path.glob(".rows.json.*"))  # no temporary file left


def test_main_rejects_unknown_method(capsys):
    assert fe.main([str(CLIP), "--methods", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_evaluate_rows_with_stand_in_method(monkeypatch):
    # Stand-in for `ours` (the real one is pipeline.fill_clip): the per-frame mean colour of the known pixels.
    def mean_fill(frames, holes):
        out = frames.copy()
        for f, h in zip(out, holes):
            f[h] = f[~h].mean(0)
        return out

    monkeypatch.setitem(fe.RUNNERS, "ours", mean_fill)
    cases = []
    for i, regime in enumerate(("moving", "moving", "static")):
        truth = np.stack([np.roll(_texture(seed=10 + i), 2 * t, axis=1) for t in range(4)])
        cases.append(fe.Case(f"c{i}", regime, truth, _holes(4)))
    rows = fe.evaluate(cases, ["telea", "ours"])
    assert [(r["regime"], r["method"], r["clip"]) for r in rows] == [
        ("moving", "telea", "c0"),
        ("moving", "telea", "c1"),
        ("moving", "telea", "average"),
        ("moving", "ours", "c0"),
        ("moving", "ours", "c1"),
        ("moving", "ours", "average"),
        ("static", "telea", "c2"),
        ("static", "telea", "average"),
        ("static", "ours", "c2"),
        ("static", "ours", "average"),
    ]
    by = {(r["method"], r["clip"]): r for r in rows if r["regime"] == "moving"}
    avg = by[("ours", "average")]
    assert avg["psnr_masked"] == pytest.approx(
        (by[("ours", "c0")]["psnr_masked"] + by[("ours", "c1")]["psnr_masked"]) / 2
    )
    assert all(r["fd"] is not None and r["fd"] >= 0 for r in rows)
    assert "| average | ours |" in fe.format_table(rows)


def test_generator_rows_carry_their_steps(tmp_path: Path):
    """The distillation table's rows: the shipped model at N steps and a student file."""
    from vidfx.fill.pipeline import TEACHER_WEIGHTS

    assert CLIP.exists(), f"development data missing: {CLIP}"
    out = tmp_path / "rows.json"
    args = [str(CLIP), "--frames", "3", "--width", "160", "--regime", "static", "--shape-files", "10"]
    args += ["--methods", "teacher-2", "--student", f"copy={TEACHER_WEIGHTS}", "--json", str(out)]
    assert fe.main(args) == 0
    rows = json.loads(out.read_text())
    assert {(r["method"], r["steps"]) for r in rows} == {("teacher-2", 2), ("copy", 1)}
    assert fe.main([*args[:-2], "--student", "bad"]) == 2
