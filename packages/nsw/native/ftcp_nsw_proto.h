/*
 * ftcp_nsw_proto.h: the shim protocol between the NSW shim (a C library
 * loaded with LD_PRELOAD into the server) and the NSW agent (TypeScript,
 * packages/nsw/src/protocol.ts mirrors this file). Defined once here; both
 * sides are tested against the same golden bytes in packages/nsw/test/golden.
 *
 * Transport: a unix SOCK_STREAM socket, one connection per logical stream (a
 * thread of a process, FT-TCP 3.4 numbers calls per stream). Every message is
 * a frame: an 8-byte header, then the body. All integers are little-endian.
 * Every offset below is ABI: changing one means a new FTCP_NSW_PROTO_VERSION.
 *
 * Messages shim -> agent: HELLO (first, once), CALL (record mode),
 * WAIT (record mode, output commit), PLAY (playback mode), DONE (playback:
 * what a replayed send or lock call did for real), PLAYED (playback: how
 * far the shim answered calls from its queue), ADOPT and ADOPTED (a
 * promoted replica rebuilding its replicated connections).
 * Messages agent -> shim: STABLE (answers WAIT), RESULT (answers PLAY, and
 * the DONE of a lock attempt that must wait for its turn), RECORDS (answers
 * a PLAY with FTCP_NSW_CALL_F_FETCH: the stream's next records), REBUILD
 * (answers ADOPT), ERROR (then the agent closes the connection, except for
 * an ERROR that answers ADOPT: that one refuses one rebuild and the stream
 * goes on).
 *
 * Version 2: replicated reads and writes of any length up to
 * FTCP_NSW_MAX_IO (RESULT of a RECV, DONE of a SEND), DONE, lock positions
 * (FTCP_NSW_LOCK_*), SPAWN.
 * Version 3: playback from a queue (RECORDS, PLAYED, FTCP_NSW_CALL_F_FETCH,
 * FTCP_NSW_CALL_F_SYNC); RECV and SEND records carry their connection's
 * key; a SELECT record carries the time select left in its timeout.
 */
#ifndef FTCP_NSW_PROTO_H
#define FTCP_NSW_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "repair/tcp_repair.h"

#define FTCP_NSW_PROTO_VERSION 3

/* Frame header (ABI). */
#define FTCP_NSW_HDR_SIZE 8
#define FTCP_NSW_HDR_OFF_VERSION 0 /* u8: FTCP_NSW_PROTO_VERSION */
#define FTCP_NSW_HDR_OFF_TYPE 1    /* u8: FTCP_NSW_MSG_* */
#define FTCP_NSW_HDR_OFF_FLAGS 2   /* u16: must be 0 */
#define FTCP_NSW_HDR_OFF_LEN 4     /* u32: body length */

/* Message types (ABI). Shim -> agent below 0x80, agent -> shim at 0x80 and above. */
#define FTCP_NSW_MSG_HELLO 0x01
#define FTCP_NSW_MSG_CALL 0x02
#define FTCP_NSW_MSG_WAIT 0x03
#define FTCP_NSW_MSG_PLAY 0x04
#define FTCP_NSW_MSG_ADOPT 0x05
#define FTCP_NSW_MSG_ADOPTED 0x06
#define FTCP_NSW_MSG_DONE 0x07
#define FTCP_NSW_MSG_PLAYED 0x08
#define FTCP_NSW_MSG_STABLE 0x81
#define FTCP_NSW_MSG_RESULT 0x82
#define FTCP_NSW_MSG_REBUILD 0x83
#define FTCP_NSW_MSG_RECORDS 0x84
#define FTCP_NSW_MSG_ERROR 0xff

/* Shim modes, as carried in HELLO (ABI). */
#define FTCP_NSW_MODE_OFF 0
#define FTCP_NSW_MODE_RECORD 1
#define FTCP_NSW_MODE_PLAYBACK 2

/* HELLO body (ABI): names the stream this connection speaks for. */
#define FTCP_NSW_HELLO_OFF_PID 0      /* u32: real pid, for logs only */
#define FTCP_NSW_HELLO_OFF_PPID 4     /* u32: real parent pid, for logs only */
#define FTCP_NSW_HELLO_OFF_MODE 8     /* u8: FTCP_NSW_MODE_* */
#define FTCP_NSW_HELLO_OFF_RESERVED 9 /* u8: must be 0 */
#define FTCP_NSW_HELLO_OFF_NAME_LEN 10 /* u16: 1..FTCP_NSW_MAX_NAME */
#define FTCP_NSW_HELLO_OFF_NAME 12    /* name bytes (logical stream name) */
#define FTCP_NSW_HELLO_FIXED 12
#define FTCP_NSW_MAX_NAME 255

/*
 * Call body (ABI), shared by CALL, PLAY, RESULT and DONE. A call is identified by
 * its kind and its arg (the clock id of clock_gettime, the length asked of
 * getrandom): a replica's PLAY must match the record in both, or the agent
 * reports a divergence. The part from
 * FTCP_NSW_CALL_OFF_KIND on is the record the stable buffer stores for
 * (stream, call number).
 */
#define FTCP_NSW_CALL_OFF_CALL_NO 0     /* u64: 1-based, contiguous per stream */
#define FTCP_NSW_CALL_OFF_KIND 8        /* u16: FTCP_NSW_KIND_* */
#define FTCP_NSW_CALL_OFF_FLAGS 10      /* u16: FTCP_NSW_CALL_F_* */
#define FTCP_NSW_CALL_OFF_ERRNO 12      /* i32: errno after the call, 0 if none */
#define FTCP_NSW_CALL_OFF_RESULT 16     /* i64: the call's return value */
#define FTCP_NSW_CALL_OFF_ARG 24        /* u64: the argument that selects what the call does */
#define FTCP_NSW_CALL_OFF_PAYLOAD_LEN 32 /* u32: <= ftcp_nsw_max_payload(type, kind), = body length - 36 */
#define FTCP_NSW_CALL_OFF_PAYLOAD 36
#define FTCP_NSW_CALL_FIXED 36
/* Largest payload of a record (CALL), and of every call body but the two below. */
#define FTCP_NSW_MAX_PAYLOAD 4096

