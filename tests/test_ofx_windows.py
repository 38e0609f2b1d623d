"""The OFX plugin on Windows, as far as a Linux machine can test it (docs/ofx.md, "Windows
and macOS").

- The bundle cross-compiles with mingw-w64 (``vidfx ofx build --target windows``) and the DLL
  exports the two OFX entry points and needs only Windows' own DLLs.
- Under wine (when installed): a tiny host loads the DLL and lists its plugins; and the
  plugin's own client code (``wire.c`` + ``transport_win.c``) starts a stand-in server with
  CreateProcess, talks to it over the named pipe (checking that its process runs as this
  user) and shares a buffer with it through named shared memory.
- The server's pipe loop (``PipeRenderServer`` / ``PipeListener``) runs here against a
  stand-in for ``_winapi`` over socket pairs.

They need the Debian packages ``gcc-mingw-w64-x86-64`` (compiler and binutils) and ``wine``
(``wine64``), which ``.ci/run`` installs: a machine without them fails these tests.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
import torch
from vidfx.ofx_bridge import build as ofx_build

from vidfx.server import protocol, transport
from vidfx.server.instances import RequestError
from vidfx.server.server import PipeRenderServer

MINGW = shutil.which("x86_64-w64-mingw32-gcc")
OBJDUMP = shutil.which("x86_64-w64-mingw32-objdump")
WINE = shutil.which("wine")
needs_mingw = pytest.mark.usefixtures("mingw")
needs_wine = pytest.mark.usefixtures("mingw", "wine")


@pytest.fixture
def mingw():
    assert MINGW and OBJDUMP and shutil.which("make"), "needs mingw-w64 (apt-get install gcc-mingw-w64-x86-64) and make"


@pytest.fixture
def wine():
    assert WINE, "needs wine (apt-get install wine wine64)"


CFLAGS = ["-std=c11", "-D__USE_MINGW_ANSI_STDIO=1", "-D_WIN32_WINNT=0x0601", "-Wall", "-Wextra", "-Werror"]
LINK = ["-static-libgcc", "-Wl,-Bstatic", "-lpthread", "-Wl,-Bdynamic", "-ladvapi32"]
WINDOWS_DLLS = {"kernel32.dll", "advapi32.dll", "msvcrt.dll", "ucrtbase.dll"}

HOST_C = r"""
/* Loads the plugin DLL and lists its plugins (OfxGetNumberOfPlugins / OfxGetPlugin). */
#include <windows.h>
#include <stdio.h>
typedef struct { const char *api; int version; const char *id; } Head;
int main(int argc, char **argv) {
  if (argc < 2) return 1;
  HMODULE lib = LoadLibraryA(argv[1]);
  if (!lib) {
    fprintf(stderr, "LoadLibrary failed: %lu\n", GetLastError());
    return 2;
  }
  int (*count)(void) = (int (*)(void))(void *)GetProcAddress(lib, "OfxGetNumberOfPlugins");
  Head *(*get)(int) = (Head *(*)(int))(void *)GetProcAddress(lib, "OfxGetPlugin");
  if (!count || !get) return 3;
  int n = count();
  printf("count=%d\n", n);
  for (int i = 0; i < n; i++) printf("%s\n", get(i)->id);
  return 0;
}
"""

FAKE_PIPE_SERVER_C = r"""
/* A stand-in render server on a named pipe: `nodes` names one node, `map` turns "ping" into
 * "pong" in the named shared memory the request names, `shutdown` exits. */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int readn(HANDLE h, void *p, DWORD n) {
  char *c = p;
  while (n) {
    DWORD got = 0;
    if (!ReadFile(h, c, n, &got, NULL) || !got) return -1;
    c += got;
    n -= got;
  }
  return 0;
}

static void reply(HANDLE h, const char *text) {
  DWORD n = (DWORD)strlen(text), w;
  unsigned char hdr[4] = {n & 255, (n >> 8) & 255, (n >> 16) & 255, n >> 24};
  WriteFile(h, hdr, 4, &w, NULL);
  WriteFile(h, text, n, &w, NULL);
}

