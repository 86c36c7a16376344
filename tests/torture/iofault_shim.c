/* LD_PRELOAD I/O-fault shim for the torture suite's io-error scenario (docs/reliability.md).
 *
 * Counts, and on request fails, the file operations the agent's SQLite outbox makes through
 * the dynamic linker — open64/open/openat, write/pwrite64/pwrite, fsync/fdatasync — but only on
 * files whose path contains $OUTPOST_IOFAULT_MATCH (the outbox's "<device>.outbox.db", which also
 * matches its -wal, -shm and -reserve files). Every other file (logs, Mosquitto's client, the
 * metrics server) is passed through untouched. Whether open's path matched is kept per fd until
 * close, so a later write or fsync on that fd knows whether it is the outbox's. Not seen: reads,
 * ftruncate, writes through mmap (the -shm file) and glibc's own stdio.
 *
 * Environment:
 *   OUTPOST_IOFAULT_MATCH   substring of the path to act on (required; unset = shim inactive)
 *   OUTPOST_IOFAULT_OP      the kind counted and failed: write, fsync or open (default write)
 *   OUTPOST_IOFAULT_N       fail the Nth operation of that kind (1-based); 0 or unset = count only
 *   OUTPOST_IOFAULT_ERRNO   EIO (default) or ENOSPC
 *   OUTPOST_IOFAULT_FOR_MS  0 (default): fail only the Nth; > 0: fail every operation of that
 *                           kind from the Nth on for this many milliseconds (a disk failing for a
 *                           while)
 *   OUTPOST_IOFAULT_REPORT  file to which the counts are written at exit, and one line per failed
 *                           operation as it fails ("fail <op> <n> <errno> <path>")
 *   OUTPOST_IOFAULT_KILL_MS unset (default): no kill. D >= 0: right after the first operation it
 *                           fails, the process gets SIGKILL after a delay drawn uniformly from
 *                           0..D ms (OUTPOST_IOFAULT_SEED; a process kill right after a failed
 *                           fsync, the frames of the failed commit still in the WAL file). The
 *                           kill comes from a detached thread sleeping the delay, and also at the
 *                           first intercepted operation (any kind, any file) at or after the
 *                           deadline, so a delay of 0 kills before the caller's next outbox I/O
 *                           (SQLite's retry, the next commit). "kill <delay_ms> <unix_us>" is
 *                           reported just before (the wall-clock time of the kill).
 *   OUTPOST_IOFAULT_SEED    seed of the kill delay (default 1)
 *
 * What SQLite sees is what a failing SD card or a full disk returns: -1 with errno set. Only
 * calls through the PLT are seen (libsqlite3.so's; glibc's own stdio writes are not), which covers
 * the writes, syncs and opens of SQLite's unix VFS. Thread-safe (atomics; the fd table is written
 * only at open/close of the fd, which the owner of the fd serialises). */
#define _GNU_SOURCE
#undef _FILE_OFFSET_BITS /* this file defines both open and open64, pwrite and pwrite64 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*close_fn)(int);
typedef int (*fsync_fn)(int);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwrite64_fn)(int, const void *, size_t, off64_t);

enum { kWrite, kFsync, kOpen, kKinds };
static const char *const kKindName[kKinds] = {"write", "fsync", "open"};

#define MAX_FD 4096
static unsigned char g_match_fd[MAX_FD]; /* 1: the fd is one of the outbox's files */
static const char *g_match;              /* NULL: shim inactive */
static int g_kind = kWrite;
static long g_n;
static long g_for_ms;
static int g_errno = EIO;
static const char *g_report;
static long g_count[kKinds];  /* operations seen per kind, on matching files */
static long g_failed;         /* operations failed */
static int64_t g_fail_until;  /* monotonic ms; set when the Nth operation fails (FOR_MS > 0) */
static long g_kill_ms = -1;   /* < 0: no kill; else the maximum delay of the kill */
static unsigned long g_seed = 1;
static int64_t g_kill_at;     /* monotonic ms of the kill; 0 = not armed */
static int g_kill_delay;      /* the drawn delay, for the report */

