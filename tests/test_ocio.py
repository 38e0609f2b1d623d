"""The ocio node: OpenColorIO conversions compared against OCIO's own processor on a real frame,
round trips, names from the clip and the config, one-line errors, alpha, $OCIO, threads."""

from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
import PyOpenColorIO as OCIO
import pytest
import torch

import vidfx
from vidfx.api import ArraySource
from vidfx.core.errors import MediaError, ParamError
from vidfx.core.frame import ClipInfo, ColourTags, Frame
from vidfx.core.registry import create_node

REPO = Path(__file__).resolve().parents[1]
GRADIENT = REPO / "sample_media" / "gradient_10bit_h265.mp4"
STUDIO = "ocio://studio-config-latest"
SDR_VIEW = {"display": "sRGB - Display", "view": "ACES 2.0 - SDR 100 nits (Rec.709)"}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def frame() -> torch.Tensor:
    """A real 10-bit frame (3, 180, 320), float32 0..1: taken as code values of whatever space a test names."""
    with vidfx.read(str(GRADIENT)) as clip:
        return clip.frame(5).data.clone()


def reference(x: torch.Tensor, transform: OCIO.Transform, inverse: bool = False, config: str = STUDIO) -> torch.Tensor:
    """OCIO's own result: its CPU processor on packed (H, W, 3) float32 pixels."""
    cfg = OCIO.Config.CreateFromFile(config)
    direction = OCIO.TRANSFORM_DIR_INVERSE if inverse else OCIO.TRANSFORM_DIR_FORWARD
    packed = np.ascontiguousarray(x[:3].permute(1, 2, 0).numpy(), dtype=np.float32).copy()
    cfg.getProcessor(transform, direction).getDefaultCPUProcessor().applyRGB(packed)
    return torch.from_numpy(packed).permute(2, 0, 1)


def configured(space: str | None = None, channels: int = 3, **params) -> tuple[vidfx.Node, ClipInfo]:
    """An ocio node configured on a 320x180 8-bit clip declaring ``space``, and its output description."""
    node = create_node("ocio", **params)
    tags = ColourTags("bt709", "bt709", "bt709", "tv", space)
    info = ClipInfo(320, 180, Fraction(25), 1, channels=channels, colour=tags)
    return node, node.configure([info], CPU)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize(
    "source, target",
    [
        ("ACEScg", "ARRI LogC4"),
        ("S-Log3 S-Gamut3", "ACES2065-1"),
        ("ARRI LogC3 (EI800)", "ACEScg"),
        ("V-Log V-Gamut", "ACEScct"),
        ("CanonLog3 CinemaGamut D55", "Linear Rec.2020"),
    ],
)
def test_colour_space_conversion_is_ocios(frame, source, target):
    out = vidfx.apply("ocio", [frame], source=source, target=target)[0]
    torch.testing.assert_close(out, reference(frame, OCIO.ColorSpaceTransform(source, target)), rtol=1e-6, atol=1e-6)


def test_acescg_to_logc4_and_back_round_trips(frame):
    log = vidfx.apply("ocio", [frame], source="ACEScg", target="ARRI LogC4")[0]
    assert (log - frame).abs().max() > 0.1  # a real conversion happened
    back = vidfx.apply("ocio", [log], source="ARRI LogC4", target="ACEScg")[0]
    assert (back - frame).abs().max() < 1e-5


def test_display_view_is_ocios_and_inverts(frame):
    display = vidfx.apply("ocio", [frame], source="ACEScg", **SDR_VIEW)[0]
    torch.testing.assert_close(
        display, reference(frame, OCIO.DisplayViewTransform("ACEScg", **SDR_VIEW)), rtol=1e-6, atol=1e-6
    )
    scene = vidfx.apply("ocio", [display], source="ACEScg", inverse=True, **SDR_VIEW)[0]
    torch.testing.assert_close(
        scene, reference(display, OCIO.DisplayViewTransform("ACEScg", **SDR_VIEW), inverse=True), rtol=1e-6, atol=1e-6
    )
    # ACES 2.0's inverse output transform is numerical: display -> scene -> display agrees to about 2e-5
    again = vidfx.apply("ocio", [scene], source="ACEScg", **SDR_VIEW)[0]
    assert (again - display).abs().max() < 1e-4


