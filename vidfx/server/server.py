"""``vidfx serve``: the long-lived render server the OFX plugin talks to.

One server per user listens on a Unix socket in a private directory (mode 0700; a named pipe
on Windows, see :mod:`vidfx.server.transport`), answers only its own user, and serves only
the nodes the OFX plugin exposes. Every connection gets its own thread, so renders of
different effect instances run at the same time; renders of one instance are serialised by
that instance's lock. Pixels never cross the socket: the plugin puts them in shared memory
and names the buffer.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

if sys.platform != "win32":
    import fcntl

from vidfx import __version__
from vidfx.core.errors import VidfxError

from . import protocol, transport
from .catalog import describe_fields, ofx_nodes
from .instances import (
    InstanceTable,
    MissingFrames,
    RenderAborted,
    RequestError,
    request_scale,
    write_planes,
)


def prepare_socket_dir(path: Path) -> None:
    """Create the socket's directory private to this user, or refuse one that is not: it must
    be a real directory (not a symlink), ours, mode 0700 (``protocol.private_dir_problem``)."""
    problem = protocol.ensure_private_dir(path.parent, parents=True)
    if problem:
        raise SystemExit(f"vidfx serve: refusing the socket directory: {problem}")


class ServerState:
    """What every connection thread shares (the socket server and the Windows pipe server)."""

    def _init_state(self, device: torch.device, idle_timeout: float) -> None:
        self.served = frozenset(ofx_nodes())  # only what the bundle exposes: no readers, sources...
        self.max_pixels = transport.max_pixels()
        self.instances = InstanceTable(device)
        self.shm = transport.shm_mapper()
        self.device = device
        self.idle_timeout = idle_timeout
        self.last_request = time.monotonic()
        self.renders: dict[str, threading.Event] = {}
        self.renders_lock = threading.Lock()
        self.frames_received = 0  # input frames that came with their pixels
        self.frames_reused = 0  # input frames the plugin only referred to (already held)
        self.node_seconds = 0.0  # time spent inside node code (render / render_chunk)


# Windows builds of Python may lack AF_UNIX; the server uses named pipes there (PipeRenderServer)
_StreamServer = getattr(socketserver, "UnixStreamServer", socketserver.TCPServer)


class RenderServer(ServerState, socketserver.ThreadingMixIn, _StreamServer):  # type: ignore[misc,valid-type]
    """The socket server: state shared by all connection threads."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: Path, device: torch.device, idle_timeout: float):
        self._init_state(device, idle_timeout)
        super().__init__(str(path), Handler)


class PipeRenderServer(ServerState):
    """The Windows server: one thread per pipe client, same requests (``transport.PipeListener``)."""

    def __init__(self, name: str, device: torch.device, idle_timeout: float, winapi: object | None = None):
        self._init_state(device, idle_timeout)
        self.listener = transport.PipeListener(name, winapi)
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        while not self._stopped.is_set():
            stream = self.listener.accept()
            if stream is None:
                break
            threading.Thread(target=self._serve, args=(stream,), daemon=True).start()

    def _serve(self, stream: transport.PipeStream) -> None:
        with stream:
            serve_connection(self, stream)  # type: ignore[arg-type]

    def shutdown(self) -> None:
        self._stopped.set()
        self.listener.close()

    def server_close(self) -> None:
        pass


