/*
 * A program with an allocator of its own that reads the clock, as jemalloc
 * (redis-server's allocator) does when it starts. The shim's own start-up
 * must neither wait for itself when this malloc calls a wrapped function,
 * nor allocate while this malloc holds its lock.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static char *arena;
static size_t used;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Like jemalloc, calls wrapped functions with its (non-recursive) lock held:
 * a shim whose start-up allocated would deadlock right here. */
void *malloc(size_t n)
{
	struct timespec ts;
	pthread_mutex_lock(&lock);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	syscall(SYS_getpid);
	if (!arena) {
		arena = mmap(NULL, 1 << 24, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (arena == MAP_FAILED) {
			arena = NULL;
			pthread_mutex_unlock(&lock);
			return NULL;
		}
	}
	n = (n + 15) & ~(size_t)15;
	char *p = NULL;
	if (used + n + 16 <= (size_t)1 << 24) {
		p = arena + used + 16;
		memcpy(p - 16, &n, sizeof n);
		used += n + 16;
	}
	pthread_mutex_unlock(&lock);
	return p;
}

void free(void *p)
{
	(void)p;
}

void *calloc(size_t a, size_t b)
{
	void *p = malloc(a * b);
	if (p)
		memset(p, 0, a * b);
	return p;
}

void *realloc(void *p, size_t n)
{
	void *q = malloc(n);
	if (q && p) {
		size_t old;
		memcpy(&old, (char *)p - 16, sizeof old);
		memcpy(q, p, old < n ? old : n);
	}
	return q;
}

int main(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	printf("ok %d\n", ts.tv_sec > 0);
	return 0;
}
