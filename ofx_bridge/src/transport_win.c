/* Windows transport: a named pipe \\.\pipe\vidfx-<user> (byte mode) and named shared memory
 * (CreateFileMapping / MapViewOfFile, Local\vidfx-...), behind transport.h. Built with
 * mingw-w64 (`make TARGET=windows`). The pipe server must run as this user: after connecting,
 * the plugin compares the token user of the process at the other end
 * (GetNamedPipeServerProcessId) with its own, and sends nothing otherwise. */
#ifdef _WIN32
#include "transport.h"

#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ----------------------------------------------------------------------------- */
static void sanitize(char *s) {
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
          *s == '_' || *s == '.'))
      *s = '_';
}

const char *vfx_user_tag(void) {
  static char tag[80];
  if (!tag[0]) {
    char name[257] = "";
    DWORD n = sizeof name;
    if (!GetUserNameA(name, &n) || !name[0]) snprintf(name, sizeof name, "user");
    name[64] = 0;
    snprintf(tag, sizeof tag, "%s", name);
    sanitize(tag);
  }
  return tag;
}

int vfx_endpoint(char *out, size_t n, char *err, size_t errn) {
  const char *explicit_name = getenv("VIDFX_SOCKET");
  int w = explicit_name && *explicit_name ? snprintf(out, n, "%s", explicit_name)
                                          : snprintf(out, n, "\\\\.\\pipe\\vidfx-%s", vfx_user_tag());
  if (w < 0 || (size_t)w >= n) {
    snprintf(err, errn, "pipe name too long");
    return -1;
  }
  return 0;
}

/* ---- the pipe's owner ------------------------------------------------------------------- */
/* The token user (SID) of a process; caller frees. */
static TOKEN_USER *token_user(HANDLE process) {
  HANDLE token;
  if (!OpenProcessToken(process, TOKEN_QUERY, &token)) return NULL;
  DWORD len = 0;
  GetTokenInformation(token, TokenUser, NULL, 0, &len);
  TOKEN_USER *tu = len ? malloc(len) : NULL;
  if (tu && !GetTokenInformation(token, TokenUser, tu, len, &len)) {
    free(tu);
    tu = NULL;
  }
  CloseHandle(token);
  return tu;
}

static int server_is_ours(HANDLE pipe) {
  ULONG pid = 0;
  if (!GetNamedPipeServerProcessId(pipe, &pid)) return 0;
  HANDLE proc = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
  if (!proc) return 0;
  TOKEN_USER *theirs = token_user(proc);
  CloseHandle(proc);
  TOKEN_USER *mine = token_user(GetCurrentProcess());
  int same = theirs && mine && EqualSid(theirs->User.Sid, mine->User.Sid);
  free(theirs);
  free(mine);
  return same;
}

/* ---- connections -------------------------------------------------------------------------- */
struct vfx_conn {
  HANDLE pipe;
};

vfx_conn *vfx_conn_open(int *refused, char *err, size_t errn) {
  *refused = 0;
  char name[512];
  if (vfx_endpoint(name, sizeof name, err, errn) != 0) {
    *refused = 1;
    return NULL;
  }
  HANDLE h = INVALID_HANDLE_VALUE;
  for (int attempt = 0; attempt < 20; attempt++) {
    /* SECURITY_IDENTIFICATION: the server may learn who we are, never act as us */
    h = CreateFileA(name, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                    SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, NULL);
    if (h != INVALID_HANDLE_VALUE) break;
    if (GetLastError() != ERROR_PIPE_BUSY || !WaitNamedPipeA(name, 100)) return NULL;
  }
  if (h == INVALID_HANDLE_VALUE) return NULL;
  if (!server_is_ours(h)) {
    CloseHandle(h);
    snprintf(err, errn, "the server at %s runs as another user; not talking to it", name);
    fprintf(stderr, "vidfx.ofx: %s\n", err);
    *refused = 1;
    return NULL;
  }
  vfx_conn *c = malloc(sizeof *c);
  if (!c) {
    CloseHandle(h);
    return NULL;
  }
  c->pipe = h;
  return c;
}

int vfx_conn_send(vfx_conn *c, const void *data, size_t n) {
  const char *p = data;
  while (n) {
    DWORD chunk = n > (1u << 20) ? (1u << 20) : (DWORD)n, done = 0;
    if (!WriteFile(c->pipe, p, chunk, &done, NULL)) return -1;
    p += done;
    n -= done;
  }
  return 0;
}

int vfx_conn_recv(vfx_conn *c, void *data, size_t n) {
  char *p = data;
  while (n) {
    DWORD chunk = n > (1u << 20) ? (1u << 20) : (DWORD)n, done = 0;
    if (!ReadFile(c->pipe, p, chunk, &done, NULL) || done == 0) return -1;
    p += done;
    n -= done;
  }
  return 0;
}

