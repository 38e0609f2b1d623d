"""The server's side of the plugin transport: files it creates next to its socket, who may
talk to it, what it agrees to render, and Windows named pipes and named shared memory.

POSIX (Linux, macOS): a Unix socket in a private directory (:func:`protocol.private_dir_problem`);
every file the server opens there is opened without following symlinks; it only ever removes
a stale *socket* of its own; a connection from another user (``SO_PEERCRED``) is dropped
unanswered. Windows: a byte-mode named pipe ``\\\\.\\pipe\\vidfx-<user>`` (the first
instance is created with ``FILE_FLAG_FIRST_PIPE_INSTANCE``, so nobody can listen on the name
before us; remote clients are rejected) and shared memory named ``Local\\vidfx-...``,
behind the same wire protocol (:mod:`vidfx.server.protocol`).
"""

from __future__ import annotations

import mmap
import os
import re
import socket
import stat
import struct
import sys
import threading
from pathlib import Path

from .instances import RequestError, ShmMapper, map_fd

DEFAULT_MAX_PIXELS = 16384 * 16384


# ---- files next to the socket -------------------------------------------------------------
def open_private(path: Path, flags: int) -> int:
    """Open ``path`` (created 0600) without following a symlink; only a plain file of this
    user with one link is accepted (a hard link to someone's ``~/.profile`` is not)."""
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
        os.close(fd)
        raise OSError(f"{path} is not a plain file of this user")
    return fd


def redirect_output(path: Path) -> None:
    """Append stdout and stderr to ``path`` (the server.log of a server the plugin started)."""
    fd = open_private(path, os.O_WRONLY | os.O_APPEND)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def write_private(path: Path, text: str) -> None:
    """Write a small file (the pid file) without following symlinks."""
    fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def remove_stale_socket(path: Path) -> None:
    """Remove what is left at ``path`` by a server that died, if it is a socket of this user.

    Anything else there (a regular file, a directory, a symlink, someone else's socket) is
    never removed: the server refuses to start instead.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        kind = "socket of another user" if stat.S_ISSOCK(st.st_mode) else "not a socket"
        raise SystemExit(f"vidfx serve: {path} exists and is {kind}; refusing to remove it")
    os.unlink(path)


def remove_own_socket(path: Path, inode: int) -> None:
    """At exit: remove the socket we bound (same inode), nothing else."""
    try:
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and st.st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None where unknown)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i")))
    except OSError:
        return None
    return uid


# ---- what the server agrees to do -----------------------------------------------------------
def max_pixels() -> int:
    """Pixels one request may involve (inputs plus output): ``$VIDFX_SERVER_MAX_PIXELS``, default 16384²."""
    try:
        return max(1, int(os.environ.get("VIDFX_SERVER_MAX_PIXELS", DEFAULT_MAX_PIXELS)))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def check_node(fields: dict[str, str], served: set[str] | frozenset[str]) -> None:
    """Refuse node types the plugin does not expose (readers, writers, sources...)."""
    node = fields.get("node", "")
    if node not in served:
        raise RequestError(f"node {node!r} is not served to OFX hosts")


def check_pixels(fields: dict[str, str], limit: int) -> None:
    """Refuse a request whose frames (``size.k``, ``in.k.j``, ``out``) exceed ``limit`` pixels
    in total, or have a non-positive size, before anything is allocated or mapped."""
    total = 0
    for key, value in fields.items():
        if not (key.startswith(("size.", "in.")) or key == "out"):
            continue
        parts = value.split(",")
        first = 1 if key.startswith("in.") else 0  # in.k.j=time,w,h,...; size.k=w,h; out=w,h,offset
        try:
            w, h = (int(round(float(v))) for v in parts[first : first + 2])
        except ValueError:
            raise RequestError(f"bad frame size {key}={value}") from None
        if w <= 0 or h <= 0:
            raise RequestError(f"bad frame size {key}={value}")
        total += w * h
    if total > limit:
        raise RequestError(f"request of {total} pixels exceeds the server's limit of {limit} (VIDFX_SERVER_MAX_PIXELS)")


def user_tag() -> str:
    """The user part of this user's shared-memory names (the plugin's ``vfx_user_tag``)."""
    if sys.platform == "win32":
        return _sanitize(_user_name())
    return str(os.geteuid())


def check_shm_name(name: str) -> None:
    """Only buffers named for this user (``vidfx-<tag>-<instance>-<n>``) are mapped."""
    bare = name.strip("/")
    if not re.fullmatch(rf"vidfx-{re.escape(user_tag())}-[0-9A-Za-z._-]+", bare):
        raise RequestError(f"refusing shared-memory name {name!r}")


# ---- Windows: named pipes and named shared memory -------------------------------------------
def _user_name() -> str:
    """GetUserName on Windows (what the plugin uses), the login name elsewhere."""
    try:
        return os.getlogin()
    except OSError:
        import getpass

        return getpass.getuser()


def _sanitize(name: str) -> str:
    """Keep what is safe in pipe and mapping names (the plugin does the same)."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in name)[:64] or "user"


def pipe_name(user: str | None = None) -> str:
    """``\\\\.\\pipe\\vidfx-<user>``: this user's server on Windows."""
    return "\\\\.\\pipe\\vidfx-" + _sanitize(user if user is not None else _user_name())


