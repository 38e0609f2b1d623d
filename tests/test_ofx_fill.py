"""The ``fill`` node as an OFX effect (tests/ofx_host.py): a filter with the optional mask clip
``Mask`` (``HostHints.mask_input``) and the ``use_mask`` switch. With the switch on and the mask
connected the node gets it as input 1 (by the source's host times, at any render scale);
otherwise it gets the source alone and needs ``shapes``, and without them the render fails
with a message while the host keeps working. Clips are tiny (64x48, 3 frames): the node runs
a model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from ofx_host import FAILED, OK  # noqa: E402
from test_ofx_bridge import FILTER, FIRST, bridge_session, pytestmark, source  # noqa: E402, F401

from vidfx.server.catalog import describe_fields  # noqa: E402

COUNT = 3
BOX = (24, 16, 40, 32)  # x0, y0, x1, y1 of the object to remove (full-resolution pixels)
FAST = {"work_size": 64, "window": 2, "chunk": 4, "overlap": 1}  # small and quick


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    yield from bridge_session(tmp_path_factory)


def scene() -> list[np.ndarray]:
    """Three 64x48 opaque RGBA frames: a smooth background with a red square in ``BOX``."""
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
    out = []
    for t in range(COUNT):
        f = np.ones((48, 64, 4), np.float32)
        f[..., 0] = 0.3 + 0.3 * xx / 64 + 0.02 * t
        f[..., 1] = 0.4 + 0.2 * yy / 48
        f[..., 2] = 0.5
        x0, y0, x1, y1 = BOX
        f[y0:y1, x0:x1, :3] = (1.0, 0.0, 0.0)
        out.append(f)
    return out


def box_mask(kind: str) -> np.ndarray:
    """The box as a mask frame: ``grey`` (opaque white on black), ``alpha`` (RGBA, the box in
    alpha over black) or ``alpha_only`` (a one-channel Alpha image)."""
    x0, y0, x1, y1 = BOX
    if kind == "alpha_only":
        m = np.zeros((48, 64, 1), np.float32)
        m[y0:y1, x0:x1] = 1.0
        return m
    m = np.zeros((48, 64, 4), np.float32)
    if kind == "grey":
        m[..., 3] = 1.0
        m[y0:y1, x0:x1, :3] = 1.0
    else:
        m[y0:y1, x0:x1, 3] = 1.0
    return m


def fill_instance(host, frames, mask_source=None, mask_range=None, **params):
    last = FIRST + len(frames) - 1
    sources = {"Source": source(frames)}
    if mask_source is not None:
        sources["Mask"] = mask_source
    return host.create_instance(
        "org.vidfx.fill",
        FILTER,
        sources,
        (FIRST, last),
        params={**FAST, **params},
        clip_ranges={"Mask": mask_range} if mask_range else None,
    )


def far_from_box(img: np.ndarray, margin: int) -> np.ndarray:
    """The pixels at least ``margin`` pixels away from ``BOX`` (scaled to the image)."""
    h, w = img.shape[:2]
    sx, sy = w / 64, h / 48
    x0, y0, x1, y1 = BOX
    keep = np.ones((h, w), bool)
    keep[
        max(0, int((y0 - margin) * sy)) : int((y1 + margin) * sy) + 1,
        max(0, int((x0 - margin) * sx)) : int((x1 + margin) * sx) + 1,
    ] = False
    return keep


def assert_box_removed(img: np.ndarray, src: np.ndarray, scale: float = 1.0, exact: bool = True) -> None:
    x0, y0, x1, y1 = (int(v * scale) for v in BOX)
    inside = img[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2, :3]
    assert np.abs(inside - (1.0, 0.0, 0.0)).mean() > 0.2, "the red box is still there"
    assert inside[..., 0].mean() < 0.9 and inside[..., 1].mean() > 0.2
    keep = far_from_box(img, margin=12)
    if exact:
        np.testing.assert_allclose(img[keep][:, :3], src[keep][:, :3], atol=1e-5)
    else:  # resampled down and up again: close, not equal
        assert np.abs(img[keep][:, :3] - src[keep][:, :3]).max() < 0.05


def test_catalog_lists_fill_as_filter_with_mask_clip(bridge):
    fields = describe_fields()
    i = next(i for i in range(fields["count"]) if fields[f"node.{i}.name"] == "fill")
    assert fields[f"node.{i}.context"] == "filter" and fields[f"node.{i}.inputs"] == 1
    assert fields[f"node.{i}.mask"] == "Mask"
    others = [fields[f"node.{j}.mask"] for j in range(fields["count"]) if j != i]
    assert set(others) == {""}

    desc = bridge.host.describe("org.vidfx.fill", FILTER)
    assert desc.described.props.values["OfxImageEffectPropSupportedContexts"] == [FILTER]
    assert set(desc.clips) == {"Source", "Mask", "Output"}
    mask = desc.clips["Mask"].props.values
    assert mask["OfxImageClipPropOptional"] == [1] and mask["OfxImageClipPropIsMask"] == [1]
    assert mask["OfxImageEffectPropSupportedComponents"] == ["OfxImageComponentRGBA", "OfxImageComponentAlpha"]
    assert "OfxImageClipPropOptional" not in desc.clips["Source"].props.values
    use_mask = desc.params["use_mask"]
    assert use_mask.kind == "OfxParamTypeBoolean" and use_mask.props.values["OfxParamPropDefault"] == [1]
    assert use_mask.props.values["OfxPropLabel"] == ["Use mask"]


@pytest.mark.parametrize("kind", ["grey", "alpha", "alpha_only"])
def test_mask_clip_removes_the_box(bridge, kind):
    host = bridge.host
    frames = scene()
    mask = box_mask(kind)
    # the mask clip starts earlier than the source and is black before the source's first frame:
    # its frames must be taken at the source's host times, not by index from its own start
    black = np.zeros_like(mask)
    if kind == "grey":
        black[..., 3] = 1.0
    inst = fill_instance(host, frames, lambda t: mask if t >= FIRST else black, mask_range=(FIRST - 5, FIRST + 10))
    status, needed = inst.frames_needed(FIRST + 1)
    assert status == OK and needed["Mask"] == needed["Source"] == [FIRST, FIRST + COUNT - 1]
    host.fetch_log.clear()
    status, img = inst.render(FIRST + 1)
    assert status == OK, host.messages[-1:]
    assert {t for c, t in host.fetch_log if c == "Mask"} == set(range(FIRST, FIRST + COUNT))
    assert_box_removed(img, frames[1])
    np.testing.assert_allclose(img[..., 3], 1.0)
    inst.destroy()


def test_mask_at_half_render_scale(bridge):
    """scale_mode "full": source and mask are resampled up to full resolution alike."""
    host = bridge.host
    frames = scene()
    mask = box_mask("grey")
    inst = fill_instance(host, frames, lambda t: mask)
    status, img = inst.render(FIRST, scale=(0.5, 0.5))
    assert status == OK, host.messages[-1:]
    assert img.shape == (24, 32, 4)
    assert_box_removed(img, host.resample(frames[0], 0.5, 0.5), scale=0.5, exact=False)
    inst.destroy()


def test_switch_off_without_shapes_fails_cleanly_then_shapes_render(bridge):
    host = bridge.host
    frames = scene()
    mask = box_mask("grey")
    inst = fill_instance(host, frames, lambda t: mask, use_mask=False)
    before = len(host.messages)
    host.fetch_log.clear()
    status, img = inst.render(FIRST)
    assert status == FAILED and img is None
    kind, text = host.messages[before]
    assert kind == "OfxMessageError" and "nothing to remove" in text and "shapes" in text
    assert not [c for c, _ in host.fetch_log if c == "Mask"]  # switched off: never fetched

    x0, y0, x1, y1 = BOX
    inst.effect.params["shapes"].value = f"[{{type: box, keys: {{0: [{x0}, {y0}, {x1 - 1}, {y1 - 1}]}}}}]"
    status, img = inst.render(FIRST)  # the host kept working; shapes alone now
    assert status == OK, host.messages[-1:]
    assert_box_removed(img, frames[0])
    assert not [c for c, _ in host.fetch_log if c == "Mask"]
    inst.destroy()


def test_unconnected_mask_clip_uses_shapes(bridge):
    """No mask image (the clip gives none, as an empty optional clip in Resolve): one input."""
    host = bridge.host
    frames = scene()
    x0, y0, x1, y1 = BOX
    shapes = f"[{{type: box, keys: {{0: [{x0}, {y0}, {x1 - 1}, {y1 - 1}]}}}}]"
    inst = fill_instance(host, frames, shapes=shapes)  # use_mask on (the default), no Mask source
    status, img = inst.render(FIRST + 2)
    assert status == OK, host.messages[-1:]
    assert_box_removed(img, frames[2])
    inst.destroy()

    inst = fill_instance(host, frames)  # nothing at all to remove: a message, no crash
    before = len(host.messages)
    status, _ = inst.render(FIRST)
    assert status == FAILED and "nothing to remove" in host.messages[before][1]
    inst.destroy()
