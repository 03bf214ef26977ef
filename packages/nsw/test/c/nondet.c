/*
 * A small server stand-in whose output depends on every source of
 * nondeterminism the shim handles: clocks, randomness, pids and tids, a
 * fork and two threads. Run under the shim in record mode and then in
 * playback mode, both runs must print the same lines.
 *
 * With the argument "properties" it prints only facts that hold with or
 * without the shim (the pass-through test compares them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void hex(char *out, const unsigned char *b, size_t n) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

struct worker {
  int id;
  char line[256];
};

static void *work(void *p) {
  struct worker *w = p;
  struct timespec ts;
  unsigned char r[8];
  char h[17];
  clock_gettime(CLOCK_MONOTONIC, &ts);
  if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) abort();
  hex(h, r, sizeof r);
  snprintf(w->line, sizeof w->line, "thread %d: tid=%d mono=%lld.%09ld random=%s", w->id, (int)gettid(), (long long)ts.tv_sec, ts.tv_nsec, h);
  return NULL;
}

static void *late_writer(void *p) {
  int fd = *(int *)p;
  struct timespec d = {0, 3 * 1000 * 1000};
  nanosleep(&d, NULL);
  if (write(fd, "x", 1) != 1) abort();
  return NULL;
}

/* Readiness: how often a 1 ms poll runs before a late writer's byte is there
 * depends on scheduling; replayed, it must not. */
static void readiness(void) {
  int p[2];
  if (pipe(p) != 0) abort();
  struct pollfd pfd = {p[0], POLLIN, 0};
  int before = poll(&pfd, 1, 0);
  pthread_t th;
  pthread_create(&th, NULL, late_writer, &p[1]);
  int attempts = 0, r = 0;
  do {
    attempts++;
    r = poll(&pfd, 1, 1);
  } while (r == 0 && attempts < 10000);
  pthread_join(th, NULL);
  fd_set rd;
  FD_ZERO(&rd);
  FD_SET(p[0], &rd);
  struct timeval tv = {0, 0};
  int s = select(p[0] + 1, &rd, NULL, NULL, &tv);
  /* Linux's select leaves the time it did not sleep in its timeout: how much depends on timing. */
  struct timeval left = {1, 0};
  int s2 = select(p[0] + 1, &rd, NULL, NULL, &left);
  struct timeval expired = {0, 2000};
  int s3 = select(0, NULL, NULL, NULL, &expired);
  printf("select left %ld.%06ld of 1 s (r=%d) and %ld.%06ld of 2 ms (r=%d)\n", (long)left.tv_sec, (long)left.tv_usec, s2,
         (long)expired.tv_sec, (long)expired.tv_usec, s3);
  struct timespec ts = {0, 0};
  struct pollfd pfd2 = {p[1], POLLOUT, 0};
  int pp = ppoll(&pfd2, 1, &ts, NULL);
  /* epoll with pointer data, which differs between processes under ASLR. */
  static int tag_read, tag_write;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {EPOLLIN, {.ptr = &tag_read}};
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
  ev.events = EPOLLOUT;
  ev.data.ptr = &tag_write;
  epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev);
  struct epoll_event got[4];
  int ne = epoll_wait(ep, got, 4, 0);
  int ok = 1;
  for (int i = 0; i < ne; i++) ok &= got[i].data.ptr == &tag_read ? got[i].events == EPOLLIN : got[i].data.ptr == &tag_write && got[i].events == EPOLLOUT;
  epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL);
  int ne2 = epoll_pwait(ep, got, 4, 0, NULL);
  ok &= ne2 == 1 && got[0].data.ptr == &tag_read;
  close(ep);
  printf("epoll_wait=%d epoll_pwait=%d data and events right: %d\n", ne, ne2, ok);
  printf("poll before=%d, ready after %d attempts: r=%d revents=%d; select=%d readable=%d; ppoll=%d revents=%d\n", before, attempts, r,
         pfd.revents, s, FD_ISSET(p[0], &rd) ? 1 : 0, pp, pfd2.revents);
  close(p[0]);
  close(p[1]);
}

static void *volatile bad_buffer = (void *)1;

static int properties(void) {
  /* Facts true with or without the shim, whatever the host. */
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("monotonic clock does not go back: %s\n", (b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec)) ? "yes" : "no");
  struct timeval tv;
  time_t t = time(NULL);
  gettimeofday(&tv, NULL);
  printf("time and gettimeofday agree: %s\n", (tv.tv_sec - t) <= 1 && (tv.tv_sec - t) >= 0 ? "yes" : "no");
  unsigned char r1[16], r2[16];
  getrandom(r1, sizeof r1, 0);
  getentropy(r2, sizeof r2);
  int fd = open("/dev/urandom", O_RDONLY);
  unsigned char u1[16], u2[16];
  ssize_t n1 = read(fd, u1, sizeof u1), n2 = read(fd, u2, sizeof u2);
  close(fd);
  printf("two /dev/urandom reads differ: %s\n", n1 == 16 && n2 == 16 && memcmp(u1, u2, sizeof u1) ? "yes" : "no");
  int pipefd[2];
  if (pipe(pipefd) == 0 && write(pipefd[1], "abc", 3) == 3) {
    char pb[8] = "";
    printf("a pipe read is untouched: %s\n", read(pipefd[0], pb, sizeof pb) == 3 && !memcmp(pb, "abc", 3) ? "yes" : "no");
  }
  {
    int q[2];
    if (pipe(q) != 0 || write(q[1], "z", 1) != 1) abort();
    struct pollfd pfd = {q[0], POLLIN, 0};
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(q[0], &rd);
    struct timeval tv = {0, 0};
    printf("poll and select see a written pipe: %s\n", poll(&pfd, 1, 0) == 1 && pfd.revents == POLLIN && select(q[0] + 1, &rd, NULL, NULL, &tv) == 1 ? "yes" : "no");
  }
  printf("two random reads differ: %s\n", memcmp(r1, r2, sizeof r1) ? "yes" : "no");
  printf("getpid matches the kernel: %s\n", getpid() == (pid_t)syscall(SYS_getpid) ? "yes" : "no");
  printf("main thread tid is the pid: %s\n", gettid() == getpid() ? "yes" : "no");
  errno = 1234;
  (void)getpid();
  printf("errno preserved across a call: %s\n", errno == 1234 ? "yes" : "no");
  printf("getrandom of a bad buffer fails with EFAULT: %s\n", getrandom(bad_buffer, 16, 0) == -1 && errno == EFAULT ? "yes" : "no");
  fflush(stdout);
  pid_t c = fork();
  if (c == 0) _exit(getppid() > 1 ? 7 : 8);
  int st = 0;
  printf("waitpid returns the forked child: %s\n", waitpid(c, &st, 0) == c ? "yes" : "no");
  printf("child exit status: %d\n", WEXITSTATUS(st));
  struct worker w = {1, ""};
  pthread_t th;
  printf("pthread_create: %d\n", pthread_create(&th, NULL, work, &w));
  pthread_join(th, NULL);
  printf("thread ran: %s\n", strncmp(w.line, "thread 1:", 9) == 0 ? "yes" : "no");
  return 0;
}

