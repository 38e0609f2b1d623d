"""Exclusive output locks and hidden temporary names: two runs never write one output.

A writer locks its *final* path for the whole write with ``flock`` on a hidden
``.NAME.lock`` file next to it (non-blocking: a second writer fails at once, naming the
first one's pid). The lock belongs to the open file, so it dies with the process: a lock
file left by a killed run does not block the next one. Temporaries get unique hidden names
(``.NAME.partial-<random>...``) in the output's folder, so a rename puts them in place.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil

from vidfx.core.errors import MediaError

from .image_seq import find_placeholder


def hidden_name(path: str) -> str:
    """The base of the hidden names next to ``path`` (an image pattern's ``%04d`` becomes
    ``####``, so no temporary name is itself a pattern)."""
    name = os.path.basename(path)
    match = find_placeholder(name)
    if match is None:
        return "." + name
    hashes = "#" * max(1, int(match.group(1) or 1))
    return "." + name[: match.start()] + hashes + name[match.end() :]


def lock_path(path: str) -> str:
    """The lock file of an output path: ``.NAME.lock`` in the same folder."""
    return os.path.join(os.path.dirname(os.path.abspath(path)), hidden_name(path) + ".lock")


def temporary_name(path: str, suffix: str = "") -> str:
    """A new unique hidden name next to ``path``: ``.NAME.partial-<random><suffix>``."""
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.join(folder, f"{hidden_name(path)}.partial-{secrets.token_hex(4)}{suffix}")


def remove_stale_temporaries(path: str) -> None:
    """Remove temporaries of ``path`` left by a killed run. Only call this while holding the
    output's lock: then no other run can be writing them."""
    folder = os.path.dirname(os.path.abspath(path))
    prefix = hidden_name(path) + ".partial-"
    for name in os.listdir(folder):
        if name.startswith(prefix):
            remove_path(os.path.join(folder, name))


def remove_path(path: str) -> None:
    """Delete a file or folder tree if it exists (errors ignored: used while cleaning up)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except OSError:
            pass


def _holder(fd: int) -> str:
    """The pid written in a lock file ("unknown" before the holder has written it)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def _busy(path: str, pid: str) -> MediaError:
    if pid == str(os.getpid()):
        return MediaError(f"{path}: is being written by another output of this vidfx run (pid {pid})")
    return MediaError(f"{path}: is being written by another vidfx run (pid {pid})")


class OutputLock:
    """An exclusive lock on one output path, held from ``acquire`` to ``release``."""

    def __init__(self, path: str):
        self.path = path
        self.file = lock_path(path)
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; MediaError at once if another run (or writer) holds it."""
        while self.fd is None:
            try:
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                raise MediaError(f"{self.path}: cannot create lock file ({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(fd)
                os.close(fd)
                raise _busy(self.path, pid) from None
            # the previous holder may have removed the file between our open and flock: then
            # we locked a deleted file, and must lock the one now at that name instead
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.file))
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self.fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            os.remove(self.file)  # while still locked, so nobody holds a lock on a removed file
        except OSError:
            pass
        os.close(fd)


def check_not_locked(path: str) -> None:
    """MediaError if another run holds the lock on ``path``; creates and writes nothing."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no lock file: nobody is writing
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(path, _holder(fd)) from None
    finally:
        os.close(fd)  # closing drops the shared lock if we got it
