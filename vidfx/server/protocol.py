"""The wire format between the OFX plugin and the render server (see docs/ofx.md).

A message is a 4-byte little-endian length followed by that many bytes of UTF-8 text.
The first line is the verb (requests) or ``ok`` / ``error`` (replies); every further line
is ``key=value``. In values a backslash is written ``\\\\`` and a newline ``\\n``, so one
field is always one line. Text keeps the C side small: it splits lines and the first '='.
"""

from __future__ import annotations

import os
import socket
import struct
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


def default_socket_path() -> Path:
    """Where the server listens: ``$VIDFX_SOCKET``, else ``$XDG_RUNTIME_DIR/vidfx/server.sock``,
    else ``/tmp/vidfx-$UID/server.sock``. The plugin computes the same path (ofx_bridge/src)."""
    explicit = os.environ.get("VIDFX_SOCKET")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "vidfx" / "server.sock"
    return Path(f"/tmp/vidfx-{os.getuid()}") / "server.sock"


def request(
    head: str, fields: dict[str, object] | None = None, path: Path | None = None, timeout: float | None = 30.0
) -> tuple[str, dict[str, str]]:
    """Send one request to the server and return its reply (a small client for tools/tests)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path or default_socket_path()))
        send_message(sock, head, fields)
        reply = recv_message(sock)
    if reply is None:
        raise ProtocolError("server closed the connection without replying")
    return reply