/* fork, then exec this program again: the new image is a stream of its own. */
static int exec_chain(const char *self) {
  printf("before exec: pid=%d time=%lld\n", (int)getpid(), (long long)time(NULL));
  fflush(stdout);
  pid_t c = fork();
  if (c == 0) {
    execl(self, self, "exec-child", (char *)NULL);
    _exit(127);
  }
  int st = 0;
  waitpid(c, &st, 0);
  printf("exec child %d exited %d\n", (int)c, WEXITSTATUS(st));
  return 0;
}

static int exec_child(void) {
  unsigned char r[8];
  char h[17];
  if (getrandom(r, sizeof r, 0) != 8) return 1;
  hex(h, r, sizeof r);
  printf("exec'd image: pid=%d ppid=%d time=%lld random=%s\n", (int)getpid(), (int)getppid(), (long long)time(NULL), h);
  return 9;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "properties")) return properties();
  if (argc > 1 && !strcmp(argv[1], "exec")) return exec_chain(argv[0]);
  if (argc > 1 && !strcmp(argv[1], "exec-child")) return exec_child();
  if (argc > 1 && !strcmp(argv[1], "close-all")) {
    /* What a daemon does at start-up: close every descriptor but stdio. */
    printf("before: %lld\n", (long long)time(NULL));
    for (int fd = 3; fd < 4096; fd++) close(fd);
    printf("after: %lld\n", (long long)time(NULL));
    return 0;
  }
  struct timespec rt, mono;
  struct timeval tv;
  clock_gettime(CLOCK_REALTIME, &rt);
  clock_gettime(CLOCK_MONOTONIC, &mono);
  gettimeofday(&tv, NULL);
  time_t t0;
  time_t t1 = time(&t0);
  printf("realtime=%lld.%09ld monotonic=%lld.%09ld\n", (long long)rt.tv_sec, rt.tv_nsec, (long long)mono.tv_sec, mono.tv_nsec);
  printf("gettimeofday=%lld.%06ld time=%lld/%lld\n", (long long)tv.tv_sec, (long)tv.tv_usec, (long long)t1, (long long)t0);

  unsigned char r[32];
  char h[65];
  if (getrandom(r, 16, 0) != 16) return 1;
  hex(h, r, 16);
  printf("getrandom=%s\n", h);
  if (getentropy(r, 32) != 0) return 1;
  hex(h, r, 32);
  printf("getentropy=%s\n", h);
  if (syscall(SYS_getrandom, r, 8, 0) != 8) return 1;
  hex(h, r, 8);
  printf("syscall(getrandom)=%s\n", h);
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, r, 12) != 12) return 1;
  close(fd);
  hex(h, r, 12);
  printf("/dev/urandom=%s\n", h);
  printf("pid=%d ppid=%d tid=%d syscall(getpid)=%ld\n", (int)getpid(), (int)getppid(), (int)gettid(), syscall(SYS_getpid));
  fflush(stdout);

  pid_t child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    getrandom(r, 8, 0);
    hex(h, r, 8);
    printf("child: pid=%d ppid=%d realtime=%lld.%09ld random=%s\n", (int)getpid(), (int)getppid(), (long long)ts.tv_sec, ts.tv_nsec, h);
    fflush(stdout);
    _exit(3);
  }
  int status = 0;
  pid_t waited = waitpid(child, &status, 0);
  printf("parent: fork returned %d, waitpid returned %d, exit %d\n", (int)child, (int)waited, WEXITSTATUS(status));

  struct worker w[2] = {{1, ""}, {2, ""}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, work, &w[i]);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 2; i++) printf("%s\n", w[i].line);

  readiness();

  int lf = open(argv[0], O_RDONLY | O_CLOEXEC);
  struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
  int lk1 = fcntl(lf, F_SETLK, &fl);
  int lk2 = flock(lf, LOCK_SH | LOCK_NB);
  printf("locks: fcntl=%d flock=%d cloexec=%d\n", lk1, lk2, fcntl(lf, F_GETFD) & FD_CLOEXEC);
  close(lf);

  struct timespec end;
  clock_gettime(CLOCK_REALTIME, &end);
  printf("end=%lld.%09ld\n", (long long)end.tv_sec, end.tv_nsec);
  return 0;
}
