/*
 * A one-connection TCP server: listens on 127.0.0.1:<port>, accepts one
 * client, reads a line, answers "<line> at <time>" and closes. With a
 * second argument "sendfile" the answer goes through a file and sendfile(2). Under the
 * shim in record mode with FTCP_NSW_PORT=<port>, its connection is
 * replicated, so its answer must wait for output commit.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2 && argc != 3) return 2;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0) return 3;
  printf("listening\n");
  fflush(stdout);
  struct sockaddr_in peer;
  socklen_t plen = sizeof peer;
  int c = accept(ls, (struct sockaddr *)&peer, &plen);
  if (c < 0) return 4;
  struct sockaddr_in me, them;
  socklen_t mlen = sizeof me, tlen = sizeof them;
  if (getsockname(c, (struct sockaddr *)&me, &mlen) != 0 || getpeername(c, (struct sockaddr *)&them, &tlen) != 0) return 8;
  printf("connection %d: %s:%d", c, inet_ntoa(me.sin_addr), ntohs(me.sin_port));
  printf(" <- %s:%d\n", inet_ntoa(them.sin_addr), ntohs(them.sin_port));
  fflush(stdout);
  char line[256];
  size_t got = 0;
  while (got < sizeof line - 1) {
    ssize_t n = recv(c, line + got, sizeof line - 1 - got, 0);
    if (n <= 0) break;
    got += (size_t)n;
    if (memchr(line, '\n', got)) break;
  }
  line[got] = 0;
  char *nl = strchr(line, '\n');
  if (nl) *nl = 0;
  char reply[512];
  int len = snprintf(reply, sizeof reply, "%s at %lld\n", line, (long long)time(NULL));
  if (argc == 3 && !strcmp(argv[2], "sendfile")) {
    FILE *f = tmpfile();
    if (!f || fwrite(reply, 1, (size_t)len, f) != (size_t)len || fflush(f) != 0) return 6;
    off_t off = 0;
    if (sendfile(c, fileno(f), &off, (size_t)len) != len || off != len) return 7;
    fclose(f);
  } else if (write(c, reply, (size_t)len) != len) {
    return 5;
  }
  close(c);
  close(ls);
  return 0;
}
