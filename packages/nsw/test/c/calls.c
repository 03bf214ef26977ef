/*
 * Many cheap wrapped calls in a row, the shape of a busy event loop between
 * its reads: calls <N> makes N clock_gettime and N getpid calls and prints a
 * sum of what they returned, so a replica given other answers prints another
 * line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000;
  unsigned long long sum = 0;
  for (long i = 0; i < n; i++) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sum = sum * 31 + (unsigned long long)ts.tv_nsec + (unsigned long long)getpid();
  }
  printf("%ld calls, sum %llu\n", n, sum);
  return 0;
}
