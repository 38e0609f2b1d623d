"""The vsr node: engine chunking (static scene across a chunk border), tiling, weights
files, and bad input."""

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import vidfx
from vidfx.core.errors import MediaError, ModelError, ParamError
from vidfx.core.frame import ClipInfo, Frame
from vidfx.ops.flow import DISFlow
from vidfx.ops.weights import FORMAT, build_model
from vidfx.vsr.arch import VideoSR
from vidfx.vsr.data import DEFAULT_DATA, camera_clip
from vidfx.vsr.node import FAMILY, VSRNode, build_vsr, shipped_weights, upscale_clip

SHIPPED = shipped_weights("tiny_x4")
SAMPLE = Path(__file__).resolve().parents[1] / "sample_media" / "motion_320x180.mp4"


def load_weights(path) -> tuple[VideoSR, dict]:
    """A fresh (uncached) model and meta from a vsr weights file."""
    return build_model(path, FAMILY, build_vsr)


@pytest.fixture(scope="module")
def weights() -> str:
    """The shipped tiny x4 weights (a missing file fails the tests that use it)."""
    assert SHIPPED.is_file(), f"shipped weights missing: {SHIPPED}"
    return str(SHIPPED)


def _photo(h: int, w: int, frames: int = 1, seed: int = 0) -> np.ndarray:
    """A real picture: a moving-camera clip (frames, h, w, 3) of a training photo."""
    files = sorted((DEFAULT_DATA / "train_hr").glob("*.jpg"))
    assert files, f"shared data missing: {DEFAULT_DATA / 'train_hr'}"
    img = cv2.imread(str(files[seed % len(files)]))[..., ::-1]
    return camera_clip(np.ascontiguousarray(img), frames, max(h, w), np.random.default_rng(seed))[:, :h, :w]


def test_shipped_weights_load_offline():
    assert SHIPPED.is_file(), f"shipped weights missing: {SHIPPED}"
    assert SHIPPED.stat().st_size < 5_000_000
    model, meta = load_weights(SHIPPED)
    assert model.cfg.scale == 4 and model.cfg.channels == 32
    blob = torch.load(SHIPPED, map_location="cpu", weights_only=True)  # no pickled code
    assert blob["format"] == FORMAT and blob["family"] == "vsr"
    node = VSRNode()  # default weights = the shipped file
    assert node.weights_path() == SHIPPED


def test_static_scene_has_no_jump_at_chunk_borders(weights):
    img = _photo(24, 32)[0]
    frames = [img] * 14
    out = vidfx.apply("vsr", frames, weights=weights, chunk=6, overlap=2, tile=0)
    assert len(out) == 14 and out[0].shape == (3, 96, 128)
    # chunks start at 0, 4, 8: frames 4-5 and 8-9 are cross-faded. Every frame of a static
    # scene is nearly the same picture, across chunk borders as inside a chunk (the recurrent
    # model shimmers by ~0.4/255 on average; the clip's first/last frames differ most).
    mean_steps = [(out[t + 1] - out[t]).abs().mean().item() * 255 for t in range(13)]
    max_steps = [(out[t + 1] - out[t]).abs().max().item() * 255 for t in range(13)]
    assert max(mean_steps) < 1.0, mean_steps
    assert max(max_steps[1:-1]) < 12, max_steps
    border = [mean_steps[t] for t in (3, 4, 5, 7, 8, 9)]
    inside = [mean_steps[t] for t in (1, 2, 6, 10)]
    assert max(border) < 1.5 * max(inside) + 0.1, mean_steps


def test_chunked_equals_one_chunk_for_static_scene(weights):
    """Short chunks give (nearly) the picture one long chunk gives. The recurrent model sees
    more frames in the long chunk, so a few isolated pixels of this 20x20 input differ by up to
    ~20/255: the check is on the mean and the 99th percentile, which a chunking bug (a shifted
    or missing frame, a bad cross-fade) would blow up."""
    img = _photo(20, 20)[0]
    out_chunks = vidfx.apply("vsr", [img] * 9, weights=weights, chunk=4, overlap=1, tile=0)
    out_whole = vidfx.apply("vsr", [img] * 9, weights=weights, chunk=9, overlap=0, tile=0)
    for a, b in zip(out_chunks, out_whole):
        diff = (a - b).abs()
        assert diff.mean() < 1.5 / 255
        assert torch.quantile(diff.flatten(), 0.99) < 8 / 255
        assert diff.max() < 40 / 255