/*
 * Replicated reads and writes (FT-TCP 3.4, 3.7). One call on a replicated
 * connection moves at most FTCP_NSW_MAX_IO bytes, in both modes: what the
 * kernel moves, up to that. The record holds the length (and, for a send,
 * the hash); the bytes travel only in playback, in the two bodies that may
 * carry up to FTCP_NSW_MAX_IO payload bytes: the RESULT of a RECV (the
 * client's bytes the primary read) and the DONE of a SEND (the bytes the
 * replica's send moved, exactly as many as the primary's).
 */
#define FTCP_NSW_MAX_IO (64u << 20)
#define FTCP_NSW_MAX_IO_BODY (FTCP_NSW_CALL_FIXED + FTCP_NSW_MAX_IO)

/* PLAY flag: the shim ran the call for real; the agent compares result, errno
 * and payload with the record and answers ERROR (divergence) if they differ
 * (FT-TCP 3.7, last category). */
#define FTCP_NSW_CALL_F_COMPARE 0x0001

/* RESULT flag: there is no record and there will be none (the primary
 * failed before this call): perform it for real and, from now on, record
 * this stream's calls on the same connection (going live, DESIGN "Failover"
 * step 3). The next CALL carries this call number. */
#define FTCP_NSW_CALL_F_LIVE 0x0002

/* DONE flag, LOCK only: the outcome of the non-blocking attempt that opens a
 * blocking lock call which the primary found contended; the agent answers
 * with a second RESULT once the call's grant position is due (FT-TCP 3.8). */
#define FTCP_NSW_CALL_F_TRY 0x0004

/* PLAY flag, CLOCK_GETTIME only: a clock read that may turn out to be only
 * the deadline of the timed wait after it (a deadline read: CPython's GIL
 * makes one per contended wait, as scheduling has it, and record mode does
 * not record them). The shim answers it from its queue when the stream's
 * next record is such a read, without consuming it: the thread's next call
 * does, or a timed wait gives it back to the next read. Otherwise the shim
 * reads the real clock, which only a deadline may. */
#define FTCP_NSW_CALL_F_TENTATIVE 0x0008

/* PLAY flag: the shim's queue holds no record of this call. The agent
 * answers with RECORDS that begin at this call (waiting for it as for any
 * PLAY), or with RESULT LIVE past the log, and compares nothing: the shim
 * checks the call against the record itself, as the agent would. */
#define FTCP_NSW_CALL_F_FETCH 0x0020

/* Flag of a record in RECORDS: the shim plays this call with the agent
 * (PLAY, RESULT and, for locks and sends, DONE, as without a queue): its
 * place in the primary's lock order, or a read whose client bytes are not
 * in the batch. */
#define FTCP_NSW_CALL_F_SYNC 0x0040

/* DONE flag, SEND only: the shim hashed the bytes and found the record's
 * hash, so the agent need not hash them again (FNV-1a is byte-serial: a
 * replica's bulk writes would cost the agent more than the rest of its
 * roll-forward). Without it the agent hashes and compares, as always. */
#define FTCP_NSW_CALL_F_CHECKED 0x0080

/*
 * DONE (ABI): a call body, shim -> agent, in playback, after the RESULT of
 * a call the shim then performed for real:
 *  - SEND: result is the primary's, payload the first `result` bytes the
 *    replica's call moved (the agent compares their hash with the record's
 *    and keeps them in the connection's send buffer). No answer unless they
 *    differ (ERROR, divergence).
 *  - LOCK: result and errno of the replica's real call, compared with the
 *    record (no answer unless they differ: ERROR); with FTCP_NSW_CALL_F_TRY,
 *    the attempt's outcome, answered by RESULT when the grant is due.
 * The call number is the RESULT's; kind and arg are the PLAY's.
 */

/*
 * LOCK record payload (ABI): where the call stands in the primary's order of
 * lock operations (FT-TCP 3.8). Positions count from 1 within a domain: the
 * lock operations of one process tree under one image (the processes forked
 * from it share the counter; an exec'd image starts a domain of its own).
 * Every lock call has an attempt position (the call itself, or the
 * non-blocking attempt that opens a blocking one); a blocking call whose
 * attempt was contended also has a grant position, taken when the kernel
 * granted it. A replica performs each at its position: after every lower
 * position of the domain was performed.
 */
#define FTCP_NSW_LOCK_OFF_DOMAIN 0 /* u64: FTCP_NSW_HASH of the image's root stream name (and mode, see the shim) */
#define FTCP_NSW_LOCK_OFF_TRY 8    /* u64: attempt position, >= 1 */
#define FTCP_NSW_LOCK_OFF_GRANT 16 /* u64: grant position, 0 when the attempt decided the call */
#define FTCP_NSW_LOCK_SIZE 24

/* WAIT and STABLE body (ABI): one u64 call number. */
#define FTCP_NSW_SEQ_OFF_CALL_NO 0
#define FTCP_NSW_SEQ_SIZE 8

/*
 * Playback from a queue. A replica's shim asks for records only when its
 * queue is empty (PLAY with FTCP_NSW_CALL_F_FETCH); the agent answers with
 * RECORDS: the stream's next records that it has, in order, as many as fit
 * FTCP_NSW_MAX_BATCH. The shim then answers the program's calls from the
 * queue, checking each against its record exactly as the agent checks a
 * PLAY (kind, arg, a set socket option's value, a replicated read's or
 * write's connection, and for FTCP_NSW_CALL_F_COMPARE calls result, errno
 * and payload); a call that does not match is sent as a PLAY, so the agent
 * reports the divergence. Sends still report their bytes in a DONE.
 *
 * RECORDS body (ABI), agent -> shim:
 */
