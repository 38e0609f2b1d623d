"""An output that declares its colour space gets an OCIO conversion from the clip's declared
space before it is written."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

import vidfx
from vidfx.core.frame import ClipInfo, ColourTags, EndOfStream, Frame
from vidfx.core.node import SourceNode


class ACEScgRamp(SourceNode):
    """A scene-linear ramp that declares its colour space."""

    type_name = "test_acescg_ramp"

    def configure(self, inputs, device):
        return ClipInfo(
            width=16, height=8, fps=Fraction(24), num_frames=3, bit_depth=16, colour=ColourTags(space="ACEScg")
        )

    def read(self, n):
        if n >= 3:
            raise EndOfStream(3)
        ramp = torch.linspace(0.0, 2.0, 16).expand(3, 8, 16).clone() * (n + 1) / 3
        return Frame(ramp, index=n, pts=n)


def test_output_colourspace_converts_from_the_declared_space(tmp_path):
    g = vidfx.Graph()
    src = g.add(ACEScgRamp(name="plate"))
    out = tmp_path / "log_%04d.exr"
    g.write(src, str(out), colourspace="ARRI LogC4", exr="float")
    infos = g.dry_run()
    assert list(infos.values())[0].colour.space == "ARRI LogC4"
    assert not list(tmp_path.iterdir())  # the dry run wrote nothing
    g.run(device="cpu")
    frames = [ACEScgRamp().read(n).data for n in range(3)]
    expected = vidfx.apply("ocio", frames, source="ACEScg", target="ARRI LogC4")
    written = vidfx.read(str(out), device="cpu")
    assert len(written) == 3
    for n in range(3):
        assert torch.allclose(written.frame(n).data, expected[n], atol=1e-5)


def test_output_colourspace_needs_a_declared_source(tmp_path):
    g = vidfx.Graph()
    src = g.add("pattern", width=16, height=8, frames=2)
    g.write(src, str(tmp_path / "o.mov"), colourspace="ACEScg")
    with pytest.raises(vidfx.ParamError, match="declares no colour space"):
        g.run(device="cpu")
    assert not list(tmp_path.iterdir())


def test_read_declares_the_colour_space_a_graph_file_converts_from(tmp_path):
    src = tmp_path / "plate.exr"
    g = vidfx.Graph()
    g.write(g.add(ACEScgRamp(name="plate")), str(tmp_path / "plate_%04d.exr"), exr="float")
    g.run(device="cpu")
    doc = tmp_path / "g.yaml"
    doc.write_text(
        "inputs:\n  plate: {path: plate_%04d.exr, colourspace: ACEScg}\n"
        "outputs:\n  - {input: plate, path: log_%04d.exr, colourspace: ARRI LogC4, exr: float}\n"
    )
    assert vidfx.load(doc).run(device="cpu").frames
    frames = [ACEScgRamp().read(n).data for n in range(3)]
    expected = vidfx.apply("ocio", frames, source="ACEScg", target="ARRI LogC4")
    written = vidfx.read(str(tmp_path / "log_%04d.exr"), device="cpu")
    for n in range(3):
        assert torch.allclose(written.frame(n).data, expected[n], atol=1e-5)
    assert not src.exists()
