/* Render-server client: framing, requests with abort polling, starting the server. The
 * platform parts (socket or pipe, spawning) are in transport_posix.c / transport_win.c. */
#include "wire.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- files ------------------------------------------------------------------------- */
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

/* ---- messages (the connection itself is in transport_*.c) ---------------------------- */
static int send_message(vfx_conn *c, const vfx_buf *b) {
  uint32_t len = (uint32_t)b->len;
  unsigned char hdr[4] = {(unsigned char)(len & 255), (unsigned char)((len >> 8) & 255),
                          (unsigned char)((len >> 16) & 255), (unsigned char)(len >> 24)};
  if (vfx_conn_send(c, hdr, 4) != 0) return -1;
  return vfx_conn_send(c, b->data, b->len);
}

/* Wait until the reply arrives; 1 ready, 0 aborted, -1 error/timeout. */
static int wait_readable(vfx_conn *c, vfx_abort_fn should_abort, void *ctx, double timeout_s) {
  double start = vfx_now();
  for (;;) {
    int r = vfx_conn_wait(c, 100);
    if (r > 0) return 1;
    if (r < 0) return -1;
    if (should_abort && should_abort(ctx)) return 0;
    if (timeout_s > 0 && vfx_now() - start > timeout_s) return -1;
  }
}

static void send_abort(const char *id) {
  int refused;
  char e[256];
  vfx_conn *c = vfx_conn_open(&refused, e, sizeof e);
  if (!c) return;
  vfx_buf b;
  vfx_buf_init(&b, "abort");
  vfx_buf_field(&b, "id", id);
  if (!b.failed) send_message(c, &b);
  vfx_buf_free(&b);
  vfx_conn_close(c); /* no need to wait for the answer */
}

static int transact(const vfx_buf *req, vfx_reply *rep, vfx_abort_fn should_abort, void *ctx,
                    const char *abort_id, char *err, size_t errn) {
  int refused = 0;
  vfx_conn *c = vfx_conn_open(&refused, err, errn);
  if (!c) {
    if (refused) return VFX_EREFUSED;
    snprintf(err, errn, "no vidfx server is running");
    return VFX_ENOSERVER;
  }
  if (send_message(c, req) != 0) {
    vfx_conn_close(c);
    snprintf(err, errn, "the vidfx server closed the connection (it stopped or crashed)");
    return VFX_ELOST;
  }
  const char *t = getenv("VIDFX_RENDER_TIMEOUT");
  int w = wait_readable(c, should_abort, ctx, t ? atof(t) : 0.0);
  if (w == 0) {
    vfx_conn_close(c);
    if (abort_id) send_abort(abort_id);
    snprintf(err, errn, "aborted by the host");
    return VFX_EABORT;
  }
  unsigned char hdr[4];
  if (w < 0 || vfx_conn_recv(c, hdr, 4) != 0) {
    vfx_conn_close(c);
    snprintf(err, errn, "the vidfx server stopped before replying (crashed or was killed); "
                        "it is restarted on the next render");
    return VFX_ELOST;
  }
  uint32_t len = hdr[0] | (hdr[1] << 8) | (hdr[2] << 16) | ((uint32_t)hdr[3] << 24);
  char *text = malloc((size_t)len + 1);
  if (!text) {
    vfx_conn_close(c);
    snprintf(err, errn, "out of memory reading the server's reply");
    return VFX_EOTHER;
  }
  if (vfx_conn_recv(c, text, len) != 0) {
    free(text);
    vfx_conn_close(c);
    snprintf(err, errn, "the vidfx server stopped while replying");
    return VFX_ELOST;
  }
  vfx_conn_close(c);
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

/* Where the start command leaves the server's exit status when it ends (next to the socket):
 * a server that dies while starting (bad command, import error) fails the wait at once. */
static void exit_marker(char *out, size_t n) {
  char sock[4096], e[256];
  out[0] = 0;
  if (vfx_endpoint(sock, sizeof sock, e, sizeof e) != 0) return;
  char *slash = strrchr(sock, '/');
  if (slash) *slash = 0;
  snprintf(out, n, "%s/server.exit", slash ? sock : ".");
}

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
#ifndef _WIN32
  char marker[4200], wrapped[12800];
  exit_marker(marker, sizeof marker);
  if (*marker && !strchr(marker, '\'')) {
    remove(marker);
    /* a subshell, so that an `exit` in the command still reaches the echo */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", marker);
    *strrchr(dir, '/') = 0;
    snprintf(wrapped, sizeof wrapped, "{ (%s\n)\n s=$?; mkdir -m 700 -p '%s' 2>/dev/null; echo $s >'%s'; }", cmd, dir,
             marker);
    return vfx_spawn_server(wrapped, err, errn);
  }
#endif
  return vfx_spawn_server(cmd, err, errn);
}

static int server_answers(void) {
  int refused;
  char e[256];
  vfx_conn *c = vfx_conn_open(&refused, e, sizeof e);
  vfx_conn_close(c);
  return c != NULL;
}

/* Start a server and wait until it answers: 0; -1 on failure (err set), at once when the
 * server exits while starting; 1 when the host aborted (polled while waiting). */
static int ensure_server(double timeout, vfx_abort_fn should_abort, void *ctx, char *err, size_t errn) {
  pthread_mutex_lock(&start_lock);
  if (server_answers()) {
    pthread_mutex_unlock(&start_lock);
    return 0;
  }
  int rc = spawn_server(err, errn);
  if (rc == 0) {
    const char *t = getenv("VIDFX_SERVER_START_TIMEOUT");
    if (t && *t) timeout = atof(t);
    double start = vfx_now();
    rc = -1;
    char marker[4200];
    exit_marker(marker, sizeof marker);
    while (vfx_now() - start < timeout) {
      if (server_answers()) {
        rc = 0;
        break;
      }
      char *status = *marker ? vfx_read_file(marker) : NULL;
      if (status) trim(status);
      if (status && strcmp(status, "0") == 0) {
        /* a clean exit: another process's server won the socket (two hosts, or two copies of
         * the plugin, started one at once); keep waiting for it to answer */
        free(status);
        remove(marker);
        status = NULL;
      }
      if (status) {
        char sock[4096], e[256];
        if (vfx_endpoint(sock, sizeof sock, e, sizeof e) != 0) snprintf(sock, sizeof sock, "?");
        snprintf(err, errn, "the vidfx server exited while starting (status %s); see the server.log next to %s",
                 status, sock);
        free(status);
        pthread_mutex_unlock(&start_lock);
        return -1;
      }
      if (should_abort && should_abort(ctx)) {
        snprintf(err, errn, "aborted by the host");
        pthread_mutex_unlock(&start_lock);
        return 1;
      }
      vfx_sleep_ms(50);
    }
    if (rc != 0) {
      char sock[4096], e[256];
      if (vfx_endpoint(sock, sizeof sock, e, sizeof e) != 0) snprintf(sock, sizeof sock, "?");
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
    if (rc == VFX_EREFUSED) return;
    if (rc == VFX_ENOSERVER) {
      if (start_server <= 0 || ensure_server(start_server, NULL, NULL, e, sizeof e) != 0) return;
      continue;
    }
    vfx_sleep_ms(100); /* the old server is still going away */
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
    int started = ensure_server(start_server, should_abort, ctx, err, errn);
    if (started != 0) return started > 0 ? VFX_EABORT : VFX_ENOSERVER;
    rc = transact(req, rep, should_abort, ctx, abort_id, err, errn);
  }
  if (rc == VFX_ELOST) __atomic_store_n(&g_lost, 1, __ATOMIC_SEQ_CST);
  return rc;
}
