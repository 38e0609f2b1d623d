/* Linux and macOS transport: a Unix socket in a private directory, POSIX shared memory,
 * posix_spawn. See transport.h; the security rules are in docs/ofx.md ("Security"). */
#ifndef _WIN32
#include "transport.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define SUN_MAX ((int)sizeof(((struct sockaddr_un *)0)->sun_path))

/* ---- the socket's directory ---------------------------------------------------------------
 * A directory we use must be a real directory (lstat: not a symlink), owned by us and mode
 * 0700: then nobody else can put a socket, a log symlink or anything else into it. */
static int private_dir(const char *d, int create, char *why, size_t n) {
  if (create && mkdir(d, 0700) != 0 && errno != EEXIST) {
    snprintf(why, n, "cannot create %s: %s", d, strerror(errno));
    return -1;
  }
  struct stat st;
  if (lstat(d, &st) != 0) {
    snprintf(why, n, "%s: %s", d, strerror(errno));
    return -1;
  }
  if (S_ISLNK(st.st_mode)) {
    snprintf(why, n, "%s is a symbolic link", d);
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(why, n, "%s is not a directory", d);
    return -1;
  }
  if (st.st_uid != geteuid()) {
    snprintf(why, n, "%s belongs to uid %u, not to this user (uid %u)", d, (unsigned)st.st_uid, (unsigned)geteuid());
    return -1;
  }
  if ((st.st_mode & 0777) != 0700) {
    snprintf(why, n, "%s has mode %o, not 0700", d, (unsigned)(st.st_mode & 0777));
    return -1;
  }
  return 0;
}

/* A private per-process directory (mkdtemp: a fresh 0700 directory) when no shared one can
 * be trusted; the server this process starts is told its path through VIDFX_SOCKET. */
static pthread_mutex_t g_private_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_private[SUN_MAX];
static int g_distrust_default; /* a server in the default place ran as someone else */

static int private_fallback(char *out, size_t n, char *err, size_t errn) {
  pthread_mutex_lock(&g_private_lock);
  if (!g_private[0]) {
    const char *tmp = getenv("TMPDIR");
    char tmpl[80];
    snprintf(tmpl, sizeof tmpl, "%s/vidfx-XXXXXX", tmp && tmp[0] == '/' && strlen(tmp) < 60 ? tmp : "/tmp");
    char why[256];
    if (mkdtemp(tmpl) && private_dir(tmpl, 0, why, sizeof why) == 0) {
      snprintf(g_private, sizeof g_private, "%s/server.sock", tmpl);
      fprintf(stderr, "vidfx.ofx: using a private socket directory %s\n", tmpl);
    }
  }
  int ok = g_private[0] != 0;
  if (ok) snprintf(out, n, "%s", g_private);
  pthread_mutex_unlock(&g_private_lock);
  if (!ok) snprintf(err, errn, "cannot create a private socket directory: %s", strerror(errno));
  return ok ? 0 : -1;
}

static int candidate(char *out, size_t n, const char *dir, int create) {
  char why[512];
  if ((int)strlen(dir) + 13 > SUN_MAX - 1) return -1; /* "/server.sock" must fit in sun_path */
  if (private_dir(dir, create, why, sizeof why) != 0) {
    static int told;
    if (!__atomic_exchange_n(&told, 1, __ATOMIC_SEQ_CST)) fprintf(stderr, "vidfx.ofx: not using %s\n", why);
    return -1;
  }
  return snprintf(out, n, "%s/server.sock", dir) < (int)n ? 0 : -1;
}

