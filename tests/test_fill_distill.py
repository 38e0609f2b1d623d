"""The fill generator plugged into the distillation trainers (a tiny random model on real crops)."""

from __future__ import annotations

import numpy as np
import torch

from vidfx.diffusion.d2g import D2GConfig, D2GTrainer
from vidfx.diffusion.dmd import DMD2Config, DMD2Trainer, DMDConfig, DMDTrainer
from vidfx.diffusion.task import PairSet
from vidfx.fill.data import read_rgb
from vidfx.fill.distill import FillDistillTask, better
from vidfx.fill.maskgen import ObjectShapes
from vidfx.fill.model import LazyFill, LazyFillConfig, hole_tokens
from vidfx.fill.train import validate_quality, validation_set


def tiny_task(shared_clips) -> FillDistillTask:
    torch.manual_seed(0)
    cfg = LazyFillConfig(dim=32, heads=2, dec_layers=1, ctx_layers=1, enc_channels=(16, 32))
    teacher = LazyFill(cfg)
    for p in teacher.decoder.head.parameters():  # a fresh model predicts 0; make the teacher say something
        torch.nn.init.normal_(p, std=0.05)
    data = shared_clips.parent
    pictures = [read_rgb(p) for p in sorted((data / "camvid" / "train").glob("*.jpg"))[:4]]
    shapes = ObjectShapes.from_camvid(data / "camvid" / "trainannot", max_files=10)
    return FillDistillTask(teacher, pictures, shapes, crop=32)


def test_teacher_predicts_only_inside_hole_tokens(shared_clips):
    task = tiny_task(shared_clips)
    cond = task.sample_cond(3)
    assert cond["coarse"].shape == (3, 3, 32, 32) and cond["hole"].shape == (3, 1, 32, 32)
    x0 = task.teacher(torch.randn(3, *task.shape), torch.full((3,), 0.5), cond)
    outside = ~hole_tokens(cond["hole"], 8).view(3, 1, 4, 4).repeat_interleave(8, 2).repeat_interleave(8, 3)
    assert torch.all(x0[outside.expand_as(x0)] == 0) and x0.abs().sum() > 0
    real = task.sample_real(3, cond)
    assert torch.all(real[(cond["hole"] == 0).expand_as(real)] == 0)
    fake = task.make_fake_score()
    out, feats = fake(torch.randn(3, *task.shape), torch.full((3,), 0.5), cond, features=True)
    assert out.shape == (3, 3, 32, 32) and feats.shape == (3, 32)


def test_each_trainer_updates_the_fill_student(shared_clips):
    task = tiny_task(shared_clips)
    pairs = PairSet.build(task, count=8, steps=2, chunk=4)
    assert pairs.x0.abs().sum() > 0
    trainers = [
        DMDTrainer(task, pairs, DMDConfig(batch=2)),
        DMD2Trainer(task, DMD2Config(batch=2, fake_updates=1)),
        D2GTrainer(task, pairs, D2GConfig(batch=2)),
    ]
    for trainer in trainers:
        before = [p.detach().clone() for p in trainer.student.parameters()]
        losses = trainer.step()
        assert all(np.isfinite(v) for v in losses.values()), losses
        after = list(trainer.student.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)), type(trainer).__name__


def test_student_selection_prefers_realism_above_the_psnr_floor():
    floor = 19.0
    assert better({"psnr": 19.5, "fd": 1.0}, {}, floor)
    assert better({"psnr": 19.1, "fd": 1.0}, {"psnr": 19.8, "fd": 1.5}, floor)  # lower FD, both above the floor
    assert not better({"psnr": 18.9, "fd": 0.5}, {"psnr": 19.1, "fd": 1.5}, floor)  # under the floor loses
    assert better({"psnr": 18.9, "fd": 3.0}, {"psnr": 18.5, "fd": 0.5}, floor)  # both under: PSNR decides


def test_validation_scores_a_student_and_its_sampler(shared_clips):
    task = tiny_task(shared_clips)
    data = shared_clips.parent
    pictures = [read_rgb(p) for p in sorted((data / "camvid" / "val").glob("*.jpg"))[:3]]
    val = validation_set(pictures, ObjectShapes.from_camvid(data / "camvid" / "valannot", max_files=10), 96, 2)
    assert len(val) == 6
    model = task.base
    one = validate_quality(model, val, 1, torch.device("cpu"))
    again = validate_quality(model, val, 1, torch.device("cpu"))
    four = validate_quality(model, val, 4, torch.device("cpu"), renoise=True)
    assert one == again  # fixed holes and noise
    assert np.isfinite(one["psnr"]) and one["fd"] >= 0 and four != one
