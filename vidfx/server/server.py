"""``vidfx serve``: the long-lived render server the OFX plugin talks to.

One server per user listens on a Unix socket in a private directory (mode 0700). Every
connection gets its own thread, so renders of different effect instances run at the same
time; renders of one instance are serialised by that instance's lock. Pixels never cross
the socket: the plugin puts them in POSIX shared memory and names the buffer.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import os
import signal
import socket
import socketserver
import stat
import sys
import threading
import time
import traceback
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from vidfx import __version__
from vidfx.core.errors import VidfxError

from . import protocol
from .catalog import describe_fields
from .instances import DirectLayout, InstanceTable, MissingFrames, RenderAborted, RequestError, ShmMapper, write_planes


def prepare_socket_dir(path: Path) -> None:
    """Create the socket's directory private to this user, or refuse one that is not."""
    d = path.parent
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = d.stat()
    if st.st_uid != os.getuid():
        raise SystemExit(f"vidfx serve: {d} belongs to another user; refusing to use it")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise SystemExit(
            f"vidfx serve: {d} is accessible to other users (mode "
            f"{stat.S_IMODE(st.st_mode):o}); make it 0700 or remove it"
        )


class RenderServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The socket server: state shared by all connection threads."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: Path, device: torch.device, idle_timeout: float):
        self.instances = InstanceTable(device)
        self.shm = ShmMapper()
        self.device = device
        self.idle_timeout = idle_timeout
        self.last_request = time.monotonic()
        self.renders: dict[str, threading.Event] = {}
        self.renders_lock = threading.Lock()
        self.frames_received = 0  # input frames that came with their pixels
        self.frames_reused = 0  # input frames the plugin only referred to (already held)
        self.node_seconds = 0.0  # time spent inside node code (render / render_chunk)
        super().__init__(str(path), Handler)