def test_look_is_applied_in_the_source(frame):
    look = "ACES 1.3 Reference Gamut Compression"
    out = vidfx.apply("ocio", [frame], source="ACES2065-1", target="ACEScg", look=look)[0]
    torch.testing.assert_close(
        out, reference(frame, OCIO.LookTransform("ACES2065-1", "ACEScg", looks=look)), rtol=1e-6, atol=1e-6
    )
    plain = vidfx.apply("ocio", [frame], source="ACES2065-1", target="ACEScg")[0]
    assert not torch.equal(out, plain)


def test_source_comes_from_the_clips_declared_space(frame):
    class DeclaredSource(ArraySource):
        def configure(self, inputs, device):
            return super().configure(inputs, device).replace(colour=ColourTags(space="ARRI LogC4"))

    graph = vidfx.Graph()
    src = graph.add(DeclaredSource([frame]))
    name = graph.add(create_node("ocio", source="", target="ACEScg"), src)
    out = graph.frame(name, 0).data
    graph.close()
    torch.testing.assert_close(out, reference(frame, OCIO.ColorSpaceTransform("ARRI LogC4", "ACEScg")))


def test_no_source_anywhere_is_a_param_error():
    with pytest.raises(ParamError, match="source") as exc:
        configured(None, target="ACEScg")
    assert "declares no colour space" in one_line(exc)
    with pytest.raises(ParamError, match="inverse needs source"):
        configured("sRGB - Display", inverse=True, **SDR_VIEW)


def test_output_description():
    _, info = configured("ARRI LogC4", target="acescg")  # names in any case, aliases and roles resolve
    assert info.colour == ColourTags(None, "linear", "bt709", "tv", "ACEScg")
    assert info.bit_depth == 16  # float scene-linear data is not squashed into 8 bits
    _, info = configured("ARRI LogC4", target="lin_rec709")
    assert info.colour == ColourTags("bt709", "linear", "bt709", "tv", "Linear Rec.709 (sRGB)")
    _, info = configured("scene_linear", **SDR_VIEW)
    assert info.colour == ColourTags("bt709", "iec61966-2-1", "bt709", "tv", "sRGB - Display")
    assert info.bit_depth == 8
    _, info = configured("ACEScg", display="Rec.2100-PQ - Display")  # the display's default view
    assert (info.colour.primaries, info.colour.transfer) == ("bt2020", "smpte2084")
    _, info = configured("ACEScg", target="ARRI LogC4")  # no FFmpeg name for LogC4 / AWG4
    assert (info.colour.space, info.colour.primaries, info.colour.transfer) == ("ARRI LogC4", None, None)
    _, info = configured("sRGB - Display", source="ACEScg", inverse=True, **SDR_VIEW)
    assert info.colour.space == "ACEScg" and info.bit_depth == 16


@pytest.mark.parametrize(
    "params, names, suggestion",
    [
        ({"target": "LogC4"}, "ocio.target", "'ARRI LogC4'"),
        ({"source": "slog3", "target": "ACEScg"}, "ocio.source", "'S-Log3 S-Gamut3'"),
        ({"display": "sRGB Display"}, "ocio.display", "'sRGB - Display'"),
        ({"display": "sRGB - Display", "view": "ACES SDR"}, "ocio.view", "'ACES 2.0 - SDR 100 nits (Rec.709)'"),
        ({"target": "ACEScg", "look": "gamut compression"}, "ocio.look", "'ACES 1.3 Reference Gamut Compression'"),
    ],
)
def test_unknown_names_list_close_matches(params, names, suggestion):
    with pytest.raises(ParamError) as exc:
        configured("ACEScg", **params)
    text = one_line(exc)
    assert names in text and "close matches" in text and suggestion in text


def test_unknown_declared_space_says_where_it_came_from():
    with pytest.raises(ParamError) as exc:
        configured("LogC4", target="ACEScg")
    text = one_line(exc)
    assert "ocio.source (the clip's declared colour space): unknown colour space 'LogC4'" in text
    assert "'ARRI LogC4'" in text


def test_what_to_convert_to_must_be_clear():
    with pytest.raises(ParamError, match="not both"):
        configured("ACEScg", target="ACES2065-1", display="sRGB - Display")
    with pytest.raises(ParamError, match="give target"):
        configured("ACEScg")


