"""The translate evaluation harness on real data: domain splits, the Reinhard baseline, edge maps,
the evaluation rows and the ``vidfx eval translate`` command."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vidfx.ops.colour import grey_u8
from vidfx.ops.temporal import warp_error
from vidfx.translate import evaluate as te
from vidfx.translate.data import (
    DAY_SEQUENCES,
    DUSK_SEQUENCE,
    SELECT_EVERY,
    domain_files,
    eval_day_files,
    read_frames,
    read_rgb,
    reference_dusk_files,
    sequence_of,
)
from vidfx.translate.edges import edge_map, edge_maps
from vidfx.translate.reinhard import LabStats, reinhard_transfer

PIPELINE = "vidfx.translate.pipeline"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread (the test machine is shared with other jobs); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def data(shared_clips: Path) -> Path:
    """The shared data folder (the parent of the development clips)."""
    root = shared_clips.parent
    assert (root / "camvid" / "train").is_dir(), f"development data missing: {root / 'camvid'}"
    return root


# ---------------------------------------------------------------- data


def test_domain_split_is_disjoint_and_covers_only_train(data: Path):
    train_dir = data / "camvid" / "train"
    for domain, sequences in (("day", DAY_SEQUENCES), ("dusk", (DUSK_SEQUENCE,))):
        train, select = domain_files(data, domain, "train"), domain_files(data, domain, "select")
        assert train and select and not set(train) & set(select)
        everything = {p for p in train_dir.glob("*.jpg") if sequence_of(p) in sequences}
        assert set(train) | set(select) == everything
        assert all(p.parent == train_dir for p in train + select)
        for seq in sequences:
            names = sorted(p.name for p in everything if sequence_of(p) == seq)
            assert sorted(p.name for p in select if sequence_of(p) == seq) == names[::SELECT_EVERY]
    assert len(domain_files(data, "dusk", "train")) + len(domain_files(data, "dusk", "select")) == 62
    assert len(domain_files(data, "day", "select")) == 17 + 34  # 0006R0 101 frames, 0016E5 204


def test_evaluation_files_are_val_day_and_test_dusk(data: Path):
    pairs = eval_day_files(data)
    assert len(pairs) == 101
    for image, label in pairs:
        assert image.parent.name == "val" and label.parent.name == "valannot" and label.stem == image.stem
        assert sequence_of(image) in DAY_SEQUENCES and label.is_file()
    reference = reference_dusk_files(data)
    assert len(reference) == 62
    assert all(p.parent.name == "test" and sequence_of(p) == DUSK_SEQUENCE for p in reference)
    with pytest.raises(ValueError, match="domain"):
        domain_files(data, "night", "train")
    with pytest.raises(FileNotFoundError):
        domain_files(data / "nowhere", "day", "train")


# ---------------------------------------------------------------- Reinhard


def test_reinhard_moves_lab_mean_and_std_to_the_target(data: Path):
    select = domain_files(data, "day", "select")
    image = read_rgb(select[0]).astype(np.float32) / 255
    own = LabStats.of([image])
    # a target inside the gamut: the transfer lands on it up to rounding
    target = LabStats.of([read_rgb(select[10])])
    out = reinhard_transfer(image, None, target)
    assert out.dtype == np.float32 and out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    moved = LabStats.of([out])
    assert np.abs(own.mean - target.mean).max() > 5
    np.testing.assert_allclose(moved.mean, target.mean, atol=0.15)
    np.testing.assert_allclose(moved.std, target.std, atol=0.2)
    # source=None is the picture's own statistics; uint8 and float pictures pool the same
    np.testing.assert_allclose(reinhard_transfer(image, own, target), out, atol=1e-5)
    np.testing.assert_allclose(LabStats.of([read_rgb(select[0])]).mean, own.mean, atol=1e-4)
    # the dusk target (darker than the gamut allows for every pixel): most of the way there
    dusk = LabStats.of([read_rgb(p) for p in domain_files(data, "dusk", "select")])
    to_dusk = LabStats.of([reinhard_transfer(image, None, dusk)])
    assert np.abs(to_dusk.mean - dusk.mean).max() < 0.1 * np.abs(own.mean - dusk.mean).max()


# ---------------------------------------------------------------- edges


def test_edge_map_shape_range_determinism_and_real_edges(data: Path):
    image = read_rgb(domain_files(data, "day", "select")[0]).astype(np.float32) / 255
    edges = edge_map(image)
    assert edges.shape == (*image.shape[:2], 1) and edges.dtype == np.float32
    assert edges.min() >= 0 and edges.max() == 1
    np.testing.assert_array_equal(edge_map(image.copy()), edges)
    # it fires where the picture has strong gradients and stays quiet where it is smooth
    grey = grey_u8(image).astype(np.float32)
    magnitude = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    strong = magnitude >= np.quantile(magnitude, 0.98)
    flat = magnitude <= np.quantile(magnitude, 0.5)
    assert edges[..., 0][strong].mean() > 0.5 and edges[..., 0][flat].mean() < 0.05
    # a vertical step: the edge map is 1 along the step, 0 far from it; a flat picture has none
    step = np.zeros((40, 60, 3), np.float32)
    step[:, 30:] = 0.8
    e = edge_map(step)[..., 0]
    assert e[5:-5, 28:32].max(1).min() > 0.99 and e[:, :20].max() == 0 and e[:, 40:].max() == 0
    assert edge_map(np.full((40, 60, 3), 0.5, np.float32)).max() == 0
    assert edge_maps(np.stack([step, step])).shape == (2, 40, 60, 1)


# ---------------------------------------------------------------- evaluation


def test_tiles_cover_the_frame_on_a_regular_grid():
    boxes = te.tile_boxes(360, 480)
    assert len(boxes) == 15
    assert {x for _, x in boxes} == {0, 96, 192, 288, 384} and {y for y, _ in boxes} == {0, 132, 264}
    with pytest.raises(ValueError):
        te.tile_boxes(64, 480)
    assert te.spaced(list(range(10)), 3) == [0, 4, 9] and te.spaced([1, 2], None) == [1, 2]


def test_whole_frame_warp_error_of_a_static_clip_is_zero(data: Path):
    frame = read_frames(domain_files(data, "day", "select")[:1])[0, :96, :128]
    clip = np.stack([frame] * 3)
    assert warp_error(clip, clip, np.ones(clip.shape[:3], bool)) == pytest.approx(0.0, abs=1e-4)


def test_evaluate_identity_and_reinhard_on_a_few_frames(data: Path):
    methods = ["identity", "reinhard"]
    rows = te.evaluate(
        methods, te.make_runners(methods, data), data, val_frames=3, reference_frames=3, clip_frames=3, threads=1
    )
    assert [r["method"] for r in rows] == methods
    for r in rows:
        assert set(r) == set(te.COLUMNS)
        for k in te.COLUMNS[1:]:
            assert isinstance(r[k], float) and np.isfinite(r[k]), (r["method"], k)
        assert r["fd"] > 0 and 0 < r["miou"] <= 100 and r["warp_error"] >= 0 and r["seconds_per_frame"] >= 0
    identity, reinhard = rows
    assert reinhard["fd"] != pytest.approx(identity["fd"], rel=1e-3)


def test_unknown_or_missing_methods_are_one_line_value_errors(monkeypatch, tmp_path: Path, data: Path):
    with pytest.raises(ValueError, match="unknown method 'bogus'") as info:
        te.make_runners(["bogus"], data)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unknown method"):
        te.evaluate(["bogus"], {"identity": te.run_identity}, data)
    # the model's module cannot be imported
    monkeypatch.setitem(sys.modules, PIPELINE, None)
    for method in ("ours", "scratch"):
        with pytest.raises(ValueError, match=f"method '{method}' is not available") as info:
            te.make_runners([method], data)
        assert "\n" not in str(info.value)
    assert te.available_methods() == ["identity", "reinhard"]
    assert te.main(["--methods", "ours", "--data", str(data)]) == 2
    # the module is there but its weights file is not
    fake = types.ModuleType(PIPELINE)
    fake.PRETRAINED_WEIGHTS = tmp_path / "missing.pt"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PIPELINE, fake)
    with pytest.raises(ValueError, match="missing.pt not found") as info:
        te.make_runners(["ours"], data)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="has no SCRATCH_WEIGHTS"):
        te.make_runners(["scratch"], data)


def test_model_runner_uses_one_pipeline_per_still_and_one_per_clip(monkeypatch, tmp_path: Path):
    weights = tmp_path / "day2dusk.pt"
    weights.write_bytes(b"stand-in")
    made: list[dict] = []

    class Settings:
        def __init__(self, weights: str = ""):
            self.weights = weights

    class Pipeline:
        def __init__(self, settings: Settings):
            self.record = {"weights": settings.weights, "runs": []}
            made.append(self.record)

        def run(self, frames: np.ndarray) -> np.ndarray:
            self.record["runs"].append(len(frames))
            return frames * 0.5

    fake = types.ModuleType(PIPELINE)
    fake.PRETRAINED_WEIGHTS = weights  # type: ignore[attr-defined]
    fake.TranslatePipeline = Pipeline  # type: ignore[attr-defined]
    fake.TranslateSettings = Settings  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PIPELINE, fake)
    assert "ours" in te.available_methods()
    runner = te.make_runners(["ours"])["ours"]
    frames = np.full((3, 8, 8, 3), 0.6, np.float32)
    np.testing.assert_allclose(runner(frames, False), frames * 0.5)
    assert made == [{"weights": str(weights), "runs": [1]}] * 3
    made.clear()
    np.testing.assert_allclose(runner(frames, True), frames * 0.5)
    assert made == [{"weights": str(weights), "runs": [3]}]


def test_cli_writes_the_rows_as_json(tmp_path: Path, data: Path, capsys):
    from vidfx.cli import main as vidfx_main

    out = tmp_path / "rows.json"
    args = ["eval", "translate", "--methods", "identity", "--json", str(out), "--threads", "1", "--data", str(data)]
    args += ["--val-frames", "2", "--reference-frames", "2", "--frames", "2"]
    assert vidfx_main(args) == 0
    rows = json.loads(out.read_text())
    assert [r["method"] for r in rows] == ["identity"]
    assert set(rows[0]) == {"method", "fd", "miou", "warp_error", "seconds_per_frame"}
    assert "| identity |" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name != "rows.json"]  # no temporary file left
