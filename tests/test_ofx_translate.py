"""The ``translate`` node as an OFX filter in the test host (tests/ofx_host.py): it is described,
renders the shipped day -> dusk model on a real CamVid frame through the render server (the
output darker than the source, alpha kept), and a bad model name fails the render with a
message while the host keeps working."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from ofx_host import FAILED, OK  # noqa: E402
from test_ofx_bridge import FILTER, FIRST, bridge_session, pytestmark, source  # noqa: E402, F401

from vidfx.fill.data import read_rgb  # noqa: E402

COUNT = 3


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    yield from bridge_session(tmp_path_factory)


def frames(shared_clips) -> list[np.ndarray]:
    """Three 120x90 RGBA frames of a CamVid val (daylight) sequence, alpha 0.5."""
    files = sorted((shared_clips.parent / "camvid" / "val").glob("*.jpg"))[:COUNT]
    out = []
    for f in files:
        rgb = cv2.resize(read_rgb(f), (120, 90), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        out.append(np.concatenate([rgb, np.full((90, 120, 1), 0.5, np.float32)], -1))
    return out


def test_translate_renders_day_to_dusk_in_the_host(bridge, shared_clips):
    host = bridge.host
    desc = bridge.host.describe("org.vidfx.translate", FILTER)
    assert {"model", "strength", "temporal"} <= set(desc.params)
    src = frames(shared_clips)
    inst = host.create_instance("org.vidfx.translate", FILTER, {"Source": source(src)}, (FIRST, FIRST + COUNT - 1))
    status, img = inst.render(FIRST + 1)
    assert status == OK, host.messages
    assert img.shape == src[1].shape
    np.testing.assert_allclose(img[..., 3], 0.5, atol=1e-5)
    assert img[..., :3].mean() < src[1][..., :3].mean() - 0.02  # dusk is darker (straight colour in and out)

    bad = host.create_instance(
        "org.vidfx.translate", FILTER, {"Source": source(src)}, (FIRST, FIRST + COUNT - 1), params={"model": "nope"}
    )
    status, _ = bad.render(FIRST)
    assert status == FAILED
    status, _ = inst.render(FIRST + 2)
    assert status == OK
