"""`vidfx train fill` on a tiny data folder: it trains, writes weights, and resumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from vidfx.fill.data import EVAL_SCENES, training_pictures
from vidfx.fill.distill import main as distill_main
from vidfx.fill.train import main
from vidfx.ops.weights import read_weights


def tiny_data(root: Path, src: Path) -> Path:
    """A data folder with a few real pictures and labels of each kind training reads
    (copied from ``src``, the development data)."""
    for sub in ("train_hr",):
        (root / sub).mkdir(parents=True)
        for f in sorted((src / sub).glob("*.jpg"))[:2]:
            shutil.copy(f, root / sub / f.name)
    for split in ("train", "val"):
        (root / "camvid" / split).mkdir(parents=True)
        (root / "camvid" / f"{split}annot").mkdir(parents=True)
        for f in sorted((src / "camvid" / split).glob("*.jpg"))[:3]:
            shutil.copy(f, root / "camvid" / split / f.name)
            label = src / "camvid" / f"{split}annot" / (f.stem + ".png")
            shutil.copy(label, root / "camvid" / f"{split}annot" / label.name)
    (root / "scenes").mkdir()
    shutil.copy(src / "scenes" / "mmtracking_demo.mp4", root / "scenes")
    for name in EVAL_SCENES:  # the evaluation's tripod shots: must be left out
        shutil.copy(src / "scenes" / name, root / "scenes")
    shutil.copytree(src / "clips", root / "clips")  # the evaluation's moving clips: never read
    return root


def test_training_reads_no_evaluation_clip(tmp_path, shared_clips):
    data = tiny_data(tmp_path / "data", shared_clips.parent)
    pictures = training_pictures(data, scenes_every=1, scenes_limit=3)
    assert len(pictures) == 2 + 3 + 3  # train_hr, CamVid train, 3 frames of the training scene only
    sizes = {p.shape[:2] for p in pictures[5:]}
    assert sizes == {(360, 640)}  # mmtracking_demo (1920x1080, shrunk), none of the evaluation clips
    assert all(p.dtype == np.uint8 and p.shape[2] == 3 for p in pictures)


def test_train_writes_weights_and_resumes(tmp_path, shared_clips):
    data = tiny_data(tmp_path / "data", shared_clips.parent)
    out = tmp_path / "run"
    args = [
        "--data",
        str(data),
        "--out",
        str(out),
        "--batch",
        "2",
        "--crop",
        "64",
        "--val-steps",
        "1",
        "--threads",
        "1",
    ]
    assert main([*args, "--iters", "3"]) == 0
    weights = read_weights(out / "best.pt", "fill")
    assert weights.meta["steps"] == 1 and weights.meta["step"] == 3
    first = torch.load(out / "last.pt", weights_only=True)
    assert first["step"] == 3
    assert main([*args, "--iters", "5", "--resume"]) == 0
    second = torch.load(out / "last.pt", weights_only=True)
    assert second["step"] == 5
    assert "resumed at step 3" in (out / "log.txt").read_text()


def test_distill_writes_a_student_and_resumes(tmp_path, shared_clips):
    data = tiny_data(tmp_path / "data", shared_clips.parent)
    out = tmp_path / "distill"
    args = ["--method", "dmd", "--data", str(data), "--out", str(out), "--batch", "2", "--crop", "32"]
    args += ["--pairs", "4", "--teacher-steps", "2", "--threads", "1"]
    assert distill_main([*args, "--iters", "2"]) == 0
    student = read_weights(out / "best.pt", "fill")
    assert student.meta["method"] == "dmd" and student.meta["steps"] == 1
    assert torch.load(out / "pairs.pt", weights_only=True)["done"] == 4
    assert distill_main([*args, "--iters", "3", "--resume"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 3
