/*
 * A one-connection server whose answer is made of addresses, as OpenSSL's
 * DRBG nonce and Python's set order are: a stack variable's, a small and a
 * large (mmap'd) allocation's, its thread's (pthread_self) and another
 * thread's stack. With address space layout randomization each run answers
 * otherwise; a replica must answer what its primary answered.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void *where(void *out) {
  int local = 0;
  snprintf(out, 128, "thread=%p thread-stack=%p", (void *)pthread_self(), (void *)&local);
  return NULL;
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
  char line[64];
  ssize_t n = read(c, line, sizeof line);
  if (n <= 0) return 5;
  int local = 0;
  void *small = malloc(64), *large = malloc(1 << 20);
  char other[128];
  pthread_t t;
  if (pthread_create(&t, NULL, where, other) != 0 || pthread_join(t, NULL) != 0) return 6;
  char reply[512];
  int len = snprintf(reply, sizeof reply, "stack=%p small=%p large=%p self=%p %s\n", (void *)&local, small, large, (void *)pthread_self(), other);
  if (write(c, reply, (size_t)len) != len) return 7;
  close(c);
  free(small);
  free(large);
  return 0;
}
