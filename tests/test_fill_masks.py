"""Masks for the fill node (shapes, mask clips, refinement) and the random masks for training."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vidfx.core.errors import GraphError, ParamError
from vidfx.core.frame import ClipInfo
from vidfx.fill.maskgen import (
    ObjectShapes,
    free_form_mask,
    object_mask,
    object_track,
    training_mask,
)
from vidfx.fill.masks import check_mask_clip, mask_from_frame, parse_shapes, rasterize_shapes, refine_mask

CAMVID_TRAIN_LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid" / "trainannot"


def _disc(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return xx**2 + yy**2 <= radius**2


@pytest.fixture
def bank() -> ObjectShapes:
    tall = np.zeros((40, 16), dtype=bool)
    tall[2:38, 3:13] = True
    return ObjectShapes([_disc(12), tall])


# --- mask_from_frame


def test_mask_from_frame_alpha_luma_and_grey():
    rgba = torch.zeros(4, 2, 3)
    rgba[:3] = 1.0  # white colour, but the alpha decides
    rgba[3, 0, 0] = 0.75
    out = mask_from_frame(rgba)
    assert out.shape == (2, 3) and out.dtype == torch.float32
    assert out[0, 0] == pytest.approx(0.75) and out[1, 1] == 0.0

    rgb = torch.zeros(3, 2, 2)
    rgb[:, 0, 0] = 1.0
    rgb[1, 1, 1] = 1.0  # pure green: BT.601 luma 0.587
    out = mask_from_frame(rgb)
    assert out.shape == (2, 2)
    assert out[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert out[1, 1] == pytest.approx(0.587, abs=1e-3)
    assert out[0, 1] == 0.0

    opaque = torch.cat([rgb, torch.ones(1, 2, 2)])  # a matte in the RGB of an opaque RGBA file
    assert torch.allclose(mask_from_frame(opaque), mask_from_frame(rgb))

    grey = torch.full((1, 2, 2), 0.25)
    assert torch.equal(mask_from_frame(grey), torch.full((2, 2), 0.25))
    with pytest.raises(ValueError):
        mask_from_frame(torch.zeros(2, 2, 2))


# --- shapes


def test_box_interpolates_and_holds():
    (box,) = parse_shapes([{"type": "box", "keys": {"10": [0, 0, 10, 20], 30: [20, 40, 50, 60]}}], "fill")
    assert np.allclose(box.at(20), [[10, 20], [30, 20], [30, 40], [10, 40]])
    assert np.allclose(box.at(15), [[5, 10], [20, 10], [20, 30], [5, 30]])
    assert np.allclose(box.at(0), box.at(10)) and np.allclose(box.at(10), [[0, 0], [10, 0], [10, 20], [0, 20]])
    assert np.allclose(box.at(100), [[20, 40], [50, 40], [50, 60], [20, 60]])


def test_polygon_interpolates_three_keyframes():
    (poly,) = parse_shapes(
        [{"type": "polygon", "keys": {0: [[0, 0], [10, 0], [0, 10]], 4: [[4, 8], [14, 8], [4, 18]], 8: [[0, 0]] * 3}}],
        "fill",
    )
    assert poly.frames == (0, 4, 8)
    assert np.allclose(poly.at(1), [[1, 2], [11, 2], [1, 12]])
    assert np.allclose(poly.at(6), [[2, 4], [7, 4], [2, 9]])
    assert np.allclose(poly.at(-5), [[0, 0], [10, 0], [0, 10]])
    assert np.allclose(poly.at(9), [[0, 0]] * 3)


def test_rasterised_box_area_and_scale():
    shapes = parse_shapes([{"type": "box", "keys": {0: [10, 20, 29, 39]}}], "fill")
    full = rasterize_shapes(shapes, 0, 64, 48)
    assert full.shape == (48, 64) and full.dtype == np.float32
    assert set(np.unique(full)) == {0.0, 1.0}
    # vertices at pixel centres, boundary included: 20 x 20 pixels
    assert full.sum() == 400
    assert full[20:40, 10:30].all()
    half = rasterize_shapes(shapes, 0, 32, 24, scale=0.5)
    assert 90 <= half.sum() <= 121 and half[11, 7] == 1.0
    assert rasterize_shapes([], 0, 8, 8).sum() == 0


def test_rasterised_polygon_union():
    shapes = parse_shapes(
        [
            {"type": "polygon", "keys": {0: [[0, 0], [9, 0], [9, 9], [0, 9]]}},
            {"type": "box", "keys": {0: [20.0, 0.0, 29.0, 9.0]}},
        ],
        "fill",
    )
    assert rasterize_shapes(shapes, 5, 40, 20).sum() == 200


@pytest.mark.parametrize(
    "value, fragment",
    [
        ([{"type": "circle", "keys": {0: [0, 0, 1, 1]}}], "shape 0 has unknown type"),
        ([{"type": "box", "keys": {}}], "shape 0 needs 'keys'"),
        ([{"type": "box", "keys": {0: [0, 0, 5, 5]}}, {"type": "polygon", "keys": {0: [[0, 0], [1, 1]]}}], "shape 1"),
        ([{"type": "polygon", "keys": {0: [[0, 0], [1, 0], [1, 1]], 5: [[0, 0], [1, 0], [1, 1], [0, 1]]}}], "counts"),
        ([{"type": "box", "keys": {0: [0, 0, float("nan"), 5]}}], "finite"),
        ([{"type": "box", "keys": {0: [5, 0, 5, 5]}}], "x1 > x0"),
        ([{"type": "box", "keys": {"a": [0, 0, 5, 5]}}], "not a frame number"),
        ([{"type": "box", "keys": {0: [0, 0, 5]}}], "4 numbers"),
        ({"type": "box"}, "must be a list"),
    ],
)
def test_parse_errors(value, fragment):
    with pytest.raises(ParamError) as info:
        parse_shapes(value, "fill.shapes")
    message = str(info.value)
    assert message.startswith("fill.shapes") and fragment in message and "\n" not in message


# --- refine_mask


def test_refine_dilate_and_invert():
    mask = np.zeros((40, 40), dtype=np.float32)
    mask[15:25, 15:25] = 0.9
    mask[0, 0] = 0.4  # below the threshold
    hard, soft = refine_mask(mask)
    assert hard.dtype == bool and soft.dtype == np.float32
    assert hard.sum() == 100 and np.array_equal(soft, hard.astype(np.float32))
    grown, _ = refine_mask(mask, dilate=3)
    assert grown.sum() > 100 and grown[hard].all() and grown[12, 20] and not grown[11, 20]
    inverted, _ = refine_mask(mask, invert=True)
    assert np.array_equal(inverted, ~hard)


def test_refine_feather_outside_hard():
    mask = np.zeros((64, 64), dtype=np.float32)
    mask[28:36, 28:36] = 1.0
    hard, soft = refine_mask(mask, feather=8)
    assert hard.sum() == 64
    assert (soft[hard] == 1.0).all()
    assert soft[32, 37] > 0.5 and soft[32, 36 + 8] == 0.0 and soft[0, 0] == 0.0
    row = soft[32, 35:50]
    assert (np.diff(row) <= 0).all() and row[1] < 1.0
    assert soft.min() >= 0.0 and soft.max() <= 1.0
    empty_hard, empty_soft = refine_mask(np.zeros((8, 8), np.float32), feather=4)
    assert not empty_hard.any() and not empty_soft.any()


# --- check_mask_clip


def test_check_mask_clip():
    source = ClipInfo(width=854, height=480, fps=Fraction(25), num_frames=100)
    check_mask_clip(source, source.replace(channels=1), "fill")
    check_mask_clip(source, source.replace(num_frames=0), "fill")  # unknown length is not a mismatch
    with pytest.raises(GraphError, match=r"fill: the mask clip is 640x360 but the source is 854x480"):
        check_mask_clip(source, source.replace(width=640, height=360), "fill")
    with pytest.raises(GraphError, match=r"fill: .*99 frames.*100"):
        check_mask_clip(source, source.replace(num_frames=99), "fill")
    with pytest.raises(GraphError, match=r"fill: .*30000/1001.*25"):
        check_mask_clip(source, source.replace(fps=Fraction(30000, 1001)), "fill")


# --- maskgen


def test_free_form_deterministic_and_bounded():
    a = free_form_mask(96, 128, np.random.default_rng(3))
    b = free_form_mask(96, 128, np.random.default_rng(3))
    assert a.shape == (96, 128) and a.dtype == bool
    assert np.array_equal(a, b) and a.any() and not a.all()
    c = free_form_mask(96, 128, np.random.default_rng(4))
    assert not np.array_equal(a, c)


def test_object_mask_area(bank):
    h, w = 120, 160
    for seed in range(10):
        mask = object_mask(h, w, np.random.default_rng(seed), bank, area=(0.05, 0.1))
        assert mask.shape == (h, w) and mask.dtype == bool
        assert mask.mean() <= 0.1 * 1.15  # scaled to the target; clipping only removes pixels
    assert np.array_equal(
        object_mask(h, w, np.random.default_rng(1), bank), object_mask(h, w, np.random.default_rng(1), bank)
    )


def test_training_mask_bounds(bank):
    rng = np.random.default_rng(0)
    masks = [training_mask(64, 96, rng, bank) for _ in range(40)]
    assert all(m.shape == (64, 96) and m.mean() <= 0.5 for m in masks)
    assert sum(m.any() for m in masks) >= 38
    again = np.random.default_rng(0)
    assert np.array_equal(training_mask(64, 96, again, bank), masks[0])


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_object_track_static_and_moving(bank):
    h, w, length = 90, 160, 12
    static = object_track(h, w, length, np.random.default_rng(5), bank, moving=False)
    assert static.shape == (length, h, w) and static.dtype == bool
    assert static[0].any() and all(np.array_equal(static[0], f) for f in static)

    moving = object_track(h, w, length, np.random.default_rng(5), bank, moving=True)
    assert moving.shape == (length, h, w) and all(f.any() for f in moving)
    centres = np.array([_centroid(f) for f in moving])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert np.linalg.norm(centres[-1] - centres[0]) > 0.05 * w
    assert steps.max() < 0.1 * w  # smooth: no jumps
    assert np.array_equal(moving, object_track(h, w, length, np.random.default_rng(5), bank))
    # mostly inside: the visible area never drops far below the first frame's
    areas = moving.reshape(length, -1).sum(1)
    assert areas.min() > 0.5 * areas.max()


def test_object_track_long_clip_stays_in_frame(bank):
    track = object_track(60, 80, 80, np.random.default_rng(2), bank)
    assert all(f.any() for f in track)


def test_object_shapes_from_camvid():
    assert CAMVID_TRAIN_LABELS.is_dir(), f"development data missing: {CAMVID_TRAIN_LABELS}"
    shapes = ObjectShapes.from_camvid(CAMVID_TRAIN_LABELS, max_files=20)
    assert len(shapes) > 10
    assert all(m.dtype == bool and m.sum() >= 200 for m in shapes.masks)
    assert set(shapes.classes) <= {2, 5, 6, 7, 8, 9, 10} and 8 in shapes.classes
    mask = object_mask(360, 480, np.random.default_rng(0), shapes)
    assert mask.any() and mask.mean() <= 0.25 * 1.15


def test_object_shapes_rejects_empty_folder(tmp_path):
    from vidfx.core.errors import MediaError

    with pytest.raises(MediaError):
        ObjectShapes.from_camvid(tmp_path)


def test_overlapping_and_nested_shapes_add_up():
    shapes = parse_shapes(
        [
            {"type": "box", "keys": {0: [0, 0, 9, 9]}},
            {"type": "box", "keys": {0: [5, 5, 14, 14]}},  # overlaps the first
            {"type": "box", "keys": {0: [20, 0, 39, 19]}},
            {"type": "box", "keys": {0: [25, 5, 30, 10]}},  # inside the third
        ],
        "fill.shapes",
    )
    m = rasterize_shapes(shapes, 0, 40, 20)
    assert m[7, 7] == 1 and m[7, 27] == 1
    assert m.sum() == 100 + 100 - 25 + 400
