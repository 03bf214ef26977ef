/*
 * When a recording shim's coalesced records leave (test/coalesce.test.ts).
 * Every wait below is in a call the shim does not wrap (sigtimedwait, a
 * condition variable), so only the shim's own flush points can send them.
 *
 *   coalesce hold      10 clock reads, "recorded", 600 ms in sigtimedwait,
 *                      then nanosleep (a flush point), "slept", 600 ms more
 *   coalesce poll      a clock read, "recorded", then poll() for 1500 ms
 *   coalesce commit P  a thread reads the clock and waits on a condition
 *                      variable; the main thread serves one client on
 *                      127.0.0.1:P (a replicated connection) and only then
 *                      wakes it
 *   coalesce exec      a clock read, then exec of itself as "coalesce child"
 *   coalesce child     a clock read, then _exit(3)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Waits ms milliseconds in a call the shim does not see. */
static void quiet_wait(long ms) {
  sigset_t none;
  sigemptyset(&none);
  sigaddset(&none, SIGUSR2);
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  sigtimedwait(&none, NULL, &ts);
}

static void say(const char *line) {
  printf("%s\n", line);
  fflush(stdout);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int state; /* 1: the thread read the clock; 2: the reply is out */

static void *reader(void *arg) {
  (void)arg;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  pthread_mutex_lock(&mu);
  state = 1;
  pthread_cond_broadcast(&cv);
  while (state != 2) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return NULL;
}

static int commit(int port) {
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0) return 3;
  pthread_t th;
  if (pthread_create(&th, NULL, reader, NULL) != 0) return 4;
  pthread_mutex_lock(&mu);
  while (state != 1) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  say("listening");
  int c = accept(ls, NULL, NULL);
  char buf[64];
  if (c < 0 || recv(c, buf, sizeof buf, 0) <= 0 || write(c, "ok\n", 3) != 3) return 5;
  pthread_mutex_lock(&mu);
  state = 2;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  pthread_join(th, NULL);
  close(c);
  return 0;
}

int main(int argc, char **argv) {
  struct timespec ts;
  if (argc < 2) return 2;
  if (!strcmp(argv[1], "hold")) {
    for (int i = 0; i < 10; i++) clock_gettime(CLOCK_MONOTONIC, &ts);
    say("recorded");
    quiet_wait(600);
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
    say("slept");
    quiet_wait(600);
    return 0;
  }
  if (!strcmp(argv[1], "poll")) {
    clock_gettime(CLOCK_MONOTONIC, &ts);
    say("recorded");
    poll(NULL, 0, 1500);
    return 0;
  }
  if (!strcmp(argv[1], "commit") && argc == 3) return commit(atoi(argv[2]));
  if (!strcmp(argv[1], "exec")) {
    clock_gettime(CLOCK_MONOTONIC, &ts);
    execl(argv[0], argv[0], "child", (char *)NULL);
    return 6;
  }
  if (!strcmp(argv[1], "child")) {
    clock_gettime(CLOCK_MONOTONIC, &ts);
    _exit(3);
  }
  return 2;
}
