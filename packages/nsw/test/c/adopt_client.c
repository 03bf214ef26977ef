/*
 * The client side of a promotion test, and the primary that vanishes. Run as
 * root in a fresh network namespace with lo up:
 *
 *   adopt_client <port> <W> <O> <I>
 *
 * 1. A client connects to 127.0.0.1:<port>; the "primary" (the accepted
 *    socket) reads the request REQUEST, sends the first W-O bytes of its
 *    reply (pattern 'w'; the last O bytes "never reached the client"), and
 *    the client sends I more bytes (pattern 'i') that the primary's kernel
 *    acknowledges but the primary never reads.
 * 2. The primary's socket is taken away without a sound: TCP_REPAIR on, its
 *    queue sequence numbers and options read, closed (a repair-mode close
 *    sends neither FIN nor RST). One line on stdout gives that state:
 *    "state local=A:P peer=A:P snd_una=N rcv_nxt=N mss=N snd_wscale=N
 *    rcv_wscale=N sack=N ts=N tsval=N peer_window=N our_window=N".
 * 3. The client, still connected, then expects from whoever serves the
 *    connection now: the O missing reply bytes, then LIVE1 bytes (pattern
 *    'n'); it sends AFTER bytes (pattern 'a'); it expects LIVE2 bytes
 *    (pattern 'z') and an orderly end of stream.
 *
 * Exit 0 and "client ok" when every byte came in order and no error; any
 * wait is bounded (WAIT_MS), so a takeover that does not happen fails.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQUEST "GET /first\n"
#define LIVE1 300
#define AFTER 700
#define LIVE2 200
#define WAIT_MS 20000

static void die(const char *what) {
  fprintf(stderr, "adopt_client: %s: %s\n", what, strerror(errno));
  exit(2);
}

/* Byte i of the stream named by tag: every position differs, so a lost, repeated or reordered byte shows. */
static unsigned char pat(char tag, size_t i) { return (unsigned char)(tag * 31 + i * 7 + (i >> 8)); }

static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits until fd has `events`, at most until deadline; dies on timeout. */
static void wait_for(int fd, short events, long deadline, const char *what) {
  for (;;) {
    long left = deadline - now_ms();
    if (left <= 0) {
      errno = ETIMEDOUT;
      die(what);
    }
    struct pollfd p = {fd, events, 0};
    int r = poll(&p, 1, (int)left);
    if (r > 0) return;
    if (r < 0 && errno != EINTR) die("poll");
  }
}

/* Sends n bytes of pattern tag from offset `from` on a non-blocking socket. */
static void send_pat(int fd, char tag, size_t from, size_t n, const char *what) {
  static unsigned char buf[65536];
  long deadline = now_ms() + WAIT_MS;
  while (n > 0) {
    size_t k = n < sizeof buf ? n : sizeof buf;
    for (size_t i = 0; i < k; i++) buf[i] = pat(tag, from + i);
    ssize_t w = send(fd, buf, k, MSG_NOSIGNAL);
    if (w > 0) {
      from += (size_t)w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) die(what);
    wait_for(fd, POLLOUT, deadline, what);
  }
}

/* Receives exactly n bytes of pattern tag from offset `from` on a non-blocking socket and checks them. */
static void expect_pat(int fd, char tag, size_t from, size_t n, const char *what) {
  static unsigned char buf[65536];
  long deadline = now_ms() + WAIT_MS;
  while (n > 0) {
    ssize_t r = recv(fd, buf, n < sizeof buf ? n : sizeof buf, 0);
    if (r > 0) {
      for (ssize_t i = 0; i < r; i++) {
        if (buf[i] != pat(tag, from + (size_t)i)) {
          fprintf(stderr, "adopt_client: %s: byte %zu of stream %c differs\n", what, from + (size_t)i, tag);
          exit(3);
        }
      }
      from += (size_t)r;
      n -= (size_t)r;
      continue;
    }
    if (r == 0) {
      fprintf(stderr, "adopt_client: %s: end of stream with %zu bytes missing\n", what, n);
      exit(3);
    }
    if (errno != EAGAIN && errno != EINTR) die(what);
    wait_for(fd, POLLIN, deadline, what);
  }
}