class Handler(socketserver.BaseRequestHandler):
    """Serves one connection: requests one after another until the plugin hangs up."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        server: RenderServer = self.server  # type: ignore[assignment]
        while True:
            try:
                msg = protocol.recv_message(sock)
            except (protocol.ProtocolError, OSError):
                return
            if msg is None:
                return
            server.last_request = time.monotonic()
            verb, fields = msg
            try:
                head, reply = "ok", dispatch(server, verb, fields)
            except RenderAborted:
                head, reply = "error", {"message": "render aborted"}
            except MissingFrames as exc:
                head, reply = "error", {"message": str(exc), "missing": 1}
            except VidfxError as exc:
                head, reply = "error", {"message": str(exc)}
            except Exception as exc:  # never let one bad render take the server down
                traceback.print_exc()
                head, reply = "error", {"message": f"{type(exc).__name__}: {exc}"}
            try:
                protocol.send_message(sock, head, reply)
            except OSError:
                return
            if verb == "shutdown":
                threading.Thread(target=server.shutdown, daemon=True).start()
                return


def _fps(fields: dict[str, str]) -> Fraction:
    text = fields.get("fps", "25")
    fps = (
        Fraction(text).limit_denominator(1001 * 1000) if "/" in text else Fraction(float(text)).limit_denominator(1001)
    )
    return fps if fps > 0 else Fraction(25)


def _sizes(fields: dict[str, str], num_inputs: int) -> list[tuple[int, int]]:
    out = []
    for k in range(num_inputs):
        if f"size.{k}" not in fields:
            raise RequestError(f"request lacks size.{k}")
        w, h = (int(v) for v in fields[f"size.{k}"].split(","))
        out.append((w, h))
    return out


def dispatch(server: RenderServer, verb: str, fields: dict[str, str]) -> dict[str, object]:
    """Answer one request (verbs in docs/ofx.md)."""
    if verb == "hello":
        return {
            "pid": os.getpid(),
            "protocol": protocol.PROTOCOL_VERSION,
            "version": __version__,
            "device": str(server.device),
            "instances": len(server.instances),
            "frames_received": server.frames_received,
            "frames_reused": server.frames_reused,
            "node_seconds": f"{server.node_seconds:.6f}",
        }
    if verb == "nodes":
        return describe_fields()
    if verb == "frames":
        inst, layout = server.instances.get(fields)
        with inst.lock:
            if inst.config_key is None and all(f"size.{k}" in fields for k in range(len(layout.clips))):
                # some windows depend on configure (jumpcut's plan); later renders
                # reconfigure with the real image sizes if they differ
                inst.configure(layout.node_sizes(_sizes(fields, len(layout.clips))), layout.node_ranges, _fps(fields))
            needed = inst.frames_needed(layout.n_of(float(fields["time"])), layout.node_ranges)
        times: list[set[int]] = [set() for _ in layout.clips]
        for k, idxs in enumerate(needed):
            for i in idxs:
                clip, t = layout.source(k, i)
                times[clip].add(t)
        for clip, r in enumerate(layout.clips):  # every input clip sends at least the current frame
            if not times[clip]:
                times[clip].add(min(max(int(round(float(fields["time"]))), r.first), r.last))
        return {f"frames.{k}": ",".join(str(t) for t in sorted(ts)) for k, ts in enumerate(times)}
    if verb == "info":
        inst, layout = server.instances.get(fields)
        with inst.lock:
            out = inst.configure(layout.node_sizes(_sizes(fields, len(layout.clips))), layout.node_ranges, _fps(fields))
        return {"size": f"{out.width},{out.height}"}
    if verb == "render":
        return render(server, fields)
    if verb == "abort":
        with server.renders_lock:
            event = server.renders.get(fields.get("id", ""))
        if event is not None:
            event.set()
        return {"found": int(event is not None)}
    if verb == "forget":
        server.instances.forget(fields.get("instance", ""))
        server.shm.forget(fields.get("instance", ""))
        return {}
    if verb == "shutdown":
        return {}
    raise RequestError(f"unknown request {verb!r}")


def render(server: RenderServer, fields: dict[str, str]) -> dict[str, object]:
    """Render one output frame from the input frames the plugin put in shared memory.

    ``in.<k>.<j>=time,width,height,offset,fingerprint`` locate input frames (float32 R, G,
    B, A planes, rows top to bottom; offset -1: the frame held from an earlier request with
    that fingerprint); ``out=width,height,offset`` is where the result goes, same layout.
    """
    render_id = fields.get("id", "")
    aborted = threading.Event()
    with server.renders_lock:
        server.renders[render_id] = aborted
    try:
        inst, layout = server.instances.get(fields)
        mm = server.shm.get(fields["shm"], int(fields["shm_size"]))
        entries = []
        sizes: list[tuple[int, int] | None] = [None] * len(layout.clips)
        for key, value in fields.items():
            if not key.startswith("in."):
                continue
            k = int(key.split(".")[1])
            parts = value.split(",")
            t, w, h, off = (int(round(float(v))) for v in parts[:4])
            fp = parts[4] if len(parts) > 4 else ""
            planes = None
            if off >= 0:
                planes = np.frombuffer(mm, np.float32, count=w * h * 4, offset=off).reshape(4, h, w)
            entries.append((k, t, fp, planes))
            sizes[k] = sizes[k] or (w, h)
        if any(s is None for s in sizes):
            raise RequestError("render request lacks frames of some input")

        def index_of(clip: int, t: int) -> int:
            return t - layout.clips[clip].first if isinstance(layout, DirectLayout) else t - layout.start

        def planes(k: int, index: int) -> tuple:
            """(Frame, alpha) of the node's input k, frame index (clamped)."""
            return inst.input_frame(*layout.source(k, index))

        n = layout.n_of(float(fields["time"]))
        with inst.lock:
            inst.set_live_param(fields)
            inst.configure(layout.node_sizes(sizes), layout.node_ranges, _fps(fields))  # type: ignore[arg-type]
            received, reused = inst.take_inputs(entries, index_of, layout.key)
            server.frames_received += received
            server.frames_reused += reused
            started = time.perf_counter()
            data = inst.render(n, layout.node_ranges, lambda k, i: planes(k, i)[0], aborted)
            server.node_seconds += time.perf_counter() - started
            src, alpha = planes(0, n)
        if aborted.is_set():
            raise RenderAborted()
        ow, oh, ooff = (int(v) for v in fields["out"].split(","))
        c, h, w = data.shape
        if (w, h) != (ow, oh):
            raise RequestError(f"{inst.type_name}: output is {w}x{h}, plugin expected {ow}x{oh}")
        out = np.frombuffer(mm, np.float32, count=w * h * 4, offset=ooff).reshape(4, h, w)
        write_planes(out, data, src.data, alpha)
        return {"out": f"{w},{h}"}
    finally:
        with server.renders_lock:
            server.renders.pop(render_id, None)


