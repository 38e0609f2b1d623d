"""The package as users get it: what the wheel holds and where vidfx is imported from."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

import vidfx


def test_tests_run_against_the_installed_package_in_ci():
    # .ci/run installs the wheel (not editable) and sets this: the tests must not see the source tree
    if os.environ.get("VIDFX_EXPECT_INSTALLED") == "1":
        assert "site-packages" in Path(vidfx.__file__).parts, vidfx.__file__


def test_package_data_is_installed():
    package = files("vidfx")
    for name in ("tiny_x4.pt", "tiny_x2.pt", "tiny_x4_detail.pt"):
        assert package.joinpath("vsr", "weights", name).is_file(), name
    assert package.joinpath("segment", "weights", "camvid_mbconv_unet.pt").is_file()
    jumpcut = package.joinpath("jumpcut", "weights")
    for name in ("jumpcut_prior.pt", "face_template_mediapipe.npy", "face_template_dlib.npy"):
        assert jumpcut.joinpath(name).is_file(), name
    bridge = files("vidfx.ofx_bridge")
    for name in ("Makefile", "src/plugin.c", "src/wire.c", "src/wire.h", "src/ofx_abi.h"):
        assert bridge.joinpath(name).is_file(), name


def test_version_comes_from_the_installed_metadata():
    assert vidfx.__version__ not in ("", "0+unknown")