int vfx_endpoint(char *out, size_t n, char *err, size_t errn) {
  const char *explicit_path = getenv("VIDFX_SOCKET");
  if (explicit_path && *explicit_path) {
    char dir[4096], why[512];
    snprintf(dir, sizeof dir, "%s", explicit_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    if (slash && *dir && private_dir(dir, 1, why, sizeof why) != 0) {
      snprintf(err, errn, "refusing VIDFX_SOCKET=%s: %s", explicit_path, why);
      return -1;
    }
    if (snprintf(out, n, "%s", explicit_path) >= (int)n || (int)strlen(explicit_path) >= SUN_MAX) {
      snprintf(err, errn, "VIDFX_SOCKET is too long");
      return -1;
    }
    return 0;
  }
  if (!__atomic_load_n(&g_distrust_default, __ATOMIC_SEQ_CST)) {
    char dir[4096];
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    if (runtime && *runtime && stat(runtime, &st) == 0 && S_ISDIR(st.st_mode)) {
      snprintf(dir, sizeof dir, "%s/vidfx", runtime);
      if (candidate(out, n, dir, 1) == 0) return 0;
    }
    snprintf(dir, sizeof dir, "/tmp/vidfx-%u", (unsigned)geteuid());
    if (candidate(out, n, dir, 1) == 0) return 0;
    const char *cache = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if ((cache && cache[0] == '/') || (home && home[0] == '/')) {
      char base[3900];
      if (cache && cache[0] == '/') snprintf(base, sizeof base, "%s", cache);
      else snprintf(base, sizeof base, "%s/.cache", home);
      mkdir(base, 0700);
      snprintf(dir, sizeof dir, "%s/vidfx", base);
      mkdir(dir, 0700);
      snprintf(dir, sizeof dir, "%s/vidfx/run", base);
      if (candidate(out, n, dir, 1) == 0) return 0;
    }
  }
  return private_fallback(out, n, err, errn);
}

/* ---- connections --------------------------------------------------------------------------- */
struct vfx_conn {
  int fd;
};

static int peer_uid(int fd, uid_t *uid) {
#ifdef SO_PEERCRED
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
  *uid = cred.uid;
  return 0;
#else
  gid_t gid;
  return getpeereid(fd, uid, &gid);
#endif
}

vfx_conn *vfx_conn_open(int *refused, char *err, size_t errn) {
  *refused = 0;
  char path[SUN_MAX];
  if (vfx_endpoint(path, sizeof path, err, errn) != 0) {
    *refused = 1;
    return NULL;
  }
#ifdef SOCK_CLOEXEC
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); /* never leaks into a child of the host */
#else
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
  if (fd < 0) return NULL;
#ifdef SO_NOSIGPIPE
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, strlen(path) + 1);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    close(fd);
    return NULL;
  }
  uid_t uid = 0;
  int got = peer_uid(fd, &uid);
  if (got != 0 || uid != geteuid()) {
    close(fd);
    const char *explicit_path = getenv("VIDFX_SOCKET");
    snprintf(err, errn, "the server at %s runs as another user (uid %d, this user is %u); not talking to it", path,
             got == 0 ? (int)uid : -1, (unsigned)geteuid());
    fprintf(stderr, "vidfx.ofx: %s\n", err);
    if (explicit_path && *explicit_path) {
      *refused = 1;
      return NULL;
    }
    /* not ours: from now on this process uses (and starts its server in) a private directory */
    __atomic_store_n(&g_distrust_default, 1, __ATOMIC_SEQ_CST);
    return NULL;
  }
  vfx_conn *c = malloc(sizeof *c);
  if (!c) {
    close(fd);
    return NULL;
  }
  c->fd = fd;
  return c;
}

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: SO_NOSIGPIPE is set on the socket instead */
#endif

/* MSG_NOSIGNAL: a dead server must give EPIPE, never a SIGPIPE that kills the host. */
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

int vfx_conn_send(vfx_conn *c, const void *data, size_t n) { return transfer_all(c->fd, data, NULL, n); }
int vfx_conn_recv(vfx_conn *c, void *data, size_t n) { return transfer_all(c->fd, NULL, data, n); }

int vfx_conn_wait(vfx_conn *c, int ms) {
  struct pollfd p = {c->fd, POLLIN, 0};
  int r = poll(&p, 1, ms);
  if (r > 0) return 1;
  if (r == 0 || errno == EINTR) return 0;
  return -1;
}

void vfx_conn_close(vfx_conn *c) {
  if (!c) return;
  close(c->fd);
  free(c);
}

/* ---- starting the server ------------------------------------------------------------------- */
/* The host's environment minus what points at the host's own runtimes (hosts set these for
 * their embedded Python and libraries; our server needs its own; VIDFX_SERVER_KEEP_ENV=1 keeps
 * them), plus VIDFX_SOCKET=<the endpoint> so the server listens where we look. The caller
 * frees the array and extra (not the other strings). */
