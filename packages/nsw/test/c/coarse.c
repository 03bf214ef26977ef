/*
 * Reads the coarse clocks at points its argument picks, the way jemalloc
 * reads one for its decay timer only when a trylock succeeds, between reads
 * of the precise clock whose values it prints. Run with one pattern on the
 * primary and another on the replica: the replica must print exactly what
 * the primary printed (see "housekeeping clocks" in the shim).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  unsigned pattern = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 0;
  for (int i = 0; i < 8; i++) {
    struct timespec coarse, precise;
    if (pattern >> i & 1) {
      clock_gettime(i % 2 ? CLOCK_MONOTONIC_COARSE : CLOCK_REALTIME_COARSE, &coarse);
      if (i % 3 == 0) clock_gettime(CLOCK_MONOTONIC_COARSE, &coarse);
    }
    if (i == 5) {
      /* A coarse read right before a call that is not a clock read. */
      printf("%d pid=%ld\n", i, (long)getpid());
      continue;
    }
    clock_gettime(CLOCK_MONOTONIC, &precise);
    printf("%d monotonic=%lld.%09ld\n", i, (long long)precise.tv_sec, precise.tv_nsec);
  }
  struct timespec last;
  if (pattern >> 8 & 1) clock_gettime(CLOCK_MONOTONIC_COARSE, &last);
  return 0;
}
