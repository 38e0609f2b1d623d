"""The OFX bridge end to end: build the plugin with gcc, load it in our ctypes host
(tests/ofx_host.py), drive the OFX actions, and compare pixels with the same node run
in-process through the engine (``vidfx.apply``). Also: the server is killed mid-render
(the host gets an error, survives, and the next render restarts the server), host abort,
and parameter errors reported through the message suite."""

from __future__ import annotations

import ctypes
import importlib.resources
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("gcc") is None or shutil.which("make") is None,
    reason="the OFX bridge builds with gcc + make on Linux",
)

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from ofx_host import FAILED, OK, OfxHost  # noqa: E402
from vidfx.ofx_bridge import build as ofx_build  # noqa: E402

import vidfx  # noqa: E402
from vidfx.core.registry import create_node  # noqa: E402
from vidfx.server import protocol  # noqa: E402
from vidfx.server.server import prepare_socket_dir  # noqa: E402

FILTER = "OfxImageEffectContextFilter"
TRANSITION = "OfxImageEffectContextTransition"
FIRST, COUNT = 10, 8  # the host's timeline starts at frame 10


def server_env(socket_path: str) -> dict[str, str]:
    package_parent = Path(vidfx.__file__).resolve().parent.parent  # the vidfx this test runs: installed or not
    return {
        "VIDFX_SOCKET": socket_path,
        "VIDFX_SERVER_CMD": f"env PYTHONPATH={package_parent}:{TESTS} {sys.executable} -m vidfx.server --device cpu "
        f"--import ofx_test_nodes",
        "VIDFX_SERVER_START_TIMEOUT": "120",
    }


