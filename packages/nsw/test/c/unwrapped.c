/*
 * Reads a nondeterministic source the shim does not wrap (/proc/self/stat,
 * the real pid) and lets it steer the program: on the primary the two pids
 * agree and it reads time(); on a replica they differ and it reads
 * clock_gettime() instead. The replica must be stopped as diverged, not
 * allowed to print something the primary never did.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  FILE *f = fopen("/proc/self/stat", "r");
  long real_pid = -1;
  if (!f || fscanf(f, "%ld", &real_pid) != 1) return 2;
  fclose(f);
  if (real_pid == (long)getpid()) {
    printf("same pid, time=%lld\n", (long long)time(NULL));
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    printf("other pid, clock=%lld\n", (long long)ts.tv_sec);
  }
  return 0;
}
