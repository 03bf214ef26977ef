/*
 * The NSW benchmark's workload, run with and without the shim:
 *   nswbench clock N       N clock_gettime calls; prints {"nsPerCall":...,"t0Ns":...}
 *                          (t0Ns: CLOCK_MONOTONIC when the calls began)
 *   nswbench rtt N PORT    N one-byte round trips over loopback TCP through
 *                          a socket accepted on PORT (a replicated connection
 *                          when the shim's FTCP_NSW_PORT is PORT); prints the
 *                          round trip and the server's send() (output commit)
 *                          percentiles in ns.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, long n, double q)
{
	long i = (long)(q * (double)n);
	if (i >= n)
		i = n - 1;
	return v[i];
}

static int bench_clock(long n)
{
	struct timespec ts;
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t t1 = now_ns();
	/* t0Ns: CLOCK_MONOTONIC at the start, for the caller to time the records' way to the buffer. */
	printf("{\"calls\":%ld,\"nsPerCall\":%.2f,\"t0Ns\":%lu}\n", n, (double)(t1 - t0) / (double)n, (unsigned long)t0);
	return 0;
}

static int bench_rtt(long n, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0), c, s;
	char b = 'x';
	uint64_t *rtt = calloc((size_t)n, sizeof(uint64_t)), *stall = calloc((size_t)n, sizeof(uint64_t));
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!rtt || !stall || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1) < 0) {
		perror("nswbench: listen");
		return 2;
	}
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0 || (s = accept(lfd, NULL, NULL)) < 0) {
		perror("nswbench: connect");
		return 2;
	}
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (long i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		if (send(c, &b, 1, 0) != 1 || recv(s, &b, 1, 0) != 1)
			return 3;
		uint64_t t1 = now_ns();
		if (send(s, &b, 1, 0) != 1)
			return 3;
		uint64_t t2 = now_ns();
		if (recv(c, &b, 1, 0) != 1)
			return 3;
		rtt[i] = now_ns() - t0;
		stall[i] = t2 - t1;
	}
	qsort(rtt, (size_t)n, sizeof(uint64_t), cmp);
	qsort(stall, (size_t)n, sizeof(uint64_t), cmp);
	printf("{\"roundTrips\":%ld,\"rttP50Ns\":%lu,\"rttP99Ns\":%lu,\"sendP50Ns\":%lu,\"sendP99Ns\":%lu}\n", n,
	       (unsigned long)pct(rtt, n, 0.5), (unsigned long)pct(rtt, n, 0.99), (unsigned long)pct(stall, n, 0.5),
	       (unsigned long)pct(stall, n, 0.99));
	close(s);
	close(c);
	close(lfd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "clock") == 0)
		return bench_clock(atol(argv[2]));
	if (argc >= 4 && strcmp(argv[1], "rtt") == 0)
		return bench_rtt(atol(argv[2]), atoi(argv[3]));
	fprintf(stderr, "usage: nswbench clock N | rtt N PORT\n");
	return 2;
}
