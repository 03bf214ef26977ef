/*
 * A one-connection echo server that moves bulk data:
 *
 *   bulkecho <port> <block>
 *
 * listens on 127.0.0.1:<port>, accepts one client and writes back every
 * block it reads (reads of up to <block> bytes) until the client closes,
 * then prints how many bytes it echoed in how many reads. Under the shim
 * with FTCP_NSW_PORT=<port> the connection is replicated: each block is a
 * RECV and one or more SEND records, the shape of a busy server's log.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  size_t block = strtoul(argv[2], NULL, 10);
  unsigned char *buf = malloc(block);
  if (!buf) return 2;
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0) return 3;
  printf("listening\n");
  fflush(stdout);
  int c = accept(ls, NULL, NULL);
  if (c < 0) return 4;
  unsigned long long total = 0, reads = 0;
  for (;;) {
    ssize_t n = recv(c, buf, block, 0);
    if (n <= 0) break;
    reads++;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(c, buf + off, (size_t)(n - off));
      if (w <= 0) return 5;
      off += w;
    }
    total += (unsigned long long)n;
  }
  printf("echoed %llu bytes in %llu reads\n", total, reads);
  close(c);
  close(ls);
  return 0;
}
