"""Training (two stages, checkpoint + resume) and evaluation commands, tiny and fast."""

import json

import cv2
import numpy as np
import pytest

from vidfx.ops.weights import build_model, load_checkpoint
from vidfx.vsr import evaluate, train
from vidfx.vsr.data import DEFAULT_DATA, camera_clip, load_rgb
from vidfx.vsr.node import FAMILY, build_vsr


def load_weights(path):
    return build_model(path, FAMILY, build_vsr)


@pytest.fixture
def shared_data():
    """The development data (CI has it): without it a test fails."""
    assert (DEFAULT_DATA / "train_hr").is_dir(), f"shared data missing: {DEFAULT_DATA}"


needs_data = pytest.mark.usefixtures("shared_data")


@needs_data
def test_train_two_stages_and_resume(tmp_path):
    out = tmp_path / "run"
    common = [
        "--out",
        str(out),
        "--batch",
        "1",
        "--frames",
        "3",
        "--lr-crop",
        "12",
        "--workers",
        "0",
        "--val-minutes",
        "100",
        "--cache",
        str(tmp_path / "cache"),
    ]
    assert train.main(common + ["--fidelity-steps", "2", "--gan-steps", "0"]) == 0
    assert (out / "best_fidelity.pt").exists() and (out / "last.pt").exists()
    model, meta = load_weights(out / "best_fidelity.pt")
    assert model.cfg.scale == 4 and "val" in meta
    # resume: a longer stage 1, then a short GAN stage
    assert train.main(common + ["--fidelity-steps", "3", "--gan-steps", "2", "--resume"]) == 0
    ck = load_checkpoint(out / "last.pt")  # plain data: loads with weights_only=True
    assert ck["state"]["stage"] == 2 and ck["state"]["step"] == 2
    record = json.loads((out / "args.json").read_text())
    assert record["args"]["fidelity_steps"] == 3 and record["args"]["resume"] and "date" in record
    assert (out / "detail.pt").exists()
    # fine-tune with extra residual blocks grown on top of those weights
    grown = tmp_path / "grown"
    args = (
        ["--out", str(grown)]
        + common[2:]
        + [
            "--init",
            str(out / "best_fidelity.pt"),
            "--grow",
            "prop_blocks=1",
            "--fidelity-steps",
            "1",
            "--gan-steps",
            "0",
        ]
    )
    assert train.main(args) == 0
    model, _ = load_weights(grown / "best_fidelity.pt")
    assert model.cfg.prop_blocks == 1
    assert train.main(["--out", str(tmp_path / "bad"), "--grow", "prop_blocks=1"]) == 2


@needs_data
def test_evaluate_writes_json_rows(tmp_path):
    # a small made-up dataset (moving-camera clips of training photos; not Vid4)
    rng = np.random.default_rng(0)
    files = sorted((DEFAULT_DATA / "train_hr").glob("*.jpg"))[:2]
    for k, f in enumerate(files):
        clip = camera_clip(load_rgb(f), 4, 64, rng)
        d = tmp_path / "data" / f"clip{k}"
        d.mkdir(parents=True)
        for t, frame in enumerate(clip):
            cv2.imwrite(str(d / f"{t:04d}.png"), (frame[..., ::-1] * 255 + 0.5).astype(np.uint8))
    js = tmp_path / "rows.json"
    rc = evaluate.main(
        [
            "--dataset",
            str(tmp_path / "data"),
            "--rows",
            "bicubic,realesrgan,per-frame,fidelity",
            "--json",
            str(js),
            "--crops",
            str(tmp_path / "crops"),
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    rows = json.loads(js.read_text())
    methods = {r["method"] for r in rows}
    assert "bicubic" in methods and "ours (fidelity)" in methods and "ours per-frame (no prop, no attn)" in methods
    assert any(m.startswith("Real-ESRGAN") for m in methods)
    for r in rows:
        assert {"method", "clip", "psnr_y", "ssim_y", "warp_error"} <= set(r)
    assert {r["clip"] for r in rows} == {"clip0", "clip1", "average"}
    assert (tmp_path / "crops" / "clip0.png").exists()


def test_evaluate_missing_dataset(tmp_path):
    assert evaluate.main(["--dataset", str(tmp_path / "nothing")]) == 3
