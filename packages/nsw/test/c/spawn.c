/*
 * Children started without fork() (test/spawn.test.ts):
 *
 *   spawn spawn      posix_spawn, posix_spawnp, system and popen of this
 *                    program as "child <tag>", one after the other
 *   spawn forkexec   two forked children that execve this program with an
 *                    environment copied before the forks
 *   spawn vfork      the same with vfork, as CPython's subprocess does
 *   spawn child T    prints its (recorded) pid, parent pid, time and random
 *                    bytes, and exits 7
 *
 * Every line depends on recorded values, so a replica must print the same.
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int child(const char *tag) {
  unsigned r = 0;
  if (getrandom(&r, sizeof r, 0) != sizeof r) return 2;
  printf("child %s: pid=%d ppid=%d time=%lld random=%08x\n", tag, (int)getpid(), (int)getppid(), (long long)time(NULL), r);
  fflush(stdout);
  return 7;
}

static void waited(const char *what, pid_t pid) {
  int st = 0;
  pid_t w = waitpid(pid, &st, 0);
  printf("%s: pid=%d waited=%d exit=%d\n", what, (int)pid, (int)(w == pid), WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  fflush(stdout);
}

static int spawn_all(const char *self) {
  pid_t pid;
  char *a[] = {(char *)self, "child", "A", NULL};
  if (posix_spawn(&pid, self, NULL, NULL, a, environ) != 0) return 3;
  waited("posix_spawn", pid);
  char *b[] = {(char *)self, "child", "B", NULL};
  if (posix_spawnp(&pid, self, NULL, NULL, b, environ) != 0) return 3;
  waited("posix_spawnp", pid);
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "'%s' child C", self);
  int st = system(cmd);
  printf("system: exit=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  fflush(stdout);
  snprintf(cmd, sizeof cmd, "'%s' child D", self);
  FILE *f = popen(cmd, "r");
  if (!f) return 4;
  char line[256];
  while (fgets(line, sizeof line, f)) printf("popen read: %s", line);
  st = pclose(f);
  printf("pclose: exit=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  printf("parent: pid=%d time=%lld\n", (int)getpid(), (long long)time(NULL));
  return 0;
}

static int fork_exec(const char *self, int use_vfork) {
  /* The environment as it is now, passed explicitly: its FTCP_NSW_NAME is this image's. */
  size_t n = 0;
  while (environ[n]) n++;
  char **env = calloc(n + 1, sizeof *env);
  if (!env) return 5;
  memcpy(env, environ, n * sizeof *env);
  for (volatile int i = 0; i < 2; i++) {
    pid_t pid = use_vfork ? vfork() : fork();
    if (pid == 0) {
      char *argv[] = {(char *)self, "child", i ? "F2" : "F1", NULL};
      execve(self, argv, env);
      _exit(127);
    }
    waited(use_vfork ? "vfork+execve" : "fork+execve", pid);
  }
  free(env);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "child")) return child(argv[2]);
  if (argc == 2 && !strcmp(argv[1], "spawn")) return spawn_all(argv[0]);
  if (argc == 2 && !strcmp(argv[1], "forkexec")) return fork_exec(argv[0], 0);
  if (argc == 2 && !strcmp(argv[1], "vfork")) return fork_exec(argv[0], 1);
  return 2;
}