def bridge_session(tmp_path_factory):
    """The body of the module-scoped ``bridge`` fixture (test_ofx_host_semantics shares it): a
    built bundle, its test host and a server with the test nodes; shut down at the end."""
    sockdir = tempfile.mkdtemp(prefix="vfx")  # short: socket paths are limited to 107 bytes
    sock = f"{sockdir}/run/server.sock"
    env = server_env(sock)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # The test nodes exist in this process only while this module runs (other test modules
    # that list every node type must not see them); the server imports them with --import.
    import ofx_test_nodes

    from vidfx.core.registry import register, unregister

    for cls in ofx_test_nodes.TEST_NODES:
        register(cls)
    # Start the server while the plugin builds (saves time); the plugin would start it anyway.
    os.makedirs(f"{sockdir}/run", mode=0o700)
    subprocess.Popen(
        env["VIDFX_SERVER_CMD"],
        shell=True,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bundle = ofx_build.build(tmp_path_factory.mktemp("ofxbuild"), ofx_build.source_dir(), quiet=True)
    try:
        host = OfxHost(str(bundle / "Contents" / "Linux-x86-64" / "vidfx.ofx"))
        yield SimpleNamespace(host=host, bundle=bundle, socket=Path(sock))
    finally:
        for cls in ofx_test_nodes.TEST_NODES:
            unregister(cls)
        try:
            protocol.request("shutdown", path=Path(sock), timeout=10)
        except OSError:
            pass
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(sockdir, ignore_errors=True)


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    yield from bridge_session(tmp_path_factory)


def random_frames() -> list[np.ndarray]:
    """Eight random 64x48 RGBA frames with random alpha (the ``frames`` fixture)."""
    rng = np.random.default_rng(7)
    out = []
    for _ in range(COUNT):
        f = rng.random((48, 64, 4), dtype=np.float32)
        f[..., 3] = rng.random((48, 64), dtype=np.float32)  # alpha must survive RGB nodes
        out.append(f)
    return out


@pytest.fixture(scope="module")
def frames():
    return random_frames()


def source(frames):
    return lambda t: frames[int(round(t)) - FIRST] if FIRST <= t < FIRST + len(frames) else None


def filter_instance(host: OfxHost, node: str, frames, **params):
    """An instance of ``org.vidfx.<node>`` in the filter context on ``frames`` (host frames FIRST...)."""
    return host.create_instance(
        f"org.vidfx.{node}", FILTER, {"Source": source(frames)}, (FIRST, FIRST + len(frames) - 1), params=params
    )


def rgb_list(frames):
    return [f[..., :3] for f in frames]


def hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


def server_pid(bridge) -> int:
    return int(protocol.request("hello", path=bridge.socket)[1]["pid"])


def test_describe_one_plugin_per_node_with_schema_params(bridge):
    host = bridge.host
    ids = set(host.plugins)
    assert {"org.vidfx.temporal_average", "org.vidfx.resize", "org.vidfx.ofx_test_mix"} <= ids
    assert "org.vidfx.trim" not in ids  # changes the timeline: not an effect
    desc = host.describe("org.vidfx.temporal_average", FILTER)
    props = desc.described.props.values
    assert props["OfxImageEffectPropSupportedContexts"] == [FILTER]
    assert props["OfxImageEffectPropSupportedPixelDepths"] == ["OfxBitDepthFloat"]
    assert props["OfxImageEffectPropTemporalClipAccess"] == [1]
    assert props["OfxImageEffectPropMultipleClipDepths"] == [0]  # the spec's string for this property
    assert props["OfxImageEffectPluginRenderThreadSafety"] == ["OfxImageEffectRenderFullySafe"]
    assert set(desc.clips) == {"Source", "Output"}
    assert desc.clips["Source"].props.values["OfxImageEffectPropSupportedComponents"] == ["OfxImageComponentRGBA"]
    radius = desc.params["radius"]
    assert radius.kind == "OfxParamTypeInteger"
    assert radius.props.values["OfxParamPropDefault"] == [1]
    assert radius.props.values["OfxParamPropMin"] == [0] and radius.props.values["OfxParamPropMax"] == [32]
    weights = desc.params["weights"]
    assert weights.kind == "OfxParamTypeChoice"
    assert weights.props.values["OfxParamPropChoiceOption"] == ["box", "triangle"]

    if "org.vidfx.segment" in ids:  # in a host, Segment keys people out as alpha by default
        seg = host.describe("org.vidfx.segment", FILTER).params

        def default_option(param):
            return param.props.values["OfxParamPropChoiceOption"][param.props.values["OfxParamPropDefault"][0]]

        assert default_option(seg["mode"]) == "person" and default_option(seg["output"]) == "alpha"

    mix = host.describe("org.vidfx.ofx_test_mix", TRANSITION)
    assert set(mix.clips) == {"SourceFrom", "SourceTo", "Output"}
    assert "Transition" in mix.params and "gain" in mix.params and "transition" not in mix.params


def test_temporal_node_matches_engine(bridge, frames):
    host = bridge.host
    inst = filter_instance(host, "temporal_average", frames, radius=2, weights=1)
    status, needed = inst.frames_needed(FIRST + 3)
    assert status == OK and needed == {"Source": [FIRST + 1.0, FIRST + 5.0]}
    status, needed = inst.frames_needed(FIRST)  # the window is clamped to the clip
    assert status == OK and needed == {"Source": [FIRST + 0.0, FIRST + 2.0]}
    status, rod = inst.region_of_definition(FIRST)
    assert status == OK and rod == (0.0, 0.0, 64.0, 48.0)

    expected = vidfx.apply("temporal_average", rgb_list(frames), radius=2, weights="triangle")
    host.fetch_log.clear()
    before = protocol.request("hello", path=bridge.socket)[1]
    for n in range(COUNT):
        status, img = inst.render(FIRST + n)
        assert status == OK, host.messages
        np.testing.assert_allclose(img[..., :3], hwc(expected[n]), atol=1e-6)
        np.testing.assert_array_equal(img[..., 3], frames[n][..., 3])
    assert ("Source", FIRST + 5.0) in host.fetch_log  # frames at other times came via clipGetImage
    assert host.images_out == 0 and not host.callback_errors
    # the window moves by one frame per render: each frame's pixels were sent once
    after = protocol.request("hello", path=bridge.socket)[1]
    assert int(after["frames_received"]) - int(before["frames_received"]) == COUNT
    assert int(after["frames_reused"]) - int(before["frames_reused"]) > COUNT

    # upstream changed frame 12: same time, new content -> sent again, and the output follows
    edited = list(frames)
    edited[2] = frames[2] * 0.25
    inst.effect.clips["Source"].source = source(edited)
    expected = vidfx.apply("temporal_average", rgb_list(edited), radius=2, weights="triangle")
    status, img = inst.render(FIRST + 3)
    assert status == OK
    np.testing.assert_allclose(img[..., :3], hwc(expected[3]), atol=1e-6)
    assert inst.destroy() == OK


def test_resize_scales_region_of_definition(bridge, frames):
    host = bridge.host
    inst = filter_instance(host, "resize", frames, scale=2.0, kernel=3)
    status, rod = inst.region_of_definition(FIRST)
    assert status == OK and rod == (0.0, 0.0, 128.0, 96.0)
    status, roi = inst.regions_of_interest(FIRST, [0, 0, 128, 96])
    assert status == OK and roi == {"Source": [0.0, 0.0, 64.0, 48.0]}
    expected = vidfx.apply("resize", rgb_list(frames[:3]), scale=2.0, kernel="bilinear")
    for n in range(3):
        status, img = inst.render(FIRST + n)
        assert status == OK, host.messages
        assert img.shape == (96, 128, 4)
        np.testing.assert_allclose(img[..., :3], hwc(expected[n]), atol=1e-5)
        assert np.all(img[..., 3] == 1.0)
    # a proxy render (half-size inputs) and back: both configurations stay ready in the server
    half = [np.ascontiguousarray(f[::2, ::2]) for f in frames[:3]]
    expected_half = vidfx.apply("resize", rgb_list(half), scale=2.0, kernel="bilinear")
    for src, want, shape in (
        (half, expected_half, (48, 64, 4)),
        (frames, expected, (96, 128, 4)),
        (half, expected_half, (48, 64, 4)),
    ):
        inst.effect.clips["Source"].source = source(src)
        status, img = inst.render(FIRST + 2)
        assert status == OK and img.shape == shape
        np.testing.assert_allclose(img[..., :3], hwc(want[2]), atol=1e-5)
    inst.effect.clips["Source"].source = source(frames)
    # the host is short of memory: buffers and server state go, the next render rebuilds them
    assert host.call("org.vidfx.resize", "OfxActionPurgeCaches", inst.handle) == OK
    status, img = inst.render(FIRST + 1)
    assert status == OK
    np.testing.assert_allclose(img[..., :3], hwc(expected[1]), atol=1e-5)
    inst.destroy()


def test_sequence_node_matches_engine_chunks(bridge, frames):
    host = bridge.host
    inst = filter_instance(host, "ofx_test_chunks", frames, length=4)
    status, needed = inst.frames_needed(FIRST + 3)  # in the overlap of chunks [0,4) and [3,7)
    assert status == OK and needed == {"Source": [FIRST + 0.0, FIRST + 6.0]}
    expected = vidfx.apply("ofx_test_chunks", rgb_list(frames), length=4)
    for n in range(COUNT):
        status, img = inst.render(FIRST + n)
        assert status == OK, host.messages
        np.testing.assert_allclose(img[..., :3], hwc(expected[n]), atol=1e-6)
    inst.destroy()


def test_transition_context(bridge, frames):
    host = bridge.host
    other = [np.ascontiguousarray(f[::-1]) for f in frames]
    inst = host.create_instance(
        "org.vidfx.ofx_test_mix",
        TRANSITION,
        {"SourceFrom": source(frames), "SourceTo": source(other)},
        (FIRST, FIRST + COUNT - 1),
        params={"Transition": lambda t: (t - FIRST) / (COUNT - 1), "gain": 2.0},
    )
    for n in (0, 3, 7):
        status, img = inst.render(FIRST + n)
        assert status == OK, host.messages
        t = n / (COUNT - 1)
        want = (frames[n][..., :3] * (1 - t) + other[n][..., :3] * t) * 2.0
        np.testing.assert_allclose(img[..., :3], want, atol=1e-5)
    inst.destroy()


def test_server_error_becomes_host_message(bridge, frames):
    host = bridge.host
    inst = filter_instance(host, "crop", frames, width=5000, height=10)
    before = len(host.messages)
    status, _ = inst.render(FIRST)
    assert status == FAILED
    kind, text = host.messages[before]
    assert kind == "OfxMessageError" and "exceeds" in text
    inst.effect.params["width"].value = 16  # fixing the parameter fixes the render
    status, img = inst.render(FIRST)
    assert status == OK and img.shape == (10, 16, 4)
    inst.destroy()


def wait_for(path: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def test_server_killed_mid_render_then_restarted(bridge, frames, tmp_path):
    host = bridge.host
    inst = filter_instance(host, "ofx_test_slow", frames, delay=0.0)
    assert inst.render(FIRST)[0] == OK
    pid = server_pid(bridge)
    inst.effect.params["delay"].value = 30.0
    marker = tmp_path / "rendering"
    inst.effect.params["marker"].value = str(marker)
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=inst.render(FIRST + 1)))
    worker.start()
    wait_for(marker)  # the server is now inside the node's render
    os.kill(pid, signal.SIGKILL)
    worker.join(60)
    assert not worker.is_alive()
    status, _ = result["r"]
    assert status == FAILED
    assert "stopped" in host.messages[-1][1]
    assert host.images_out == 0

    inst.effect.params["delay"].value = 0.0
    inst.effect.params["marker"].value = ""
    # hosts set these for their own embedded Python: the plugin must not pass them on
    os.environ["PYTHONHOME"] = "/nonexistent/host-python"
    try:
        status, img = inst.render(FIRST + 2)  # restarts the server
    finally:
        del os.environ["PYTHONHOME"]
    assert status == OK, host.messages[-1:]
    np.testing.assert_allclose(img[..., :3], frames[2][..., :3] * 0.5, atol=1e-6)
    assert server_pid(bridge) != pid
    # frame 10 was sent to the old server: the new one reports it missing, the plugin resends
    status, img = inst.render(FIRST)
    assert status == OK, host.messages[-1:]
    np.testing.assert_allclose(img[..., :3], frames[0][..., :3] * 0.5, atol=1e-6)
    inst.destroy()


