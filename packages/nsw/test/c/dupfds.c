/*
 * Copies of the descriptors the shim tracks, and numbers past 4096
 * (test/dupfds.test.ts):
 *
 *   dupfds random       /dev/urandom at 5000 (F_DUPFD, the original closed),
 *                       then read through dup2, dup3 and dup copies
 *   dupfds conn <port>  one client on 127.0.0.1:<port>; its connection moved
 *                       to 5000 (F_DUPFD_CLOEXEC, the original closed); the
 *                       request read and the reply written there, a last
 *                       line written through a dup of it
 *
 * Every line depends on recorded values, so a replica must print the same.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void show(const char *what, int fd) {
  unsigned char b[8];
  ssize_t n = read(fd, b, sizeof b);
  printf("%s (fd %d): %zd bytes", what, fd, n);
  for (ssize_t i = 0; i < n; i++) printf(" %02x", b[i]);
  printf("\n");
}

static int random_copies(void) {
  int u = open("/dev/urandom", O_RDONLY);
  int high = fcntl(u, F_DUPFD, 5000);
  close(u);
  show("F_DUPFD", high);
  show("dup2", dup2(high, 6000));
  show("dup3", dup3(high, 6001, O_CLOEXEC));
  show("dup", dup(high));
  return 0;
}

static int conn_copies(int port) {
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0) return 3;
  printf("listening\n");
  fflush(stdout);
  int c = accept(ls, NULL, NULL);
  int d = fcntl(c, F_DUPFD_CLOEXEC, 5000);
  close(c);
  char line[256];
  ssize_t n = recv(d, line, sizeof line - 1, 0);
  if (n <= 0) {
    printf("connection fd %d: read %zd\n", d, n);
    return 4;
  }
  line[n] = 0;
  char reply[320];
  int len = snprintf(reply, sizeof reply, "%.*s at %lld\n", (int)strcspn(line, "\n"), line, (long long)time(NULL));
  if (write(d, reply, (size_t)len) != len) return 5;
  int e = dup(d);
  if (send(e, "bye\n", 4, 0) != 4) return 6;
  printf("connection fd %d, copy %d: %s", d, e, reply);
  close(e);
  close(d);
  return 0;
}

int main(int argc, char **argv) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192 && (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= 8192)) {
    rl.rlim_cur = 8192;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (argc == 2 && !strcmp(argv[1], "random")) return random_copies();
  if (argc == 3 && !strcmp(argv[1], "conn")) return conn_copies(atoi(argv[2]));
  return 2;
}