def remove_stale_buffers() -> None:
    """Delete shared-memory buffers left by plugin processes that died (host crashes).

    Buffer names are ``vidfx-<uid>-<pid>-<instance>-<n>``; only this user's are touched.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return
    for p in shm.glob(f"vidfx-{os.getuid()}-*"):
        parts = p.name.split("-")
        try:
            os.kill(int(parts[2]), 0)
        except (IndexError, ValueError):
            continue
        except ProcessLookupError:
            try:
                p.unlink()
            except OSError:
                pass
        except PermissionError:
            pass


def _watch_idle(server: RenderServer) -> None:
    while True:
        time.sleep(min(5.0, server.idle_timeout))
        if time.monotonic() - server.last_request > server.idle_timeout:
            print("vidfx serve: idle, exiting", flush=True)
            server.shutdown()
            return


def main(argv: list[str] | None = None) -> int:
    """Run the render server until ``shutdown`` is requested, SIGTERM, or the idle timeout."""
    ap = argparse.ArgumentParser(prog="vidfx serve", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--socket",
        type=Path,
        default=None,
        help="socket path (default: $VIDFX_SOCKET, $XDG_RUNTIME_DIR/vidfx/server.sock or /tmp/vidfx-$UID/server.sock)",
    )
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument(
        "--idle-timeout", type=float, default=0.0, help="exit after this many seconds without requests (0: never)"
    )
    ap.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        help="also import this module (extra nodes); also $VIDFX_SERVER_IMPORTS, comma-separated",
    )
    ap.add_argument("--stop", action="store_true", help="ask a running server to exit, then return")
    ap.add_argument("--status", action="store_true", help="print whether a server is running")
    if argv and argv[0] == "--":  # `vidfx serve -- --opt` (how some wrappers pass options through)
        argv = argv[1:]
    args = ap.parse_args(argv)
    path = args.socket or protocol.default_socket_path()

    if args.stop or args.status:
        try:
            head, fields = protocol.request("shutdown" if args.stop else "hello", path=path, timeout=5)
        except OSError:
            print(f"no vidfx server at {path}")
            return 1 if args.status else 0
        print(
            f"vidfx server at {path}: "
            + (
                "stopping"
                if args.stop
                else f"pid {fields.get('pid')}, device {fields.get('device')}, {fields.get('instances')} instances"
            )
        )
        return 0

    prepare_socket_dir(path)
    lock = open(str(path) + ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"vidfx serve: a server already runs at {path}", flush=True)
        return 0
    modules = [m for m in os.environ.get("VIDFX_SERVER_IMPORTS", "").split(",") if m.strip()]
    for module in modules + args.imports:
        importlib.import_module(module.strip())
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    remove_stale_buffers()
    if path.exists() or path.is_symlink():
        path.unlink()  # stale: we hold the lock, so no live server owns it
    server = RenderServer(path, device, args.idle_timeout)
    os.chmod(path, 0o600)
    Path(str(path) + ".pid").write_text(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    if args.idle_timeout > 0:
        threading.Thread(target=_watch_idle, args=(server,), daemon=True).start()
    print(f"vidfx serve: listening on {path} (pid {os.getpid()}, device {device})", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for p in (path, Path(str(path) + ".pid")):
            try:
                p.unlink()
            except OSError:
                pass
        lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
