"""The fill node, its pipeline and the lazy generator, on small real and synthetic clips."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import vidfx
from vidfx.core.errors import GraphError, ModelError, ParamError
from vidfx.core.frame import ClipInfo, EndOfStream, Frame
from vidfx.core.node import SourceNode
from vidfx.diffusion.schedule import add_noise, ddim_sample
from vidfx.fill.model import LazyFill, LazyFillConfig, hole_tokens
from vidfx.fill.pipeline import STUDENT_WEIGHTS, TEACHER_WEIGHTS, FillPipeline, FillSettings, build_lazyfill
from vidfx.ops.weights import load_model


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture DIS can track, float32 (H, W, 3)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    big = cv2.resize(small, (w + 16, h + 16), interpolation=cv2.INTER_CUBIC)
    detail = cv2.GaussianBlur(rng.random((h + 16, w + 16, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip(0.7 * big + 0.6 * (detail - 0.5) + 0.15, 0, 1)[:h, :w]


def frames_of(clip: vidfx.Clip) -> torch.Tensor:
    """Every frame of a clip, (T, C, H, W)."""
    return torch.stack([f.data for f in clip])


def mask_clip(masks: np.ndarray, fps: float = 25) -> vidfx.Clip:
    """A grey mask clip from (T, H, W) 0/1 masks."""
    return vidfx.Clip.from_frames(np.repeat(masks[..., None], 3, axis=-1).astype(np.float32), fps=fps)


def test_shipped_weights_load_and_a_missing_file_is_a_model_error():
    model, meta = load_model(TEACHER_WEIGHTS, "fill", build_lazyfill)
    assert isinstance(model, LazyFill) and meta["steps"] >= 1
    student, student_meta = load_model(STUDENT_WEIGHTS, "fill", build_lazyfill)
    assert student_meta["steps"] == 1 and student_meta["method"] in ("dmd", "dmd2", "d2g")
    # the default is the distilled student; `steps: N` selects the teacher with N steps
    default, teacher = FillPipeline(FillSettings()), FillPipeline(FillSettings(steps=4))
    assert default.model is student and default.steps == 1
    assert teacher.model is model and teacher.steps == 4
    with pytest.raises(ModelError, match="not found"):
        FillPipeline(FillSettings(weights="/nonexistent/lazyfill.pt"))


def test_empty_mask_passes_frames_through_untouched():
    frames = np.stack([texture(48, 64, s) for s in range(5)])
    src = vidfx.Clip.from_frames(frames)
    out = frames_of(src.fill(mask_clip(np.zeros((5, 48, 64)))))
    ref = frames_of(src)
    assert torch.equal(out, ref)


def test_empty_mask_is_bit_exact_across_chunk_overlaps():
    frames = np.stack([texture(24, 32, s) for s in range(20)])
    src = vidfx.Clip.from_frames(frames)
    out = frames_of(src.fill(mask_clip(np.zeros((20, 24, 32))), chunk=8, overlap=6))
    assert torch.equal(out, frames_of(src))


class ShortMatte(SourceNode):
    """A grey matte that claims 10 frames but ends after 6 (a file cut short)."""

    type_name = "short_matte"

    def configure(self, inputs, device):
        return ClipInfo(width=32, height=24, fps=Fraction(25), num_frames=10, channels=1, time_base=Fraction(1, 25))

    def read(self, n):
        if n >= 6:
            raise EndOfStream(6)
        return Frame(torch.zeros(1, 24, 32), index=n, pts=n)


def test_a_mask_clip_that_ends_early_is_an_error():
    src = vidfx.Clip.from_frames(np.stack([texture(24, 32, s) for s in range(10)]))
    with pytest.raises(GraphError, match="mask clip has no frame 6"):
        frames_of(src.fill(vidfx.Clip(ShortMatte()), chunk=4, overlap=1))


def test_mask_clip_of_another_size_length_or_rate_is_an_error():
    src = vidfx.Clip.from_frames(np.stack([texture(48, 64)] * 4))
    with pytest.raises(GraphError, match="32x48 but the source is 64x48"):
        frames_of(src.fill(mask_clip(np.zeros((4, 48, 32)))))
    with pytest.raises(GraphError, match="frame"):
        frames_of(src.fill(mask_clip(np.zeros((6, 48, 64)))))
    with pytest.raises(GraphError, match="rate|fps"):
        frames_of(src.fill(mask_clip(np.zeros((4, 48, 64)), fps=30)))
    with pytest.raises(GraphError, match="nothing to remove"):
        frames_of(src.fill())
    with pytest.raises(ParamError, match="shape 0"):
        src.fill(shapes=[{"type": "box", "keys": {0: [10, 10, 5, 20]}}])


def test_propagation_recovers_background_another_frame_shows():
    """A pan over a texture with a hole that moves with the frame: the background under the
    hole is seen in other frames and comes back (nearly) exactly."""
    world = texture(64, 160, seed=3)
    t_count, w = 12, 96
    truth = np.stack([world[:, 3 * t : 3 * t + w] for t in range(t_count)])
    masks = np.zeros((t_count, 64, w), np.float32)
    masks[:, 20:44, 36:60] = 1
    clip = vidfx.Clip.from_frames(truth).fill(mask_clip(masks), dilate=0, feather=0, window=12)
    out = frames_of(clip).permute(0, 2, 3, 1).numpy()
    hole = masks.astype(bool)
    mid = slice(3, 9)  # frames whose hole is seen both ways
    err = out[mid][hole[mid]] - truth[mid][hole[mid]]
    psnr = -10 * np.log10(np.mean(err**2))
    assert psnr > 32, psnr
    assert np.array_equal(out[~hole], truth[~hole])  # outside the mask: untouched


def test_static_region_does_not_shimmer_across_chunk_borders():
    """Static camera, static mask: nothing is ever revealed, so the region is generated once
    per chunk from the fixed noise; consecutive frames (chunk borders included) agree."""
    still = texture(48, 64, seed=5)
    rng = np.random.default_rng(0)
    frames = np.stack([np.clip(still + rng.normal(0, 0.004, still.shape), 0, 1) for _ in range(20)]).astype(np.float32)
    masks = np.zeros((20, 48, 64), np.float32)
    masks[:, 14:34, 20:44] = 1
    clip = vidfx.Clip.from_frames(frames).fill(mask_clip(masks), chunk=8, overlap=2, feather=0, dilate=0)
    out = frames_of(clip).permute(0, 2, 3, 1).numpy()
    hole = masks[0].astype(bool)
    steps = [np.abs(out[t + 1][hole] - out[t][hole]).mean() for t in range(19)]
    truth_steps = np.abs(frames[1:] - frames[:-1]).mean()
    assert max(steps) < truth_steps * 2, (steps, truth_steps)  # no larger than the footage's own noise
    filled = out[:, hole]
    assert filled.std(axis=0).mean() < 0.01


def test_shapes_with_keyframes_remove_a_moving_box():
    frames = np.stack([texture(48, 64, s) for s in range(6)])
    frames[:, :, :, 0] = np.clip(frames[:, :, :, 0], 0, 0.5)
    for t in range(6):  # a pure red square travelling right, 4 px per frame
        frames[t, 10:22, 8 + 4 * t : 20 + 4 * t] = [1.0, 0.0, 0.0]
    shapes = [{"type": "box", "keys": {0: [8, 10, 19, 21], 5: [28, 10, 39, 21]}}]
    out = frames_of(vidfx.Clip.from_frames(frames).fill(shapes=shapes, dilate=1, feather=0)).permute(0, 2, 3, 1).numpy()
    for t in range(6):
        square = out[t, 10:22, 8 + 4 * t : 20 + 4 * t]
        assert square[..., 0].max() < 0.8  # no red left


def test_decoder_runs_only_on_hole_tokens():
    model = LazyFill(LazyFillConfig(dim=32, heads=2, dec_layers=1, ctx_layers=1, enc_channels=(16, 32))).eval()
    seen = []
    model.decoder.embed_noisy.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    coarse = torch.rand(1, 3, 64, 96)
    hole = torch.zeros(1, 1, 64, 96)
    hole[..., 10:20, 30:45] = 1  # rows 1-2, columns 3-5 of the 8x12 token grid
    out = model.generate(coarse, hole, torch.randn(1, 3, 64, 96), steps=3)
    assert seen == [6, 6, 6]  # 2 x 3 hole tokens, once per step
    assert int(hole_tokens(hole, 8).sum()) == 6
    tokens = hole_tokens(hole, 8).view(8, 12)
    keep = ~tokens.repeat_interleave(8, 0).repeat_interleave(8, 1)
    assert torch.equal(out[0][:, keep], coarse[0][:, keep])  # untouched outside the hole tokens
    seen.clear()
    model.generate(coarse, hole, torch.randn(1, 3, 64, 96), steps=1, lazy=False)
    assert seen == [96]


def test_sampler_is_deterministic_and_schedule_ends_are_clean():
    x0 = torch.randn(2, 5, 12)
    assert torch.allclose(add_noise(x0, torch.zeros(2), torch.randn_like(x0)), x0, atol=1e-3)
    noise = torch.randn(2, 5, 12)
    target = torch.full_like(noise, 0.25)
    out1 = ddim_sample(lambda x, t: target, noise, steps=4)
    out2 = ddim_sample(lambda x, t: target, noise.clone(), steps=4)
    assert torch.equal(out1, out2) and torch.allclose(out1, target)
    with pytest.raises(ValueError):
        ddim_sample(lambda x, t: x, noise, steps=0)
