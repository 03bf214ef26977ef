/*
 * ftcp TCP_REPAIR: rebuild a live TCP connection as a real kernel socket in
 * exactly the peer's view of it (DESIGN.md "Failover, in order", step 4).
 *
 * What CRIU does for checkpoint/restore, ftcp does for takeover: the backup
 * never had the connection, so every value comes from the stable buffer's
 * records (ISNs, options, the client's acks and window) and the replica's
 * playback (what the server consumed and wrote).
 */
#ifndef FTCP_TCP_REPAIR_H
#define FTCP_TCP_REPAIR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The connection as the peer sees it. Addresses in network byte order, ports
 * and every other field in host byte order. */
struct ftcp_tcp_state {
	uint32_t local_ip;
	uint32_t peer_ip;
	uint16_t local_port;
	uint16_t peer_port;
	/* Our sequence number of the first byte the peer has not acknowledged:
	 * the unacknowledged outstream is sent from here after the rebuild. */
	uint32_t snd_una;
	/* RCV.NXT: the peer's sequence number just past the last stable byte we
	 * received. The receive queue is refilled with the inq_len unread bytes
	 * that end here, so the first byte not consumed is rcv_nxt - inq_len. */
	uint32_t rcv_nxt;
	uint16_t mss;
	/* Window scale shifts (RFC 7323 2.2): snd_wscale is the peer's (it scales
	 * the windows the peer advertises), rcv_wscale ours. */
	uint8_t snd_wscale;
	uint8_t rcv_wscale;
	uint8_t sack_ok;
	uint8_t timestamps;
	/* Next TSval we send; must not be behind the last one the peer saw, or PAWS
	 * (RFC 7323 5) drops our segments. */
	uint32_t ts_val;
	/* Peer's last advertised window in bytes (already scaled). */
	uint32_t peer_window;
	/* Window we last advertised, in bytes. */
	uint32_t our_window;
};

/* The step that failed, for error reports. */
enum ftcp_repair_step {
	FTCP_REPAIR_SOCKET = 1,
	FTCP_REPAIR_ON,
	FTCP_REPAIR_RECV_SEQ,
	FTCP_REPAIR_SEND_SEQ,
	FTCP_REPAIR_BIND,
	FTCP_REPAIR_CONNECT,
	FTCP_REPAIR_OPTIONS,
	FTCP_REPAIR_TIMESTAMP,
	FTCP_REPAIR_RECV_QUEUE,
	FTCP_REPAIR_WINDOW,
	FTCP_REPAIR_OFF,
};

/* Builds the connection. `inq` (may be NULL when `inq_len` is 0) is put into
 * the receive queue, as if just received: the next read returns it. Returns a
 * connected descriptor, out of repair mode, or -1 with errno set and *failed
 * naming the step. Needs CAP_NET_ADMIN. Sends nothing but a window probe. */
int ftcp_tcp_repair(const struct ftcp_tcp_state *st, const void *inq, size_t inq_len, enum ftcp_repair_step *failed);

/* The socket calls ftcp_tcp_repair makes. An LD_PRELOAD library that wraps
 * some of them (the NSW shim wraps send and close) passes its real ones, so
 * a rebuild never goes through its own wrappers. */
struct ftcp_repair_calls {
	int (*socket)(int, int, int);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*bind)(int, const struct sockaddr *, socklen_t);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	ssize_t (*send)(int, const void *, size_t, int);
	int (*close)(int);
};

/* ftcp_tcp_repair through `calls`: NULL means libc's; otherwise every member must be set. */
int ftcp_tcp_repair_with(const struct ftcp_tcp_state *st, const void *inq, size_t inq_len, enum ftcp_repair_step *failed,
			 const struct ftcp_repair_calls *calls);

/* Name of a step, for messages. */
const char *ftcp_repair_step_name(enum ftcp_repair_step step);

#endif