def test_host_abort_stops_waiting(bridge, frames, tmp_path):
    host = bridge.host
    marker = tmp_path / "rendering"
    inst = filter_instance(host, "ofx_test_slow", frames, delay=30.0, marker=str(marker))

    def abort_when_rendering():
        wait_for(marker)
        inst.effect.aborted = True

    threading.Thread(target=abort_when_rendering, daemon=True).start()
    messages = len(host.messages)
    start = time.monotonic()
    status, _ = inst.render(FIRST)
    assert status == FAILED and time.monotonic() - start < 20  # did not wait for the 30 s render
    assert len(host.messages) == messages  # an abort is not an error to report
    inst.effect.aborted = False
    inst.destroy()


def run_host_without_server(bridge, tmp_path: Path, code: str, server_cmd: str) -> subprocess.CompletedProcess:
    """Run ``code`` (a Python script; argv[1] is the plugin binary) in a fresh process whose
    plugin finds no server and starts it with ``server_cmd`` (the default start timeout)."""
    env = dict(os.environ, VIDFX_SOCKET=str(tmp_path / "none" / "s.sock"), VIDFX_SERVER_CMD=server_cmd)
    env["PYTHONPATH"] = str(TESTS)
    env.pop("VIDFX_SERVER_START_TIMEOUT", None)
    binary = bridge.bundle / "Contents" / "Linux-x86-64" / "vidfx.ofx"
    return subprocess.run(
        [sys.executable, "-c", code, str(binary)], env=env, capture_output=True, text=True, timeout=120
    )