static const char *map_ping(char *body) {
  char *s = strstr(body, "\nshm=");
  if (!s) return "error\nmessage=no shm";
  s += 5;
  char *end = strchr(s, '\n');
  if (end) *end = 0;
  char full[300];
  snprintf(full, sizeof full, "Local\\%s", s);
  HANDLE m = OpenFileMappingA(FILE_MAP_ALL_ACCESS, FALSE, full);
  if (!m) return "error\nmessage=no such mapping";
  char *p = MapViewOfFile(m, FILE_MAP_ALL_ACCESS, 0, 0, 4096);
  const char *r = "error\nmessage=not ping";
  if (p && memcmp(p, "ping", 4) == 0) {
    memcpy(p, "pong", 4);
    r = "ok";
  }
  if (p) UnmapViewOfFile(p);
  CloseHandle(m);
  return r;
}

int main(void) {
  const char *name = getenv("VIDFX_SOCKET");
  if (!name) return 2;
  printf("listening %s\n", name);
  fflush(stdout);
  /* like a real server, a listening instance always exists: the next one is made before the
   * connected one is served */
  HANDLE next = CreateNamedPipeA(name, PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE,
                                 PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT, PIPE_UNLIMITED_INSTANCES, 65536,
                                 65536, 0, NULL);
  for (int served = 0; served < 50; served++) {
    HANDLE h = next;
    if (h == INVALID_HANDLE_VALUE) return 1;
    BOOL connected = ConnectNamedPipe(h, NULL) || GetLastError() == ERROR_PIPE_CONNECTED;
    next = CreateNamedPipeA(name, PIPE_ACCESS_DUPLEX, PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT,
                            PIPE_UNLIMITED_INSTANCES, 65536, 65536, 0, NULL);
    if (!connected) {
      CloseHandle(h);
      continue;
    }
    int stop = 0;
    unsigned char hdr[4];
    if (readn(h, hdr, 4) == 0) {
      DWORD n = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (DWORD)hdr[3] << 24;
      char *body = calloc(n + 1, 1);
      if (body && readn(h, body, n) == 0) {
        if (!strncmp(body, "nodes", 5)) reply(h, "ok\ncount=1\nnode.0.name=winfake");
        else if (!strncmp(body, "map\n", 4)) reply(h, map_ping(body));
        else {
          reply(h, "ok");
          stop = !strncmp(body, "shutdown", 8);
        }
      }
      free(body);
    }
    FlushFileBuffers(h);
    DisconnectNamedPipe(h);
    CloseHandle(h);
    if (stop) return 0;
  }
  return 0;
}
"""

CLIENT_C = r"""
/* The plugin's own client code (wire.c + transport_win.c): a `nodes` request that starts the
 * server (VIDFX_SERVER_CMD) over the pipe, then a buffer in named shared memory the server
 * changes, then `shutdown`. */
#include <stdio.h>
#include <string.h>

#include "wire.h"

static int ask(const char *verb, const char *shm, double start, vfx_reply *r) {
  vfx_buf b;
  char err[1024] = "";
  vfx_buf_init(&b, verb);
  if (shm) vfx_buf_field(&b, "shm", shm);
  int rc = vfx_request(&b, r, start, NULL, NULL, NULL, err, sizeof err);
  vfx_buf_free(&b);
  if (rc) fprintf(stderr, "%s: rc=%d: %s\n", verb, rc, err);
  return rc;
}

