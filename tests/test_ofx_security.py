"""The OFX bridge against other local users (docs/ofx.md, "Security").

A victim and an attacker account are created for the module (``useradd``; removed at the
end), so these tests need root (CI runs as root) and skip otherwise. The victim runs the
plugin's own client code (``wire.c`` + ``transport_posix.c`` from the plugin's sources, in a
tiny C program making one ``nodes`` request, starting the server if needed); servers are
small stdlib-only fakes that record what reached them, run as whichever user the test needs.
The server's own checks are tested in-process.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from vidfx.ofx_bridge import build as ofx_build

from vidfx.server import protocol, transport
from vidfx.server.instances import RequestError
from vidfx.server.server import RenderServer, dispatch, prepare_socket_dir

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Unix sockets and users (Linux)")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"),
    reason="creating test users needs root, useradd and setpriv",
)
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or ""  # the fakes need only the stdlib

FAKE_SERVER = textwrap.dedent(
    '''
    """A stand-in render server: answers `nodes` with one node named argv[1], logs requests."""
    import os, socket, struct, sys, time
    label, log, path = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else os.environ["VIDFX_SOCKET"]
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    if "--open" in sys.argv:
        os.chmod(path, 0o777)
    s.listen(8)
    s.settimeout(90)
    def note(text):
        with open(log, "a") as f:
            f.write(text + "\\n")
    note(f"listening {path} pid {os.getpid()}")
    while True:
        try:
            c, _ = s.accept()
        except socket.timeout:
            break
        note("connection")
        head = c.recv(4)
        if len(head) < 4:
            c.close()
            continue
        body = b""
        n = struct.unpack("<I", head)[0]
        while len(body) < n:
            chunk = c.recv(n - len(body))
            if not chunk:
                break
            body += chunk
        verb = body.split(b"\\n")[0].decode()
        note("request " + verb)
        fields = {"count": 1, "node.0.name": label, "node.0.label": label, "node.0.doc": "", "node.0.context": "filter",
                  "node.0.inputs": 1, "node.0.transition_param": "", "node.0.params": 0, "pid": os.getpid()}
        text = "ok\\n" + "\\n".join(f"{k}={v}" for k, v in fields.items())
        c.sendall(struct.pack("<I", len(text)) + text.encode())
        c.close()
        if verb == "shutdown":
            break
    os.unlink(path)
    '''
)

CLIENT_C = textwrap.dedent(
    r"""
    /* The plugin's own client code (wire.c + transport_posix.c, compiled from the plugin's
     * sources): one `nodes` request, starting the server if needed; prints node.0.name. */
    #include <stdio.h>
    #include "wire.h"
    int main(void) {
      vfx_buf b;
      vfx_reply r;
      char err[1024] = "";
      vfx_buf_init(&b, "nodes");
      int rc = vfx_request(&b, &r, 30.0, NULL, NULL, NULL, err, sizeof err);
      if (rc == VFX_OK) printf("%s\n", vfx_reply_get(&r, "node.0.name"));
      else fprintf(stderr, "rc=%d: %s\n", rc, err);
      return rc;
    }
    """
)


def _as(user: SimpleNamespace | None) -> list[str]:
    """The command prefix that runs a program as ``user`` (None: as root, this process's user)."""
    return [] if user is None else ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]


def _run_as(user: SimpleNamespace | None, cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(_as(user) + cmd, env=env, capture_output=True, text=True, timeout=120)


def _fake_server(world, user: SimpleNamespace | None, label: str, path: Path) -> subprocess.Popen:
    """A fake server run by ``user`` listening at ``path`` (its socket opened to everyone)."""
    cmd = [SYSTEM_PYTHON, str(world.shared / "fake_server.py"), label, str(world.logs / f"{label}.log"), str(path)]
    out = subprocess.DEVNULL
    proc = subprocess.Popen(_as(user) + cmd + ["--open"], env={"PATH": "/usr/bin:/bin"}, stdout=out, stderr=out)
    _wait_for_socket(path)
    return proc


def _plant_dir(world) -> Path:
    """/tmp/vidfx-<victim uid>, made first by the attacker, open to everyone."""
    planted = Path(f"/tmp/vidfx-{world.victim.uid}")
    shutil.rmtree(planted, ignore_errors=True)
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    os.chown(planted, world.attacker.uid, world.attacker.gid)
    return planted


def _make_user(name: str, shared: Path) -> SimpleNamespace:
    subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name], check=True, capture_output=True)
    pw = pwd.getpwnam(name)
    home = shared / name
    home.mkdir(mode=0o700)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    return SimpleNamespace(name=name, uid=pw.pw_uid, gid=pw.pw_gid, home=home)


