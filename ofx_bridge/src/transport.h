/* What differs between platforms, behind one small interface: reaching this user's render
 * server (a Unix socket on Linux/macOS: transport_posix.c; a named pipe on Windows:
 * transport_win.c), starting it, naming and mapping the shared-memory buffers that carry
 * pixels, and the plugin's own file location. wire.c (the protocol) and plugin.c (the OFX
 * side) are the same on every platform. */
#ifndef VIDFX_TRANSPORT_H
#define VIDFX_TRANSPORT_H

#include <stddef.h>

#ifdef _WIN32
#define VFX_EXPORT __declspec(dllexport)
#else
#define VFX_EXPORT __attribute__((visibility("default")))
#endif

/* ---- the connection to the server ---------------------------------------------------------
 * vfx_conn_open connects to this user's server and checks that it runs as this user (POSIX:
 * SO_PEERCRED / getpeereid on the socket, in a directory that is ours, 0700 and no symlink;
 * Windows: the pipe server process's token user). NULL when nothing listens (*refused 0) or
 * the endpoint cannot be trusted (*refused 1, reason in err; nothing was sent). */
typedef struct vfx_conn vfx_conn;
vfx_conn *vfx_conn_open(int *refused, char *err, size_t errn);
int vfx_conn_send(vfx_conn *c, const void *data, size_t n); /* 0, or -1 when the peer is gone */
int vfx_conn_recv(vfx_conn *c, void *data, size_t n);       /* exactly n bytes: 0, or -1 */
int vfx_conn_wait(vfx_conn *c, int ms); /* 1 readable (or closed), 0 timeout, -1 error */
void vfx_conn_close(vfx_conn *c);

/* The server's address: socket path (POSIX) or pipe name (Windows); same rules as
 * vidfx.server.protocol.default_socket_path. 0, or -1 with a reason in err. */
int vfx_endpoint(char *out, size_t n, char *err, size_t errn);

/* Start `cmd` detached (own session / no console), its output appended to server.log next
 * to the endpoint (opened without following symlinks), with VIDFX_SOCKET set to the endpoint
 * and the host's runtime variables removed (see docs/ofx.md). 0, or -1 with err. */
int vfx_spawn_server(const char *cmd, char *err, size_t errn);

/* ---- shared memory ----------------------------------------------------------------------- *
 * Buffers are named "/vidfx-<user tag>-<instance>-<n>"; the server maps them by that name
 * without the leading '/' (POSIX: /dev/shm; Windows: Local\<name>). */
const char *vfx_user_tag(void); /* uid (POSIX) or user name (Windows) */
/* Create (exclusively) and map size bytes read-write; NULL with a reason in err. */
void *vfx_shm_create(const char *name, size_t size, char *err, size_t errn);
void vfx_shm_destroy(const char *name, void *ptr, size_t size);

/* ---- odds and ends ------------------------------------------------------------------------ */
double vfx_now(void); /* monotonic seconds */
void vfx_sleep_ms(int ms);
/* Directory holding this plugin's Resources (nodes.txt, server_cmd), or "" if unknown. */
const char *vfx_resources_dir(void);
int vfx_readable(const char *path); /* 1 if the file can be read */

#endif
