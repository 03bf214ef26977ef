/*
 * A deadline read caught by another thread's output commit
 * (test/deadline-race.test.ts): a thread reads the clock only for the
 * deadline of a timed wait, and between the read and the wait the main
 * thread writes a reply on a replicated connection, whose output commit
 * records the read. The thread then waits and makes another call. Every
 * wait between the two threads is in a call the shim does not wrap, so
 * the interleaving is the same in the primary and in the replica.
 *
 *   deadline_race P [F read|wait]   serves one client on 127.0.0.1:P, then
 *                      exits; once file F exists (the test makes it before
 *                      the replay) the thread skips the read ("read": it
 *                      waits without it) or the wait ("wait"), as another
 *                      scheduling might have it
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int state; /* 1: the thread read the clock; 2: the reply is out */
static pid_t seen;
static int skip_read, skip_wait;

static void *waiter(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  struct timespec at = {0, 0};
  if (!skip_read) clock_gettime(CLOCK_REALTIME, &at); /* only the deadline below */
  state = 1;
  pthread_cond_broadcast(&cv);
  while (state != 2) pthread_cond_wait(&cv, &mu);
  at.tv_nsec += 1000000;
  if (at.tv_nsec >= 1000000000) {
    at.tv_sec++;
    at.tv_nsec -= 1000000000;
  }
  while (!skip_wait && pthread_cond_timedwait(&cv, &mu, &at) == 0) {
  }
  pthread_mutex_unlock(&mu);
  seen = getpid(); /* the thread's next call */
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2 && argc != 4) return 2;
  if (argc == 4 && access(argv[2], F_OK) == 0) {
    skip_read = !strcmp(argv[3], "read");
    skip_wait = !strcmp(argv[3], "wait");
  }
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0) return 3;
  int c = accept(ls, NULL, NULL);
  char buf[64];
  if (c < 0 || recv(c, buf, sizeof buf, 0) <= 0) return 4;
  pthread_t th;
  if (pthread_create(&th, NULL, waiter, NULL) != 0) return 5;
  pthread_mutex_lock(&mu);
  while (state != 1) pthread_cond_wait(&cv, &mu);
  /* The thread's read is kept aside now: this reply's output commit records it. */
  if (write(c, "ok\n", 3) != 3) return 6;
  state = 2;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  pthread_join(th, NULL);
  char line[32];
  int n = snprintf(line, sizeof line, "pid %d\n", (int)seen);
  if (write(c, line, (size_t)n) != n) return 7;
  close(c);
  return 0;
}
