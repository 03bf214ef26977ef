/*
 * A one-connection TCP server that moves large blocks in single calls:
 *
 *   bulk <port> <IN> <OUT>
 *
 * listens on 127.0.0.1:<port>, accepts one client, reads IN bytes with one
 * recv(MSG_WAITALL) and answers OUT bytes with one blocking write, then
 * closes. It prints what each call returned: a shim that cut replicated
 * reads or writes short would show here. The reply's bytes depend on the
 * request's (a sum of it), so a replica fed other client bytes diverges.
 * Under the shim with FTCP_NSW_PORT=<port> the connection is replicated.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 4) return 2;
  size_t in = strtoul(argv[2], NULL, 10), out = strtoul(argv[3], NULL, 10);
  unsigned char *req = malloc(in), *rep = malloc(out);
  if (!req || !rep) return 2;
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0) return 3;
  printf("listening\n");
  fflush(stdout);
  int c = accept(ls, NULL, NULL);
  if (c < 0) return 4;
  ssize_t r = recv(c, req, in, MSG_WAITALL);
  printf("read %zd of %zu in one call\n", r, in);
  unsigned sum = 0;
  for (ssize_t i = 0; i < r; i++) sum += req[i];
  for (size_t i = 0; i < out; i++) rep[i] = (unsigned char)(sum + i * 13 + (i >> 9));
  ssize_t w = write(c, rep, out);
  printf("wrote %zd of %zu in one call, request sum %u\n", w, out, sum);
  close(c);
  close(ls);
  return r == (ssize_t)in && w == (ssize_t)out ? 0 : 5;
}
