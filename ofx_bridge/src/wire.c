/* Render-server client: framing, requests with abort polling, starting the server. */
#include "wire.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---- buffers ------------------------------------------------------------------------ */
static void buf_reserve(vfx_buf *b, size_t extra) {
  if (b->failed || b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->failed = 1;
    return;
  }
  b->data = p;
  b->cap = cap;
}

void vfx_buf_append(vfx_buf *b, const char *text, size_t n) {
  buf_reserve(b, n);
  if (b->failed) return;
  memcpy(b->data + b->len, text, n);
  b->len += n;
  b->data[b->len] = 0;
}

void vfx_buf_init(vfx_buf *b, const char *head) {
  memset(b, 0, sizeof *b);
  vfx_buf_append(b, head, strlen(head));
  vfx_buf_append(b, "\n", 1);
}

void vfx_buf_free(vfx_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

void vfx_buf_field(vfx_buf *b, const char *key, const char *value) {
  vfx_buf_append(b, key, strlen(key));
  vfx_buf_append(b, "=", 1);
  for (const char *p = value ? value : ""; *p; p++) {
    if (*p == '\\') vfx_buf_append(b, "\\\\", 2);
    else if (*p == '\n') vfx_buf_append(b, "\\n", 2);
    else vfx_buf_append(b, p, 1);
  }
  vfx_buf_append(b, "\n", 1);
}

void vfx_buf_fieldf(vfx_buf *b, const char *key, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  vfx_buf_field(b, key, tmp);
}

/* ---- replies ------------------------------------------------------------------------ */
void vfx_reply_free(vfx_reply *r) {
  free(r->text);
  free(r->keys);
  free(r->values);
  memset(r, 0, sizeof *r);
}

const char *vfx_reply_get(const vfx_reply *r, const char *key) {
  for (int i = 0; i < r->count; i++)
    if (strcmp(r->keys[i], key) == 0) return r->values[i];
  return NULL;
}

static void unescape(char *s) {
  char *w = s;
  for (char *p = s; *p; p++) {
    if (*p == '\\' && p[1]) {
      p++;
      *w++ = (*p == 'n') ? '\n' : *p;
    } else {
      *w++ = *p;
    }
  }
  *w = 0;
}

int vfx_reply_parse(vfx_reply *r, char *text) {
  memset(r, 0, sizeof *r);
  r->text = text;
  int lines = 1;
  for (char *p = text; *p; p++) lines += (*p == '\n');
  r->keys = calloc((size_t)lines, sizeof(char *));
  r->values = calloc((size_t)lines, sizeof(char *));
  if (!r->keys || !r->values) return VFX_EOTHER;
  char *save = NULL;
  char *line = strtok_r(text, "\n", &save);
  r->head = line ? line : text;
  while ((line = strtok_r(NULL, "\n", &save))) {
    char *eq = strchr(line, '=');
    if (!eq) continue;
    *eq = 0;
    unescape(eq + 1);
    r->keys[r->count] = line;
    r->values[r->count] = eq + 1;
    r->count++;
  }
  return VFX_OK;
}

/* ---- paths ------------------------------------------------------------------------- */
int vfx_socket_path(char *out, size_t n) {
  const char *explicit_path = getenv("VIDFX_SOCKET");
  if (explicit_path && *explicit_path) return snprintf(out, n, "%s", explicit_path) < (int)n ? 0 : -1;
  const char *runtime = getenv("XDG_RUNTIME_DIR");
  struct stat st;
  if (runtime && *runtime && stat(runtime, &st) == 0 && S_ISDIR(st.st_mode))
    return snprintf(out, n, "%s/vidfx/server.sock", runtime) < (int)n ? 0 : -1;
  return snprintf(out, n, "/tmp/vidfx-%u/server.sock", (unsigned)getuid()) < (int)n ? 0 : -1;
}

const char *vfx_resources_dir(void) {
  static char dir[4096];
  static int done = 0;
  if (done) return dir;
  done = 1;
  Dl_info info;
  if (!dladdr((void *)&vfx_resources_dir, &info) || !info.dli_fname) return dir;
  /* .../vidfx.ofx.bundle/Contents/Linux-x86-64/vidfx.ofx -> .../Contents/Resources */
  char path[4000];
  snprintf(path, sizeof path, "%s", info.dli_fname);
  char *slash = strrchr(path, '/');
  if (!slash) return dir;
  *slash = 0;
  slash = strrchr(path, '/');
  if (!slash) return dir;
  *slash = 0;
  snprintf(dir, sizeof dir, "%s/Resources", path);
  return dir;
}

char *vfx_read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0;
  char *s = malloc(cap);
  while (s) {
    size_t got = fread(s + len, 1, cap - len - 1, f);
    len += got;
    if (got == 0) break;
    if (len + 1 >= cap) {
      char *p = realloc(s, cap * 2);
      if (!p) {
        free(s);
        s = NULL;
        break;
      }
      s = p;
      cap *= 2;
    }
  }
  fclose(f);
  if (s) s[len] = 0;
  return s;
}

