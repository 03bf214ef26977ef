/*
 * ftcp TCP_REPAIR (see tcp_repair.h). Every step is one setsockopt or socket
 * call in the order the kernel accepts them (measured on this machine, see
 * DESIGN.md): repair on, queue sequence numbers, bind, connect (no SYN under
 * repair), options, timestamp, receive queue, window, repair off.
 */
#define _GNU_SOURCE
#include "tcp_repair.h"

#include <errno.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* From the kernel's include/net/tcp.h: option codes TCP_REPAIR_OPTIONS takes. */
/* The largest TCP_MAXSEG the kernel takes (MAX_TCP_WINDOW); loopback MSSs are larger. */
#define FTCP_MAXSEG_MAX 32767
#define FTCP_TCPOPT_MSS 2
#define FTCP_TCPOPT_WINDOW 3
#define FTCP_TCPOPT_SACK_PERM 4
#define FTCP_TCPOPT_TIMESTAMP 8

static const char *const step_names[] = {
	[FTCP_REPAIR_SOCKET] = "socket",
	[FTCP_REPAIR_ON] = "TCP_REPAIR on",
	[FTCP_REPAIR_RECV_SEQ] = "receive queue sequence",
	[FTCP_REPAIR_SEND_SEQ] = "send queue sequence",
	[FTCP_REPAIR_BIND] = "bind",
	[FTCP_REPAIR_CONNECT] = "connect",
	[FTCP_REPAIR_OPTIONS] = "TCP_REPAIR_OPTIONS",
	[FTCP_REPAIR_TIMESTAMP] = "TCP_TIMESTAMP",
	[FTCP_REPAIR_RECV_QUEUE] = "receive queue refill",
	[FTCP_REPAIR_WINDOW] = "TCP_REPAIR_WINDOW",
	[FTCP_REPAIR_OFF] = "TCP_REPAIR off",
};

const char *ftcp_repair_step_name(enum ftcp_repair_step step)
{
	if (step < FTCP_REPAIR_SOCKET || step > FTCP_REPAIR_OFF)
		return "unknown step";
	return step_names[step];
}

static const struct ftcp_repair_calls libc_calls = {
	.socket = socket,
	.setsockopt = setsockopt,
	.bind = bind,
	.connect = connect,
	.send = send,
	.close = close,
};

static int set_int(const struct ftcp_repair_calls *c, int fd, int opt, int val)
{
	return c->setsockopt(fd, IPPROTO_TCP, opt, &val, sizeof(val));
}

static int set_queue_seq(const struct ftcp_repair_calls *c, int fd, int queue, uint32_t seq)
{
	if (set_int(c, fd, TCP_REPAIR_QUEUE, queue) < 0)
		return -1;
	return c->setsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, &seq, sizeof(seq));
}

/*
 * Refilling the receive queue counts against the socket's receive buffer.
 * The kernel grows an unlocked buffer on its own only up to tcp_rmem[2]
 * (net.ipv4.tcp_rmem, 6 MiB by default); past it tcp_send_rcvq fails
 * (ENOBUFS: measured with 40 MB unread on a host whose tcp_rmem[2] is
 * 32 MB). Then, and only then, the buffer is set to hold the whole queue:
 * SO_RCVBUFFORCE (CAP_NET_ADMIN, which TCP_REPAIR needs anyway) locks it
 * and ends autotuning, so smaller queues keep the default.
 */
static int make_room(const struct ftcp_repair_calls *c, int fd, size_t total)
{
	size_t want = total + 65536; /* the kernel doubles it, as for SO_RCVBUF */

	if (want > 0x3fffffff) {
		errno = ENOMEM;
		return -1;
	}
	return c->setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &(int){ (int)want }, sizeof(int));
}

