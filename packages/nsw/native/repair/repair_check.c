/*
 * Checks ftcp_tcp_repair on a live loopback connection. Run it as root in a
 * fresh network namespace with lo up. A client child exchanges three rounds
 * with the server; between rounds 1 and 2 the server's socket is taken over:
 * its state is read under TCP_REPAIR, it is closed silently (repair mode sends
 * neither FIN nor RST), and a new socket is built from that state alone, with
 * the client's unread bytes put back into its receive queue and the last
 * REWIND bytes of output resent as if the client had not acknowledged them.
 * Exit 0 when the client saw every byte in order and no error.
 */
#define _GNU_SOURCE
#include "tcp_repair.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N_A 5000
#define N_B 3000
#define N_C 7000
#define R_1 20000
#define R_2 9000
#define R_3 4000
#define REWIND 100

static void die(const char *what)
{
	fprintf(stderr, "repair_check: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* Byte i of a stream named by `tag`: every position differs, so a lost,
 * repeated or reordered byte shows. */
static unsigned char pat(char tag, size_t i)
{
	return (unsigned char)(tag * 31 + i * 7 + (i >> 8));
}

static void fill(char tag, size_t from, unsigned char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = pat(tag, from + i);
}

static int write_all(int fd, const unsigned char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, unsigned char *buf, size_t n)
{
	while (n > 0) {
		ssize_t r = recv(fd, buf, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		buf += r;
		n -= (size_t)r;
	}
	return 0;
}

static int expect_stream(int fd, char tag, size_t from, size_t n)
{
	static unsigned char buf[1 << 16];
	if (read_all(fd, buf, n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (buf[i] != pat(tag, from + i)) {
			fprintf(stderr, "repair_check: stream %c byte %zu differs\n", tag, from + i);
			return -1;
		}
	return 0;
}

static int send_stream(int fd, char tag, size_t from, size_t n)
{
	static unsigned char buf[1 << 16];
	fill(tag, from, buf, n);
	return write_all(fd, buf, n);
}

static int client(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return 10;
	if (send_stream(fd, 'A', 0, N_A) < 0 || expect_stream(fd, 'x', 0, R_1) < 0)
		return 11;
	if (send_stream(fd, 'B', 0, N_B) < 0 || expect_stream(fd, 'y', 0, R_2) < 0)
		return 12;
	if (send_stream(fd, 'C', 0, N_C) < 0 || expect_stream(fd, 'z', 0, R_3) < 0)
		return 13;
	close(fd);
	return 0;
}

/* Reads the socket's state under repair and closes it without a sound. */
static void take_over(int s, struct ftcp_tcp_state *st, unsigned char *inq, size_t inq_len)
{
	struct sockaddr_in local, peer;
	socklen_t len = sizeof(local);
	struct tcp_info info;
	struct tcp_repair_window win;
	uint32_t rcv_end, write_seq, ts;
	int outq, on = 1, q;

	if (getsockname(s, (struct sockaddr *)&local, &len) < 0 || (len = sizeof(peer), getpeername(s, (struct sockaddr *)&peer, &len) < 0))
		die("getsockname");
	len = sizeof(info);
	if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &info, &len) < 0)
		die("TCP_INFO");
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) < 0)
		die("TCP_REPAIR on (needs root)");
	q = TCP_RECV_QUEUE;
	len = sizeof(rcv_end);
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) < 0 || getsockopt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, &rcv_end, &len) < 0)
		die("receive queue sequence");
	if (recv(s, inq, inq_len, MSG_PEEK | MSG_DONTWAIT) != (ssize_t)inq_len)
		die("peek receive queue");
	q = TCP_SEND_QUEUE;
	len = sizeof(write_seq);
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) < 0 || getsockopt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, &write_seq, &len) < 0)
		die("send queue sequence");
	if (ioctl(s, SIOCOUTQ, &outq) < 0)
		die("SIOCOUTQ");
	len = sizeof(ts);
	if (getsockopt(s, IPPROTO_TCP, TCP_TIMESTAMP, &ts, &len) < 0)
		die("TCP_TIMESTAMP");
	len = sizeof(win);
	if (getsockopt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, &win, &len) < 0)
		die("TCP_REPAIR_WINDOW");
	close(s); /* in repair mode: no FIN, no RST */

	memset(st, 0, sizeof(*st));
	st->local_ip = local.sin_addr.s_addr;
	st->peer_ip = peer.sin_addr.s_addr;
	st->local_port = ntohs(local.sin_port);
	st->peer_port = ntohs(peer.sin_port);
	/* Pretend the client never acknowledged the last REWIND bytes. */
	st->snd_una = write_seq - (uint32_t)outq - REWIND;
	st->rcv_nxt = rcv_end;
	st->mss = (uint16_t)info.tcpi_snd_mss;
	st->snd_wscale = info.tcpi_snd_wscale;
	st->rcv_wscale = info.tcpi_rcv_wscale;
	st->sack_ok = (info.tcpi_options & TCPI_OPT_SACK) != 0;
	st->timestamps = (info.tcpi_options & TCPI_OPT_TIMESTAMPS) != 0;
	st->ts_val = ts + 1;
	st->peer_window = win.snd_wnd;
	st->our_window = win.rcv_wnd;
	printf("took over: mss %u wscale %u/%u sack %u ts %u unread %zu window %u/%u\n", st->mss, st->snd_wscale, st->rcv_wscale,
	       st->sack_ok, st->timestamps, inq_len, st->peer_window, st->our_window);
}