def test_tiled_equals_untiled(weights):
    model, _ = load_weights(weights)
    clip = torch.from_numpy(_photo(48, 64, frames=3, seed=3).transpose(0, 3, 1, 2).copy())
    flow = DISFlow()
    whole = upscale_clip(model, clip, flow, tile=0)
    tiled = upscale_clip(model, clip, flow, tile=32, tile_overlap=12)
    assert tiled.shape == whole.shape == (3, 3, 192, 256)
    diff = (tiled - whole).abs()
    assert diff.mean() < 2e-3, diff.mean()
    assert diff.max() < 0.1, diff.max()


def _configured(weights, w=33, h=21, c=3, **params):
    node = VSRNode(weights=weights, **params)
    info = node.configure(
        [ClipInfo(width=w, height=h, fps=Fraction(25), num_frames=3, channels=c)], torch.device("cpu")
    )
    return node, info


def test_odd_sizes_grey_and_alpha(weights):
    node, info = _configured(weights, 33, 21, 3)
    assert (info.width, info.height) == (132, 84)
    frames = [Frame(torch.rand(3, 21, 33), index=i) for i in range(3)]
    out = node.render_chunk(frames)
    assert len(out) == 3 and out[0].shape == (3, 84, 132)
    # grey in, grey out
    node, info = _configured(weights, 33, 21, 1)
    out = node.render_chunk([Frame(torch.rand(1, 21, 33), index=i) for i in range(3)])
    assert out[0].shape == (1, 84, 132)
    # alpha: upscaled separately, colour unaffected by it
    node, info = _configured(weights, 33, 21, 4)
    rgb = torch.rand(3, 3, 21, 33)
    a1 = torch.rand(3, 1, 21, 33)
    out1 = node.render_chunk([Frame(torch.cat([rgb[i], a1[i]]), index=i) for i in range(3)])
    out2 = node.render_chunk([Frame(torch.cat([rgb[i], torch.ones(1, 21, 33)]), index=i) for i in range(3)])
    assert out1[0].shape == (4, 84, 132)
    assert torch.allclose(out1[0][:3], out2[0][:3])
    assert out2[0][3].min() > 0.999
    assert 0 <= out1[0][3].min() and out1[0][3].max() <= 1


def test_16bit_input_through_api(weights):
    clip = (_photo(16, 16, frames=3) * 65535).astype(np.uint16)
    out = vidfx.apply("vsr", clip, weights=weights, tile=0)
    assert len(out) == 3 and out[0].shape == (3, 64, 64)


def test_flip_ensemble_is_flip_equivariant(weights):
    # Per frame (no flow involved) the 4-flip average is exactly equivariant to flips; one pass
    # of the network is not, and ensemble 1 is the plain upscale.
    clip = _photo(24, 32, frames=2, seed=3)
    mirrored = np.ascontiguousarray(clip[:, :, ::-1])
    opts = dict(weights=weights, tile=0, propagation=False, attention=False)
    plain = vidfx.apply("vsr", clip, **opts)
    assert all(torch.equal(a, b) for a, b in zip(plain, vidfx.apply("vsr", clip, ensemble=1, **opts)))
    plain_mirrored = vidfx.apply("vsr", mirrored, **opts)
    assert max((a.flip(-1) - b).abs().max().item() for a, b in zip(plain, plain_mirrored)) > 1e-3
    four = vidfx.apply("vsr", clip, ensemble=4, **opts)
    four_mirrored = vidfx.apply("vsr", mirrored, ensemble=4, **opts)
    assert max((a.flip(-1) - b).abs().max().item() for a, b in zip(four, four_mirrored)) < 1e-5
    # with propagation the ensemble still runs and stays close to the plain result
    full = vidfx.apply("vsr", clip, weights=weights, tile=0, ensemble=2)
    assert len(full) == 2 and full[0].shape == (3, 96, 128)
    assert (full[0] - vidfx.apply("vsr", clip, weights=weights, tile=0)[0]).abs().mean() < 0.02


