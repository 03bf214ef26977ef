/*
 * A thread that its process's exit cuts short on the primary, and that goes
 * on in the replica. With "exit" (record it so) the thread makes one call
 * and waits; the main thread then exits, killing it before its own END.
 * With "more" (replay it so) the thread makes one call more, which the
 * primary's thread never made, while the main thread joins it and so
 * waits for it: nothing ends this replica but the agent telling the
 * thread that it diverged.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t started = PTHREAD_COND_INITIALIZER;
static int ready;
static int more;

static void *worker(void *unused) {
  (void)unused;
  (void)getpid();
  pthread_mutex_lock(&lock);
  ready = 1;
  pthread_cond_signal(&started);
  pthread_mutex_unlock(&lock);
  if (more) (void)time(NULL);
  for (;;) pause();
  return NULL;
}

int main(int argc, char **argv) {
  more = argc > 1 && !strcmp(argv[1], "more");
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) return 2;
  pthread_mutex_lock(&lock);
  while (!ready) pthread_cond_wait(&started, &lock);
  pthread_mutex_unlock(&lock);
  if (more) pthread_join(t, NULL);
  return 0;
}
