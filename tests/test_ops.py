"""Shared operations (vidfx.ops): DIS optical flow, backward warping, luma and transfer
functions, resampling. Real pictures come from sample_media/motion_320x180.mp4."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidfx.io.frames import rgb_frames
from vidfx.ops import colour, resample
from vidfx.ops.flow import DISFlow
from vidfx.ops.warp import backward_warp, backward_warp_np

SAMPLE = Path(__file__).resolve().parents[1] / "sample_media" / "motion_320x180.mp4"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """The first frame of the sample clip, (180, 320, 3) uint8 RGB."""
    return next(iter(rgb_frames(SAMPLE, 1)))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255


def shifted_pair(frame: np.ndarray, dx: int, dy: int) -> tuple[np.ndarray, np.ndarray]:
    """Two crops of ``frame`` with a(p) = b(p + (dx, dy))."""
    y0, x0, h, w = 20, 20, 140, 280
    return frame[y0 : y0 + h, x0 : x0 + w], frame[y0 - dy : y0 - dy + h, x0 - dx : x0 - dx + w]


# --- flow ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset, within_half_pixel", [("ultrafast", 0.75), ("fast", 0.9), ("medium", 0.97)])
def test_flow_recovers_a_known_translation(frame, preset, within_half_pixel):
    a, b = shifted_pair(frame, 5, -3)
    flow = DISFlow(preset)(colour.grey_u8(a), colour.grey_u8(b))
    assert flow.shape == (140, 280, 2) and flow.dtype == np.float32
    inner = flow[16:-16, 16:-16].reshape(-1, 2)
    assert np.allclose(np.median(inner, axis=0), [5, -3], atol=0.15)
    assert (np.abs(inner - [5, -3]).max(axis=1) < 0.5).mean() > within_half_pixel


def test_flow_takes_grey_rgb_arrays_and_tensors_alike(frame):
    a, b = shifted_pair(frame, 2, 1)
    dis = DISFlow("fast")
    from_grey = dis(colour.grey_u8(a), colour.grey_u8(b))
    assert np.array_equal(dis(a, b), from_grey)  # uint8 RGB arrays
    from_float = dis(to_tensor(a), to_tensor(b))  # float tensors: rounding may differ at ties only
    assert np.abs(from_float - from_grey).max() < 0.05


def test_flow_of_a_clip_and_of_tiny_frames(frame):
    frames = [to_tensor(frame[10 + k : 170 + k, 10:310]) for k in range(3)]  # the picture moves up 1 px a frame
    prev, nxt = DISFlow().clip(frames)
    assert prev.shape == nxt.shape == (3, 2, 160, 300)
    assert prev[0].eq(0).all() and nxt[-1].eq(0).all()
    assert nxt[0, 1, 20:-20, 20:-20].median() == pytest.approx(-1, abs=0.1)
    assert prev[1, 1, 20:-20, 20:-20].median() == pytest.approx(1, abs=0.1)
    tiny = np.zeros((6, 30), np.uint8)
    assert np.array_equal(DISFlow()(tiny, tiny), np.zeros((6, 30, 2), np.float32))
    with pytest.raises(ValueError, match="ultrafast"):
        DISFlow("slow")


# --- warp ---------------------------------------------------------------------------------------


def test_warp_by_an_integer_flow_is_a_shift(frame):
    x = to_tensor(frame)[None]
    flow = torch.zeros(1, 2, 180, 320)
    flow[:, 0], flow[:, 1] = 4, -2  # out(x, y) = in(x + 4, y - 2)
    out = backward_warp(x, flow)
    assert torch.allclose(out[..., 2:, :-4], x[..., :-2, 4:], atol=1e-5)
    assert torch.allclose(out[..., 2:, -1], x[..., :-2, -1], atol=1e-5)  # edges replicate
    assert torch.allclose(backward_warp(x, torch.zeros_like(flow)), x, atol=1e-5)
    near = backward_warp(x, flow + 0.3, mode="nearest")
    assert torch.equal(near[..., 2:, :-5], x[..., :-2, 4:-1])


def test_warp_is_bilinear_between_pixels():
    ramp = torch.arange(20.0).repeat(1, 1, 6, 1)
    out = backward_warp(ramp, torch.full((1, 2, 6, 20), 0.25))
    assert torch.allclose(out[..., :-1], ramp[..., :-1] + 0.25, atol=1e-5)


def test_warp_undoes_real_motion_and_numpy_layout_matches(frame):
    a, b = shifted_pair(frame, 3, 2)
    flow = DISFlow("medium")(a, b)
    fa, fb = a.astype(np.float32) / 255, b.astype(np.float32) / 255
    warped = backward_warp_np(fb, flow)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(warped - fa)[inner].mean() < 0.25 * np.abs(fb - fa)[inner].mean()
    tensor = backward_warp(torch.from_numpy(fb).permute(2, 0, 1)[None], torch.from_numpy(flow).permute(2, 0, 1)[None])
    assert np.allclose(tensor[0].permute(1, 2, 0).numpy(), warped, atol=1e-6)
    assert backward_warp_np(fb[..., 0], flow).shape == (140, 280)


def test_warp_is_differentiable():
    x = torch.rand(1, 3, 8, 9, requires_grad=True)
    backward_warp(x, torch.rand(1, 2, 8, 9)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# --- colour -------------------------------------------------------------------------------------


def test_luma_of_known_colours():
    rgb = torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]).T[:, :, None]  # (3, 5, 1)
    assert torch.allclose(colour.luma(rgb)[0, :, 0], torch.tensor([1.0, 0.299, 0.587, 0.114, 0.0]))
    assert torch.allclose(colour.luma_studio(rgb)[0, :, 0], torch.tensor([235.0, 81.481, 144.553, 40.966, 16.0]))
    grey = colour.grey_u8(rgb)
    assert grey.dtype == np.uint8 and grey[:, 0].tolist() == [255, 76, 150, 29, 0]


def test_grey_u8_matches_opencv_and_handles_channels(frame):
    assert np.array_equal(colour.grey_u8(frame), cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    from_float = colour.grey_u8(to_tensor(frame)).astype(int)
    assert np.abs(from_float - cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)).max() <= 1
    rgba = torch.cat([to_tensor(frame), torch.zeros(1, 180, 320)])
    assert np.array_equal(colour.grey_u8(rgba), colour.grey_u8(to_tensor(frame)))
    one = torch.full((1, 4, 5), 0.5)
    assert (colour.grey_u8(one) == 128).all() and np.array_equal(colour.grey_u8(frame[..., 0]), frame[..., 0])


@pytest.mark.parametrize("transfer", colour.TRANSFERS)
def test_transfer_round_trip(transfer):
    x = torch.linspace(0, 1, 101)
    assert torch.allclose(colour.from_linear(colour.to_linear(x, transfer), transfer), x, atol=1e-5)


def test_transfer_known_values_and_shapes(frame):
    assert float(colour.to_linear(torch.tensor(0.5), "srgb")) == pytest.approx(0.21404, abs=1e-4)
    assert float(colour.from_linear(torch.tensor(0.18), "rec709")) == pytest.approx(0.40901, abs=1e-4)
    x = to_tensor(frame)
    lin = colour.to_linear(x, "srgb")
    expected = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)  # IEC 61966-2-1
    assert torch.allclose(lin, expected, atol=1e-7)
    assert torch.equal(colour.to_linear(x[:1], "srgb"), lin[:1])  # any channel count
    assert torch.equal(colour.convert(x, "srgb", "srgb"), x)


# --- resample -----------------------------------------------------------------------------------


def test_resize_matches_torch_bicubic_with_same_kernel(monkeypatch):
    x = torch.rand(3, 30, 40)
    monkeypatch.setitem(resample._KERNEL_FN, "bicubic", (lambda v: resample._cubic(v, -0.75), 2.0))
    resample.resample_matrix.cache_clear()
    ours = resample.resize(x, 75, 100, "bicubic", antialias=False)
    theirs = F.interpolate(x[None], size=(75, 100), mode="bicubic", align_corners=False)[0]
    resample.resample_matrix.cache_clear()
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_resize_of_a_real_frame_matches_area_and_bilinear_references(frame):
    x = to_tensor(frame)
    area = resample.resize(x, 90, 160, "area")
    ref = cv2.resize(frame.astype(np.float32) / 255, (160, 90), interpolation=cv2.INTER_AREA)
    assert np.allclose(area.permute(1, 2, 0).numpy(), ref, atol=1e-5)
    up = resample.resize(x, 250, 401, "bilinear")
    assert torch.allclose(
        up, F.interpolate(x[None], size=(250, 401), mode="bilinear", align_corners=False)[0], atol=1e-5
    )


@pytest.mark.parametrize("kernel", resample.KERNELS)
def test_kernels_keep_flat_images_flat(kernel):
    flat = torch.full((1, 37, 53), 0.3)
    for size in [(12, 20), (80, 111)]:
        assert torch.allclose(resample.resize(flat, *size, kernel), torch.full((1, *size), 0.3), atol=1e-5)


def test_downscale_is_antialiased():
    # a 1-pixel checkerboard has no content a ~3x smaller image can hold: it must become grey
    y, x = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = ((x + y) % 2).float()[None]
    small = resample.resize(checker, 21, 21, "bicubic")
    assert small.std() < 0.01 and small.mean() == pytest.approx(0.5, abs=0.01)
    aliased = resample.resize(checker, 21, 21, "bicubic", antialias=False)
    assert aliased.std() > 0.1


def test_area_downscale_is_block_mean():
    x = torch.arange(16.0).reshape(1, 4, 4)
    assert torch.allclose(resample.resize(x, 2, 2, "area"), torch.tensor([[[2.5, 4.5], [10.5, 12.5]]]))


def test_mirror_boundary_is_symmetric_and_differs_from_replicate_at_edges():
    x = torch.rand(1, 9, 13)
    for size in [(4, 6), (20, 27)]:
        out = resample.resize(x, *size, "bicubic", boundary="mirror")
        flipped = resample.resize(x.flip(-1), *size, "bicubic", boundary="mirror")
        assert torch.allclose(out.flip(-1), flipped, atol=1e-6)
    ramp = torch.arange(8.0)[None, None].expand(1, 8, 8)
    mirror = resample.resize(ramp, 8, 16, "bicubic", boundary="mirror")[0, 0]
    replicate = resample.resize(ramp, 8, 16, "bicubic")[0, 0]
    assert not torch.allclose(mirror[:2], replicate[:2]) and torch.allclose(mirror[6:10], replicate[6:10])


def test_matlab_imresize(frame):
    # constant stays constant, shape is ceil(n * scale), a linear ramp stays linear inside
    x = torch.full((3, 20, 24), 0.25)
    assert torch.allclose(resample.imresize(x, 0.25), torch.full((3, 5, 6), 0.25), atol=1e-6)
    ramp = torch.arange(64, dtype=torch.float32).repeat(8, 1)[None]
    d = resample.imresize(ramp, 0.25)[0, 0][3:-3].diff()
    assert torch.allclose(d, torch.full_like(d, 4.0), atol=1e-3)
    # imresize((1:8)', 0.5): 8-tap antialiased cubic, mirrored borders; first value worked
    # out by hand from MATLAB's contributions() = 1.4492; the result is antisymmetric
    col = torch.arange(1, 9, dtype=torch.float32)[:, None]
    out = resample.imresize(col, size=(4, 1))[:, 0]
    assert abs(out[0].item() - 1.4492) < 1e-3
    assert torch.allclose(out + out.flip(0), torch.full((4,), 9.0), atol=1e-4)
    # numpy layout, odd output size, a real frame
    img = frame.astype(np.float32) / 255
    small = resample.imresize_np(img, 0.3)
    assert small.shape == (54, 96, 3) and small.dtype == np.float32
    assert np.allclose(small, resample.imresize(to_tensor(frame), 0.3).permute(1, 2, 0).numpy(), atol=1e-6)
    assert resample.imresize_np(img[..., 0], 0.5).shape == (90, 160)