#define FTCP_NSW_RECORDS_OFF_FIRST 0    /* u64: call number of the first record */
#define FTCP_NSW_RECORDS_OFF_COUNT 8    /* u32: >= 1 */
#define FTCP_NSW_RECORDS_OFF_RESERVED 12 /* u32: must be 0 */
#define FTCP_NSW_RECORDS_OFF_ENTRIES 16 /* count records, each the call body from the kind on
                                           (FTCP_NSW_REC_*), call numbers first, first + 1, ... */
#define FTCP_NSW_RECORDS_FIXED 16
/* Each entry: a record as the buffer keeps it (the call body from the kind
 * on), flags 0 or FTCP_NSW_CALL_F_SYNC. The payload of a RECV that is not
 * SYNC is its record's (the key) followed by the client's bytes it read. */
#define FTCP_NSW_REC_OFF_KIND 0
#define FTCP_NSW_REC_OFF_FLAGS 2
#define FTCP_NSW_REC_OFF_ERRNO 4
#define FTCP_NSW_REC_OFF_RESULT 8
#define FTCP_NSW_REC_OFF_ARG 16
#define FTCP_NSW_REC_OFF_PAYLOAD_LEN 24
#define FTCP_NSW_REC_OFF_PAYLOAD 28
#define FTCP_NSW_REC_FIXED 28
/* Largest RECORDS body: the shim's queue. */
#define FTCP_NSW_MAX_BATCH (1u << 20)

/*
 * PLAYED body (ABI), shim -> agent: how far the shim answered calls from
 * its queue. Sent when the queue runs dry, before the thread blocks in a
 * call the shim sees, and at exit (and, once exit began, at every call); a
 * PLAY or DONE of call n says as much of every call before n.
 */
#define FTCP_NSW_PLAYED_OFF_CONSUMED 0 /* u64: every call up to this one was answered */
#define FTCP_NSW_PLAYED_OFF_PEEKED 8   /* u64: 0, or consumed + 1: a clock read answered from that
                                          record, not consumed yet (a deadline may give it back) */
#define FTCP_NSW_PLAYED_SIZE 16

/* ERROR body (ABI): code and message, UTF-8, not NUL-terminated. */
#define FTCP_NSW_ERROR_OFF_CODE_LEN 0 /* u16 */
#define FTCP_NSW_ERROR_OFF_MSG_LEN 2  /* u16 */
#define FTCP_NSW_ERROR_OFF_TEXT 4     /* code bytes, then message bytes */

/* Largest frame either side sends, REBUILD and the I/O bodies excepted. */
#define FTCP_NSW_MAX_FRAME (FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_FIXED + FTCP_NSW_MAX_PAYLOAD)

/*
 * Promotion (DESIGN "Failover, in order", step 4). When a stream of a
 * playback process goes live, the shim rebuilds every replicated descriptor
 * of the process (a placeholder until then) as a real TCP socket in the
 * client's view, one at a time: ADOPT, the agent's REBUILD (or ERROR), then
 * ADOPTED with the outcome. The agent answers ADOPT only once every stream
 * of the process has consumed its records, so no replayed read takes client
 * bytes that also go into the rebuilt receive queue.
 *
 * ADOPT body (ABI), shim -> agent, 16 bytes:
 */
#define FTCP_NSW_ADOPT_OFF_FD 0       /* i32: the descriptor number (the primary's) */
#define FTCP_NSW_ADOPT_OFF_RESERVED 4 /* u32: must be 0 */
#define FTCP_NSW_ADOPT_OFF_KEY 8      /* u64: the connection key (FTCP_NSW_HASH of the peer sockaddr) */
#define FTCP_NSW_ADOPT_SIZE 16

/*
 * REBUILD body (ABI), agent -> shim: every field of struct ftcp_tcp_state
 * (repair/tcp_repair.h, which says what each means), then the two queues.
 * Addresses are the 4 bytes of an IPv4 address in network order (as in
 * s_addr); every other field is a little-endian integer in host order.
 */
#define FTCP_NSW_REBUILD_OFF_LOCAL_IP 0     /* 4 bytes, network order */
#define FTCP_NSW_REBUILD_OFF_PEER_IP 4      /* 4 bytes, network order */
#define FTCP_NSW_REBUILD_OFF_LOCAL_PORT 8   /* u16 */
#define FTCP_NSW_REBUILD_OFF_PEER_PORT 10   /* u16 */
#define FTCP_NSW_REBUILD_OFF_SND_UNA 12     /* u32 */
#define FTCP_NSW_REBUILD_OFF_RCV_NXT 16     /* u32 */
#define FTCP_NSW_REBUILD_OFF_MSS 20         /* u16 */
#define FTCP_NSW_REBUILD_OFF_SND_WSCALE 22  /* u8 */
#define FTCP_NSW_REBUILD_OFF_RCV_WSCALE 23  /* u8 */
#define FTCP_NSW_REBUILD_OFF_SACK_OK 24     /* u8: 0 or 1 */
#define FTCP_NSW_REBUILD_OFF_TIMESTAMPS 25  /* u8: 0 or 1 */
#define FTCP_NSW_REBUILD_OFF_RESERVED 26    /* u16: must be 0 */
#define FTCP_NSW_REBUILD_OFF_TS_VAL 28      /* u32 */
#define FTCP_NSW_REBUILD_OFF_PEER_WINDOW 32 /* u32, bytes */
#define FTCP_NSW_REBUILD_OFF_OUR_WINDOW 36  /* u32, bytes */
#define FTCP_NSW_REBUILD_OFF_INQ_LEN 40     /* u32: <= FTCP_NSW_MAX_REBUILD_QUEUE */
#define FTCP_NSW_REBUILD_OFF_OUTQ_LEN 44    /* u32: <= FTCP_NSW_MAX_REBUILD_QUEUE */
#define FTCP_NSW_REBUILD_OFF_QUEUES 48      /* inq bytes (the client's stable bytes the replica has not
                                               read: the rebuilt receive queue), then outq bytes (what the
                                               replica sent that the client has not acknowledged: written
                                               on the rebuilt socket at once) */