@pytest.fixture(scope="module")
def world():
    """A shared folder (C client, fake server), a victim and an attacker user."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("creating test users needs root, useradd and setpriv")
    if not SYSTEM_PYTHON or not shutil.which("gcc") or not shutil.which("make"):
        pytest.skip("needs /usr/bin/python3, gcc and make")
    shared = Path(tempfile.mkdtemp(prefix="vfxsec-"))
    shared.chmod(0o755)
    tag = secrets.token_hex(3)
    users = []
    try:
        victim = _make_user(f"vfxv{tag}", shared)
        users.append(victim)
        attacker = _make_user(f"vfxa{tag}", shared)
        users.append(attacker)
        src = ofx_build.source_dir() / "src"
        (shared / "client.c").write_text(CLIENT_C)
        subprocess.run(
            [
                "gcc",
                "-std=c11",
                "-D_GNU_SOURCE",
                "-Wall",
                "-Wextra",
                "-Werror",
                f"-I{src}",
                "-o",
                str(shared / "client"),
            ]
            + [str(shared / "client.c"), str(src / "wire.c"), str(src / "transport_posix.c"), "-lpthread", "-ldl"],
            check=True,
        )
        (shared / "fake_server.py").write_text(FAKE_SERVER)
        logs = shared / "logs"
        logs.mkdir(mode=0o777)
        logs.chmod(0o777)
        yield SimpleNamespace(
            shared=shared,
            victim=victim,
            attacker=attacker,
            logs=logs,
        )
    finally:
        for log in (shared / "logs").glob("*.log"):  # the fake servers this module started, by pid
            for pid in re.findall(r"listening .* pid (\d+)", log.read_text()):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.2)
        for u in users:
            subprocess.run(["userdel", u.name], capture_output=True)
            shutil.rmtree(f"/tmp/vidfx-{u.uid}", ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)


def _victim_env(world, **extra: str) -> dict[str, str]:
    v = world.victim
    env = {
        "HOME": str(v.home),
        "PATH": "/usr/bin:/bin",
        "VIDFX_SERVER_CMD": f"{SYSTEM_PYTHON} {world.shared}/fake_server.py victim {world.logs}/victim.log",
        "VIDFX_SERVER_START_TIMEOUT": "30",
    }
    env.update(extra)
    return env


def _log(world, name: str) -> str:
    p = world.logs / name
    return p.read_text() if p.exists() else ""


def _wait_for_socket(path: Path, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not path.is_socket():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def _shutdown(path: Path) -> None:
    try:
        protocol.request("shutdown", path=path, timeout=5)
    except OSError:
        pass


@needs_root
def test_plugin_skips_socket_dir_planted_by_another_user(world):
    """/tmp/vidfx-<victim uid> made first by the attacker (0777, a fake server, a server.log
    symlink to the victim's ~/.profile): the plugin neither talks to that server nor writes
    through the symlink; it uses ~/.cache/vidfx/run and starts its own server there."""
    v = world.victim
    planted = _plant_dir(world)
    profile = v.home / ".profile"
    profile.write_text("# victim's profile\n")
    os.chown(profile, v.uid, v.gid)
    os.symlink(profile, planted / "server.log")
    fake = _fake_server(world, world.attacker, "attacker", planted / "server.sock")
    try:
        out = _run_as(v, [str(world.shared / "client")], _victim_env(world))
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["victim"], out.stderr
        assert "request" not in _log(world, "attacker.log") and "connection" not in _log(world, "attacker.log")
        assert profile.read_text() == "# victim's profile\n"
        assert (planted / "server.log").is_symlink()
        run = v.home / ".cache" / "vidfx" / "run"
        assert f"listening {run}/server.sock" in _log(world, "victim.log")
        st = run.lstat()
        assert st.st_uid == v.uid and stat.S_IMODE(st.st_mode) == 0o700
        log = (run / "server.log").lstat()
        assert stat.S_ISREG(log.st_mode) and stat.S_IMODE(log.st_mode) == 0o600 and log.st_uid == v.uid
    finally:
        _shutdown(planted / "server.sock")
        _shutdown(v.home / ".cache" / "vidfx" / "run" / "server.sock")
        fake.wait(30)
        shutil.rmtree(planted, ignore_errors=True)


@needs_root
def test_plugin_skips_a_symlinked_socket_dir_and_refuses_an_unsafe_explicit_one(world):
    """/tmp/vidfx-<victim uid> as the attacker's symlink to a folder with a fake server: skipped
    (lstat). VIDFX_SOCKET in a folder others can write: refused, nothing sent or started."""
    v, a = world.victim, world.attacker
    theirs = world.shared / "theirs"
    theirs.mkdir(mode=0o711)
    theirs.chmod(0o711)
    os.chown(theirs, a.uid, a.gid)
    link = Path(f"/tmp/vidfx-{v.uid}")
    shutil.rmtree(link, ignore_errors=True)
    os.symlink(theirs, link)
    os.lchown(link, a.uid, a.gid)
    fake = _fake_server(world, a, "linked", theirs / "server.sock")
    try:
        out = _run_as(v, [str(world.shared / "client")], _victim_env(world))
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["victim"], out.stderr
        assert "is a symbolic link" in out.stderr
        assert "connection" not in _log(world, "linked.log")

        started = _log(world, "victim.log").count("listening")
        out = _run_as(v, [str(world.shared / "client")], _victim_env(world, VIDFX_SOCKET=str(theirs / "server.sock")))
        assert out.returncode == 6, out.stderr  # VFX_EREFUSED
        assert "refusing VIDFX_SOCKET" in out.stderr and "belongs to uid" in out.stderr
        assert "connection" not in _log(world, "linked.log")
        assert _log(world, "victim.log").count("listening") == started  # no server started either
    finally:
        _shutdown(theirs / "server.sock")
        _shutdown(v.home / ".cache" / "vidfx" / "run" / "server.sock")
        fake.wait(30)
        link.unlink(missing_ok=True)


@needs_root
def test_plugin_checks_the_servers_credentials(world):
    """A socket in the victim's own 0700 directory, but bound by another user's process
    (root here: nobody else can write there): the plugin sends it nothing. With VIDFX_SOCKET
    it reports the refusal; on the default path it moves to a fresh private directory."""
    v = world.victim
    own = v.home / "sock"
    own.mkdir(mode=0o700)
    os.chown(own, v.uid, v.gid)
    imposter = _fake_server(world, None, "imposter", own / "server.sock")
    default_dir = Path(f"/tmp/vidfx-{v.uid}")
    try:
        out = _run_as(
            v,
            [str(world.shared / "client")],
            _victim_env(world, VIDFX_SOCKET=str(own / "server.sock")),
        )
        assert out.returncode == 6 and out.stdout == "", out.stderr  # VFX_EREFUSED
        assert "runs as another user" in out.stderr
        assert "request" not in _log(world, "imposter.log")

        # the same on the default path: the victim's own /tmp/vidfx-<uid>, an imposter's socket in it
        shutil.rmtree(default_dir, ignore_errors=True)
        default_dir.mkdir(mode=0o700)
        os.chown(default_dir, v.uid, v.gid)
        os.link(own / "server.sock", default_dir / "server.sock")  # the same listening socket
        tmp = v.home / "tmp"
        tmp.mkdir(mode=0o700)
        os.chown(tmp, v.uid, v.gid)
        out = _run_as(v, [str(world.shared / "client")], _victim_env(world, TMPDIR=str(tmp)))
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["victim"], out.stderr
        assert "request" not in _log(world, "imposter.log")
        private = [p for p in tmp.iterdir() if p.name.startswith("vidfx-")]
        assert len(private) == 1 and f"listening {private[0]}/server.sock" in _log(world, "victim.log")
        _shutdown(private[0] / "server.sock")
    finally:
        _shutdown(own / "server.sock")
        imposter.wait(30)
        shutil.rmtree(default_dir, ignore_errors=True)


def _in_child_as(user: SimpleNamespace, fn) -> str:
    """Run fn() in a forked child as ``user``; its return value (text) or exception text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(user.gid)
            os.setuid(user.uid)
            result = str(fn())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = f"{type(exc).__name__}: {exc}"
        os.write(w, result.encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@needs_root
def test_server_default_path_skips_a_planted_directory(world, monkeypatch):
    """``vidfx serve`` resolves the same path as the plugin: another user's /tmp/vidfx-<uid>
    is skipped for ~/.cache/vidfx/run."""
    v = world.victim
    planted = _plant_dir(world)
    monkeypatch.delenv("VIDFX_SOCKET", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(v.home))
    try:
        got = _in_child_as(v, lambda: protocol.default_socket_path())
        assert got == str(v.home / ".cache" / "vidfx" / "run" / "server.sock")
        problem = _in_child_as(v, lambda: protocol.private_dir_problem(planted))
        assert "belongs to uid" in problem
    finally:
        shutil.rmtree(planted, ignore_errors=True)


def test_server_refuses_unsafe_socket_dirs(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(SystemExit, match="symbolic link"):
        prepare_socket_dir(tmp_path / "link" / "server.sock")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    with pytest.raises(SystemExit, match="mode 755"):
        prepare_socket_dir(shared / "server.sock")
    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        with pytest.raises(SystemExit, match="belongs to uid 65534"):
            prepare_socket_dir(foreign / "server.sock")
    prepare_socket_dir(tmp_path / "fresh" / "server.sock")
    assert stat.S_IMODE((tmp_path / "fresh").lstat().st_mode) == 0o700


def test_server_files_never_follow_symlinks(tmp_path):
    target = tmp_path / "profile"
    target.write_text("keep\n")
    (tmp_path / "server.log").symlink_to(target)
    with pytest.raises(OSError):
        transport.redirect_output(tmp_path / "server.log")
    with pytest.raises(OSError):
        transport.write_private(tmp_path / "server.log", "1234\n")
    os.link(target, tmp_path / "hard.log")  # a hard link to someone's file is refused too
    with pytest.raises(OSError, match="not a plain file"):
        transport.open_private(tmp_path / "hard.log", os.O_WRONLY | os.O_APPEND)
    assert target.read_text() == "keep\n"
    transport.write_private(tmp_path / "server.pid", "42\n")
    assert (tmp_path / "server.pid").read_text() == "42\n"
    assert stat.S_IMODE((tmp_path / "server.pid").stat().st_mode) == 0o600


def test_serve_removes_only_its_own_stale_socket(tmp_path):
    regular = tmp_path / "regular"
    regular.write_text("data\n")
    with pytest.raises(SystemExit, match="not a socket"):
        transport.remove_stale_socket(regular)
    assert regular.read_text() == "data\n"
    (tmp_path / "dir").mkdir()
    with pytest.raises(SystemExit, match="not a socket"):
        transport.remove_stale_socket(tmp_path / "dir")
    (tmp_path / "link").symlink_to(regular)
    with pytest.raises(SystemExit, match="not a socket"):
        transport.remove_stale_socket(tmp_path / "link")
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    if os.geteuid() == 0:
        os.chown(stale, 65534, 65534)
        with pytest.raises(SystemExit, match="another user"):
            transport.remove_stale_socket(stale)
        os.chown(stale, 0, 0)
    transport.remove_stale_socket(stale)
    assert not stale.exists()
    transport.remove_stale_socket(tmp_path / "absent.sock")  # nothing there: fine


def test_serve_refuses_a_regular_file_at_the_socket_path(tmp_path):
    """``vidfx serve --socket PATH`` with a file at PATH: exits, the file stays."""
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    victim = d / "notes.txt"
    victim.write_text("precious\n")
    code = "import sys; from vidfx.server import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run(
        [sys.executable, "-c", code, "--socket", str(victim), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    assert "refusing to remove it" in out.stderr
    assert victim.read_text() == "precious\n"


@pytest.fixture
def server():
    d = Path(tempfile.mkdtemp(prefix="vfxs"))
    srv = RenderServer(d / "s.sock", torch.device("cpu"), 0.0)
    try:
        yield srv
    finally:
        srv.server_close()
        shutil.rmtree(d, ignore_errors=True)


def _instance_fields(node: str, **extra: str) -> dict[str, str]:
    fields = {"instance": "sec-1", "node": node, "fps": "25", "range.0": "0,9", "time": "0"}
    fields.update(extra)
    return fields


def test_server_serves_only_the_bundles_nodes(server):
    from vidfx.core.registry import node_types
    from vidfx.server.catalog import ofx_nodes

    assert {"read", "pattern"} <= set(node_types()) and not {"read", "pattern"} & set(ofx_nodes())
    for node in ("read", "pattern", "write", "no_such_node"):
        for verb in ("frames", "info", "render"):
            with pytest.raises(RequestError, match="not served"):
                dispatch(server, verb, _instance_fields(node, **{"size.0": "64,36"}))
    reply = dispatch(server, "info", _instance_fields("temporal_average", **{"size.0": "64,36"}))
    assert reply["size"] == "64,36"


def test_server_pixel_budget(server, monkeypatch):
    with pytest.raises(RequestError, match="exceeds the server's limit"):
        dispatch(server, "info", _instance_fields("temporal_average", **{"size.0": "20000,20000"}))
    with pytest.raises(RequestError, match="bad frame size"):
        dispatch(server, "info", _instance_fields("temporal_average", **{"size.0": "-5,10"}))
    big = _instance_fields(
        "temporal_average",
        id="r1",
        shm=f"vidfx-{os.geteuid()}-1-1-1",
        shm_size="16",
        out="16384,16384,0",
        **{"in.0.0": "0,16384,16384,0,00"},
    )
    with pytest.raises(RequestError, match="exceeds"):
        dispatch(server, "render", big)  # refused before any shared memory is opened
    monkeypatch.setenv("VIDFX_SERVER_MAX_PIXELS", "1000")
    assert transport.max_pixels() == 1000
    server.max_pixels = transport.max_pixels()
    with pytest.raises(RequestError, match="limit of 1000"):
        dispatch(server, "info", _instance_fields("temporal_average", **{"size.0": "64,36"}))


def test_server_maps_only_this_users_buffers(server):
    fields = _instance_fields("temporal_average", id="r2", shm_size="64", out="2,2,0", **{"in.0.0": "0,2,2,0,00"})
    for name in ("vidfx-99999-1-1-1", "etc-passwd", f"vidfx-{os.geteuid()}-../x", "/../vidfx"):
        with pytest.raises(RequestError, match="refusing shared-memory name"):
            dispatch(server, "render", dict(fields, shm=name))


@needs_root
def test_server_drops_connections_from_other_users(world):
    """Even when another user can reach the socket (here: opened up on purpose), the server
    answers nothing (SO_PEERCRED)."""
    d = Path(tempfile.mkdtemp(prefix="vfxp"))
    d.chmod(0o755)
    path = d / "s.sock"
    srv = RenderServer(path, torch.device("cpu"), 0.0)
    os.chmod(path, 0o777)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:

        def ask() -> str:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(path))
                try:
                    protocol.send_message(s, "hello")
                    return repr(protocol.recv_message(s))
                except (ConnectionResetError, BrokenPipeError):  # closed before or unread: the same refusal
                    return "None"

        assert _in_child_as(world.attacker, ask) == "None"  # closed without a reply
        assert protocol.request("hello", path=path)[0] == "ok"  # its own user is served
    finally:
        srv.shutdown()
        srv.server_close()
        shutil.rmtree(d, ignore_errors=True)
