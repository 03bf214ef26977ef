/*
 * A one-connection server that treats its connection as the TCP socket it
 * is: sets the TCP-level options servers set (TCP_NODELAY as iperf3 does,
 * keepalive, buffers, timeouts, TOS, congestion control, cork), asks some
 * back, asks how much is queued, answers a line with all of it, shuts down
 * its side and reads to EOF. Every call must succeed: any failure is
 * reported on stderr and the exit code is 1, as a server that gives up on
 * a connection would. In playback its descriptor is a placeholder, where
 * none of these could be performed for real.
 */
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int failed;

static void check(int r, const char *what) {
  if (r != 0) {
    perror(what);
    failed = 1;
  }
}

static void set_int(int fd, int level, int name, int v, const char *what) { check(setsockopt(fd, level, name, &v, sizeof v), what); }

static int get_int(int fd, int level, int name, const char *what) {
  int v = -1;
  socklen_t len = sizeof v;
  check(getsockopt(fd, level, name, &v, &len), what);
  return v;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0) return 3;
  int c = accept(ls, NULL, NULL);
  if (c < 0) return 4;

  set_int(c, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
  set_int(c, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
  set_int(c, IPPROTO_TCP, TCP_KEEPIDLE, 30, "TCP_KEEPIDLE");
  set_int(c, IPPROTO_TCP, TCP_KEEPINTVL, 5, "TCP_KEEPINTVL");
  set_int(c, IPPROTO_TCP, TCP_KEEPCNT, 4, "TCP_KEEPCNT");
  set_int(c, SOL_SOCKET, SO_SNDBUF, 65536, "SO_SNDBUF");
  set_int(c, SOL_SOCKET, SO_RCVBUF, 65536, "SO_RCVBUF");
  set_int(c, IPPROTO_TCP, TCP_USER_TIMEOUT, 20000, "TCP_USER_TIMEOUT");
  set_int(c, IPPROTO_IP, IP_TOS, IPTOS_LOWDELAY, "IP_TOS");
  check(setsockopt(c, IPPROTO_TCP, TCP_CONGESTION, "cubic", 5), "TCP_CONGESTION");
  set_int(c, IPPROTO_TCP, TCP_CORK, 1, "TCP_CORK on");

  char cc[16] = {0};
  socklen_t cclen = sizeof cc;
  check(getsockopt(c, IPPROTO_TCP, TCP_CONGESTION, cc, &cclen), "get TCP_CONGESTION");
  struct tcp_info ti;
  socklen_t tilen = sizeof ti;
  check(getsockopt(c, IPPROTO_TCP, TCP_INFO, &ti, &tilen), "TCP_INFO");

  char line[256];
  size_t got = 0;
  while (got < sizeof line - 1 && !memchr(line, '\n', got)) {
    ssize_t n = read(c, line + got, sizeof line - 1 - got);
    if (n <= 0) break;
    got += (size_t)n;
  }
  line[got] = 0;
  int inq = -1, outq = -1;
  check(ioctl(c, FIONREAD, &inq), "FIONREAD");
  check(ioctl(c, SIOCOUTQ, &outq), "SIOCOUTQ");

  char reply[512];
  int len = snprintf(reply, sizeof reply, "%.*s: nodelay=%d keepalive=%d domain=%d type=%d sndbuf=%d cc=%s state=%u inq=%d outq=%d\n",
                     (int)strcspn(line, "\n"), line, get_int(c, IPPROTO_TCP, TCP_NODELAY, "get TCP_NODELAY"),
                     get_int(c, SOL_SOCKET, SO_KEEPALIVE, "get SO_KEEPALIVE"), get_int(c, SOL_SOCKET, SO_DOMAIN, "SO_DOMAIN"),
                     get_int(c, SOL_SOCKET, SO_TYPE, "SO_TYPE"), get_int(c, SOL_SOCKET, SO_SNDBUF, "get SO_SNDBUF"), cc,
                     (unsigned)ti.tcpi_state, inq, outq);
  if (write(c, reply, (size_t)len) != len) check(-1, "write");
  set_int(c, IPPROTO_TCP, TCP_CORK, 0, "TCP_CORK off");
  check(shutdown(c, SHUT_WR), "shutdown");
  char rest[64];
  while (read(c, rest, sizeof rest) > 0) {
  }
  check(close(c), "close");
  printf("served: %s", reply);
  return failed;
}
