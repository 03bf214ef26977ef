/*
 * Many threads racing through clock and random calls, and each creating a
 * thread of its own: the streams are named by creation order, so a replica
 * finds every thread's records whatever the scheduling. Prints one checksum
 * per thread, in creation order.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

#define THREADS 8
#define CALLS 500

struct job {
  uint64_t sum;
  uint64_t child_sum;
};

static void *leaf(void *p) {
  uint64_t *sum = p;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  *sum = (uint64_t)ts.tv_nsec;
  return NULL;
}

static void *work(void *p) {
  struct job *j = p;
  uint64_t h = 1469598103934665603ULL;
  for (int i = 0; i < CALLS; i++) {
    struct timespec ts;
    uint32_t r = 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (getrandom(&r, sizeof r, 0) != sizeof r) return NULL;
    h = (h ^ (uint64_t)ts.tv_nsec ^ r) * 1099511628211ULL;
  }
  j->sum = h;
  pthread_t t;
  pthread_create(&t, NULL, leaf, &j->child_sum);
  pthread_join(t, NULL);
  return NULL;
}

int main(void) {
  pthread_t t[THREADS];
  struct job jobs[THREADS] = {{0, 0}};
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, work, &jobs[i]);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < THREADS; i++) printf("thread %d: %016llx child %llu\n", i + 1, (unsigned long long)jobs[i].sum, (unsigned long long)jobs[i].child_sum);
  return 0;
}