static void nonblock(int fd) {
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("O_NONBLOCK");
}

/* The primary sends n reply bytes while the client reads them: both sides of one loop, so any size fits. */
static void pump_reply(int s, int c, size_t n) {
  static unsigned char buf[65536];
  size_t sent = 0, got = 0;
  long deadline = now_ms() + WAIT_MS;
  while (got < n) {
    if (sent < n) {
      size_t k = n - sent < sizeof buf ? n - sent : sizeof buf;
      for (size_t i = 0; i < k; i++) buf[i] = pat('w', sent + i);
      ssize_t w = send(s, buf, k, MSG_NOSIGNAL);
      if (w > 0) sent += (size_t)w;
      else if (errno != EAGAIN && errno != EINTR) die("primary reply");
    }
    ssize_t r = recv(c, buf, sizeof buf, 0);
    if (r > 0) {
      for (ssize_t i = 0; i < r; i++) {
        if (buf[i] != pat('w', got + (size_t)i)) {
          fprintf(stderr, "adopt_client: reply byte %zu differs before the takeover\n", got + (size_t)i);
          exit(3);
        }
      }
      got += (size_t)r;
    } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
      die("client read before the takeover");
    } else {
      struct pollfd p[2] = {{c, POLLIN, 0}, {s, sent < n ? POLLOUT : 0, 0}};
      if (now_ms() > deadline) die("reply before the takeover timed out");
      poll(p, 2, 100);
    }
  }
}