def test_offline_describe_uses_saved_node_list(bridge, tmp_path):
    # No server can start: the plugin list comes from Resources/nodes.txt (the manifest written
    # at build time) and never waits for a server.
    code = "import sys; from ofx_host import OfxHost; h = OfxHost(sys.argv[1]); print(','.join(sorted(h.plugins)))"
    start = time.monotonic()
    out = run_host_without_server(bridge, tmp_path, code, "sleep 600")
    assert time.monotonic() - start < 30  # the plugin scan did not wait for the server
    assert out.returncode == 0, out.stderr
    assert "org.vidfx.temporal_average" in out.stdout.strip().split(",")
    assert "org.vidfx.trim" not in out.stdout  # not exposed


def test_install_copies_bundle(bridge, tmp_path):
    target = ofx_build.install(bridge.bundle, tmp_path / "Plugins")
    assert (target / "Contents" / "Linux-x86-64" / "vidfx.ofx").is_file()
    assert (target / "Contents" / "Resources" / "nodes.txt").is_file()


def test_protocol_roundtrip_and_private_socket_dir(tmp_path):
    body = protocol.encode("render", {"a": "x=y", "b": "line1\nline2\\end"})[4:]
    assert protocol.decode(body) == ("render", {"a": "x=y", "b": "line1\nline2\\end"})
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(SystemExit):
        prepare_socket_dir(shared / "server.sock")
    prepare_socket_dir(tmp_path / "private" / "server.sock")
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o700


