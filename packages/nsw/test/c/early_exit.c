/*
 * Asks its pid twice, or, with EARLY_EXIT in its environment (which the
 * shim does not record), once, and exits 0 either way: a replica that
 * stops where its primary went on, with an exit code that looks clean.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
  printf("pid %d\n", (int)getpid());
  if (getenv("EARLY_EXIT")) return 0;
  printf("pid %d\n", (int)getpid());
  return 0;
}