#define FTCP_NSW_REBUILD_FIXED 48
/* Each queue may be large (a slow reader, a big reply in flight); REBUILD is
 * a message whose body may exceed FTCP_NSW_MAX_FRAME (as may RESULT and DONE,
 * up to FTCP_NSW_MAX_IO_BODY). A reader checks
 * its header with ftcp_nsw_check_header_cap and FTCP_NSW_MAX_REBUILD_BODY. */
#define FTCP_NSW_MAX_REBUILD_QUEUE (64u << 20)
#define FTCP_NSW_MAX_REBUILD_BODY (FTCP_NSW_REBUILD_FIXED + 2 * FTCP_NSW_MAX_REBUILD_QUEUE)

/* ADOPTED body (ABI), shim -> agent: the outcome of one rebuild. */
#define FTCP_NSW_ADOPTED_OFF_FD 0        /* i32: the descriptor number, as in ADOPT */
#define FTCP_NSW_ADOPTED_OFF_NEW_FD 4    /* i32: the same number when rebuilt, -1 when not */
#define FTCP_NSW_ADOPTED_OFF_KEY 8       /* u64: the connection key, as in ADOPT */
#define FTCP_NSW_ADOPTED_OFF_ERRNO 16    /* i32: errno of the failed step, 0 when rebuilt */
#define FTCP_NSW_ADOPTED_OFF_STEP 20     /* u16: FTCP_NSW_ADOPT_STEP_* */
#define FTCP_NSW_ADOPTED_OFF_NAME_LEN 22 /* u16: <= FTCP_NSW_MAX_STEP_NAME */
#define FTCP_NSW_ADOPTED_OFF_NAME 24     /* the step's name, for people; empty when rebuilt */
#define FTCP_NSW_ADOPTED_FIXED 24
#define FTCP_NSW_MAX_STEP_NAME 64

/* Which step of an adoption failed (ABI). 1..99 are enum ftcp_repair_step. */
#define FTCP_NSW_ADOPT_STEP_NONE 0     /* rebuilt */
#define FTCP_NSW_ADOPT_STEP_AGENT 100  /* the agent answered ADOPT with ERROR */
#define FTCP_NSW_ADOPT_STEP_MEMORY 101 /* no memory for the REBUILD body */
#define FTCP_NSW_ADOPT_STEP_PLACE 102  /* putting the socket at the descriptor number, or its flags */
#define FTCP_NSW_ADOPT_STEP_EPOLL 103  /* registering it again in an epoll set */
#define FTCP_NSW_ADOPT_STEP_OUTQ 104   /* writing the unacknowledged outstream */
#define FTCP_NSW_ADOPT_STEP_OPTIONS 105 /* setting again the socket options the program set on the placeholder */
#define FTCP_NSW_ADOPT_STEP_SHUTDOWN 106 /* shutting down again what the program shut down on the placeholder */

/* Call kinds (ABI): what a record's result and payload mean. */
#define FTCP_NSW_KIND_TIME 1           /* result: time_t; payload: i64 copy when tloc given */
#define FTCP_NSW_KIND_GETTIMEOFDAY 2   /* payload: i64 sec, i64 usec */
#define FTCP_NSW_KIND_CLOCK_GETTIME 3  /* arg: clock id; payload: i64 sec, i64 nsec */
/* The arg of a CLOCK_GETTIME record with no payload that follows the thread's
 * clock read: that read, recorded by another thread's output commit before
 * its thread reached the timed wait it was the deadline of, was only that
 * deadline (no clock id is this large). A replica skips it, and the read
 * with it when the replica's own read was no deadline or was not made. */
#define FTCP_NSW_CLOCK_DEADLINE (1ULL << 40)
#define FTCP_NSW_KIND_GETRANDOM 4      /* arg: length asked; payload: the bytes returned */
#define FTCP_NSW_KIND_GETENTROPY 5     /* arg: length asked; payload: the bytes returned */
#define FTCP_NSW_KIND_GETPID 6         /* result: pid */
#define FTCP_NSW_KIND_GETPPID 7        /* result: pid */
#define FTCP_NSW_KIND_GETTID 8         /* result: tid */
#define FTCP_NSW_KIND_FORK 9           /* result: child pid in the parent */
#define FTCP_NSW_KIND_PTHREAD_CREATE 10 /* result: 0 or an error number; compared */
#define FTCP_NSW_KIND_READ_RANDOM 11   /* read(2) of /dev/urandom or /dev/random; arg: length asked; payload: bytes */
#define FTCP_NSW_KIND_POLL 12          /* poll and ppoll; arg: nfds; payload: u16 revents per pollfd */
#define FTCP_NSW_KIND_SELECT 13        /* select and pselect; arg: nfds, | FTCP_NSW_SELECT_TIMEOUT when select was
                                          given a timeout; payload: the struct timeval select left in it (16 bytes,
                                          when given), then, when the result is >= 0, the read, write, except sets,
                                          (nfds+7)/8 bytes each */
/* Linux's select writes the time it did not sleep into its timeout, and
 * programs read it (iperf3 3.12 runs its timers when it reads 0), so the
 * replica's select gives back the primary's. pselect leaves its own alone
 * (glibc passes the kernel a copy). */
