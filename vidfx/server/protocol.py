"""The wire format between the OFX plugin and the render server (see docs/ofx.md).

A message is a 4-byte little-endian length followed by that many bytes of UTF-8 text.
The first line is the verb (requests) or ``ok`` / ``error`` (replies); every further line
is ``key=value``. In values a backslash is written ``\\\\`` and a newline ``\\n``, so one
field is always one line. Text keeps the C side small: it splits lines and the first '='.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import sys
from pathlib import Path

PROTOCOL_VERSION = 1
MAX_MESSAGE = 16 << 20  # a request never carries pixels, so 16 MiB is generous


class ProtocolError(Exception):
    """The peer sent something that is not a message, or hung up mid-message."""


def encode(head: str, fields: dict[str, object] | None = None) -> bytes:
    """One framed message: ``head`` then ``key=value`` lines."""
    lines = [head]
    for key, value in (fields or {}).items():
        text = str(value).replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"{key}={text}")
    body = "\n".join(lines).encode("utf-8")
    return struct.pack("<I", len(body)) + body


def decode(body: bytes) -> tuple[str, dict[str, str]]:
    """The head and fields of a message body (without its length prefix)."""
    text = body.decode("utf-8")
    lines = text.split("\n")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        key, _, value = line.partition("=")
        fields[key] = _unescape(value)
    return lines[0], fields


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append("\n" if nxt == "n" else nxt)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise ProtocolError("connection closed mid-message")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket) -> tuple[str, dict[str, str]] | None:
    """Read one message; None when the peer closed the connection between messages."""
    first = sock.recv(4)
    if not first:
        return None
    header = first if len(first) == 4 else first + _recv_exact(sock, 4 - len(first))
    (length,) = struct.unpack("<I", header)
    if length > MAX_MESSAGE:
        raise ProtocolError(f"message of {length} bytes is too large")
    return decode(_recv_exact(sock, length))


def send_message(sock: socket.socket, head: str, fields: dict[str, object] | None = None) -> None:
    """Write one message."""
    sock.sendall(encode(head, fields))


SUN_PATH_MAX = 107  # bytes in a Unix socket path (sun_path less its NUL)


def private_dir_problem(d: Path) -> str | None:
    """Why ``d`` is not a safe socket directory (None: it is one).

    Safe means a real directory (``lstat``: not a symlink) owned by this user with mode 0700:
    nobody else can then put a socket, a log symlink or anything else into it.
    """
    try:
        st = os.lstat(d)
    except OSError as exc:
        return f"{d}: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return f"{d} is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return f"{d} is not a directory"
    if st.st_uid != os.geteuid():
        return f"{d} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()})"
    if stat.S_IMODE(st.st_mode) != 0o700:
        return f"{d} has mode {stat.S_IMODE(st.st_mode):o}, not 0700"
    return None


def ensure_private_dir(d: Path, parents: bool = False) -> str | None:
    """Create ``d`` (mode 0700) unless it exists; then :func:`private_dir_problem`."""
    try:
        if parents:
            d.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot create {d}: {exc.strerror}"
    return private_dir_problem(d)


def default_socket_path() -> Path:
    """Where the server listens (the plugin computes the same, ofx_bridge/src/transport_*.c).

    ``$VIDFX_SOCKET`` if set; else the first of ``$XDG_RUNTIME_DIR/vidfx``, ``/tmp/vidfx-$UID``
    and ``$XDG_CACHE_HOME/vidfx/run`` (``~/.cache/vidfx/run``) that is, or can be made, a
    private directory (see :func:`private_dir_problem`), plus ``server.sock``. A directory
    someone else made first is skipped, never used. On Windows: the named pipe
    ``\\\\.\\pipe\\vidfx-<user>``.
    """
    explicit = os.environ.get("VIDFX_SOCKET")
    if explicit:
        return Path(explicit)
    if sys.platform == "win32":
        from .transport import pipe_name

        return Path(pipe_name())
    candidates = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        candidates.append(Path(runtime) / "vidfx")
    candidates.append(Path(f"/tmp/vidfx-{os.geteuid()}"))
    cache = os.environ.get("XDG_CACHE_HOME", "")
    if not cache.startswith("/"):
        cache = str(Path.home() / ".cache")
    candidates.append(Path(cache) / "vidfx" / "run")
    for d in candidates:
        if len(os.fsencode(d)) + len("/server.sock") > SUN_PATH_MAX:
            continue
        if ensure_private_dir(d, parents=d is candidates[-1]) is None:
            return d / "server.sock"
    return candidates[-1] / "server.sock"  # the server refuses it with the reason


def request(
    head: str, fields: dict[str, object] | None = None, path: Path | None = None, timeout: float | None = 30.0
) -> tuple[str, dict[str, str]]:
    """Send one request to the server and return its reply (a small client for tools/tests)."""
    if sys.platform == "win32":
        from .transport import connect_pipe

        with connect_pipe(str(path or default_socket_path()), timeout) as pipe:
            send_message(pipe, head, fields)  # type: ignore[arg-type]
            reply = recv_message(pipe)  # type: ignore[arg-type]
    else:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path or default_socket_path()))
            send_message(sock, head, fields)
            reply = recv_message(sock)
    if reply is None:
        raise ProtocolError("server closed the connection without replying")
    return reply