/* An address this host does not have: the rebuild must stop at bind and say so. */
static int check_bad_bind(void)
{
	struct ftcp_tcp_state st = { .local_ip = htonl(0xc0000201), .peer_ip = htonl(INADDR_LOOPBACK), .local_port = 7, .peer_port = 9, .mss = 1460 };
	enum ftcp_repair_step failed = 0;
	int fd = ftcp_tcp_repair(&st, NULL, 0, &failed);
	if (fd >= 0 || failed != FTCP_REPAIR_BIND) {
		fprintf(stderr, "repair_check: expected a failure at bind, got fd %d step %s\n", fd, ftcp_repair_step_name(failed));
		return 1;
	}
	printf("ok: refused at %s: %s\n", ftcp_repair_step_name(failed), strerror(errno));
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	static unsigned char buf[1 << 16];
	struct ftcp_tcp_state st;
	enum ftcp_repair_step failed;
	int lfd, s, fd, status, avail = 0;
	pid_t child;

	if (argc > 1 && strcmp(argv[1], "bad-bind") == 0)
		return check_bad_bind();
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &len) < 0)
		die("listen");
	child = fork();
	if (child == 0)
		_exit(client(ntohs(a.sin_port)));
	s = accept(lfd, NULL, NULL);
	if (s < 0)
		die("accept");
	if (expect_stream(s, 'A', 0, N_A) < 0 || send_stream(s, 'x', 0, R_1) < 0)
		die("round 1");
	/* Let round 2's request arrive, unread: the replica has not consumed it. */
	for (int i = 0; i < 2000 && avail < N_B; i++) {
		struct timespec t = { 0, 1000000 };
		nanosleep(&t, NULL);
		if (ioctl(s, FIONREAD, &avail) < 0)
			die("FIONREAD");
	}
	if (avail != N_B) {
		fprintf(stderr, "repair_check: %d of %d request bytes arrived\n", avail, N_B);
		return 2;
	}
	take_over(s, &st, buf, N_B);
	unsigned char inq[N_B];
	memcpy(inq, buf, N_B);
	fd = ftcp_tcp_repair(&st, inq, N_B, &failed);
	if (fd < 0) {
		fprintf(stderr, "repair_check: ftcp_tcp_repair failed at %s: %s\n", ftcp_repair_step_name(failed), strerror(errno));
		kill(child, SIGKILL);
		return 1;
	}
	{
		/* Segments as large as the connection's MSS allows, not the 536 default. */
		struct tcp_info ri;
		socklen_t rl = sizeof(ri);
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ri, &rl) < 0)
			die("TCP_INFO of the rebuilt socket");
		printf("rebuilt: mss %u\n", ri.tcpi_snd_mss);
		if (ri.tcpi_snd_mss + 12 < (st.mss > 32767 ? 32767u : st.mss)) {
			fprintf(stderr, "repair_check: the rebuilt socket sends %u-byte segments, the connection's MSS is %u\n", ri.tcpi_snd_mss, st.mss);
			kill(child, SIGKILL);
			return 1;
		}
	}
	/* Resend what the client "did not acknowledge": its TCP drops the duplicate. */
	if (send_stream(fd, 'x', R_1 - REWIND, REWIND) < 0)
		die("resend");
	if (expect_stream(fd, 'B', 0, N_B) < 0 || send_stream(fd, 'y', 0, R_2) < 0)
		die("round 2 on the rebuilt socket");
	if (expect_stream(fd, 'C', 0, N_C) < 0 || send_stream(fd, 'z', 0, R_3) < 0)
		die("round 3 on the rebuilt socket");
	if (waitpid(child, &status, 0) < 0)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "repair_check: client failed with status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return 1;
	}
	close(fd);
	close(lfd);
	printf("ok: the client saw every byte in order across the takeover\n");
	return 0;
}