int main(void) {
  vfx_reply r;
  if (ask("nodes", NULL, 30.0, &r)) return 1;
  printf("node %s\n", vfx_reply_get(&r, "node.0.name"));
  vfx_reply_free(&r);
  char name[160], err[512];
  snprintf(name, sizeof name, "/vidfx-%s-test-1", vfx_user_tag());
  char *p = vfx_shm_create(name, 1 << 20, err, sizeof err);
  if (!p) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  memcpy(p, "ping", 4);
  if (ask("map", name + 1, 0, &r)) return 3;
  vfx_reply_free(&r);
  printf("shm %.4s\n", p);
  vfx_shm_destroy(name, p, 1 << 20);
  if (ask("shutdown", NULL, 0, &r)) return 4;
  vfx_reply_free(&r);
  return 0;
}
"""


@pytest.fixture(scope="module")
def windows_bundle(tmp_path_factory):
    assert MINGW and OBJDUMP and shutil.which("make"), "needs mingw-w64 (apt-get install gcc-mingw-w64-x86-64) and make"
    build_dir = tmp_path_factory.mktemp("winbuild")
    assert ofx_build.main(["build", "--target", "windows", "--build-dir", str(build_dir)]) == 0
    return build_dir / ofx_build.BUNDLE_NAME


@needs_mingw
def test_windows_build_exports_the_ofx_entry_points(windows_bundle):
    dll = windows_bundle / "Contents" / "Win64" / "vidfx.ofx"
    assert dll.is_file()
    dump = subprocess.run([OBJDUMP, "-p", str(dll)], capture_output=True, text=True, check=True).stdout
    assert "OfxGetNumberOfPlugins" in dump and "OfxGetPlugin" in dump
    imports = {line.split(":", 1)[1].strip().lower() for line in dump.splitlines() if "DLL Name:" in line}
    assert imports and imports <= WINDOWS_DLLS, imports  # winpthreads and libgcc are linked in
    resources = windows_bundle / "Contents" / "Resources"
    assert (resources / "nodes.txt").is_file()
    # another platform's bundle cannot name this interpreter: it runs vidfx from PATH there
    assert (resources / "server_cmd").read_text().startswith("vidfx serve")


def _mingw(out: Path, sources: list[Path], extra: list[str] = ()) -> Path:
    subprocess.run([MINGW, *CFLAGS, *extra, "-o", str(out), *map(str, sources), *LINK], check=True)
    return out


def _winpath(p: Path) -> str:
    return "Z:" + str(p).replace("/", "\\")


@pytest.fixture(scope="module")
def wine_env(tmp_path_factory):
    assert MINGW and WINE, "needs mingw-w64 and wine (apt-get install gcc-mingw-w64-x86-64 wine wine64)"
    prefix = Path(tempfile.mkdtemp(prefix="vfxwine-"))
    env = dict(os.environ, WINEPREFIX=str(prefix), WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml=")
    env.pop("VIDFX_SOCKET", None)
    yield env
    subprocess.run(["wineserver", "-k"], env=env, capture_output=True, timeout=60)  # this prefix's processes only
    shutil.rmtree(prefix, ignore_errors=True)


@needs_wine
def test_windows_dll_loads_under_wine(windows_bundle, wine_env, tmp_path):
    host = tmp_path / "host.c"
    host.write_text(HOST_C)
    exe = _mingw(tmp_path / "host.exe", [host])
    dll = windows_bundle / "Contents" / "Win64" / "vidfx.ofx"
    out = subprocess.run([WINE, str(exe), _winpath(dll)], env=wine_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    expected = protocol.decode((windows_bundle / "Contents" / "Resources" / "nodes.txt").read_bytes())[1]["count"]
    assert lines[0] == f"count={expected}"
    assert "org.vidfx.temporal_average" in lines  # the plugin found its Resources next to the DLL


@needs_wine
def test_windows_pipe_transport_under_wine(wine_env, tmp_path):
    src = ofx_build.source_dir() / "src"
    (tmp_path / "server.c").write_text(FAKE_PIPE_SERVER_C)
    (tmp_path / "client.c").write_text(CLIENT_C)
    server = _mingw(tmp_path / "server.exe", [tmp_path / "server.c"])
    client = _mingw(
        tmp_path / "client.exe", [tmp_path / "client.c", src / "wire.c", src / "transport_win.c"], [f"-I{src}"]
    )
    env = dict(wine_env, VIDFX_SERVER_CMD=_winpath(server))
    out = subprocess.run([WINE, str(client)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    # started by the plugin (CreateProcess, VIDFX_SOCKET passed), answered over the pipe, and
    # the buffer the plugin made in named shared memory was changed by the server
    assert out.stdout.split("\n")[:2] == ["node winfake", "shm pong"], out.stdout + out.stderr


class FakeWinapi:
    """``_winapi``'s pipe calls over socket pairs: enough to run the server's pipe loop here."""

    PIPE_ACCESS_DUPLEX = 3
    PIPE_TYPE_BYTE = PIPE_READMODE_BYTE = PIPE_WAIT = 0
    PIPE_UNLIMITED_INSTANCES = 255
    NULL = 0

    def __init__(self):
        self.created: list[tuple[str, int, int]] = []
        self.pending: queue.Queue[socket.socket | None] = queue.Queue()
        self.ends: dict[int, socket.socket] = {}
        self.lock = threading.Lock()

    def CreateNamedPipe(self, name, open_mode, pipe_mode, *rest):  # noqa: N802 (the real names)
        with self.lock:
            self.created.append((name, open_mode, pipe_mode))
            return len(self.created)

    def ConnectNamedPipe(self, handle, overlapped):  # noqa: N802
        end = self.pending.get()
        if end is not None:
            self.ends[handle] = end

    def ReadFile(self, handle, n):  # noqa: N802
        data = self.ends[handle].recv(n)
        if not data:
            raise BrokenPipeError(109, "The pipe has been ended")
        return data, 0

    def WriteFile(self, handle, data):  # noqa: N802
        self.ends[handle].sendall(data)
        return len(data), 0

    def CloseHandle(self, handle):  # noqa: N802
        end = self.ends.pop(handle, None)
        if end is not None:
            end.close()

    def connect(self) -> socket.socket:
        mine, theirs = socket.socketpair()
        self.pending.put(theirs)
        return mine


def test_pipe_server_loop_with_a_stand_in_winapi():
    fake = FakeWinapi()
    name = transport.pipe_name("tester")
    assert name == "\\\\.\\pipe\\vidfx-tester"
    server = PipeRenderServer(name, torch.device("cpu"), 0.0, winapi=fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        a, b = fake.connect(), fake.connect()  # two clients at once: one thread each
        for client in (b, a):
            protocol.send_message(client, "hello")
            head, fields = protocol.recv_message(client)
            assert head == "ok" and int(fields["pid"]) == os.getpid()
        protocol.send_message(a, "info", {"instance": "w-1", "node": "read", "size.0": "8,8", "range.0": "0,1"})
        head, fields = protocol.recv_message(a)
        assert head == "error" and "not served" in fields["message"]
        a.close()
        b.close()
    finally:
        server.shutdown()
        fake.pending.put(None)  # what close()'s own connection does on Windows
        thread.join(10)
    assert not thread.is_alive()
    first, *later = fake.created
    assert all(n == name for n, _, _ in fake.created)
    assert first[1] & transport.PipeListener.FIRST_PIPE_INSTANCE  # nobody else may own the name
    assert later and not any(mode & transport.PipeListener.FIRST_PIPE_INSTANCE for _, mode, _ in later)
    assert all(pipe_mode & transport.PipeListener.REJECT_REMOTE_CLIENTS for _, _, pipe_mode in fake.created)


def test_windows_names():
    assert transport.pipe_name("Jane Doe\\x") == "\\\\.\\pipe\\vidfx-Jane_Doe_x"
    assert transport.shm_tagname("/vidfx-jane-123-4-5") == "Local\\vidfx-jane-123-4-5"


def test_shm_open_mapper_for_macos():
    """macOS has no /dev/shm: the server opens buffers with shm_open (also works on Linux)."""
    from multiprocessing import shared_memory

    name = f"vidfx-{transport.user_tag()}-{os.getpid()}-mac-1"
    buf = shared_memory.SharedMemory(name=name, create=True, size=4096)
    try:
        buf.buf[:4] = b"ping"
        mm = transport.PosixShmMapper().get(name, 4096)
        assert mm[:4] == b"ping"
        mm[:4] = b"pong"
        assert bytes(buf.buf[:4]) == b"pong"
        with pytest.raises(RequestError, match="smaller"):
            transport.PosixShmMapper().get(name, 1 << 30)
        with pytest.raises(RequestError, match="refusing"):
            transport.PosixShmMapper().get("vidfx-someone-else-1", 4096)
        mm.close()
    finally:
        buf.close()
        buf.unlink()