/* Writes all of buf into the queue selected with TCP_REPAIR_QUEUE. */
static int fill_queue(const struct ftcp_repair_calls *c, int fd, const char *buf, size_t len)
{
	size_t total = len;
	int grown = 0;

	while (len > 0) {
		ssize_t n = c->send(fd, buf, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if ((errno == ENOBUFS || errno == ENOMEM) && !grown) {
				grown = 1;
				if (make_room(c, fd, total) < 0)
					return -1;
				continue;
			}
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

#define STEP(s, call)                                                                                                  \
	do {                                                                                                           \
		if ((call) < 0) {                                                                                      \
			*failed = (s);                                                                                 \
			goto fail;                                                                                     \
		}                                                                                                      \
	} while (0)

int ftcp_tcp_repair(const struct ftcp_tcp_state *st, const void *inq, size_t inq_len, enum ftcp_repair_step *failed)
{
	return ftcp_tcp_repair_with(st, inq, inq_len, failed, NULL);
}

int ftcp_tcp_repair_with(const struct ftcp_tcp_state *st, const void *inq, size_t inq_len, enum ftcp_repair_step *failed,
			 const struct ftcp_repair_calls *c)
{
	enum ftcp_repair_step unused;
	struct sockaddr_in local = { .sin_family = AF_INET, .sin_port = htons(st->local_port), .sin_addr.s_addr = st->local_ip };
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(st->peer_port), .sin_addr.s_addr = st->peer_ip };
	struct tcp_repair_opt opts[4];
	unsigned nopts = 0;
	struct tcp_repair_window win;
	int fd, saved;

	if (!failed)
		failed = &unused;
	if (!c)
		c = &libc_calls;
	fd = c->socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
	if (fd < 0) {
		*failed = FTCP_REPAIR_SOCKET;
		return -1;
	}
	/* Under repair the kernel also forces address reuse, so the bind below
	 * succeeds beside the server's own listening socket. */
	STEP(FTCP_REPAIR_ON, set_int(c, fd, TCP_REPAIR, TCP_REPAIR_ON));
	/* The receive queue starts at the first byte not consumed; refilling it
	 * below moves rcv_nxt to the end of the stable instream. */
	STEP(FTCP_REPAIR_RECV_SEQ, set_queue_seq(c, fd, TCP_RECV_QUEUE, st->rcv_nxt - (uint32_t)inq_len));
	/* Empty send queue at snd_una: the unacknowledged outstream is written
	 * after repair mode, so it leaves at once instead of after an RTO. */
	STEP(FTCP_REPAIR_SEND_SEQ, set_queue_seq(c, fd, TCP_SEND_QUEUE, st->snd_una));
	STEP(FTCP_REPAIR_BIND, c->bind(fd, (struct sockaddr *)&local, sizeof(local)));
	/* The connect below sizes segments (mss_cache) from the MSS clamp it finds;
	 * the TCPOPT_MSS repair option set after it moves the clamp but not the
	 * segment size, so without this the socket sent 524-byte segments (the
	 * 536 default) until a route change happened to resync it. */
	STEP(FTCP_REPAIR_CONNECT, set_int(c, fd, TCP_MAXSEG, st->mss > FTCP_MAXSEG_MAX ? FTCP_MAXSEG_MAX : st->mss));
	/* Under repair, connect sends no SYN: the socket is ESTABLISHED at once. */
	STEP(FTCP_REPAIR_CONNECT, c->connect(fd, (struct sockaddr *)&peer, sizeof(peer)));

	opts[nopts++] = (struct tcp_repair_opt){ .opt_code = FTCP_TCPOPT_MSS, .opt_val = st->mss };
	/* Scales are fixed by the SYN exchange (RFC 7323 2.2): reuse both shifts. */
	if (st->snd_wscale || st->rcv_wscale)
		opts[nopts++] = (struct tcp_repair_opt){ .opt_code = FTCP_TCPOPT_WINDOW,
							 .opt_val = (uint32_t)st->snd_wscale | ((uint32_t)st->rcv_wscale << 16) };
	if (st->sack_ok)
		opts[nopts++] = (struct tcp_repair_opt){ .opt_code = FTCP_TCPOPT_SACK_PERM, .opt_val = 0 };
	if (st->timestamps)
		opts[nopts++] = (struct tcp_repair_opt){ .opt_code = FTCP_TCPOPT_TIMESTAMP, .opt_val = 0 };
	STEP(FTCP_REPAIR_OPTIONS, c->setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts, (socklen_t)(nopts * sizeof(opts[0]))));
	if (st->timestamps)
		STEP(FTCP_REPAIR_TIMESTAMP, set_int(c, fd, TCP_TIMESTAMP, (int)st->ts_val));

	if (inq_len > 0) {
		STEP(FTCP_REPAIR_RECV_QUEUE, set_int(c, fd, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE));
		STEP(FTCP_REPAIR_RECV_QUEUE, fill_queue(c, fd, inq, inq_len));
	}
	STEP(FTCP_REPAIR_RECV_QUEUE, set_int(c, fd, TCP_REPAIR_QUEUE, TCP_NO_QUEUE));

	/* The kernel insists snd_wl1 and rcv_wup are not beyond rcv_nxt. */
	memset(&win, 0, sizeof(win));
	win.snd_wl1 = st->rcv_nxt;
	win.snd_wnd = st->peer_window;
	win.max_window = st->peer_window;
	win.rcv_wnd = st->our_window;
	win.rcv_wup = st->rcv_nxt;
	STEP(FTCP_REPAIR_WINDOW, c->setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &win, sizeof(win)));

	/* Leaving repair sends a window probe: the peer answers with an ACK that
	 * tells our new socket where the peer stands (FT-TCP 2.3.1). */
	STEP(FTCP_REPAIR_OFF, set_int(c, fd, TCP_REPAIR, TCP_REPAIR_OFF));
	return fd;
fail:
	saved = errno;
	c->close(fd);
	errno = saved;
	return -1;
}
