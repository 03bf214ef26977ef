/*
 * The server side of a promotion test, run under the shim in playback:
 *
 *   adopt_server <port> <W> <I> [copy]
 *
 * With "copy" it serves the connection through a copy at descriptor 5000
 * (F_DUPFD_CLOEXEC), the accepted descriptor left open beside it.
 * An epoll server with one connection, as the primary ran it: it accepts
 * (non-blocking, close-on-exec), registers the connection in an epoll set,
 * waits, reads the request and writes a W-byte reply (pattern 'w'). The
 * replica plays all of that back from the primary's records. Its next call
 * is past the records: the replica goes live there, and from then on every
 * call is real, on the same descriptor number:
 *
 *   - it expects I client bytes (pattern 'i') through epoll_wait and read:
 *     the rebuilt socket's receive queue;
 *   - writes LIVE1 bytes (pattern 'n');
 *   - expects AFTER client bytes (pattern 'a') that arrive only while it
 *     waits in epoll_wait: the registration was carried over;
 *   - writes LIVE2 bytes (pattern 'z') and closes.
 *
 * A connection that reads EOF instead ends the program with "eof" and exit 0:
 * what a server does when a rebuild failed. Every wait is bounded.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define LIVE1 300
#define AFTER 700
#define LIVE2 200
#define WAIT_MS 10000
#define COOKIE 0xc0ffee1234ULL

static unsigned char pat(char tag, size_t i) { return (unsigned char)(tag * 31 + i * 7 + (i >> 8)); }

static int ep, conn;

/* Waits for the connection to be readable; exits when epoll_wait times out or reports something else. */
static void wait_readable(const char *what) {
  struct epoll_event ev[8];
  int n = epoll_wait(ep, ev, 8, WAIT_MS);
  if (n < 0) {
    printf("epoll_wait failed waiting for %s: %s\n", what, strerror(errno));
    exit(4);
  }
  if (n == 0) {
    printf("epoll_wait timed out waiting for %s\n", what);
    exit(3);
  }
  if (n != 1 || ev[0].data.u64 != COOKIE) {
    printf("epoll_wait gave %d events, data %llx, waiting for %s\n", n, (unsigned long long)ev[0].data.u64, what);
    exit(4);
  }
}

/* Reads exactly n bytes of pattern tag; "eof" and exit 0 if the connection ends first. */
static void expect_pat(char tag, size_t n, const char *what) {
  unsigned char buf[16384];
  size_t at = 0;
  while (at < n) {
    ssize_t r = read(conn, buf, n - at < sizeof buf ? n - at : sizeof buf);
    if (r == 0) {
      printf("eof\n");
      exit(0);
    }
    if (r < 0) {
      if (errno == EAGAIN) {
        wait_readable(what);
        continue;
      }
      printf("read error on %s: %s\n", what, strerror(errno));
      exit(4);
    }
    for (ssize_t i = 0; i < r; i++) {
      if (buf[i] != pat(tag, at + (size_t)i)) {
        printf("%s: byte %zu differs\n", what, at + (size_t)i);
        exit(5);
      }
    }
    at += (size_t)r;
  }
  printf("%s ok: %zu bytes\n", what, n);
  fflush(stdout);
}

/* Writes n bytes of pattern tag, as many calls as the kernel (or the primary's record) takes. */
static void write_pat(char tag, size_t n) {
  static unsigned char buf[1 << 20];
  unsigned char *p = n <= sizeof buf ? buf : malloc(n);
  if (!p) exit(6);
  for (size_t i = 0; i < n; i++) p[i] = pat(tag, i);
  size_t at = 0;
  while (at < n) {
    ssize_t w = write(conn, p + at, n - at);
    if (w < 0 && errno == EAGAIN) {
      usleep(1000);
      continue;
    }
    if (w <= 0) {
      printf("write error: %s\n", strerror(errno));
      exit(4);
    }
    at += (size_t)w;
  }
  if (p != buf) free(p);
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) return 2;
  uint16_t port = (uint16_t)atoi(argv[1]);
  size_t w = strtoul(argv[2], NULL, 10), in = strtoul(argv[3], NULL, 10);
  int one = 1;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(ls, 8) != 0) {
    printf("listen: %s\n", strerror(errno));
    return 2;
  }
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct sockaddr_in peer;
  socklen_t plen = sizeof peer;
  conn = accept4(ls, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (conn < 0) {
    printf("accept: %s\n", strerror(errno));
    return 2;
  }
  printf("accepted fd %d from %s:%u\n", conn, inet_ntoa(peer.sin_addr), ntohs(peer.sin_port));
  if (argc == 5 && !strcmp(argv[4], "copy")) conn = fcntl(conn, F_DUPFD_CLOEXEC, 5000);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = COOKIE};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, conn, &ev) != 0) return 2;
  wait_readable("the request");
  char req[4096];
  ssize_t r = read(conn, req, sizeof req);
  printf("request: %.*s", r > 0 ? (int)r : 0, req);
  write_pat('w', w);
  printf("replayed\n");
  fflush(stdout);

  /* Past the primary's records: this epoll_wait goes live, the connection is rebuilt first. */
  wait_readable("the unread client bytes");
  int fl = fcntl(conn, F_GETFL), fd = fcntl(conn, F_GETFD);
  printf("live: fd %d nonblock %d cloexec %d\n", conn, (fl & O_NONBLOCK) != 0, (fd & FD_CLOEXEC) != 0);
  fflush(stdout);
  expect_pat('i', in, "unread client bytes");
  write_pat('n', LIVE1);
  expect_pat('a', AFTER, "client bytes after the takeover");
  write_pat('z', LIVE2);
  close(conn);
  printf("done\n");
  return 0;
}