#define FTCP_NSW_SELECT_TIMEOUT (1ULL << 32)
#define FTCP_NSW_KIND_EPOLL_WAIT 14    /* epoll_wait and epoll_pwait; arg: maxevents; payload: u32 events, i32 fd per event */
/* Replicated connections. A connection is named by its key: FTCP_NSW_HASH of
 * the peer sockaddr that ACCEPT recorded. */
#define FTCP_NSW_KIND_ACCEPT 15 /* accept(4) on the service's socket; arg: listening fd; result: new fd;
                                   payload: peer sockaddr */
#define FTCP_NSW_KIND_RECV 16   /* a read; arg: length asked; record payload: u64 key (the SSW logs the bytes);
                                   PLAY payload: u64 key; RESULT payload: the client's bytes */
#define FTCP_NSW_KIND_SEND 17   /* a write; arg: length asked; record payload: u64 key, u64 hash of the bytes
                                   sent; PLAY payload: u64 key; RESULT payload: the u64 hash; DONE payload:
                                   the replica's bytes */
/* A replica's read or write must be on the primary's connection: the record's key is the PLAY's. */
#define FTCP_NSW_CONN_KEY_SIZE 8
#define FTCP_NSW_KIND_SOCKNAME 19 /* getsockname (arg 0) or getpeername (arg 1) of a replicated connection;
                                     payload: the sockaddr */
#define FTCP_NSW_KIND_LOCK 18   /* fcntl lock commands and flock; arg: the fcntl command, or 0x10000 | flock op;
                                   payload: FTCP_NSW_LOCK_*; result and errno compared in playback (DONE) */
#define FTCP_NSW_KIND_SPAWN 20  /* posix_spawn and posix_spawnp (system and popen use them); result: the return
                                   value (0 or an error number), compared as success or failure; payload: i32
                                   child pid when 0. The child is a stream "<name>/s<k>" */
/* Socket-level calls on a replicated connection: in playback its descriptor is a
 * placeholder, so these are answered from the record like every other call. */
#define FTCP_NSW_KIND_SOCKOPT 21 /* setsockopt and getsockopt; arg: FTCP_NSW_SOCKOPT_ARG; set: payload the value
                                    (at most FTCP_NSW_SOCKOPT_CMP bytes), PLAY payload the replica's (compared);
                                    get: payload u32 option length, then the value */
#define FTCP_NSW_KIND_SHUTDOWN 22 /* shutdown; arg: how */
#define FTCP_NSW_KIND_IOCTL 23    /* FIONREAD, SIOCOUTQ, SIOCOUTQNSD; arg: the request; payload: the i32 answer */

/* The thread (or, at exit and _exit, the process) ends: its stream has no call after this. arg:
 * FTCP_NSW_END_PROCESS when the process ends (the thread that ends it records it; its other
 * threads' streams stop wherever they were), else 0. */
#define FTCP_NSW_KIND_END 29
#define FTCP_NSW_END_THREAD 0
#define FTCP_NSW_END_PROCESS 1

/* More of the first category (FT-TCP 3.7): what the process's CPU time and the host are. */
#define FTCP_NSW_KIND_CLOCK 24       /* clock(); result: clock_t */
#define FTCP_NSW_KIND_GETRUSAGE 25   /* getrusage; arg: who; payload: struct rusage */
#define FTCP_NSW_KIND_TIMES 26       /* times; result: clock_t; payload: struct tms when asked */
#define FTCP_NSW_KIND_UNAME 27       /* uname; payload: struct utsname */
#define FTCP_NSW_KIND_GETHOSTNAME 28 /* gethostname; arg: length asked; payload: the name as returned */

/* A SOCKOPT's arg: option name in bits 0..31, level in bits 32..47, 1 << 48 for getsockopt. */
#define FTCP_NSW_SOCKOPT_GET (1ULL << 48)
#define FTCP_NSW_SOCKOPT_ARG(level, name, get) \
  ((uint64_t)(uint32_t)(name) | ((uint64_t)((uint32_t)(level) & 0xffffu) << 32) | ((get) ? FTCP_NSW_SOCKOPT_GET : 0))
/* How much of a setsockopt value is recorded and compared. */
#define FTCP_NSW_SOCKOPT_CMP 64

/* Largest payload of a call body in a frame of this type: FTCP_NSW_MAX_IO for
 * the RESULT of a RECV and the DONE of a SEND, FTCP_NSW_MAX_PAYLOAD else. */
static inline uint32_t ftcp_nsw_max_payload(uint8_t type, uint16_t kind) {
  if (type == FTCP_NSW_MSG_RESULT && kind == FTCP_NSW_KIND_RECV) return FTCP_NSW_MAX_IO;
  if (type == FTCP_NSW_MSG_DONE && kind == FTCP_NSW_KIND_SEND) return FTCP_NSW_MAX_IO;
  return FTCP_NSW_MAX_PAYLOAD;
}

/* The largest payload of a record in RECORDS: a RECV's key and bytes must fit the batch. */
#define FTCP_NSW_MAX_BATCH_PAYLOAD (FTCP_NSW_MAX_BATCH - FTCP_NSW_RECORDS_FIXED - FTCP_NSW_REC_FIXED)

/*
 * The "short hash" of sent bytes (FT-TCP 3.4) a replica compares against:
 * 64-bit FNV-1a, fed in pieces (start with FTCP_NSW_HASH_INIT).
 */