/* The next definition of `name` (libc's), looked up once per call site. */
#define NEXT(type, name)                                  \
  static type real_##name;                                \
  if (!real_##name) {                                     \
    void *sym_ = dlsym(RTLD_NEXT, #name);                 \
    memcpy(&real_##name, &sym_, sizeof real_##name);      \
  }

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void report_line(const char *line) {
  if (!g_report) return;
  NEXT(open_fn, open64);
  NEXT(write_fn, write);
  NEXT(close_fn, close);
  int fd = real_open64(g_report, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t w = real_write(fd, line, strlen(line));
  (void)w;
  real_close(fd);
}

__attribute__((constructor)) static void init(void) {
  g_match = getenv("OUTPOST_IOFAULT_MATCH");
  if (g_match && !*g_match) g_match = NULL;
  const char *op = getenv("OUTPOST_IOFAULT_OP");
  if (op) {
    for (int k = 0; k < kKinds; ++k)
      if (strcmp(op, kKindName[k]) == 0) g_kind = k;
  }
  const char *n = getenv("OUTPOST_IOFAULT_N");
  g_n = n ? atol(n) : 0;
  const char *f = getenv("OUTPOST_IOFAULT_FOR_MS");
  g_for_ms = f ? atol(f) : 0;
  const char *e = getenv("OUTPOST_IOFAULT_ERRNO");
  if (e && strcmp(e, "ENOSPC") == 0) g_errno = ENOSPC;
  g_report = getenv("OUTPOST_IOFAULT_REPORT");
  const char *k = getenv("OUTPOST_IOFAULT_KILL_MS");
  if (k && *k) g_kill_ms = atol(k);
  const char *sd = getenv("OUTPOST_IOFAULT_SEED");
  if (sd && *sd) g_seed = strtoul(sd, NULL, 10);
}

__attribute__((destructor)) static void fini(void) {
  if (!g_match) return;
  char line[160];
  snprintf(line, sizeof line, "counts write %ld fsync %ld open %ld failed %ld\n",
           __atomic_load_n(&g_count[kWrite], __ATOMIC_RELAXED),
           __atomic_load_n(&g_count[kFsync], __ATOMIC_RELAXED),
           __atomic_load_n(&g_count[kOpen], __ATOMIC_RELAXED),
           __atomic_load_n(&g_failed, __ATOMIC_RELAXED));
  report_line(line);
}

/* The kill (KILL_MS): reported, then SIGKILL. Called from the timer thread or an intercepted
 * call, never from a signal handler. */
static void kill_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char line[96];
  snprintf(line, sizeof line, "kill %d %lld\n", g_kill_delay,
           (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
  report_line(line);
  kill(getpid(), SIGKILL);
}

static void *kill_timer(void *arg) {
  (void)arg;
  struct timespec ts = {g_kill_delay / 1000, (long)(g_kill_delay % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  kill_now();
  return NULL;
}

/* Arms the kill at the first failed operation (KILL_MS >= 0): the delay is drawn from SEED
 * (splitmix64), a detached thread sleeps it, and kill_due() catches the deadline earlier. */
static void arm_kill(void) {
  int64_t expected = 0;
  if (g_kill_ms < 0) return;
  uint64_t z = (uint64_t)g_seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  const int delay = (int)(z % (uint64_t)(g_kill_ms + 1));
  if (!__atomic_compare_exchange_n(&g_kill_at, &expected, now_ms() + delay, 0, __ATOMIC_SEQ_CST,
                                   __ATOMIC_SEQ_CST))
    return; /* armed already */
  g_kill_delay = delay;
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, kill_timer, NULL) != 0) kill_now(); /* no thread: kill now */
  pthread_attr_destroy(&attr);
}

/* At every intercepted call: SIGKILL if the kill's deadline has passed. */
static void kill_due(void) {
  const int64_t at = __atomic_load_n(&g_kill_at, __ATOMIC_SEQ_CST);
  if (at != 0 && now_ms() >= at) kill_now();
}

/* Counts one operation of `kind` on a matching file; returns 1 if it must fail. */
static int should_fail(int kind, const char *path) {
  const long i = __atomic_add_fetch(&g_count[kind], 1, __ATOMIC_RELAXED);
  if (kind != g_kind || g_n <= 0 || i < g_n) return 0;
  if (i == g_n) {
    if (g_for_ms > 0) __atomic_store_n(&g_fail_until, now_ms() + g_for_ms, __ATOMIC_RELAXED);
  } else if (g_for_ms <= 0 || now_ms() >= __atomic_load_n(&g_fail_until, __ATOMIC_RELAXED)) {
    return 0;
  }
  __atomic_add_fetch(&g_failed, 1, __ATOMIC_RELAXED);
  char line[512];
  snprintf(line, sizeof line, "fail %s %ld %s %s\n", kKindName[kind], i,
           g_errno == ENOSPC ? "ENOSPC" : "EIO", path ? path : "(an open outbox file)");
  report_line(line);
  arm_kill();
  return 1;
}

static int fd_matches(int fd) { return g_match && fd >= 0 && fd < MAX_FD && g_match_fd[fd]; }

/* The open family: `real` is libc's function of the same name (dirfd < 0: no dirfd argument). */
static int do_open(void *real, int at, int dirfd, const char *path, int flags, mode_t mode) {
  kill_due();
  const int matches = g_match && path && strstr(path, g_match) != NULL;
  if (matches && should_fail(kOpen, path)) {
    errno = g_errno;
    return -1;
  }
  int fd;
  if (at) {
    openat_fn f;
    memcpy(&f, &real, sizeof f);
    fd = f(dirfd, path, flags, mode);
  } else {
    open_fn f;
    memcpy(&f, &real, sizeof f);
    fd = f(path, flags, mode);
  }
  if (fd >= 0 && fd < MAX_FD) g_match_fd[fd] = (unsigned char)matches;
  return fd;
}

#define MODE_ARG(flags)                                                      \
  mode_t mode = 0;                                                           \
  if ((flags) & (O_CREAT | O_TMPFILE)) {                                     \
    va_list ap;                                                              \
    va_start(ap, flags);                                                     \
    mode = (mode_t)va_arg(ap, int);                                          \
    va_end(ap);                                                              \
  }

#define AS_PTR(fn) (*(void **)&(fn))

int open64(const char *path, int flags, ...) {
  MODE_ARG(flags);
  NEXT(open_fn, open64);
  return do_open(AS_PTR(real_open64), 0, -1, path, flags, mode);
}

int open(const char *path, int flags, ...) {
  MODE_ARG(flags);
  NEXT(open_fn, open);
  return do_open(AS_PTR(real_open), 0, -1, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
  MODE_ARG(flags);
  NEXT(openat_fn, openat);
  return do_open(AS_PTR(real_openat), 1, dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
  MODE_ARG(flags);
  NEXT(openat_fn, openat64);
  return do_open(AS_PTR(real_openat64), 1, dirfd, path, flags, mode);
}

int close(int fd) {
  if (fd >= 0 && fd < MAX_FD) g_match_fd[fd] = 0;
  NEXT(close_fn, close);
  return real_close(fd);
}

/* A failed operation on one of the outbox's fds: -1 with the configured errno. */
#define MAYBE_FAIL(kind, fd)                         \
  kill_due();                                        \
  if (fd_matches(fd) && should_fail(kind, NULL)) {   \
    errno = g_errno;                                 \
    return -1;                                       \
  }

ssize_t write(int fd, const void *buf, size_t n) {
  MAYBE_FAIL(kWrite, fd);
  NEXT(write_fn, write);
  return real_write(fd, buf, n);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
  MAYBE_FAIL(kWrite, fd);
  NEXT(pwrite64_fn, pwrite64);
  return real_pwrite64(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  MAYBE_FAIL(kWrite, fd);
  NEXT(pwrite_fn, pwrite);
  return real_pwrite(fd, buf, n, off);
}

int fsync(int fd) {
  MAYBE_FAIL(kFsync, fd);
  NEXT(fsync_fn, fsync);
  return real_fsync(fd);
}

int fdatasync(int fd) {
  MAYBE_FAIL(kFsync, fd);
  NEXT(fsync_fn, fdatasync);
  return real_fdatasync(fd);
}
