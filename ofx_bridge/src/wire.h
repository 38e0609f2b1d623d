/* The plugin's side of the render-server protocol (docs/ofx.md): framed text messages over
 * the transport (transport.h: a Unix socket, or a named pipe on Windows), and starting the
 * server when none is listening. */
#ifndef VIDFX_WIRE_H
#define VIDFX_WIRE_H

#include <stddef.h>

#include "transport.h"

#ifdef __MINGW32__
#define VFX_PRINTF gnu_printf
#else
#define VFX_PRINTF printf
#endif

/* Results of a request. */
enum {
  VFX_OK = 0,
  VFX_ENOSERVER = 1, /* nothing listens on the socket (and starting one failed, if asked) */
  VFX_ELOST = 2,     /* the connection broke before the reply: the server died mid-request */
  VFX_EREPLY = 3,    /* the server answered with an error; the message is in err */
  VFX_EABORT = 4,    /* the host aborted while we waited */
  VFX_EOTHER = 5,    /* anything else (out of memory, malformed reply) */
  VFX_EREFUSED = 6   /* the endpoint is not safe or the server runs as another user (nothing sent) */
};

/* A growable text buffer for building a request. */
typedef struct vfx_buf {
  char *data;
  size_t len, cap;
  int failed; /* set when an allocation failed; the request is then not sent */
} vfx_buf;

void vfx_buf_init(vfx_buf *b, const char *head);
void vfx_buf_free(vfx_buf *b);
/* Append one key=value line; the value is escaped (\\ and \n). */
void vfx_buf_field(vfx_buf *b, const char *key, const char *value);
/* Append one key=value line with a printf-formatted value (must not contain newlines). */
void vfx_buf_fieldf(vfx_buf *b, const char *key, const char *fmt, ...) __attribute__((format(VFX_PRINTF, 3, 4)));
/* Append raw text (already key=value lines, each ending in \n). */
void vfx_buf_append(vfx_buf *b, const char *text, size_t n);

/* A parsed reply: head ("ok"/"error") and fields. */
typedef struct vfx_reply {
  char *text;
  char *head;
  int count;
  char **keys;
  char **values;
} vfx_reply;

void vfx_reply_free(vfx_reply *r);
/* The value of a field, or NULL. */
const char *vfx_reply_get(const vfx_reply *r, const char *key);
/* Parse a message body (text is taken over and freed by vfx_reply_free). */
int vfx_reply_parse(vfx_reply *r, char *text);

/* Called while waiting for a reply; return non-zero to abort. */
typedef int (*vfx_abort_fn)(void *ctx);

/* Send a request and wait for the reply. If no server listens and start_server > 0, start
 * one (at most one start at a time in this process), wait up to start_server seconds for it
 * ($VIDFX_SERVER_START_TIMEOUT overrides) and retry. abort_id, when given, names the request
 * for an `abort` message sent if should_abort fires. */
#define VFX_START_WAIT 60.0
int vfx_request(const vfx_buf *req, vfx_reply *rep, double start_server, vfx_abort_fn should_abort,
                void *ctx, const char *abort_id, char *err, size_t errn);

/* Read a whole small file into a new NUL-terminated string (NULL on failure). */
char *vfx_read_file(const char *path);

#endif