#define FTCP_NSW_HASH_INIT 0xcbf29ce484222325ULL
static inline uint64_t ftcp_nsw_hash(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = (const unsigned char *)data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* Little-endian field access, byte by byte: no alignment or packing assumptions. */
static inline void ftcp_put_u16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}
static inline void ftcp_put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static inline void ftcp_put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint16_t ftcp_get_u16(const unsigned char *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t ftcp_get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static inline uint64_t ftcp_get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* One call as the shim sees it; payload points into a caller's buffer. */
struct ftcp_nsw_call {
  uint64_t call_no;
  uint16_t kind;
  uint16_t flags;
  int32_t err;
  int64_t result;
  uint64_t arg;
  uint32_t payload_len;
  const unsigned char *payload;
};

static inline void ftcp_nsw_put_header(unsigned char *buf, uint8_t type, uint32_t body_len) {
  buf[FTCP_NSW_HDR_OFF_VERSION] = FTCP_NSW_PROTO_VERSION;
  buf[FTCP_NSW_HDR_OFF_TYPE] = type;
  ftcp_put_u16(buf + FTCP_NSW_HDR_OFF_FLAGS, 0);
  ftcp_put_u32(buf + FTCP_NSW_HDR_OFF_LEN, body_len);
}

/* Encodes HELLO into buf; returns the frame length, or 0 if it does not fit or the name is bad. */
static inline size_t ftcp_nsw_encode_hello(unsigned char *buf, size_t cap, uint32_t pid, uint32_t ppid,
                                           uint8_t mode, const char *name, size_t name_len) {
  size_t total = FTCP_NSW_HDR_SIZE + FTCP_NSW_HELLO_FIXED + name_len;
  if (name_len == 0 || name_len > FTCP_NSW_MAX_NAME || total > cap) return 0;
  unsigned char *b = buf + FTCP_NSW_HDR_SIZE;
  ftcp_nsw_put_header(buf, FTCP_NSW_MSG_HELLO, (uint32_t)(total - FTCP_NSW_HDR_SIZE));
  ftcp_put_u32(b + FTCP_NSW_HELLO_OFF_PID, pid);
  ftcp_put_u32(b + FTCP_NSW_HELLO_OFF_PPID, ppid);
  b[FTCP_NSW_HELLO_OFF_MODE] = mode;
  b[FTCP_NSW_HELLO_OFF_RESERVED] = 0;
  ftcp_put_u16(b + FTCP_NSW_HELLO_OFF_NAME_LEN, (uint16_t)name_len);
  memcpy(b + FTCP_NSW_HELLO_OFF_NAME, name, name_len);
  return total;
}

/*
 * Encodes the header and fixed part of a CALL, PLAY, RESULT or DONE frame
 * whose payload (c->payload_len bytes) the caller sends next, from wherever
 * it is; returns FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_FIXED, or 0 if the payload
 * is over the limit or buf is too small. c->payload is not read.
 */
static inline size_t ftcp_nsw_encode_call_head(unsigned char *buf, size_t cap, uint8_t type, const struct ftcp_nsw_call *c) {
  if (c->payload_len > ftcp_nsw_max_payload(type, c->kind) || cap < FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_FIXED) return 0;
  unsigned char *b = buf + FTCP_NSW_HDR_SIZE;
  ftcp_nsw_put_header(buf, type, FTCP_NSW_CALL_FIXED + c->payload_len);
  ftcp_put_u64(b + FTCP_NSW_CALL_OFF_CALL_NO, c->call_no);
  ftcp_put_u16(b + FTCP_NSW_CALL_OFF_KIND, c->kind);
  ftcp_put_u16(b + FTCP_NSW_CALL_OFF_FLAGS, c->flags);
  ftcp_put_u32(b + FTCP_NSW_CALL_OFF_ERRNO, (uint32_t)c->err);
  ftcp_put_u64(b + FTCP_NSW_CALL_OFF_RESULT, (uint64_t)c->result);
  ftcp_put_u64(b + FTCP_NSW_CALL_OFF_ARG, c->arg);
  ftcp_put_u32(b + FTCP_NSW_CALL_OFF_PAYLOAD_LEN, c->payload_len);
  return FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_FIXED;
}

/* Encodes a whole CALL, PLAY, RESULT or DONE frame into buf; returns its length, or 0 if it does not fit. */
static inline size_t ftcp_nsw_encode_call(unsigned char *buf, size_t cap, uint8_t type,
                                          const struct ftcp_nsw_call *c) {
  size_t total = FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_FIXED + c->payload_len;
  if (total > cap || !ftcp_nsw_encode_call_head(buf, cap, type, c)) return 0;
  if (c->payload_len > 0) memcpy(buf + FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_OFF_PAYLOAD, c->payload, c->payload_len);
  return total;
}

/* Encodes a WAIT or STABLE frame (always FTCP_NSW_HDR_SIZE + 8 bytes). */
static inline size_t ftcp_nsw_encode_seq(unsigned char *buf, size_t cap, uint8_t type, uint64_t call_no) {
  if (cap < FTCP_NSW_HDR_SIZE + FTCP_NSW_SEQ_SIZE) return 0;
  ftcp_nsw_put_header(buf, type, FTCP_NSW_SEQ_SIZE);
  ftcp_put_u64(buf + FTCP_NSW_HDR_SIZE + FTCP_NSW_SEQ_OFF_CALL_NO, call_no);
  return FTCP_NSW_HDR_SIZE + FTCP_NSW_SEQ_SIZE;
}

/*
 * Checks a frame header: returns the body length, or -1 if the version or
 * flags are wrong or the body would exceed max_body bytes.
 */
static inline long ftcp_nsw_check_header_cap(const unsigned char *hdr, size_t max_body) {
  if (hdr[FTCP_NSW_HDR_OFF_VERSION] != FTCP_NSW_PROTO_VERSION) return -1;
  if (ftcp_get_u16(hdr + FTCP_NSW_HDR_OFF_FLAGS) != 0) return -1;
  uint32_t len = ftcp_get_u32(hdr + FTCP_NSW_HDR_OFF_LEN);
  if (len > max_body) return -1;
  return (long)len;
}

/* The same with the limit of the frame's type: FTCP_NSW_MAX_IO_BODY for RESULT
 * and DONE (whose kind then decides, see ftcp_nsw_max_payload),
 * FTCP_NSW_MAX_FRAME for every other type but REBUILD, which the shim reads
 * with ftcp_nsw_check_header_cap and FTCP_NSW_MAX_REBUILD_BODY. */
static inline long ftcp_nsw_check_header(const unsigned char *hdr) {
  uint8_t t = hdr[FTCP_NSW_HDR_OFF_TYPE];
  if (t == FTCP_NSW_MSG_RECORDS) return ftcp_nsw_check_header_cap(hdr, FTCP_NSW_MAX_BATCH);
  return ftcp_nsw_check_header_cap(hdr, t == FTCP_NSW_MSG_RESULT || t == FTCP_NSW_MSG_DONE ? FTCP_NSW_MAX_IO_BODY
                                                                                         : FTCP_NSW_MAX_FRAME - FTCP_NSW_HDR_SIZE);
}

/* Encodes a PLAYED frame (always FTCP_NSW_HDR_SIZE + FTCP_NSW_PLAYED_SIZE bytes); 0 if cap is too small. */
static inline size_t ftcp_nsw_encode_played(unsigned char *buf, size_t cap, uint64_t consumed, uint64_t peeked) {
  if (cap < FTCP_NSW_HDR_SIZE + FTCP_NSW_PLAYED_SIZE) return 0;
  ftcp_nsw_put_header(buf, FTCP_NSW_MSG_PLAYED, FTCP_NSW_PLAYED_SIZE);
  ftcp_put_u64(buf + FTCP_NSW_HDR_SIZE + FTCP_NSW_PLAYED_OFF_CONSUMED, consumed);
  ftcp_put_u64(buf + FTCP_NSW_HDR_SIZE + FTCP_NSW_PLAYED_OFF_PEEKED, peeked);
  return FTCP_NSW_HDR_SIZE + FTCP_NSW_PLAYED_SIZE;
}

/*
 * Decodes the record at b, of at most avail bytes, of a RECORDS body into c
 * (call number not set; c->payload points into b). Returns its size, or 0
 * if it is cut short, its payload is over FTCP_NSW_MAX_BATCH_PAYLOAD, or its
 * flags are other than FTCP_NSW_CALL_F_SYNC.
 */
static inline size_t ftcp_nsw_decode_record(const unsigned char *b, size_t avail, struct ftcp_nsw_call *c) {
  if (avail < FTCP_NSW_REC_FIXED) return 0;
  uint32_t plen = ftcp_get_u32(b + FTCP_NSW_REC_OFF_PAYLOAD_LEN);
  if (plen > FTCP_NSW_MAX_BATCH_PAYLOAD || plen > avail - FTCP_NSW_REC_FIXED) return 0;
  c->kind = ftcp_get_u16(b + FTCP_NSW_REC_OFF_KIND);
  c->flags = ftcp_get_u16(b + FTCP_NSW_REC_OFF_FLAGS);
  if (c->flags & ~FTCP_NSW_CALL_F_SYNC) return 0;
  c->err = (int32_t)ftcp_get_u32(b + FTCP_NSW_REC_OFF_ERRNO);
  c->result = (int64_t)ftcp_get_u64(b + FTCP_NSW_REC_OFF_RESULT);
  c->arg = ftcp_get_u64(b + FTCP_NSW_REC_OFF_ARG);
  c->payload_len = plen;
  c->payload = b + FTCP_NSW_REC_OFF_PAYLOAD;
  return FTCP_NSW_REC_FIXED + plen;
}

/* Encodes an ADOPT frame (always FTCP_NSW_HDR_SIZE + FTCP_NSW_ADOPT_SIZE bytes); 0 if cap is too small. */
static inline size_t ftcp_nsw_encode_adopt(unsigned char *buf, size_t cap, int32_t fd, uint64_t key) {
  if (cap < FTCP_NSW_HDR_SIZE + FTCP_NSW_ADOPT_SIZE) return 0;
  unsigned char *b = buf + FTCP_NSW_HDR_SIZE;
  ftcp_nsw_put_header(buf, FTCP_NSW_MSG_ADOPT, FTCP_NSW_ADOPT_SIZE);
  ftcp_put_u32(b + FTCP_NSW_ADOPT_OFF_FD, (uint32_t)fd);
  ftcp_put_u32(b + FTCP_NSW_ADOPT_OFF_RESERVED, 0);
  ftcp_put_u64(b + FTCP_NSW_ADOPT_OFF_KEY, key);
  return FTCP_NSW_HDR_SIZE + FTCP_NSW_ADOPT_SIZE;
}

/* The outcome of one adoption, as ADOPTED carries it. */
struct ftcp_nsw_adopted {
  int32_t fd;
  int32_t new_fd;
  uint64_t key;
  int32_t err;
  uint16_t step;
  const char *step_name; /* may be NULL when step is FTCP_NSW_ADOPT_STEP_NONE */
};

/* Encodes an ADOPTED frame; returns its length, or 0 if it does not fit (a longer step name is cut). */
static inline size_t ftcp_nsw_encode_adopted(unsigned char *buf, size_t cap, const struct ftcp_nsw_adopted *a) {
  size_t name_len = a->step_name ? strlen(a->step_name) : 0;
  if (name_len > FTCP_NSW_MAX_STEP_NAME) name_len = FTCP_NSW_MAX_STEP_NAME;
  size_t total = FTCP_NSW_HDR_SIZE + FTCP_NSW_ADOPTED_FIXED + name_len;
  if (total > cap) return 0;
  unsigned char *b = buf + FTCP_NSW_HDR_SIZE;
  ftcp_nsw_put_header(buf, FTCP_NSW_MSG_ADOPTED, (uint32_t)(total - FTCP_NSW_HDR_SIZE));
  ftcp_put_u32(b + FTCP_NSW_ADOPTED_OFF_FD, (uint32_t)a->fd);
  ftcp_put_u32(b + FTCP_NSW_ADOPTED_OFF_NEW_FD, (uint32_t)a->new_fd);
  ftcp_put_u64(b + FTCP_NSW_ADOPTED_OFF_KEY, a->key);
  ftcp_put_u32(b + FTCP_NSW_ADOPTED_OFF_ERRNO, (uint32_t)a->err);
  ftcp_put_u16(b + FTCP_NSW_ADOPTED_OFF_STEP, a->step);
  ftcp_put_u16(b + FTCP_NSW_ADOPTED_OFF_NAME_LEN, (uint16_t)name_len);
  if (name_len) memcpy(b + FTCP_NSW_ADOPTED_OFF_NAME, a->step_name, name_len);
  return total;
}

/* A decoded REBUILD: the state, and the two queues pointing into the body. */
struct ftcp_nsw_rebuild {
  struct ftcp_tcp_state state;
  uint32_t inq_len;
  uint32_t outq_len;
  const unsigned char *inq;
  const unsigned char *outq;
};

/* Decodes a REBUILD body of body_len bytes; returns 0, or -1 if the lengths or reserved fields are wrong. */
static inline int ftcp_nsw_decode_rebuild(const unsigned char *b, size_t body_len, struct ftcp_nsw_rebuild *r) {
  if (body_len < FTCP_NSW_REBUILD_FIXED) return -1;
  uint32_t inq_len = ftcp_get_u32(b + FTCP_NSW_REBUILD_OFF_INQ_LEN);
  uint32_t outq_len = ftcp_get_u32(b + FTCP_NSW_REBUILD_OFF_OUTQ_LEN);
  if (inq_len > FTCP_NSW_MAX_REBUILD_QUEUE || outq_len > FTCP_NSW_MAX_REBUILD_QUEUE) return -1;
  if ((size_t)FTCP_NSW_REBUILD_FIXED + inq_len + outq_len != body_len) return -1;
  if (ftcp_get_u16(b + FTCP_NSW_REBUILD_OFF_RESERVED) != 0) return -1;
  if (b[FTCP_NSW_REBUILD_OFF_SACK_OK] > 1 || b[FTCP_NSW_REBUILD_OFF_TIMESTAMPS] > 1) return -1;
  memset(r, 0, sizeof *r);
  memcpy(&r->state.local_ip, b + FTCP_NSW_REBUILD_OFF_LOCAL_IP, 4);
  memcpy(&r->state.peer_ip, b + FTCP_NSW_REBUILD_OFF_PEER_IP, 4);
  r->state.local_port = ftcp_get_u16(b + FTCP_NSW_REBUILD_OFF_LOCAL_PORT);
  r->state.peer_port = ftcp_get_u16(b + FTCP_NSW_REBUILD_OFF_PEER_PORT);
  r->state.snd_una = ftcp_get_u32(b + FTCP_NSW_REBUILD_OFF_SND_UNA);
  r->state.rcv_nxt = ftcp_get_u32(b + FTCP_NSW_REBUILD_OFF_RCV_NXT);
  r->state.mss = ftcp_get_u16(b + FTCP_NSW_REBUILD_OFF_MSS);
  r->state.snd_wscale = b[FTCP_NSW_REBUILD_OFF_SND_WSCALE];
  r->state.rcv_wscale = b[FTCP_NSW_REBUILD_OFF_RCV_WSCALE];
  r->state.sack_ok = b[FTCP_NSW_REBUILD_OFF_SACK_OK];
  r->state.timestamps = b[FTCP_NSW_REBUILD_OFF_TIMESTAMPS];
  r->state.ts_val = ftcp_get_u32(b + FTCP_NSW_REBUILD_OFF_TS_VAL);
  r->state.peer_window = ftcp_get_u32(b + FTCP_NSW_REBUILD_OFF_PEER_WINDOW);
  r->state.our_window = ftcp_get_u32(b + FTCP_NSW_REBUILD_OFF_OUR_WINDOW);
  r->inq_len = inq_len;
  r->outq_len = outq_len;
  r->inq = b + FTCP_NSW_REBUILD_OFF_QUEUES;
  r->outq = r->inq + inq_len;
  return 0;
}

/*
 * Decodes the fixed part of a call body of body_len bytes in a frame of this
 * type (b holds at least FTCP_NSW_CALL_FIXED bytes; the payload, if any,
 * follows at b + FTCP_NSW_CALL_OFF_PAYLOAD and c->payload points there).
 * Returns 0, or -1 if the lengths disagree or the payload is over the limit
 * of its type and kind.
 */
static inline int ftcp_nsw_decode_call(uint8_t type, const unsigned char *b, size_t body_len, struct ftcp_nsw_call *c) {
  if (body_len < FTCP_NSW_CALL_FIXED) return -1;
  uint32_t plen = ftcp_get_u32(b + FTCP_NSW_CALL_OFF_PAYLOAD_LEN);
  c->kind = ftcp_get_u16(b + FTCP_NSW_CALL_OFF_KIND);
  if (plen > ftcp_nsw_max_payload(type, c->kind) || plen != body_len - FTCP_NSW_CALL_FIXED) return -1;
  c->call_no = ftcp_get_u64(b + FTCP_NSW_CALL_OFF_CALL_NO);
  c->flags = ftcp_get_u16(b + FTCP_NSW_CALL_OFF_FLAGS);
  c->err = (int32_t)ftcp_get_u32(b + FTCP_NSW_CALL_OFF_ERRNO);
  c->result = (int64_t)ftcp_get_u64(b + FTCP_NSW_CALL_OFF_RESULT);
  c->arg = ftcp_get_u64(b + FTCP_NSW_CALL_OFF_ARG);
  c->payload_len = plen;
  c->payload = b + FTCP_NSW_CALL_OFF_PAYLOAD;
  return 0;
}

#endif /* FTCP_NSW_PROTO_H */
