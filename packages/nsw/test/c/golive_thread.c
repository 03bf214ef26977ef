/*
 * Four calls, then a thread that makes one, then one more call, each
 * printed: a promoted replica goes live in the main thread before it
 * creates the thread, so the thread starts after the process went live.
 */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static void *worker(void *arg) {
  (void)arg;
  printf("thread pid=%d\n", (int)getpid());
  return NULL;
}

int main(void) {
  for (int i = 0; i < 4; i++) printf("%d pid=%d\n", i, (int)getpid());
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0 || pthread_join(t, NULL) != 0) return 1;
  printf("4 pid=%d\n", (int)getpid());
  return 0;
}
