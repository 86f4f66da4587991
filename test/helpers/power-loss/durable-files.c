/*
 * Preloaded into a process under test (LD_PRELOAD) to record what a power cut would leave of
 * its files. After each successful fsync or fdatasync of a regular file directly inside
 * $OUTPOST_POWER_LOSS_DIR, the file's whole content is copied to
 * $OUTPOST_POWER_LOSS_DIR/.durable/<name>: the shadow always holds the file as of its latest
 * fsync. test/helpers/power-loss.ts later puts the shadows in place of the files, as if the
 * page cache had been lost.
 *
 * Only fsync and fdatasync are wrapped: SQLite on Linux makes data durable with these two (never
 * with sync_file_range or O_SYNC; the better-sqlite3 build here calls fsync alone), and so do
 * Node's fs.fsync and fs.fdatasync. Without the environment variable the wrappers only forward.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

/* The watched directory, realpath'd: the kernel names an open file by its resolved path. */
static char watched[PATH_MAX];
static int watching;

/* Serialises copies: the libuv pool and SQLite call fsync from several threads at once. */
static pthread_mutex_t copying = PTHREAD_MUTEX_INITIALIZER;

__attribute__((constructor)) static void setup(void) {
  real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  const char *dir = getenv("OUTPOST_POWER_LOSS_DIR");
  watching = dir != NULL && realpath(dir, watched) != NULL;
}

/* Copies all of `from` into `to`; 0 on success. */
static int copy_all(int from, int to) {
  static char buffer[1 << 16]; /* static: only used under the mutex */
  off_t offset = 0;
  for (;;) {
    ssize_t n = pread(from, buffer, sizeof buffer, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) return 0;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = write(to, buffer + done, (size_t)(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return -1;
      done += w;
    }
    offset += n;
  }
}

/* Writes "<dir>/<name>" into `out` (PATH_MAX bytes); false when it would not fit, rather than a truncated path. */
static int path_in(char *out, const char *dir, const char *name) {
  int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
  return n > 0 && n < PATH_MAX;
}

/* Records the content of `fd` as durable, when it is a regular file directly in the watched directory. */
static void record(int fd) {
  char link[64], path[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t length = readlink(link, path, sizeof path - 1);
  if (length <= 0) return;
  path[length] = '\0';

  /* Directories (SQLite fsyncs the one holding a new WAL) hold no content to keep; an unlinked
   * file ("... (deleted)") will not be found after the cut whatever it held. */
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink == 0) return;

  char *slash = strrchr(path, '/');
  if (slash == NULL) return;
  *slash = '\0';
  if (strcmp(path, watched) != 0) return; /* elsewhere, or in a subdirectory */
  const char *name = slash + 1;

  /* Staged in .durable/.staging and renamed over the shadow: a process killed in the middle of a
   * copy leaves the previous shadow whole (its fsync had not returned, so nothing relied on it).
   * The staging directory keeps the partial copy from taking the name of a file's shadow (a file
   * "x.tmp" beside "x"); the pid keeps two processes on one directory apart. */
  char shadows[PATH_MAX], staging[PATH_MAX], staged_name[NAME_MAX + 32], staged[PATH_MAX], shadow[PATH_MAX];
  snprintf(staged_name, sizeof staged_name, "%ld-%s", (long)getpid(), name);
  if (!path_in(shadows, watched, ".durable") || !path_in(staging, shadows, ".staging") || !path_in(staged, staging, staged_name) ||
      !path_in(shadow, shadows, name))
    return;
  mkdir(shadows, 0755);
  mkdir(staging, 0755);

  /* Read through /proc rather than `fd`, which may be open write-only: the same file, readable. */
  int from = open(link, O_RDONLY | O_CLOEXEC);
  if (from < 0) return;
  int to = open(staged, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (to >= 0) {
    /* The shadow is not fsynced: it only has to outlive the process, which the page cache does
     * (and an fsync here would come back into this wrapper, under a mutex already held). */
    int ok = copy_all(from, to) == 0;
    close(to);
    if (ok) rename(staged, shadow);
    else unlink(staged);
  }
  close(from);
}

/* The real call first: only what it made durable may be recorded. errno is the caller's. */
static int after(int result, int fd) {
  if (result != 0 || !watching) return result;
  int saved = errno;
  pthread_mutex_lock(&copying);
  record(fd);
  pthread_mutex_unlock(&copying);
  errno = saved;
  return result;
}

int fsync(int fd) { return after(real_fsync(fd), fd); }

int fdatasync(int fd) { return after(real_fdatasync(fd), fd); }