/* ---- sockets ----------------------------------------------------------------------- */
static int connect_server(void) {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  if (vfx_socket_path(path, sizeof path) != 0) return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, strlen(path) + 1);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Send n bytes from `out`, or (out NULL) receive n bytes into `in`; -1 on an error or a closed
 * connection. MSG_NOSIGNAL: a dead server must give EPIPE, never a SIGPIPE that kills the host. */
static int transfer_all(int fd, const char *out, char *in, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t k = out ? send(fd, out + done, n - done, MSG_NOSIGNAL) : recv(fd, in + done, n - done, 0);
    if (k == 0 && !out) return -1;
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    done += (size_t)k;
  }
  return 0;
}

static int send_all(int fd, const void *data, size_t n) { return transfer_all(fd, data, NULL, n); }
static int recv_all(int fd, void *data, size_t n) { return transfer_all(fd, NULL, data, n); }

static int send_message(int fd, const vfx_buf *b) {
  uint32_t len = (uint32_t)b->len;
  unsigned char hdr[4] = {(unsigned char)(len & 255), (unsigned char)((len >> 8) & 255),
                          (unsigned char)((len >> 16) & 255), (unsigned char)(len >> 24)};
  if (send_all(fd, hdr, 4) != 0) return -1;
  return send_all(fd, b->data, b->len);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Wait until fd is readable; 1 ready, 0 aborted, -1 error/timeout. */
static int wait_readable(int fd, vfx_abort_fn should_abort, void *ctx, double timeout_s) {
  double start = now_s();
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, 100);
    if (r > 0) return 1;
    if (r < 0 && errno != EINTR) return -1;
    if (should_abort && should_abort(ctx)) return 0;
    if (timeout_s > 0 && now_s() - start > timeout_s) return -1;
  }
}

static void send_abort(const char *id) {
  int fd = connect_server();
  if (fd < 0) return;
  vfx_buf b;
  vfx_buf_init(&b, "abort");
  vfx_buf_field(&b, "id", id);
  if (!b.failed) send_message(fd, &b);
  vfx_buf_free(&b);
  close(fd); /* no need to wait for the answer */
}

static int transact(const vfx_buf *req, vfx_reply *rep, vfx_abort_fn should_abort, void *ctx,
                    const char *abort_id, char *err, size_t errn) {
  int fd = connect_server();
  if (fd < 0) {
    snprintf(err, errn, "no vidfx server is running");
    return VFX_ENOSERVER;
  }
  if (send_message(fd, req) != 0) {
    close(fd);
    snprintf(err, errn, "the vidfx server closed the connection (it stopped or crashed)");
    return VFX_ELOST;
  }
  const char *t = getenv("VIDFX_RENDER_TIMEOUT");
  int w = wait_readable(fd, should_abort, ctx, t ? atof(t) : 0.0);
  if (w == 0) {
    close(fd);
    if (abort_id) send_abort(abort_id);
    snprintf(err, errn, "aborted by the host");
    return VFX_EABORT;
  }
  unsigned char hdr[4];
  if (w < 0 || recv_all(fd, hdr, 4) != 0) {
    close(fd);
    snprintf(err, errn, "the vidfx server stopped before replying (crashed or was killed); "
                        "it is restarted on the next render");
    return VFX_ELOST;
  }
  uint32_t len = hdr[0] | (hdr[1] << 8) | (hdr[2] << 16) | ((uint32_t)hdr[3] << 24);
  char *text = malloc((size_t)len + 1);
  if (!text) {
    close(fd);
    snprintf(err, errn, "out of memory reading the server's reply");
    return VFX_EOTHER;
  }
  if (recv_all(fd, text, len) != 0) {
    free(text);
    close(fd);
    snprintf(err, errn, "the vidfx server stopped while replying");
    return VFX_ELOST;
  }
  close(fd);
  text[len] = 0;
  if (vfx_reply_parse(rep, text) != VFX_OK) {
    vfx_reply_free(rep);
    snprintf(err, errn, "out of memory parsing the server's reply");
    return VFX_EOTHER;
  }
  if (strcmp(rep->head, "ok") != 0) {
    const char *m = vfx_reply_get(rep, "message");
    snprintf(err, errn, "%s", m ? m : "the vidfx server reported an error");
    return VFX_EREPLY;
  }
  return VFX_OK;
}

/* ---- starting the server ------------------------------------------------------------- */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

static void trim(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) s[--n] = 0;
}

/* The host's environment minus what points at the host's own runtimes (hosts set these for
 * their embedded Python and libraries; our server needs its own). VIDFX_SERVER_KEEP_ENV=1 keeps
 * everything. The caller frees the array (not the strings). */
static char **server_environment(void) {
  static const char *drop[] = {"PYTHONHOME=", "PYTHONPATH=", "PYTHONSTARTUP=", "PYTHONEXECUTABLE=",
                               "LD_LIBRARY_PATH=", "LD_PRELOAD=", NULL};
  const char *keep = getenv("VIDFX_SERVER_KEEP_ENV");
  size_t n = 0;
  while (environ[n]) n++;
  char **env = calloc(n + 1, sizeof(char *));
  if (!env) return NULL;
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    int skip = 0;
    for (int d = 0; drop[d] && !(keep && *keep == '1'); d++)
      if (strncmp(environ[i], drop[d], strlen(drop[d])) == 0) skip = 1;
    if (!skip) env[m++] = environ[i];
  }
  env[m] = NULL;
  return env;
}