static char **server_environment(const char *sock, char **extra) {
  static const char *drop[] = {"PYTHONHOME=", "PYTHONPATH=", "PYTHONSTARTUP=", "PYTHONEXECUTABLE=",
                               "LD_LIBRARY_PATH=", "LD_PRELOAD=", NULL};
  const char *keep = getenv("VIDFX_SERVER_KEEP_ENV");
  size_t n = 0;
  while (environ[n]) n++;
  char **env = calloc(n + 2, sizeof(char *));
  *extra = malloc(strlen(sock) + 16);
  if (!env || !*extra) {
    free(env);
    free(*extra);
    *extra = NULL;
    return NULL;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    int skip = strncmp(environ[i], "VIDFX_SOCKET=", 13) == 0;
    for (int d = 0; drop[d] && !(keep && *keep == '1'); d++)
      if (strncmp(environ[i], drop[d], strlen(drop[d])) == 0) skip = 1;
    if (!skip) env[m++] = environ[i];
  }
  sprintf(*extra, "VIDFX_SOCKET=%s", sock);
  env[m++] = *extra;
  env[m] = NULL;
  return env;
}

/* server.log next to the socket, appended to; never through a symlink (O_NOFOLLOW), and only
 * a plain file of ours with one link. -1 if it cannot be opened safely. */
static int open_log(const char *dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/server.log", dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0) {
    fprintf(stderr, "vidfx.ofx: not logging to %s: %s\n", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1) {
    fprintf(stderr, "vidfx.ofx: not logging to %s: not a plain file of this user\n", path);
    close(fd);
    return -1;
  }
  return fd;
}

/* Spawn `sh -c "CMD </dev/null &"` in a new session, output to server.log: the shell exits at
 * once (we reap it), the server is re-parented to init and outlives the host's render calls. */
int vfx_spawn_server(const char *cmd, char *err, size_t errn) {
  char sock[SUN_MAX];
  if (vfx_endpoint(sock, sizeof sock, err, errn) != 0) return -1;
  char dir[SUN_MAX];
  snprintf(dir, sizeof dir, "%s", sock);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  size_t shn = strlen(cmd) + 64;
  char *shell = malloc(shn);
  if (!shell) {
    snprintf(err, errn, "out of memory");
    return -1;
  }
  snprintf(shell, shn, "%s </dev/null &", cmd);
  int logfd = open_log(slash ? dir : ".");

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
  if (logfd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, logfd, 1);
    posix_spawn_file_actions_adddup2(&fa, logfd, 2);
  } else {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&fa, 3); /* keep the host's files out of the server */
#endif
  char *argv[] = {"/bin/sh", "-c", shell, NULL};
  pid_t pid;
  char *extra = NULL;
  char **env = server_environment(sock, &extra);
  int rc = env ? posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, env) : ENOMEM;
  free(env);
  free(extra);
  free(shell);
  if (logfd >= 0) close(logfd);
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

/* ---- shared memory --------------------------------------------------------------------------- */
const char *vfx_user_tag(void) {
  static char tag[32];
  if (!tag[0]) snprintf(tag, sizeof tag, "%u", (unsigned)geteuid());
  return tag;
}

void *vfx_shm_create(const char *name, size_t size, char *err, size_t errn) {
  int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
  int rc = fd < 0 ? errno : ftruncate(fd, (off_t)size) != 0 ? errno : 0;
#ifdef __linux__
  /* reserve the pages now: on a full /dev/shm a later write would be a SIGBUS in the host */
  if (rc == 0) rc = posix_fallocate(fd, 0, (off_t)size);
#endif
  if (rc != 0) {
    snprintf(err, errn, "cannot create %zu MB of shared memory (%s): %s; is /dev/shm large enough?", size >> 20,
             name, strerror(rc));
    if (fd >= 0) {
      close(fd);
      shm_unlink(name);
    }
    return NULL;
  }
  void *ptr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  close(fd);
  if (ptr == MAP_FAILED) {
    shm_unlink(name);
    snprintf(err, errn, "cannot map %zu bytes of shared memory: %s", size, strerror(e));
    return NULL;
  }
  return ptr;
}

void vfx_shm_destroy(const char *name, void *ptr, size_t size) {
  if (ptr) munmap(ptr, size);
  shm_unlink(name);
}

/* ---- odds and ends ----------------------------------------------------------------------------- */
double vfx_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void vfx_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int vfx_readable(const char *path) { return access(path, R_OK) == 0; }

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
#endif
