/*
 * Six calls in a row, each printed: a promoted replica plays back the
 * primary's first calls and performs the rest for real.
 */
#include <stdio.h>
#include <unistd.h>

int main(void) {
  for (int i = 0; i < 6; i++) printf("%d pid=%d\n", i, (int)getpid());
  return 0;
}