def test_instances_render_concurrently(bridge, frames, tmp_path):
    # Instance A blocks inside a 30 s render; instance B must still render meanwhile.
    host = bridge.host
    marker = tmp_path / "a_rendering"
    a = filter_instance(host, "ofx_test_slow", frames, delay=30.0, marker=str(marker))
    b = filter_instance(host, "ofx_test_slow", frames, delay=0.0)
    result = {}
    worker = threading.Thread(target=lambda: result.update(a=a.render(FIRST)))
    worker.start()
    wait_for(marker)
    status, img = b.render(FIRST + 1)
    assert status == OK and worker.is_alive()  # B finished while A is still rendering
    np.testing.assert_allclose(img[..., :3], frames[1][..., :3] * 0.5, atol=1e-6)
    a.effect.aborted = True
    worker.join(30)
    assert result["a"][0] == FAILED
    a.destroy()
    b.destroy()


def test_jumpcut_as_transition_matches_engine(bridge):
    # SourceFrom before the cut, SourceTo after it; the transition spans host frames 8..13.
    # The node sees one clip made of From[5..10] + To[11..16] with a cut at its frame 6.
    host = bridge.host
    assert "org.vidfx.jumpcut" in host.plugins
    rng = np.random.default_rng(3)
    clip_from = [
        np.concatenate([rng.random((24, 32, 3), dtype=np.float32), np.ones((24, 32, 1), np.float32)], 2)
        for _ in range(20)
    ]
    clip_to = [
        np.concatenate([rng.random((24, 32, 3), dtype=np.float32), np.ones((24, 32, 1), np.float32)], 2)
        for _ in range(20)
    ]
    desc = host.describe("org.vidfx.jumpcut", TRANSITION)
    assert set(desc.clips) == {"SourceFrom", "SourceTo", "Output"}
    assert not {"cuts", "frames", "seconds"} & set(desc.params)  # set by the transition itself
    method = desc.params["method"].props.values["OfxParamPropChoiceOption"].index("crossfade")
    inst = host.create_instance(
        "org.vidfx.jumpcut",
        TRANSITION,
        {
            "SourceFrom": lambda t: clip_from[int(t)] if 0 <= t < 20 else None,
            "SourceTo": lambda t: clip_to[int(t)] if 0 <= t < 20 else None,
        },
        (0, 19),
        params={"method": method, "context": 2},
        clip_ranges={"Output": (8, 13)},
    )
    status, needed = inst.frames_needed(9)
    assert status == OK and needed == {"SourceFrom": [5.0, 10.0], "SourceTo": [11.0, 16.0]}
    joined = [f[..., :3] for f in clip_from[5:11] + clip_to[11:17]]
    # a node object: the parameter `frames` would clash with vidfx.apply's own argument
    node = create_node("jumpcut", cuts=[6], frames=6, method="crossfade", context=2)
    expected = vidfx.apply(node, joined)
    for t in range(8, 14):
        status, img = inst.render(t)
        assert status == OK, host.messages[-1:]
        np.testing.assert_allclose(img[..., :3], hwc(expected[t - 5]), atol=1e-5)
    inst.destroy()