/* Reads the primary's socket state under repair, then closes it: nothing goes on the wire. */
static void vanish(int s, size_t unread) {
  struct sockaddr_in local, peer;
  socklen_t len = sizeof local;
  struct tcp_info info;
  struct tcp_repair_window win;
  uint32_t rcv_nxt, write_seq, ts;
  int outq, on = 1, q;

  if (getsockname(s, (struct sockaddr *)&local, &len) < 0) die("getsockname");
  len = sizeof peer;
  if (getpeername(s, (struct sockaddr *)&peer, &len) < 0) die("getpeername");
  len = sizeof info;
  if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) die("TCP_INFO");
  if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) < 0) die("TCP_REPAIR on (needs root)");
  q = TCP_RECV_QUEUE;
  len = sizeof rcv_nxt;
  if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof q) < 0 || getsockopt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, &rcv_nxt, &len) < 0)
    die("receive queue sequence");
  q = TCP_SEND_QUEUE;
  len = sizeof write_seq;
  if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof q) < 0 || getsockopt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, &write_seq, &len) < 0)
    die("send queue sequence");
  if (ioctl(s, SIOCOUTQ, &outq) < 0) die("SIOCOUTQ");
  len = sizeof ts;
  if (getsockopt(s, IPPROTO_TCP, TCP_TIMESTAMP, &ts, &len) < 0) die("TCP_TIMESTAMP");
  len = sizeof win;
  if (getsockopt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, &win, &len) < 0) die("TCP_REPAIR_WINDOW");
  close(s); /* in repair mode: no FIN, no RST */

  char la[INET_ADDRSTRLEN], pa[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &local.sin_addr, la, sizeof la);
  inet_ntop(AF_INET, &peer.sin_addr, pa, sizeof pa);
  /* rcv_nxt is the end of what the kernel received: the `unread` bytes end there. */
  printf("state local=%s:%u peer=%s:%u snd_una=%u rcv_nxt=%u mss=%u snd_wscale=%u rcv_wscale=%u sack=%u ts=%u tsval=%u "
         "peer_window=%u our_window=%u unread=%zu\n",
         la, ntohs(local.sin_port), pa, ntohs(peer.sin_port), write_seq - (uint32_t)outq, rcv_nxt, info.tcpi_snd_mss,
         info.tcpi_snd_wscale, info.tcpi_rcv_wscale, (info.tcpi_options & TCPI_OPT_SACK) != 0,
         (info.tcpi_options & TCPI_OPT_TIMESTAMPS) != 0, ts, win.snd_wnd, win.rcv_wnd, unread);
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: adopt_client <port> <W> <O> <I>\n");
    return 2;
  }
  uint16_t port = (uint16_t)atoi(argv[1]);
  size_t w = strtoul(argv[2], NULL, 10), o = strtoul(argv[3], NULL, 10), in = strtoul(argv[4], NULL, 10);
  if (o > w) return 2;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int one = 1;
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  /* Room for the unread bytes: the primary never reads them, so its window must hold them all. */
  int rcvbuf = (int)(in + (1 << 20));
  if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      setsockopt(lfd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 ||
      listen(lfd, 1) < 0)
    die("listen");
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  int s = accept(lfd, NULL, NULL);
  if (s < 0) die("accept");
  /* The replica binds this port for itself; a listener left here would answer the client with RST. */
  close(lfd);
  nonblock(c);
  nonblock(s);

  /* What the primary did before it failed: read the request, send most of its reply. */
  if (send(c, REQUEST, strlen(REQUEST), 0) != (ssize_t)strlen(REQUEST)) die("request");
  char req[sizeof REQUEST];
  size_t got = 0;
  long deadline = now_ms() + WAIT_MS;
  while (got < strlen(REQUEST)) {
    ssize_t r = recv(s, req + got, strlen(REQUEST) - got, 0);
    if (r > 0) got += (size_t)r;
    else if (r == 0 || (errno != EAGAIN && errno != EINTR)) die("primary read");
    else wait_for(s, POLLIN, deadline, "primary read");
  }
  pump_reply(s, c, w - o);

  /* The client's next bytes: acknowledged by the primary's kernel, never read by the primary. */
  send_pat(c, 'i', 0, in, "client bytes before the takeover");
  /* Both sides quiet: every byte either way acknowledged, so the state read below is the client's view. */
  int avail = 0, unacked = 1, reply_unacked = 1;
  for (long end = now_ms() + WAIT_MS; avail != (int)in || unacked != 0 || reply_unacked != 0;) {
    if (now_ms() > end) {
      fprintf(stderr, "adopt_client: %d of %zu unread bytes arrived, %d and %d unacknowledged\n", avail, in, unacked, reply_unacked);
      return 2;
    }
    struct timespec t = {0, 1000000};
    nanosleep(&t, NULL);
    if (ioctl(s, FIONREAD, &avail) < 0 || ioctl(c, SIOCOUTQ, &unacked) < 0 || ioctl(s, SIOCOUTQ, &reply_unacked) < 0) die("FIONREAD");
  }
  vanish(s, in);

  /* Whoever serves the connection now must pick up exactly where the client stands. */
  expect_pat(c, 'w', w - o, o, "the unacknowledged reply after the takeover");
  expect_pat(c, 'n', 0, LIVE1, "the live reply");
  send_pat(c, 'a', 0, AFTER, "client bytes after the takeover");
  expect_pat(c, 'z', 0, LIVE2, "the last reply");
  char end;
  deadline = now_ms() + WAIT_MS;
  for (;;) {
    ssize_t r = recv(c, &end, 1, 0);
    if (r == 0) break;
    if (r > 0) {
      fprintf(stderr, "adopt_client: bytes after the last reply\n");
      return 3;
    }
    if (errno != EAGAIN && errno != EINTR) die("end of stream");
    wait_for(c, POLLIN, deadline, "end of stream");
  }
  close(c);
  printf("client ok: %zu bytes after the takeover\n", o + LIVE1 + LIVE2);
  return 0;
}