class Handler(socketserver.BaseRequestHandler):
    """Serves one connection: requests one after another until the plugin hangs up."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        uid = transport.peer_uid(sock)
        if uid is not None and uid != os.geteuid():
            print(f"vidfx serve: dropped a connection from uid {uid}", flush=True)
            return  # another user's process: no answer at all
        serve_connection(self.server, sock)  # type: ignore[arg-type]


def serve_connection(server: ServerState, sock: socket.socket) -> None:
    """Answer requests on one connection until the peer hangs up."""
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


def dispatch(server: ServerState, verb: str, fields: dict[str, str]) -> dict[str, object]:
    """Answer one request (verbs in docs/ofx.md)."""
    if verb in ("frames", "info", "render"):
        transport.check_node(fields, server.served)
        transport.check_pixels(fields, server.max_pixels)
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
        args = None  # some windows depend on configure (jumpcut's plan): configure once first
        if all(f"size.{k}" in fields for k in range(len(layout.clips))):
            args = (layout.node_sizes(_sizes(fields, len(layout.clips))), layout.node_ranges, _fps(fields))
        # answered from the node's declared window, without waiting for a running render
        needed = inst.plan(layout.n_of(float(fields["time"])), layout.node_ranges, args)
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
        args = (layout.node_sizes(_sizes(fields, len(layout.clips))), layout.node_ranges, _fps(fields))
        out = inst.ready_info(*args, request_scale(fields))  # no wait behind a render when known
        if out is None:
            with inst.lock:
                out = inst.configure(*args, request_scale(fields))
        return {"size": f"{out.width},{out.height}", "alpha": inst.alpha_kind(out, args[0])}
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


def render(server: ServerState, fields: dict[str, str]) -> dict[str, object]:
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
        transport.check_shm_name(fields["shm"])
        mm = server.shm.get(fields["shm"], int(fields["shm_size"]))
        entries = []
        sizes: list[tuple[int, int] | None] = [None] * len(layout.clips)
        for key, value in fields.items():
            if not key.startswith("in."):
                continue
            k = int(key.split(".")[1])
            if k >= len(layout.clips):  # a mask clip whose switch is off: not the node's input
                continue
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

        def planes(k: int, index: int) -> tuple:
            """(Frame, alpha) of the node's input k, frame index (clamped)."""
            return inst.input_frame(*layout.source(k, index))

        def node_frame(k: int, index: int):
            """The node's input k, frame index: a mask clip's with its alpha (RGBA: the node
            decides whether the alpha or the grey level is the mask)."""
            frame, alpha = planes(k, index)
            return frame.with_data(torch.cat([frame.data, alpha])) if layout.mask and k == 1 else frame

        n = layout.n_of(float(fields["time"]))
        with inst.lock:
            inst.set_live_param(fields)
            inst.configure(layout.node_sizes(sizes), layout.node_ranges, _fps(fields), request_scale(fields))  # type: ignore[arg-type]
            received, reused = inst.take_inputs(entries, layout.index_of, layout.key)
            server.frames_received += received
            server.frames_reused += reused
            started = time.perf_counter()
            data = inst.render(n, layout.node_ranges, node_frame, aborted)
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
        help="socket path (default: $VIDFX_SOCKET, else server.sock in the first private directory of "
        "$XDG_RUNTIME_DIR/vidfx, /tmp/vidfx-$UID, ~/.cache/vidfx/run; Windows: \\\\.\\pipe\\vidfx-<user>)",
    )
    ap.add_argument(
        "--log",
        type=Path,
        default=None,
        help="append output to this file (opened without following symlinks); also $VIDFX_SERVER_LOG",
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

    if sys.platform == "win32":
        return _serve_pipe(args, str(path))
    prepare_socket_dir(path)
    log = args.log or (Path(os.environ["VIDFX_SERVER_LOG"]) if os.environ.get("VIDFX_SERVER_LOG") else None)
    if log is not None:
        transport.redirect_output(log)
    lock = os.fdopen(transport.open_private(Path(str(path) + ".lock"), os.O_RDWR), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"vidfx serve: a server already runs at {path}", flush=True)
        return 0
    _import_modules(args.imports)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    remove_stale_buffers()
    transport.remove_stale_socket(path)  # we hold the lock, so no live server owns it
    server = RenderServer(path, device, args.idle_timeout)
    os.chmod(path, 0o600)
    inode = os.lstat(path).st_ino
    transport.write_private(Path(str(path) + ".pid"), f"{os.getpid()}\n")
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
        transport.remove_own_socket(path, inode)
        try:
            Path(str(path) + ".pid").unlink()
        except OSError:
            pass
        lock.close()
    return 0


def _import_modules(extra: list[str]) -> None:
    modules = [m for m in os.environ.get("VIDFX_SERVER_IMPORTS", "").split(",") if m.strip()]
    for module in modules + extra:
        importlib.import_module(module.strip())


def _serve_pipe(args: argparse.Namespace, name: str) -> int:  # pragma: no cover - Windows only
    """``vidfx serve`` on Windows: the same server on a named pipe (no lock file: the pipe's
    first instance is exclusive, so a second server fails to create it and exits)."""
    if args.log is not None or os.environ.get("VIDFX_SERVER_LOG"):
        log = args.log or Path(os.environ["VIDFX_SERVER_LOG"])
        sys.stdout = sys.stderr = open(log, "a", buffering=1)  # noqa: SIM115 (for the server's lifetime)
    _import_modules(args.imports)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    server = PipeRenderServer(name, device, args.idle_timeout)
    try:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
        if args.idle_timeout > 0:
            threading.Thread(target=_watch_idle, args=(server,), daemon=True).start()
        print(f"vidfx serve: listening on {name} (pid {os.getpid()}, device {device})", flush=True)
        server.serve_forever()
    except PermissionError:
        print(f"vidfx serve: {name} is already in use (a server runs, or another user holds the name)", flush=True)
        return 0
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