int vfx_conn_wait(vfx_conn *c, int ms) {
  double end = vfx_now() + ms / 1000.0;
  for (;;) {
    DWORD avail = 0;
    if (!PeekNamedPipe(c->pipe, NULL, 0, NULL, &avail, NULL)) return 1; /* closed: the read reports it */
    if (avail) return 1;
    if (vfx_now() >= end) return 0;
    Sleep(5);
  }
}

void vfx_conn_close(vfx_conn *c) {
  if (!c) return;
  CloseHandle(c->pipe);
  free(c);
}

/* ---- starting the server ------------------------------------------------------------------ */
/* The host's environment block minus the host's runtime variables (see transport_posix.c),
 * plus VIDFX_SOCKET; caller frees. */
static char *server_environment(const char *endpoint) {
  static const char *drop[] = {"PYTHONHOME=", "PYTHONPATH=", "PYTHONSTARTUP=", "PYTHONEXECUTABLE=", NULL};
  const char *keep = getenv("VIDFX_SERVER_KEEP_ENV");
  char *block = GetEnvironmentStringsA();
  if (!block) return NULL;
  size_t total = 0;
  for (char *e = block; *e; e += strlen(e) + 1) total += strlen(e) + 1;
  size_t cap = total + strlen(endpoint) + 32;
  char *env = malloc(cap), *w = env;
  if (!env) {
    FreeEnvironmentStringsA(block);
    return NULL;
  }
  for (char *e = block; *e; e += strlen(e) + 1) {
    int skip = _strnicmp(e, "VIDFX_SOCKET=", 13) == 0;
    for (int d = 0; drop[d] && !(keep && *keep == '1'); d++)
      if (_strnicmp(e, drop[d], strlen(drop[d])) == 0) skip = 1;
    if (skip) continue;
    size_t k = strlen(e) + 1;
    memcpy(w, e, k);
    w += k;
  }
  w += sprintf(w, "VIDFX_SOCKET=%s", endpoint) + 1;
  *w = 0;
  FreeEnvironmentStringsA(block);
  return env;
}

/* %LOCALAPPDATA%\vidfx\server.log (the user's own profile folder), opened for appending. */
static HANDLE open_log(void) {
  const char *base = getenv("LOCALAPPDATA");
  if (!base || !*base) return INVALID_HANDLE_VALUE;
  char path[1024];
  snprintf(path, sizeof path, "%s\\vidfx", base);
  CreateDirectoryA(path, NULL);
  snprintf(path, sizeof path, "%s\\vidfx\\server.log", base);
  SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE}; /* inherited by the server */
  /* FILE_FLAG_OPEN_REPARSE_POINT: a symlink/junction planted there is opened as itself, not followed */
  return CreateFileA(path, FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE, &sa, OPEN_ALWAYS,
                     FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT, NULL);
}

int vfx_spawn_server(const char *cmd, char *err, size_t errn) {
  char endpoint[512];
  if (vfx_endpoint(endpoint, sizeof endpoint, err, errn) != 0) return -1;
  size_t n = strlen(cmd) + 1;
  char *line = malloc(n);
  char *env = server_environment(endpoint);
  if (!line || !env) {
    free(line);
    free(env);
    snprintf(err, errn, "out of memory");
    return -1;
  }
  memcpy(line, cmd, n);
  HANDLE log = open_log();
  /* the server inherits the log handle and nothing else of the host's */
  STARTUPINFOEXA si;
  memset(&si, 0, sizeof si);
  si.StartupInfo.cb = sizeof si;
  SIZE_T attr_size = 0;
  LPPROC_THREAD_ATTRIBUTE_LIST attrs = NULL;
  int inherit = 0;
  if (log != INVALID_HANDLE_VALUE) {
    InitializeProcThreadAttributeList(NULL, 1, 0, &attr_size);
    attrs = malloc(attr_size);
    if (attrs && InitializeProcThreadAttributeList(attrs, 1, 0, &attr_size)) {
      if (UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, &log, sizeof log, NULL, NULL)) {
        si.lpAttributeList = attrs;
        si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
        si.StartupInfo.hStdInput = NULL;
        si.StartupInfo.hStdOutput = log;
        si.StartupInfo.hStdError = log;
        inherit = 1;
      } else {
        DeleteProcThreadAttributeList(attrs);
      }
    }
    if (!inherit) {
      free(attrs);
      attrs = NULL;
    }
  }
  PROCESS_INFORMATION pi;
  BOOL ok = CreateProcessA(NULL, line, NULL, NULL, inherit,
                           CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS |
                               (inherit ? EXTENDED_STARTUPINFO_PRESENT : 0),
                           env, NULL, &si.StartupInfo, &pi);
  DWORD e = GetLastError();
  if (attrs) {
    DeleteProcThreadAttributeList(attrs);
    free(attrs);
  }
  if (log != INVALID_HANDLE_VALUE) CloseHandle(log);
  free(line);
  free(env);
  if (!ok) {
    snprintf(err, errn, "could not start the vidfx server (%s): error %lu", cmd, (unsigned long)e);
    return -1;
  }
  CloseHandle(pi.hThread);
  CloseHandle(pi.hProcess);
  return 0;
}