/* Spawn `sh -c "CMD >>LOG 2>&1 </dev/null &"` in a new session: the shell exits at once
 * (we reap it), the server is re-parented to init and outlives the host's render calls. */
static int spawn_server(char *err, size_t errn) {
  char cmd[4096] = "";
  const char *env_cmd = getenv("VIDFX_SERVER_CMD");
  if (env_cmd && *env_cmd) {
    snprintf(cmd, sizeof cmd, "%s", env_cmd);
  } else {
    char path[4200];
    snprintf(path, sizeof path, "%s/server_cmd", vfx_resources_dir());
    char *s = vfx_read_file(path);
    if (s) {
      trim(s);
      snprintf(cmd, sizeof cmd, "%s", s);
      free(s);
    }
  }
  if (!*cmd) snprintf(cmd, sizeof cmd, "vidfx serve");

  char sock[4096];
  if (vfx_socket_path(sock, sizeof sock) != 0) {
    snprintf(err, errn, "socket path too long");
    return -1;
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", sock);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  mkdir(dir, 0700);
  char shell[12288];
  snprintf(shell, sizeof shell, "%s >>'%s/server.log' 2>&1 </dev/null &", cmd, dir);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  short flags = 0;
#ifdef POSIX_SPAWN_SETSID
  flags |= POSIX_SPAWN_SETSID;
#endif
  flags |= POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, flags);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&fa, 3); /* keep the host's files out of the server */
#endif
  char *argv[] = {"/bin/sh", "-c", shell, NULL};
  pid_t pid;
  char **env = server_environment();
  int rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, env ? env : environ);
  free(env);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    snprintf(err, errn, "could not start the vidfx server (%s): %s", cmd, strerror(rc));
    return -1;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return 0;
}

static int ensure_server(double timeout, char *err, size_t errn) {
  pthread_mutex_lock(&start_lock);
  int fd = connect_server();
  if (fd >= 0) {
    close(fd);
    pthread_mutex_unlock(&start_lock);
    return 0;
  }
  int rc = spawn_server(err, errn);
  if (rc == 0) {
    const char *t = getenv("VIDFX_SERVER_START_TIMEOUT");
    if (t && *t) timeout = atof(t);
    double start = now_s();
    rc = -1;
    while (now_s() - start < timeout) {
      fd = connect_server();
      if (fd >= 0) {
        close(fd);
        rc = 0;
        break;
      }
      usleep(50 * 1000);
    }
    if (rc != 0) {
      char sock[4096];
      vfx_socket_path(sock, sizeof sock);
      snprintf(err, errn, "the vidfx server did not start within %g s (see the server.log next to %s)",
               timeout, sock);
    }
  }
  pthread_mutex_unlock(&start_lock);
  return rc;
}

/* Set when a connection broke mid-request. Right after a crash the dying server's listening
 * socket may still accept connections for a moment, so the next request first makes sure a
 * live server answers an (idempotent) `hello`, starting one if needed. */
static int g_lost = 0;

static void probe_after_loss(double start_server) {
  for (int attempt = 0; attempt < 50; attempt++) {
    vfx_buf b;
    vfx_reply r;
    char e[256];
    vfx_buf_init(&b, "hello");
    memset(&r, 0, sizeof r);
    int rc = transact(&b, &r, NULL, NULL, NULL, e, sizeof e);
    vfx_buf_free(&b);
    vfx_reply_free(&r);
    if (rc == VFX_OK || rc == VFX_EREPLY) {
      __atomic_store_n(&g_lost, 0, __ATOMIC_SEQ_CST);
      return;
    }
    if (rc == VFX_ENOSERVER) {
      if (start_server <= 0 || ensure_server(start_server, e, sizeof e) != 0) return;
      continue;
    }
    usleep(100 * 1000); /* the old server is still going away */
  }
}

int vfx_request(const vfx_buf *req, vfx_reply *rep, double start_server, vfx_abort_fn should_abort,
                void *ctx, const char *abort_id, char *err, size_t errn) {
  memset(rep, 0, sizeof *rep);
  if (req->failed) {
    snprintf(err, errn, "out of memory building a request");
    return VFX_EOTHER;
  }
  if (__atomic_load_n(&g_lost, __ATOMIC_SEQ_CST)) probe_after_loss(start_server);
  int rc = transact(req, rep, should_abort, ctx, abort_id, err, errn);
  if (rc == VFX_ENOSERVER && start_server > 0) {
    if (ensure_server(start_server, err, errn) != 0) return VFX_ENOSERVER;
    rc = transact(req, rep, should_abort, ctx, abort_id, err, errn);
  }
  if (rc == VFX_ELOST) __atomic_store_n(&g_lost, 1, __ATOMIC_SEQ_CST);
  return rc;
}