def test_too_small_frames(weights):
    with pytest.raises(MediaError, match="smaller than the minimum"):
        _configured(weights, 7, 30)


def test_bad_params(weights):
    with pytest.raises(ParamError):
        VSRNode(scale=3)
    with pytest.raises(ParamError):
        VSRNode(chunk=4, overlap=4)
    with pytest.raises(ParamError, match="ensemble"):
        VSRNode(ensemble=3)
    with pytest.raises(ParamError, match="CUDA"):
        _configured(weights, precision="fp16")
    with pytest.raises(ParamError, match="does not match"):
        _configured(weights, scale=2)


def test_missing_and_corrupt_weights(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(ModelError, match="nope.pt"):
        _configured(str(missing))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ModelError, match="corrupt.pt"):
        _configured(str(corrupt))
    wrong = tmp_path / "wrong.pt"
    torch.save({"hello": torch.zeros(2)}, wrong)
    with pytest.raises(ModelError, match="wrong.pt"):
        _configured(str(wrong))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(SHIPPED.read_bytes()[:2000])
    with pytest.raises(ModelError, match="truncated.pt"):
        _configured(str(truncated))
    other = tmp_path / "segment.pt"
    other.write_bytes(Path(vidfx.__file__).parent.joinpath("segment", "weights", "camvid_mbconv_unet.pt").read_bytes())
    with pytest.raises(ModelError, match="segment.pt holds 'segment' weights"):
        _configured(str(other))


def test_configured_nodes_share_one_model_and_leave_it_unchanged(weights):
    """Nodes configured on the same file and device share the cached model; the CPU
    channels-last copy is built for the cache, not converted in place."""
    (a, _), (b, _) = _configured(weights), _configured(weights)
    assert a.model is b.model
    assert not any(p.requires_grad for p in a.model.parameters())
    fresh, _ = load_weights(weights)
    conv = next(m for m in a.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for (name, p), q in zip(a.model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(p, q), name


def test_shipped_x2_weights_beat_bicubic():
    """The shipped x2 model is the default for ``scale: 2`` and restores detail bicubic cannot
    (a held-out training photo, the every-10th split, so not seen in training)."""
    path = shipped_weights("tiny_x2")
    assert VSRNode(scale=2).weights_path() == path
    model, _ = load_weights(path)
    assert model.cfg.scale == 2
    from vidfx.ops.resample import imresize
    from vidfx.vsr.metrics import psnr_y, quantize

    files = sorted((DEFAULT_DATA / "train_hr").glob("*.jpg"))
    assert files, f"shared data missing: {DEFAULT_DATA / 'train_hr'}"
    img = cv2.imread(str(files[5]))[..., ::-1]  # files[5::10] is the held-out split
    hr = torch.from_numpy(np.ascontiguousarray(img[:192, :192])).permute(2, 0, 1).float() / 255
    lr = imresize(hr, 0.5).clamp(0, 1)
    out = vidfx.apply("vsr", [lr] * 3, scale=2, tile=0)
    ours = psnr_y(quantize(out[1]), hr)
    bicubic = psnr_y(quantize(imresize(lr, 2.0)), hr)
    assert ours > bicubic + 0.5, (ours, bicubic)


def test_shipped_detail_weights_are_the_gan_variant():
    """``weights: detail`` loads the shipped GAN-stage x4 model, a different model from the
    fidelity default (the default x4 file has since grown two residual blocks)."""
    node = VSRNode(weights="detail")
    assert node.weights_path() == shipped_weights("tiny_x4_detail")
    detail, _ = load_weights(node.weights_path())
    fidelity, _ = load_weights(SHIPPED)
    assert detail.cfg.scale == fidelity.cfg.scale == 4
    frames = _photo(24, 32, frames=3)
    out = vidfx.apply("vsr", list(frames), weights="detail", tile=0)
    assert len(out) == 3 and out[0].shape == (3, 96, 128)
    default = vidfx.apply("vsr", list(frames), tile=0)
    assert max(float((a - b).abs().max()) for a, b in zip(out, default)) > 1e-2