/* ---- shared memory ------------------------------------------------------------------------- *
 * A named mapping lives while a handle to it is open, so each buffer's handle is kept here,
 * by view address, until vfx_shm_destroy. */
#define MAX_MAPPINGS 256
static SRWLOCK g_maps_lock = SRWLOCK_INIT;
static struct {
  void *ptr;
  HANDLE handle;
} g_maps[MAX_MAPPINGS];

void *vfx_shm_create(const char *name, size_t size, char *err, size_t errn) {
  char full[300];
  snprintf(full, sizeof full, "Local\\%s", name[0] == '/' ? name + 1 : name);
  unsigned long long sz = size;
  HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE | SEC_COMMIT, (DWORD)(sz >> 32),
                                (DWORD)(sz & 0xffffffffu), full);
  if (h && GetLastError() == ERROR_ALREADY_EXISTS) { /* someone made this name first: not ours */
    CloseHandle(h);
    h = NULL;
    SetLastError(ERROR_ALREADY_EXISTS);
  }
  if (!h) {
    snprintf(err, errn, "cannot create %zu MB of shared memory (%s): error %lu", size >> 20, full,
             (unsigned long)GetLastError());
    return NULL;
  }
  void *ptr = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, size);
  if (!ptr) {
    snprintf(err, errn, "cannot map %zu bytes of shared memory: error %lu", size, (unsigned long)GetLastError());
    CloseHandle(h);
    return NULL;
  }
  AcquireSRWLockExclusive(&g_maps_lock);
  int slot = -1;
  for (int i = 0; i < MAX_MAPPINGS && slot < 0; i++)
    if (!g_maps[i].ptr) slot = i;
  if (slot >= 0) {
    g_maps[slot].ptr = ptr;
    g_maps[slot].handle = h;
  }
  ReleaseSRWLockExclusive(&g_maps_lock);
  if (slot < 0) {
    UnmapViewOfFile(ptr);
    CloseHandle(h);
    snprintf(err, errn, "too many shared-memory buffers");
    return NULL;
  }
  return ptr;
}

void vfx_shm_destroy(const char *name, void *ptr, size_t size) {
  (void)name;
  (void)size;
  if (!ptr) return;
  HANDLE h = NULL;
  AcquireSRWLockExclusive(&g_maps_lock);
  for (int i = 0; i < MAX_MAPPINGS; i++)
    if (g_maps[i].ptr == ptr) {
      h = g_maps[i].handle;
      g_maps[i].ptr = NULL;
      g_maps[i].handle = NULL;
    }
  ReleaseSRWLockExclusive(&g_maps_lock);
  UnmapViewOfFile(ptr);
  if (h) CloseHandle(h);
}

/* ---- odds and ends --------------------------------------------------------------------------- */
double vfx_now(void) {
  static LARGE_INTEGER freq;
  LARGE_INTEGER t;
  if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&t);
  return (double)t.QuadPart / (double)freq.QuadPart;
}

void vfx_sleep_ms(int ms) { Sleep((DWORD)ms); }

int vfx_readable(const char *path) {
  DWORD a = GetFileAttributesA(path);
  return a != INVALID_FILE_ATTRIBUTES && !(a & FILE_ATTRIBUTE_DIRECTORY);
}

const char *vfx_resources_dir(void) {
  static char dir[4096];
  static int done = 0;
  if (done) return dir;
  done = 1;
  HMODULE self = NULL;
  if (!GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                          (LPCSTR)(void *)&vfx_resources_dir, &self))
    return dir;
  char path[4000];
  DWORD n = GetModuleFileNameA(self, path, sizeof path);
  if (!n || n >= sizeof path) return dir;
  /* ...\vidfx.ofx.bundle\Contents\Win64\vidfx.ofx -> ...\Contents\Resources */
  for (int up = 0; up < 2; up++) {
    char *slash = strrchr(path, '\\');
    char *fwd = strrchr(path, '/');
    if (fwd > slash) slash = fwd;
    if (!slash) return dir;
    *slash = 0;
  }
  snprintf(dir, sizeof dir, "%s\\Resources", path);
  return dir;
}
#else
typedef int vfx_transport_win_unused; /* ISO C: no empty translation unit */
#endif