def test_alpha_is_untouched_and_grey_becomes_rgb(frame):
    alpha = torch.rand(1, *frame.shape[1:])
    rgba = vidfx.apply("ocio", [torch.cat([frame, alpha])], source="ARRI LogC4", target="ACEScg")[0]
    rgb = vidfx.apply("ocio", [frame], source="ARRI LogC4", target="ACEScg")[0]
    assert torch.equal(rgba[3:], alpha) and torch.equal(rgba[:3], rgb)
    grey = vidfx.apply("ocio", [frame[1:2]], source="ARRI LogC4", target="ACEScg")[0]
    expected = vidfx.apply("ocio", [frame[1:2].expand(3, -1, -1)], source="ARRI LogC4", target="ACEScg")[0]
    assert grey.shape == (3, *frame.shape[1:]) and torch.equal(grey, expected)
    _, info = configured("ARRI LogC4", channels=1, target="ACEScg")
    assert info.channels == 3


def test_input_frame_is_not_changed(frame):
    x = frame.clone()
    node, _ = configured("ARRI LogC4", target="ACEScg")
    node.render(0, [[Frame(x, index=0)]])
    assert torch.equal(x, frame)


def test_ocio_environment_variable_is_honoured(frame, tmp_path, monkeypatch):
    config = OCIO.Config.CreateFromFile("ocio://cg-config-latest")
    half = OCIO.ColorSpace(name="vidfx half gain")  # only in this file: half the reference (ACES2065-1)
    half.setTransform(
        OCIO.MatrixTransform([0.5, 0, 0, 0, 0, 0.5, 0, 0, 0, 0, 0.5, 0, 0, 0, 0, 1]),
        OCIO.COLORSPACE_DIR_TO_REFERENCE,
    )
    config.addColorSpace(half)
    path = tmp_path / "show.ocio"
    path.write_text(config.serialize())
    monkeypatch.setenv("OCIO", str(path))
    out = vidfx.apply("ocio", [frame], source="vidfx half gain", target="ACES2065-1")[0]
    torch.testing.assert_close(out, frame * 0.5)
    # an explicit config wins over $OCIO
    with pytest.raises(ParamError, match="vidfx half gain"):
        configured("vidfx half gain", config=STUDIO, target="ACEScg")
    monkeypatch.setenv("OCIO", str(tmp_path / "missing.ocio"))
    with pytest.raises(MediaError, match=r"ocio\.\$OCIO: .*missing\.ocio") as exc:
        configured("ACEScg", target="ACES2065-1")
    one_line(exc)


def test_bad_configs():
    with pytest.raises(ParamError, match="ocio://studio-config-latest") as exc:
        configured("ACEScg", config="ocio://no-such-config", target="ACES2065-1")
    one_line(exc)
    with pytest.raises(MediaError, match=r"ocio\.config: .*nowhere\.ocio"):
        configured("ACEScg", config="/nowhere.ocio", target="ACES2065-1")


def test_render_from_threads_matches_serial(frame):
    node, _ = configured("S-Log3 S-Gamut3", **SDR_VIEW)
    frames = [Frame(frame * (0.25 + i / 8), index=i) for i in range(8)]
    serial = [node.render(i, [[f]]).data for i, f in enumerate(frames)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda i: node.render(i, [[frames[i]]]).data, range(8)))
    assert all(torch.equal(a, b) for a, b in zip(serial, threaded))


def test_row_bands_do_not_change_the_result(frame):
    node, _ = configured("ARRI LogC4", **SDR_VIEW)
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 3, 7):  # one band, and bands of unequal height (180 rows)
            torch.set_num_threads(n)
            outs.append(node.render(0, [[Frame(frame, index=0)]]).data)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    torch.testing.assert_close(outs[0], reference(frame, OCIO.DisplayViewTransform("ARRI LogC4", **SDR_VIEW)))


def test_same_space_passes_frames_through(frame):
    node, _ = configured("ACEScg", target="ACEScg")
    f = Frame(frame, index=0)
    assert node.render(0, [[f]]) is f


def test_registered():
    assert vidfx.node_types()["ocio"].__name__ == "OCIOTransform"
