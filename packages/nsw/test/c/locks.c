/*
 * Two sides race for an exclusive lock on one file (FT-TCP 3.8):
 *
 *   locks <variant> <file>
 *
 * Side A waits LOCKS_DELAY_A ms, takes the lock (blocking), bumps a counter
 * kept in the file, holds the lock 100 ms and releases it. Side B waits
 * LOCKS_DELAY_B ms, tries the lock without blocking, then takes it blocking,
 * bumps the counter and releases it. Which side gets the lock first depends
 * on the delays; the primary's order must win on a replica whose delays
 * favour the other side. LOCKS_FILE_A, when set, is the file side A locks
 * instead (a replica whose lock state differs from the primary's).
 *
 * Variants: flock-threads (flock, two threads with their own open file
 * descriptions), ofd-threads (F_OFD_SETLK/F_OFD_SETLKW, the same),
 * fcntl-processes (F_SETLK/F_SETLKW, side B in a forked child).
 * Prints one line per side, B's first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *variant, *path;

static long env_ms(const char *name) {
  const char *v = getenv(name);
  return v ? atol(v) : 0;
}

static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Takes (op 1), tries (op 2) or releases (op 0) the exclusive lock on fd. */
static int lock_op(int fd, int op) {
  if (!strcmp(variant, "flock-threads")) return flock(fd, op == 0 ? LOCK_UN : op == 1 ? LOCK_EX : LOCK_EX | LOCK_NB);
  struct flock fl = {.l_type = op == 0 ? F_UNLCK : F_WRLCK, .l_whence = SEEK_SET};
  int ofd = !strcmp(variant, "ofd-threads");
  return fcntl(fd, op == 2 ? (ofd ? F_OFD_SETLK : F_SETLK) : (ofd ? F_OFD_SETLKW : F_SETLKW), &fl);
}

/* The counter in the file, incremented; returns the new value. */
static int bump(int fd) {
  char buf[16] = {0};
  if (pread(fd, buf, sizeof buf - 1, 0) < 0) return -1;
  int n = atoi(buf) + 1;
  int len = snprintf(buf, sizeof buf, "%d\n", n);
  if (pwrite(fd, buf, (size_t)len, 0) != len) return -1;
  return n;
}

static char line_a[128], line_b[128];

static void *side_a(void *arg) {
  (void)arg;
  const char *file = getenv("LOCKS_FILE_A") ? getenv("LOCKS_FILE_A") : path;
  int fd = open(file, O_RDWR);
  pause_ms(env_ms("LOCKS_DELAY_A"));
  int l = lock_op(fd, 1);
  int n = bump(fd);
  pause_ms(100);
  int u = lock_op(fd, 0);
  snprintf(line_a, sizeof line_a, "A: lock=%d count=%d unlock=%d", l, n, u);
  close(fd);
  return NULL;
}

static void *side_b(void *arg) {
  (void)arg;
  int fd = open(path, O_RDWR);
  pause_ms(env_ms("LOCKS_DELAY_B"));
  int t = lock_op(fd, 2);
  const char *why = t == 0 ? "none" : errno == EAGAIN ? "EAGAIN" : errno == EACCES ? "EACCES" : strerror(errno);
  int l = lock_op(fd, 1);
  int n = bump(fd);
  int u = lock_op(fd, 0);
  snprintf(line_b, sizeof line_b, "B: try=%d (%s) lock=%d count=%d unlock=%d", t, why, l, n, u);
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  variant = argv[1];
  path = argv[2];
  if (!strcmp(variant, "fcntl-processes")) {
    pid_t child = fork();
    if (child == 0) {
      side_b(NULL);
      printf("%s\n", line_b);
      fflush(stdout);
      _exit(0);
    }
    side_a(NULL);
    int st;
    waitpid(child, &st, 0);
    printf("%s\n", line_a);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 3;
  }
  pthread_t a, b;
  pthread_create(&a, NULL, side_a, NULL);
  pthread_create(&b, NULL, side_b, NULL);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  printf("%s\n%s\n", line_b, line_a);
  return 0;
}