def test_vsr_filter_scales_rod_and_matches_engine(bridge, frames):
    host = bridge.host
    assert "org.vidfx.vsr" in host.plugins
    clip = [np.ascontiguousarray(f[:24, :32]) for f in frames[:4]]
    inst = filter_instance(host, "vsr", clip, chunk=3, overlap=1)
    status, rod = inst.region_of_definition(FIRST)
    assert status == OK, host.messages[-1:]
    assert rod == (0.0, 0.0, 128.0, 96.0)  # x4
    status, needed = inst.frames_needed(FIRST + 2)  # overlap of chunks [0,3) and [2,4)
    assert status == OK and needed == {"Source": [FIRST + 0.0, FIRST + 3.0]}
    expected = vidfx.apply("vsr", rgb_list(clip), chunk=3, overlap=1)
    for n in range(len(clip)):
        status, img = inst.render(FIRST + n)
        assert status == OK, host.messages[-1:]
        assert img.shape == (96, 128, 4)
        np.testing.assert_allclose(img[..., :3], hwc(expected[n]), atol=1e-4)
    inst.destroy()


def test_build_from_installed_package_sources(tmp_path, monkeypatch):
    # `vidfx ofx build` with no options: the C sources come from the vidfx.ofx_bridge package (site-packages
    # for a wheel), the bundle goes to the cache folder, and nothing is written into the package.
    sources = importlib.resources.files("vidfx.ofx_bridge")
    for name in ("Makefile", "src/plugin.c", "src/wire.c", "src/wire.h", "src/ofx_abi.h"):
        assert sources.joinpath(name).is_file(), name
    package = Path(str(sources))
    before = sorted(p for p in package.rglob("*") if "__pycache__" not in p.parts)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert ofx_build.main(["build"]) == 0
    bundle = tmp_path / "cache" / "vidfx" / "ofx" / "vidfx.ofx.bundle"
    plugin = ctypes.CDLL(str(bundle / "Contents" / "Linux-x86-64" / "vidfx.ofx"))
    assert plugin.OfxGetNumberOfPlugins and plugin.OfxGetPlugin
    assert sys.executable in (bundle / "Contents" / "Resources" / "server_cmd").read_text()
    assert b"temporal_average" in (bundle / "Contents" / "Resources" / "nodes.txt").read_bytes()
    assert sorted(p for p in package.rglob("*") if "__pycache__" not in p.parts) == before


def test_serve_status_entry_point(bridge, capsys):
    # `vidfx serve --status` as the CLI calls it (main(argv) -> int)
    from vidfx import server

    assert server.main(["--status"]) == 0  # VIDFX_SOCKET points at the test server
    assert "pid" in capsys.readouterr().out