def shm_tagname(name: str) -> str:
    """The Windows mapping name of a buffer the plugin names ``/vidfx-...``."""
    return "Local\\" + name.strip("/")


class WinShmMapper(ShmMapper):
    """:class:`ShmMapper` for Windows: buffers are named mappings (``mmap`` with a tagname)."""

    def get(self, name: str, size: int) -> mmap.mmap:
        check_shm_name(name)
        return super().get(name, size)

    def _open(self, name: str, size: int) -> mmap.mmap:  # pragma: no cover - Windows only
        return mmap.mmap(-1, size, tagname=shm_tagname(name))


class PosixShmMapper(ShmMapper):
    """:class:`ShmMapper` where POSIX shared memory is not a folder (macOS has no /dev/shm):
    buffers are opened with ``shm_open``."""

    def get(self, name: str, size: int) -> mmap.mmap:
        check_shm_name(name)
        return super().get(name, size)

    def _open(self, name: str, size: int) -> mmap.mmap:
        import _posixshmem

        return map_fd(_posixshmem.shm_open("/" + name.strip("/"), os.O_RDWR, mode=0o600), name, size)


def shm_mapper() -> ShmMapper:
    """The server's buffer mapper for this platform."""
    if sys.platform == "win32":
        return WinShmMapper()
    return ShmMapper() if os.path.isdir("/dev/shm") else PosixShmMapper()


PIPE_BUFFER = 1 << 16


class PipeStream:
    """A connected pipe handle with the two socket methods the protocol uses (recv, sendall)."""

    def __init__(self, handle: int, winapi: object | None = None):
        self.handle = handle
        self._w = winapi if winapi is not None else __import__("_winapi")

    def recv(self, n: int) -> bytes:
        try:
            data, _err = self._w.ReadFile(self.handle, n)  # type: ignore[attr-defined]
        except OSError:
            return b""  # broken pipe: the peer hung up
        return bytes(data)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written, _err = self._w.WriteFile(self.handle, bytes(view[:PIPE_BUFFER]))  # type: ignore[attr-defined]
            view = view[written:]

    def close(self) -> None:
        if self.handle is not None:
            self._w.CloseHandle(self.handle)  # type: ignore[attr-defined]
            self.handle = None  # type: ignore[assignment]

    def __enter__(self) -> PipeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_pipe(name: str, timeout: float | None = 30.0) -> PipeStream:  # pragma: no cover - Windows only
    """A client connection to the server's pipe (``vidfx serve --status`` and tests)."""
    import _winapi

    _winapi.WaitNamedPipe(name, int((timeout or 30.0) * 1000))
    handle = _winapi.CreateFile(
        name, _winapi.GENERIC_READ | _winapi.GENERIC_WRITE, 0, _winapi.NULL, _winapi.OPEN_EXISTING, 0, _winapi.NULL
    )
    return PipeStream(handle)


class PipeListener:
    """Accepts connections on this user's pipe, one pipe instance per client (Windows).

    The first instance is created with FILE_FLAG_FIRST_PIPE_INSTANCE: if anyone (another
    user's process included) already owns the name, the server fails instead of sharing it.
    PIPE_REJECT_REMOTE_CLIENTS keeps the pipe local. ``winapi`` is ``_winapi`` (a stand-in in
    tests).
    """

    FIRST_PIPE_INSTANCE = 0x00080000
    REJECT_REMOTE_CLIENTS = 0x00000008

    def __init__(self, name: str, winapi: object | None = None):
        self.name = name
        self._w = winapi if winapi is not None else __import__("_winapi")
        self._first = True
        self._next: int | None = None
        self._closed = threading.Event()

    def _create(self) -> int:
        # Windows constants by value (_winapi does not define the byte-mode ones)
        duplex, byte_mode, wait, unlimited = 0x3, 0x0, 0x0, 255
        open_mode = duplex | (self.FIRST_PIPE_INSTANCE if self._first else 0)
        pipe_mode = byte_mode | wait | self.REJECT_REMOTE_CLIENTS
        handle = self._w.CreateNamedPipe(  # type: ignore[attr-defined]
            self.name, open_mode, pipe_mode, unlimited, PIPE_BUFFER, PIPE_BUFFER, 0, 0
        )
        self._first = False
        return handle

    def accept(self) -> PipeStream | None:
        """Wait for the next client; None once :meth:`close` was called.

        The next instance is created before the connected one is returned, so a listening
        instance exists at all times (a client never finds the name missing between two
        connections, which it would take for "no server").
        """
        if self._closed.is_set():
            return None
        handle = self._next if self._next is not None else self._create()
        self._next = None
        try:
            self._w.ConnectNamedPipe(handle, False)  # type: ignore[attr-defined]
        except OSError as exc:
            if getattr(exc, "winerror", None) != 535:  # ERROR_PIPE_CONNECTED: connected in between
                self._w.CloseHandle(handle)  # type: ignore[attr-defined]
                raise
        if self._closed.is_set():
            self._w.CloseHandle(handle)  # type: ignore[attr-defined]
            return None
        self._next = self._create()
        return PipeStream(handle, self._w)

    def close(self) -> None:
        """Stop accepting: wake the pending ConnectNamedPipe by connecting once ourselves."""
        self._closed.set()
        try:
            connect_pipe(self.name, 1.0).close()
        except Exception:
            pass
