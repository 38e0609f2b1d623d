"""The translate pipeline and node: full-resolution detail kept, flow-guided temporal smoothing,
chunks, alpha, and the shipped day -> dusk model on a real CamVid val frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import vidfx
from vidfx.core.errors import ParamError
from vidfx.fill.data import read_rgb
from vidfx.fill.model import LazyFillConfig
from vidfx.ops.weights import save_weights
from vidfx.translate.model import TranslateConfig, TranslateNet
from vidfx.translate.pipeline import DEFAULT_WEIGHTS, PRETRAINED_WEIGHTS, TranslatePipeline, TranslateSettings

TINY = LazyFillConfig(dim=32, heads=2, dec_layers=1, ctx_layers=1, enc_channels=(16, 32))


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A small random translate model whose change depends on the picture."""
    torch.manual_seed(0)
    net = TranslateNet(TranslateConfig(backbone=TINY, pretrained=False))
    for p in net.backbone.decoder.head.parameters():
        nn.init.normal_(p, std=0.02)
    path = tmp_path_factory.mktemp("translate") / "tiny.pt"
    save_weights(path, "translate", net, net.cfg.to_dict(), {"work_size": 64, "task": "day2dusk"})
    return str(path)


def moving_texture(t: int, h: int = 72, w: int = 96, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A smooth texture drifting right 2 px per frame, with optional per-frame noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for k in range(t):
        x = xx - 2 * k
        f = np.stack([0.5 + 0.3 * np.sin(x / 7), 0.5 + 0.3 * np.cos(yy / 5 + x / 11), 0.4 + 0.2 * np.sin(yy / 9)], -1)
        frames.append(f + noise * rng.standard_normal(f.shape).astype(np.float32))
    return np.clip(np.stack(frames), 0, 1).astype(np.float32)


def test_change_is_applied_at_full_resolution(tiny_weights):
    yy, xx = np.mgrid[0:144, 0:192]
    frames = (moving_texture(1, 144, 192) * 0.8 + 0.1 * ((yy + xx) % 2)[..., None]).astype(np.float32)  # 1-px detail
    pipe = TranslatePipeline(TranslateSettings(weights=tiny_weights, temporal=0.0))
    out = pipe.run(frames)
    assert out.shape == frames.shape and out.dtype == np.float32
    assert np.abs(out - frames).mean() > 1e-3  # it translated something
    # the change is made on the 64 px canvas and added to the frame: its own fine detail survives,
    # unlike in the canvas's output scaled up
    small, (sh, sw) = pipe._canvas(frames[0])
    naive = cv2.resize(pipe.translate_small(small)[:sh, :sw], (192, 144), interpolation=cv2.INTER_CUBIC)

    def detail(img: np.ndarray) -> float:
        fine = frames[0] - np.roll(frames[0], 1, axis=1)
        return float(np.corrcoef(fine.ravel(), (img - np.roll(img, 1, axis=1)).ravel())[0, 1])

    assert detail(out[0]) > 0.8 and detail(out[0]) > detail(naive) + 0.2
    half = TranslatePipeline(TranslateSettings(weights=tiny_weights, temporal=0.0, strength=0.5)).run(frames)
    assert np.allclose(half - frames, 0.5 * (out - frames), atol=2e-3)


def test_temporal_smoothing_removes_frame_to_frame_jitter(tiny_weights):
    frames = moving_texture(8, noise=0.03, seed=1)

    def jitter(temporal: float) -> float:
        out = TranslatePipeline(TranslateSettings(weights=tiny_weights, temporal=temporal)).run(frames)
        change = out - frames
        # frame k at x is frame k-1 at x - 2: compare each change with the previous one moved along
        return float(np.abs(change[1:, 8:-8, 10:-8] - change[:-1, 8:-8, 8:-10]).mean())

    assert jitter(0.8) < 0.8 * jitter(0.0)


def test_node_runs_in_chunks_keeps_alpha_and_checks_params(tiny_weights):
    frames = moving_texture(7, 48, 64)
    rgba = np.concatenate([frames, np.full(frames.shape[:3] + (1,), 0.25, np.float32)], -1)
    clip = vidfx.Clip.from_frames(rgba)
    out = np.stack([f.data.numpy() for f in clip.translate(weights=tiny_weights, chunk=4, overlap=1)])
    assert out.shape == (7, 4, 48, 64)
    assert np.allclose(out[:, 3], 0.25)
    single = TranslatePipeline(TranslateSettings(weights=tiny_weights)).run(frames[:4])
    assert np.allclose(out[:3, :3].transpose(0, 2, 3, 1), single[:3], atol=1e-5)  # the first chunk, before the fade
    with pytest.raises(ParamError, match="unknown model"):
        clip.translate(model="night2day")
    with pytest.raises(ParamError, match="overlap"):
        clip.translate(chunk=4, overlap=4)


def test_shipped_day_to_dusk_darkens_a_daylight_frame(shared_clips):
    for path in (DEFAULT_WEIGHTS, PRETRAINED_WEIGHTS):
        if not path.is_file():
            pytest.fail(f"shipped translate weights are missing: {path}")
    data = shared_clips.parent
    frame = read_rgb(sorted((data / "camvid" / "val").glob("*.jpg"))[10]).astype(np.float32) / 255
    out = TranslatePipeline(TranslateSettings(temporal=0.0)).run(frame[None])[0]
    assert out.shape == frame.shape
    assert out.mean() < frame.mean() - 0.02  # dusk is darker than daylight
    back = TranslatePipeline(TranslateSettings(model="dusk2day", temporal=0.0)).run(out[None])[0]
    assert np.abs(back - frame).mean() < np.abs(out - frame).mean()  # the cycle comes back towards the frame


def test_shipped_edges_model_draws_a_frame_from_its_edges(shared_clips):
    from vidfx.translate.edges import edge_map
    from vidfx.translate.pipeline import EDGES_WEIGHTS

    if not EDGES_WEIGHTS.is_file():
        pytest.fail(f"shipped translate weights are missing: {EDGES_WEIGHTS}")
    data = shared_clips.parent
    frame = read_rgb(sorted((data / "camvid" / "val").glob("*.jpg"))[30]).astype(np.float32) / 255
    out = TranslatePipeline(TranslateSettings(model="edges2frame", temporal=0.0)).run(frame[None])[0]
    assert out.shape == frame.shape
    grey = np.full_like(frame, frame.mean())
    assert np.abs(out - frame).mean() < np.abs(grey - frame).mean()  # closer to the frame than its mean colour
    edges = edge_map(frame)[..., 0] > 0.5
    # the output has structure where the input has edges
    gy, gx = np.gradient(out.mean(-1))
    strength = np.hypot(gx, gy)
    assert strength[edges].mean() > 1.2 * strength[~edges].mean()  # a flat or random picture gives ~1
