"""Tests of the segment feature: the modified MBConv block, the U-Net, mIoU, weights,
temporal smoothing, and the ``segment`` node on synthetic and real frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vidfx.core.errors import MediaError, ModelError, ParamError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.ops.flow import consistent_mask
from vidfx.segment.arch import CONFIGS, MBConvUNet, ModifiedMBConv, SegNetConfig
from vidfx.segment.data import CLASS_NAMES, DEFAULT_CAMVID, NUM_CLASSES, VOID, class_weights
from vidfx.segment.metrics import confusion_matrix, iou_per_class, mean_iou
from vidfx.segment.model import DEFAULT_WEIGHTS, load_model, predict_logits, save_weights
from vidfx.segment.node import SegmentNode
from vidfx.segment.smoothing import TemporalSmoother, flicker, flicker_motion


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread is fastest, and kind to a busy CI machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the modified MBConv block -------------------------------------------------------
def test_mbconv_expansion_is_3x3_and_keeps_shape():
    block = ModifiedMBConv(16, 16, expansion=3)
    conv = block.expand[0]
    assert conv.kernel_size == (3, 3) and conv.in_channels == 16 and conv.out_channels == 48
    assert block.depthwise[0].groups == 48  # depthwise
    assert block.project[0].kernel_size == (1, 1)
    x = torch.randn(2, 16, 20, 24)
    assert block(x).shape == x.shape


def test_mbconv_residual_adds_input():
    block = ModifiedMBConv(8, 8).eval()
    assert block.residual
    torch.nn.init.zeros_(block.project[1].weight)  # the branch now outputs zero...
    torch.nn.init.zeros_(block.project[1].bias)
    x = torch.randn(1, 8, 10, 10)
    assert torch.allclose(block(x), x)  # ...so the block is the identity


def test_mbconv_stride_two_has_no_residual():
    block = ModifiedMBConv(8, 8, stride=2)
    assert not block.residual
    assert block(torch.randn(1, 8, 16, 12)).shape == (1, 8, 8, 6)


def test_unet_equal_width_and_depth_every_level():
    config = SegNetConfig(width=16, depth=2, levels=4)
    model = MBConvUNet(config).eval()
    assert len(model.encoders) == 4 and len(model.decoders) == 3
    for branch in list(model.encoders) + list(model.decoders):
        assert len(branch) == 2
        assert all(b.expand[0].in_channels == 16 and b.project[0].out_channels == 16 for b in branch)
    # The stem downsamples by 4 before the first block.
    assert model.stem(torch.randn(1, 3, 64, 96)).shape == (1, 16, 16, 24)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 96)).shape == (1, 11, 64, 96)
        # predict_logits pads/resizes any size to the network stride.
        assert predict_logits(model, torch.rand(2, 3, 37, 53), 0.75).shape == (2, 11, 37, 53)


# --- metrics ---------------------------------------------------------------------------
def test_miou_perfect_prediction_is_one():
    target = np.array([[0, 1], [2, 2]])
    conf = confusion_matrix(target, target, 3)
    assert mean_iou(conf) == 1.0


def test_miou_hand_computed_case():
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    iou = iou_per_class(confusion_matrix(pred, target, 2))
    # class 0: TP 1, FP 0, FN 1 -> 1/2; class 1: TP 2, FP 1, FN 0 -> 2/3
    assert np.allclose(iou, [0.5, 2 / 3])
    assert mean_iou(confusion_matrix(pred, target, 2)) == pytest.approx((0.5 + 2 / 3) / 2)


def test_miou_ignores_void_and_absent_classes():
    target = np.array([[0, 11, 11, 1]])
    pred = np.array([[0, 1, 2, 1]])  # wrong only where the target is void
    conf = confusion_matrix(pred, target, 3, ignore=11)
    iou = iou_per_class(conf)
    assert iou[0] == 1.0 and iou[1] == 1.0 and np.isnan(iou[2])  # class 2 appears nowhere
    assert mean_iou(conf) == 1.0


def test_class_weights_favour_rare_classes():
    label = np.zeros((10, 10), np.uint8)
    label[0, :2] = 2  # rare
    label[5:] = 1
    w = class_weights([label], power=1.0)
    assert w[2] > w[1] > 0 and w[2] > w[0]


# --- weights -----------------------------------------------------------------------------
def test_shipped_weights_load_offline():
    assert DEFAULT_WEIGHTS.is_file(), f"missing shipped weights {DEFAULT_WEIGHTS}"
    assert DEFAULT_WEIGHTS.stat().st_size < 8 * 2**20
    model = load_model()
    assert model.meta["scale"] > 0
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, NUM_CLASSES, 64, 64)


def test_missing_or_corrupt_weights_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="bad.pt"):
        load_model(bad)


def test_save_and_load_round_trip(tmp_path):
    model = MBConvUNet(CONFIGS["cpu_small"]).eval()
    save_weights(tmp_path / "w.pt", model, {"scale": 0.5})
    loaded = load_model(tmp_path / "w.pt")
    # Weights are stored as float16: loading gives the float16-rounded values back.
    for name, value in model.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert torch.equal(loaded.state_dict()[name], expected), name
    assert loaded.meta["scale"] == 0.5


# --- smoothing -----------------------------------------------------------------------------
def shifted_frames(n: int, h: int = 48, w: int = 64, step: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Smooth random texture moving right by ``step`` pixels per frame (uint8 grey)."""
    import cv2

    rng = np.random.default_rng(seed)
    wide = w + n * step
    base = rng.random((h // 4, wide // 4 + 1)).astype(np.float32)
    big = cv2.resize(base, (base.shape[1] * 4, h), interpolation=cv2.INTER_CUBIC)
    frames = []
    for i in range(n):
        x = n * step - i * step
        frames.append(np.clip(big[:, x : x + w] * 255, 0, 255).astype(np.uint8))
    return frames


def test_consistent_mask_of_known_translations():
    # (the warp itself is tested in test_ops.py) Forward and backward flows that cancel are
    # consistent; ones that do not are not.
    flow = np.zeros((5, 20, 2), np.float32)
    flow[..., 0] = 3  # sample 3 px to the right
    zero = np.zeros_like(flow)
    assert consistent_mask(zero, zero).all()
    assert consistent_mask(flow, -flow)[:, :17].all()  # +3 then -3: back where it started
    assert not consistent_mask(flow, flow)[:, :17].any()  # +3 then +3: inconsistent


def test_smoother_reduces_label_flicker_on_noisy_scores():
    frames = shifted_frames(8)
    rng = np.random.default_rng(1)
    smooth, raw = TemporalSmoother(0.7), TemporalSmoother(0.0)
    labels_raw, labels_smooth = [], []
    for g in frames:
        truth = (g > 127).astype(np.float32)
        scores = torch.from_numpy(np.stack([1 - truth, truth]) * 1.0 + rng.normal(0, 1.0, (2,) + g.shape))
        labels_raw.append(raw.step(scores.float(), g).argmax(0).numpy())
        labels_smooth.append(smooth.step(scores.float(), g).argmax(0).numpy())
    assert flicker(labels_smooth, frames) < 0.7 * flicker(labels_raw, frames)
    motion = flicker_motion(frames)  # computed once, same scores
    assert flicker(labels_raw, motion=motion) == flicker(labels_raw, frames)
    with pytest.raises(ValueError, match="motion for 8 frames"):
        flicker(labels_raw[:5], motion=motion)


def test_flicker_is_zero_for_a_static_labelling():
    frames = shifted_frames(3, step=0)
    labels = [np.ones(frames[0].shape, np.int64)] * 3
    assert flicker(labels, frames) == 0.0


# --- the node ---------------------------------------------------------------------------------
def run_node(node: SegmentNode, frames: list[torch.Tensor], fps: int = 25) -> list[torch.Tensor]:
    """Run a node over in-memory frames: through vidfx.apply when the engine has it, else
    by calling configure/render the way the engine does (edge-clamped windows)."""
    import vidfx

    if hasattr(vidfx, "apply"):
        return vidfx.apply(node, frames, fps=fps)
    c, h, w = frames[0].shape
    info = ClipInfo(width=w, height=h, fps=Fraction(fps), num_frames=len(frames), channels=c)
    node.configure([info], torch.device("cpu"))
    wrapped = [Frame(f, index=i, pts=i) for i, f in enumerate(frames)]
    out = []
    for n in range(len(frames)):
        window = [wrapped[min(max(i, 0), len(frames) - 1)] for i in node.frames_needed(n)[0]]
        out.append(node.render(n, [window]).data)
    return out


def synthetic_clip(n: int = 6, h: int = 72, w: int = 96) -> list[torch.Tensor]:
    """A road-like scene: bright sky on top, grey road below, a dark box moving right."""
    frames = []
    for i in range(n):
        f = torch.zeros(3, h, w)
        f[:, : h // 3] = torch.tensor([0.6, 0.7, 0.9])[:, None, None]
        f[:, h // 3 :] = 0.35
        f[:, h // 2 : h // 2 + 12, 10 + 3 * i : 30 + 3 * i] = 0.05
        frames.append(f)
    return frames


@pytest.mark.parametrize("output,channels", [("overlay", 3), ("labels", 1), ("matte", 1), ("alpha", 4)])
def test_node_outputs(output, channels):
    frames = synthetic_clip()
    out = run_node(SegmentNode(output=output, classes=["sky", "road"], feather=1.0), frames)
    assert len(out) == len(frames)
    for o in out:
        assert o.shape == (channels, 72, 96) and o.dtype == torch.float32
        assert 0 <= o.min() and o.max() <= 1
    if output == "labels":
        idx = out[0] * 255
        assert torch.allclose(idx, idx.round()) and idx.max() < NUM_CLASSES
    if output == "alpha":
        assert torch.allclose(out[0][:3], frames[0])  # the picture passes through


def test_node_sky_matte_on_camvid_frame():
    path = DEFAULT_CAMVID / "val"
    assert path.is_dir(), f"CamVid (development data) missing: {path}"
    import cv2

    name = sorted(path.iterdir())[10]
    image = cv2.cvtColor(cv2.imread(str(name)), cv2.COLOR_BGR2RGB)
    label = cv2.imread(str(DEFAULT_CAMVID / "valannot" / (name.stem + ".png")), cv2.IMREAD_UNCHANGED)
    frame = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    matte = run_node(SegmentNode(output="matte", classes=["sky"], smoothing=0), [frame])[0][0].numpy() > 0.5
    sky = label == 0
    assert sky.any()
    iou = (matte & sky).sum() / (matte | sky).sum()
    assert iou > 0.6, f"sky IoU {iou:.2f}"


def test_node_is_the_same_in_order_and_out_of_order():
    frames = synthetic_clip(5)
    in_order = run_node(SegmentNode(output="labels", warmup=4), frames)
    node = SegmentNode(output="labels", warmup=4)
    node.configure([ClipInfo(width=96, height=72, fps=Fraction(25), num_frames=5)], torch.device("cpu"))
    wrapped = [Frame(f, index=i) for i, f in enumerate(frames)]
    window = [wrapped[min(max(i, 0), 4)] for i in node.frames_needed(4)[0]]
    alone = node.render(4, [window]).data  # a seek straight to the last frame replays the window
    assert torch.equal(alone, in_order[4])


def test_unknown_class_lists_valid_ones():
    with pytest.raises(ParamError) as err:
        SegmentNode(classes=["skyy"])
    assert "skyy" in str(err.value) and "sky" in str(err.value) and "pedestrian" in str(err.value)
    SegmentNode(classes=["Sky", "CAR"])  # names are case-insensitive


def test_matte_without_classes_uses_default_classes():
    node = SegmentNode(output="alpha")  # an OFX host's first RoD must not fail: a default matte
    node.configure([ClipInfo(width=8, height=8, fps=Fraction(25), num_frames=1)], torch.device("cpu"))
    assert [node.names[i] for i in node.class_ids] == ["car", "pedestrian", "bicyclist"]


def test_grey_and_rgba_input():
    grey = [f.mean(0, keepdim=True) for f in synthetic_clip(2)]
    out = run_node(SegmentNode(output="alpha", classes=["sky"]), grey)
    assert out[0].shape == (4, 72, 96) and torch.allclose(out[0][0], grey[0][0])
    rgba = [torch.cat([f, torch.full_like(f[:1], 0.3)]) for f in synthetic_clip(2)]
    out = run_node(SegmentNode(output="overlay"), rgba)
    assert out[0].shape == (3, 72, 96)


def test_two_channel_input_is_a_media_error():
    with pytest.raises(MediaError, match="channels"):
        SegmentNode().configure(
            [ClipInfo(width=8, height=8, fps=Fraction(25), num_frames=1, channels=2)], torch.device("cpu")
        )


def test_tiny_frames():
    frames = [torch.rand(3, 3, 5) for _ in range(3)]
    out = run_node(SegmentNode(output="alpha", classes=["road"], feather=2), frames)
    assert [o.shape for o in out] == [(4, 3, 5)] * 3
    out = run_node(SegmentNode(output="labels"), [torch.rand(3, 1, 1)])
    assert out[0].shape == (1, 1, 1)


def test_person_mode_alpha():
    import mediapipe  # noqa: F401  # the landmarks extra; installed with vidfx[all]

    frames = synthetic_clip(3, 120, 160)
    out = run_node(SegmentNode(mode="person", output="alpha", soft=True, feather=1.5), frames)
    assert out[0].shape == (4, 120, 160) and 0 <= out[0][3].min() and out[0][3].max() <= 1
    with pytest.raises(ParamError, match="valid: background, person"):
        node = SegmentNode(mode="person", classes=["sky"], output="matte")
        node.configure([ClipInfo(width=8, height=8, fps=Fraction(25), num_frames=1)], torch.device("cpu"))


# --- training and evaluation commands ----------------------------------------------------------
def tiny_camvid(root: Path, n: int = 3) -> Path:
    """A CamVid-shaped folder of small synthetic images (sky on top, road below, void strip)."""
    import cv2

    for split in ("train", "val", "test"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            image = np.zeros((48, 64, 3), np.uint8)
            label = np.full((48, 64), 3, np.uint8)
            image[:20] = (200, 180, 150)  # BGR on disk
            label[:20] = 0
            label[:, :2] = VOID
            image[20:] = 90 + 10 * i
            cv2.imwrite(str(root / split / f"seq_{i:04d}.jpg"), image)
            cv2.imwrite(str(root / f"{split}annot" / f"seq_{i:04d}.png"), label)
    return root


def test_train_checkpoints_resumes_and_eval_writes_json(tmp_path):
    import json

    from vidfx.segment import evaluate, train

    data = tiny_camvid(tmp_path / "camvid")
    out = tmp_path / "run"
    common = [
        "--dataset",
        str(data),
        "--out",
        str(out),
        "--config",
        "cpu_small",
        "--batch",
        "2",
        "--crop",
        "64x64",
        "--val-scales",
        "1.0",
        "--threads",
        "1",
    ]
    assert train.main(common + ["--iters", "2"]) == 0
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    assert json.loads((out / "args.json").read_text())["args"]["iters"] == 2
    assert train.main(common + ["--iters", "3", "--resume"]) == 0
    assert "resumed at step 2" in (out / "log.txt").read_text()
    result_file = tmp_path / "result.json"
    assert (
        evaluate.main(
            ["--dataset", str(data), "--weights", str(out / "best.pt"), "--json", str(result_file), "--threads", "1"]
        )
        == 0
    )
    result = json.loads(result_file.read_text())
    assert set(CLASS_NAMES) == set(result["per_class"]) and 0 <= result["miou"] <= 100 and result["fps"] > 0
