/*
 * ftcp_nsw.c: the north-side wrap's shim (FT-TCP 3.4, 3.7, 3.8; HotSwap's
 * "shim library that redefines system calls"). Loaded with LD_PRELOAD into
 * an unmodified server; records the results of the calls that make the
 * server nondeterministic (record mode, the primary) or returns the
 * primary's results to a replica (playback mode). Talks to the NSW agent
 * over a unix socket in the format of ftcp_nsw_proto.h.
 *
 * Rules of this file:
 *  1. No malloc and no stdio on the hot path. Frames are built in stack
 *     buffers or, for records, in the thread's coalescing buffer; replicated
 *     bytes go between the program's buffers and the channel directly;
 *     diagnostics are written with the real write(2). The allocations are
 *     in pthread_create, which allocates a stack anyway, in spawning a
 *     child (posix_spawn's environment, popen's FILE), and the body of a
 *     REBUILD (promotion, once per connection; its queues may be tens of
 *     megabytes). A stream's playback queue is mapped (mmap) once, when the
 *     stream is named.
 *  2. errno is preserved: after a wrapped call errno is what the real call
 *     (record) or the primary's call (playback) left, and the shim's own
 *     I/O never leaks into it.
 *  3. Every real call goes through a real_* pointer resolved once with
 *     dlsym(RTLD_NEXT) and checked: a missing symbol is fatal at load time,
 *     never a crash later.
 *  4. A per-thread guard against re-entry: while the shim works for one
 *     call, any wrapped call it makes reaches the real function directly.
 *  5. One pattern for every wrapped call: nsw_begin, then the real call
 *     and nsw_record (record) or nsw_play (playback, with a DONE after it
 *     for the calls whose real outcome the agent checks afterwards: sends
 *     and locks), then nsw_end. Calls wrapped only as flush points (sleeps,
 *     exec, _exit) send the coalesced records and call the real function.
 *  6. Nothing fails silently (DESIGN invariant 5): a lost agent or a
 *     divergence writes one line to stderr and ends the process with
 *     FTCP_NSW_EXIT_FATAL or FTCP_NSW_EXIT_DIVERGED.
 *
 * Environment: FTCP_NSW_MODE = off | passthrough (default) | record |
 * playback; FTCP_NSW_SOCKET = the agent's socket path; FTCP_NSW_NAME = the
 * logical name of this process (default "p"); FTCP_NSW_PORT = the service's
 * TCP port (connections accepted from it are replicated). Threads and
 * children are named from the name: "<name>/t<k>" is the k-th thread a
 * stream created, "<name>/f<k>" the child of its k-th fork, "<name>/s<k>"
 * the k-th child it spawned (posix_spawn, system, popen, vfork + exec),
 * "<name>/e" an image it execs (DESIGN "Nondeterminism the NSW handles"),
 * so a replica's streams have the primary's names whatever the scheduling.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/sendfile.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/utsname.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "ftcp_nsw_proto.h"

extern char **environ;

#define NSW_EXPORT __attribute__((visibility("default")))
#define NSW_LIKELY(x) __builtin_expect(!!(x), 1)
#define NSW_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Exit codes of a process the shim has to stop (documented in README.md). */
#define FTCP_NSW_EXIT_DIVERGED 86
#define FTCP_NSW_EXIT_FATAL 87

/* The payloads below are the native structs; the record format says i64 pairs. */
_Static_assert(sizeof(struct timespec) == 16, "timespec is two i64 on this ABI");
_Static_assert(sizeof(struct timeval) == 16, "timeval is two i64 on this ABI");
_Static_assert(sizeof(time_t) == 8, "time_t is i64 on this ABI");

/* ---- real functions, resolved once (rule 3) ---------------------------- */

/* The real _exit, for the shim's own ends too: the wrapper would flush, and a dying shim must not. */
static void (*real__exit)(int) __attribute__((noreturn));
static time_t (*real_time)(time_t *);
static int (*real_gettimeofday)(struct timeval *, void *);
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static clock_t (*real_clock)(void);
static int (*real_getrusage)(int, struct rusage *);
static clock_t (*real_times)(struct tms *);
static int (*real_uname)(struct utsname *);
static int (*real_gethostname)(char *, size_t);
static ssize_t (*real_getrandom)(void *, size_t, unsigned int);
static int (*real_getentropy)(void *, size_t);
static pid_t (*real_getpid)(void);
static pid_t (*real_getppid)(void);
static pid_t (*real_gettid)(void);
static long (*real_syscall)(long, ...);
static pid_t (*real_fork)(void);
static int (*real_pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static pid_t (*real_waitpid)(pid_t, int *, int);
static pid_t (*real_wait)(int *);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static ssize_t (*real_read)(int, void *, size_t);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static int (*real_ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
static int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_getsockname)(int, struct sockaddr *, socklen_t *);
static int (*real_getpeername)(int, struct sockaddr *, socklen_t *);
static int (*real_socketpair)(int, int, int, int[2]);
static int (*real_dup3)(int, int, int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);
static ssize_t (*real_readv)(int, const struct iovec *, int);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_sendfile)(int, int, off_t *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static off_t (*real_lseek)(int, off_t, int);
static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);
static int (*real_epoll_wait)(int, struct epoll_event *, int, int);
static int (*real_epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
static int (*real_pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
/* Also the shim's own channel to the agent and its diagnostics. */
static int (*real_socket)(int, int, int);
static int (*real_connect)(int, const struct sockaddr *, socklen_t);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_close)(int);
static int (*real_fcntl)(int, int, ...);
static int (*real_flock)(int, int);
/* Wrapped for replicated connections; the promotion's rebuild uses them too. */
static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
static int (*real_getsockopt)(int, int, int, void *, socklen_t *);
static int (*real_shutdown)(int, int);
static int (*real_ioctl)(int, unsigned long, ...);
/* Only the promotion's rebuild uses this; not wrapped. */
static int (*real_bind)(int, const struct sockaddr *, socklen_t);
/* Flush points only: coalesced records go out before these block or end the image. */
static int (*real_nanosleep)(const struct timespec *, struct timespec *);
static int (*real_clock_nanosleep)(clockid_t, int, const struct timespec *, struct timespec *);
static unsigned (*real_sleep)(unsigned);
static int (*real_usleep)(useconds_t);
static int (*real_pthread_join)(pthread_t, void **);
/* Timed waits: a clock read right before one was only its deadline. */
static int (*real_pthread_cond_timedwait)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
static int (*real_pthread_cond_clockwait)(pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *);
static int (*real_sem_timedwait)(sem_t *, const struct timespec *);
static int (*real_sem_clockwait)(sem_t *, clockid_t, const struct timespec *);
static int (*real_sem_wait)(sem_t *);
static int (*real_sem_trywait)(sem_t *);
static int (*real_pthread_mutex_timedlock)(pthread_mutex_t *, const struct timespec *);
static int (*real_execve)(const char *, char *const[], char *const[]);
static int (*real_execvpe)(const char *, char *const[], char *const[]);
static int (*real_fexecve)(int, char *const[], char *const[]);
static void (*real__Exit)(int) __attribute__((noreturn));
/* Children started without fork: named by spawn order. */
typedef int (*nsw_spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *, char *const[],
                            char *const[]);
static nsw_spawn_fn real_posix_spawn, real_posix_spawnp;
static int (*real_system)(const char *);
static FILE *(*real_popen)(const char *, const char *);
static int (*real_pclose)(FILE *);
/* tcp_repair.c's calls, all real: send and close are wrapped in this very library. */
static struct ftcp_repair_calls nsw_repair_real;

/* ---- process-wide configuration, fixed at load ------------------------- */

static int nsw_mode = FTCP_NSW_MODE_OFF;
static int nsw_ready;
static struct sockaddr_un nsw_addr;
static socklen_t nsw_addr_len;
static char nsw_root_name[FTCP_NSW_MAX_NAME + 1] = "p";
static size_t nsw_root_len = 1;
/* Channel descriptors are moved at or above this number so the server's own
 * descriptor numbers are the same with and without the shim. */
static int nsw_fd_floor = 512;
/* FTCP_NSW_PORT: the service's TCP port; 0 means no connection is replicated. */
static uint16_t nsw_service_port;
/* The order of lock operations of this image's process tree (see "file locks"):
 * a page shared with every child forked from here, made at load. */
static struct nsw_order {
  pthread_mutex_t mu; /* process-shared, robust */
  uint64_t next;      /* last position taken */
} *nsw_order;
/* The domain of those positions: a hash of the image's root name (a replica gone live records in another). */
static uint64_t nsw_lock_domain;

/* ---- per-thread state: one logical stream per thread -------------------- */

/* What a thread's last clock read is while it may still be only a deadline (see "deadline reads"). */
#define NSW_CLOCK_NONE 0
#define NSW_CLOCK_KEPT 1   /* record: kept aside, not recorded yet */
#define NSW_CLOCK_PEEKED 2 /* playback: answered with the primary's record, not consumed yet */
#define NSW_CLOCK_REAL 3   /* playback: answered with the real clock (the next record was no such read) */
#define NSW_CLOCK_COMMITTED 4 /* record: recorded by another thread's output commit before the thread's next event */

struct nsw_thread;
static void nsw_clock_settle(struct nsw_thread *t);
static void nsw_clock_record_locked(struct nsw_thread *t);

/* Bytes of CALL frames a thread coalesces before one write carries them all. */
#define NSW_OUT_CAP 4096

struct nsw_thread {
  int fd;            /* channel to the agent; -1 until the first call */
  int busy;          /* re-entry guard (rule 4) */
  int named;         /* name is set; unnamed threads pass through */
  uint64_t call_no;  /* last call number of this stream */
  uint32_t forks;    /* fork() calls made by this stream */
  uint32_t threads;  /* pthread_create() calls made by this stream */
  uint64_t stable;   /* highest call number the agent said is stable */
  int live;          /* a replica's stream past the primary's last record: records now */
  int went_live;     /* set by nsw_play when the agent says LIVE; read once by the caller */
  uint32_t spawns;   /* posix_spawn() calls made by this stream (system and popen among them) */
  int nomatch;       /* set by nsw_play for a TENTATIVE read whose next record is no such read */
  /* The thread's last clock read while it may still be only a deadline (see "deadline reads"). */
  uint8_t clock_state;   /* NSW_CLOCK_* */
  clockid_t clock_id;
  int clock_result, clock_err;
  struct timespec clock_value;
  size_t name_len;
  char name[FTCP_NSW_MAX_NAME + 1];
  /* Coalesced CALL frames not sent yet (see "the channel to the agent"). Every
   * send on fd, by this thread or by another flushing it, holds out_lock. */
  int out_lock;
  uint32_t out_len;
  unsigned char out[NSW_OUT_CAP];
  /* Playback: the stream's next records (see "playback from a queue"): a RECORDS body, where its next
   * record starts, and that record's call number. */
  unsigned char *q; /* FTCP_NSW_MAX_BATCH bytes, mapped at the thread's first fetch */
  uint32_t q_len, q_pos;
  uint64_t q_next;
  /* Playback: the PLAYED noted last (in out, or sent): calls answered, and a clock read answered from its record. */
  uint64_t noted, noted_peek;
};

/* initial-exec: a preloaded library's TLS is static, and reaching it must
 * never allocate (the general-dynamic model may call malloc). */
static __thread struct nsw_thread nsw_self __attribute__((tls_model("initial-exec"))) = {.fd = -1};

/* ---- diagnostics without stdio ----------------------------------------- */

static size_t nsw_utoa(char *out, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

static void nsw_say(const char *a, size_t alen, const char *b, size_t blen) {
  char line[1536];
  size_t n = 0;
  static const char prefix[] = "ftcp-nsw: ";
  memcpy(line, prefix, sizeof prefix - 1);
  n += sizeof prefix - 1;
  if (alen > 400) alen = 400;
  memcpy(line + n, a, alen);
  n += alen;
  if (blen > sizeof line - n - 1) blen = sizeof line - n - 1;
  memcpy(line + n, b, blen);
  n += blen;
  line[n++] = '\n';
  if (real_write) (void)real_write(2, line, n);
}

static void nsw_die(int code, const char *what, const char *detail, size_t detail_len) __attribute__((noreturn));
static void nsw_die(int code, const char *what, const char *detail, size_t detail_len) {
  nsw_say(what, strlen(what), detail, detail_len);
  if (real__exit) real__exit(code);
  abort(); /* only before _exit was resolved, which is first */
}

static void nsw_fatal(const char *what) __attribute__((noreturn));
static void nsw_fatal(const char *what) {
  nsw_die(FTCP_NSW_EXIT_FATAL, what, nsw_self.name, nsw_self.name_len);
}

/* ---- descriptors ------------------------------------------------------- */

/*
 * What the shim knows about a descriptor: open on /dev/urandom or
 * /dev/random (reads are randomness, as HotSwap synchronizes "the
 * /dev/random device"), or a replicated connection (accepted from the
 * service's listening socket, FT-TCP 3.4). A copy made with dup, dup2, dup3
 * or F_DUPFD is what its original is. A byte per descriptor in static
 * tables, no allocation (pages never touched cost no memory); descriptors
 * at or above NSW_FDS are not tracked (see README).
 */
#define NSW_FDS (1 << 20)
#define NSW_FD_PLAIN 0
#define NSW_FD_RANDOM 1
#define NSW_FD_CONN 2
#define NSW_FD_CHANNEL 3 /* the shim's own connection to the agent */
static uint8_t nsw_fds[NSW_FDS];

static inline int nsw_fd_kind(int fd) {
  return fd >= 0 && fd < NSW_FDS ? __atomic_load_n(&nsw_fds[fd], __ATOMIC_RELAXED) : NSW_FD_PLAIN;
}

/* Above the highest descriptor ever tracked, every entry is plain: scans stop there. */
static int nsw_fd_end;

/* Sets what fd is; only while recording or playing back. */
static void nsw_track_fd(int fd, int kind) {
  if (fd < 0 || fd >= NSW_FDS) return;
  __atomic_store_n(&nsw_fds[fd], (uint8_t)kind, __ATOMIC_RELAXED);
  int end = __atomic_load_n(&nsw_fd_end, __ATOMIC_RELAXED);
  while (kind != NSW_FD_PLAIN && fd >= end && !__atomic_compare_exchange_n(&nsw_fd_end, &end, fd + 1, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

static inline int nsw_is_random_fd(int fd) { return nsw_fd_kind(fd) == NSW_FD_RANDOM; }

/*
 * A replica's replicated descriptor is a placeholder (a unix socket whose
 * peer is closed) from its playback accept until the process goes live and
 * adopts it as a rebuilt TCP socket, or the program closes it. Close is no
 * recorded call, so another thread may close a placeholder while the
 * process adopts: the adopter claims a descriptor (PLACEHOLDER -> ADOPTING)
 * before it touches the number, and close either unclaims it first
 * (PLACEHOLDER -> NONE: it is not rebuilt) or waits for that one rebuild.
 */
#define NSW_PH_NONE 0
#define NSW_PH_PLACEHOLDER 1
#define NSW_PH_ADOPTING 2
static uint8_t nsw_placeholder[NSW_FDS];
/* Held while a process adopts its placeholders: threads going live meanwhile wait. */
static pthread_mutex_t nsw_adopt_lock = PTHREAD_MUTEX_INITIALIZER;

static void nsw_placeholder_set(int fd, int state) {
  if (fd >= 0 && fd < NSW_FDS) __atomic_store_n(&nsw_placeholder[fd], (uint8_t)state, __ATOMIC_RELEASE);
}

/* Moves fd's placeholder state from `from` to `to`; true when it was `from`. */
static int nsw_placeholder_move(int fd, uint8_t from, uint8_t to) {
  return fd >= 0 && fd < NSW_FDS && __atomic_compare_exchange_n(&nsw_placeholder[fd], &from, to, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* What identifies a replicated connection to the agent: a hash of its peer address. */
static uint64_t nsw_conn_keys[NSW_FDS];

/* newfd became a copy of oldfd: it is what oldfd is (randomness, or the same replicated connection, placeholder included). */
static void nsw_copy_fd(int oldfd, int newfd) {
  int kind = nsw_fd_kind(oldfd);
  if (kind == NSW_FD_CHANNEL || newfd < 0 || newfd >= NSW_FDS) return;
  if (kind == NSW_FD_CONN) {
    nsw_conn_keys[newfd] = nsw_conn_keys[oldfd];
    nsw_placeholder_set(newfd, __atomic_load_n(&nsw_placeholder[oldfd], __ATOMIC_ACQUIRE) == NSW_PH_PLACEHOLDER ? NSW_PH_PLACEHOLDER : NSW_PH_NONE);
  }
  nsw_track_fd(newfd, kind);
}

/* The program closes fd: a placeholder is no longer adopted; one being rebuilt is closed once it is. */
static void nsw_placeholder_close(int fd) {
  if (nsw_placeholder_move(fd, NSW_PH_PLACEHOLDER, NSW_PH_NONE)) return;
  while (fd >= 0 && fd < NSW_FDS && __atomic_load_n(&nsw_placeholder[fd], __ATOMIC_ACQUIRE) == NSW_PH_ADOPTING) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL); /* bounded: a rebuild ends within NSW_OUTQ_STALL_MS */
  }
}

/* ---- initialization ----------------------------------------------------- */

static void *nsw_resolve(const char *name) {
  void *p = dlsym(RTLD_NEXT, name);
  if (!p) nsw_die(FTCP_NSW_EXIT_FATAL, "cannot resolve the real ", name, strlen(name));
  return p;
}

/*
 * An image this process execs is a new stream that must not reuse the name
 * (and call numbers) of the one that called exec: it gets "<name>/e", passed
 * on through the environment, which exec keeps. Called at load and in a
 * forked child, while the process has one thread.
 */
/*
 * putenv with a buffer of our own, not setenv: replacing a variable that
 * exists allocates nothing, and this runs in our start-up, where the
 * server's allocator may be initializing with its lock held (jemalloc calls
 * syscall() and clock_gettime() then, which land here). Only an unset
 * FTCP_NSW_NAME makes glibc grow the environment.
 */
static char nsw_env_name[sizeof "FTCP_NSW_NAME=" + FTCP_NSW_MAX_NAME + 3];
/* The pid of this process (set at load and in a forked child): a vfork child, on its parent's memory, sees another. */
static pid_t nsw_pid;
/* The main thread's state (the thread that loaded the shim). */
static struct nsw_thread *nsw_main_self;

static void nsw_name_exec_image(const char *name, size_t len) {
  /* No length check here: a name too deep makes the exec'd image refuse to load, loudly. */
  static const char key[] = "FTCP_NSW_NAME=";
  memcpy(nsw_env_name, key, sizeof key - 1);
  memcpy(nsw_env_name + sizeof key - 1, name, len);
  memcpy(nsw_env_name + sizeof key - 1 + len, "/e", 3);
  putenv(nsw_env_name);
}

/* ---- one address layout in record and playback ---------------------------- */

/*
 * A replica must compute what its primary computed, and programs derive
 * values from addresses: OpenSSL mixes its DRBG's heap address and
 * pthread_self() into its nonce (a signature's DER length then differs),
 * Python orders sets of objects by id(). With ASLR every run has other
 * addresses. rr records and replays with ASLR off, and so does this shim:
 * before anything is recorded, a process whose personality lacks
 * ADDR_NO_RANDOMIZE sets it and execs its own image again (/proc/self/exe,
 * the same argv and environment). The pid stays, and nothing was recorded
 * or named yet (the shim passes every call through until then), so the
 * streams and their names are those of the image that runs.
 *
 * The initial stack also moves with the size of the environment, and
 * FTCP_NSW_MODE and FTCP_NSW_SOCKET differ between primary and replica:
 * FTCP_NSW_PAD fills those three entries up to NSW_ENV_BUDGET bytes on both,
 * so the stack starts at the same address when the rest of the environment
 * is the same. Children inherit both, so only the first image re-executes.
 */
#define NSW_ENV_BUDGET 512
static const char nsw_pad_key[] = "FTCP_NSW_PAD=";

/* Set by the start-up when this image must run again with the fixed layout: its constructor does it. */
static int nsw_relayout_pending;

/* Bytes the entries that must fill NSW_ENV_BUDGET take in env (strlen + 1 each); with_pad 0 leaves FTCP_NSW_PAD out. */
static size_t nsw_layout_env_bytes(char **env, int with_pad) {
  size_t n = 0;
  for (; env && *env; env++) {
    if (!strncmp(*env, "FTCP_NSW_MODE=", 14) || !strncmp(*env, "FTCP_NSW_SOCKET=", 16) ||
        (with_pad && !strncmp(*env, nsw_pad_key, sizeof nsw_pad_key - 1))) {
      n += strlen(*env) + 1;
    }
  }
  return n;
}

/* Whether this image already runs with the layout the other side has too. */
static int nsw_layout_fixed(void) {
  int p = personality(0xffffffff);
  return p != -1 && (p & ADDR_NO_RANDOMIZE) && nsw_layout_env_bytes(environ, 1) == NSW_ENV_BUDGET;
}

/* Runs this image again with ASLR off and the environment padded; returns only to die. */
static void __attribute__((noreturn)) nsw_relayout(char **argv) {
  if (getauxval(AT_SECURE)) nsw_die(FTCP_NSW_EXIT_FATAL, "cannot fix the address layout of a set-user-ID program", "", 0);
  int p = personality(0xffffffff);
  if (p == -1 || (!(p & ADDR_NO_RANDOMIZE) && personality((unsigned long)p | ADDR_NO_RANDOMIZE) == -1) ||
      !(personality(0xffffffff) & ADDR_NO_RANDOMIZE)) {
    nsw_die(FTCP_NSW_EXIT_FATAL, "cannot turn address randomization off (personality ADDR_NO_RANDOMIZE); ",
            "record and playback need the same address layout", 50);
  }
  static char pad[NSW_ENV_BUDGET];
  size_t base = nsw_layout_env_bytes(environ, 0), n = 0;
  if (base + sizeof nsw_pad_key > NSW_ENV_BUDGET) nsw_die(FTCP_NSW_EXIT_FATAL, "FTCP_NSW_SOCKET is too long to pad the environment", "", 0);
  memcpy(pad, nsw_pad_key, sizeof nsw_pad_key - 1);
  memset(pad + sizeof nsw_pad_key - 1, 'x', NSW_ENV_BUDGET - base - sizeof nsw_pad_key);
  pad[NSW_ENV_BUDGET - base - 1] = 0;
  while (environ && environ[n]) n++;
  char **env = malloc((n + 2) * sizeof *env);
  if (!env) nsw_die(FTCP_NSW_EXIT_FATAL, "no memory to fix the address layout", "", 0);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(environ[i], nsw_pad_key, sizeof nsw_pad_key - 1) != 0) env[k++] = environ[i];
  }
  env[k++] = pad;
  env[k] = NULL;
  real_execve("/proc/self/exe", argv, env);
  nsw_die(FTCP_NSW_EXIT_FATAL, "cannot exec /proc/self/exe again with the fixed address layout", "", 0);
}

static void nsw_init_impl(void) {
  /* Resolve write and _exit first so that failures below can be reported. */
  real_write = nsw_resolve("write");
  real__exit = nsw_resolve("_exit");
  real_time = nsw_resolve("time");
  real_gettimeofday = nsw_resolve("gettimeofday");
  real_clock_gettime = nsw_resolve("clock_gettime");
  real_clock = nsw_resolve("clock");
  real_getrusage = nsw_resolve("getrusage");
  real_times = nsw_resolve("times");
  real_uname = nsw_resolve("uname");
  real_gethostname = nsw_resolve("gethostname");
  real_getrandom = nsw_resolve("getrandom");
  real_getentropy = nsw_resolve("getentropy");
  real_getpid = nsw_resolve("getpid");
  real_getppid = nsw_resolve("getppid");
  real_gettid = nsw_resolve("gettid");
  real_syscall = nsw_resolve("syscall");
  real_fork = nsw_resolve("fork");
  real_pthread_create = nsw_resolve("pthread_create");
  real_waitpid = nsw_resolve("waitpid");
  real_wait = nsw_resolve("wait");
  real_open = nsw_resolve("open");
  real_open64 = nsw_resolve("open64");
  real_openat = nsw_resolve("openat");
  real_read = nsw_resolve("read");
  real_poll = nsw_resolve("poll");
  real_ppoll = nsw_resolve("ppoll");
  real_select = nsw_resolve("select");
  real_pselect = nsw_resolve("pselect");
  real_accept = nsw_resolve("accept");
  real_accept4 = nsw_resolve("accept4");
  real_getsockname = nsw_resolve("getsockname");
  real_getpeername = nsw_resolve("getpeername");
  real_socketpair = nsw_resolve("socketpair");
  real_dup3 = nsw_resolve("dup3");
  real_dup = nsw_resolve("dup");
  real_dup2 = nsw_resolve("dup2");
  real_recvfrom = nsw_resolve("recvfrom");
  real_recvmsg = nsw_resolve("recvmsg");
  real_readv = nsw_resolve("readv");
  real_sendto = nsw_resolve("sendto");
  real_sendmsg = nsw_resolve("sendmsg");
  real_writev = nsw_resolve("writev");
  real_sendfile = nsw_resolve("sendfile");
  real_pread = nsw_resolve("pread");
  real_lseek = nsw_resolve("lseek");
  real_epoll_ctl = nsw_resolve("epoll_ctl");
  real_epoll_wait = nsw_resolve("epoll_wait");
  real_epoll_pwait = nsw_resolve("epoll_pwait");
  real_socket = nsw_resolve("socket");
  real_connect = nsw_resolve("connect");
  real_send = nsw_resolve("send");
  real_recv = nsw_resolve("recv");
  real_close = nsw_resolve("close");
  real_fcntl = nsw_resolve("fcntl");
  real_flock = nsw_resolve("flock");
  real_setsockopt = nsw_resolve("setsockopt");
  real_getsockopt = nsw_resolve("getsockopt");
  real_shutdown = nsw_resolve("shutdown");
  real_ioctl = nsw_resolve("ioctl");
  real_bind = nsw_resolve("bind");
  real_nanosleep = nsw_resolve("nanosleep");
  real_clock_nanosleep = nsw_resolve("clock_nanosleep");
  real_sleep = nsw_resolve("sleep");
  real_usleep = nsw_resolve("usleep");
  real_pthread_join = nsw_resolve("pthread_join");
  real_pthread_cond_timedwait = nsw_resolve("pthread_cond_timedwait");
  real_pthread_cond_clockwait = nsw_resolve("pthread_cond_clockwait");
  real_sem_timedwait = nsw_resolve("sem_timedwait");
  real_sem_clockwait = nsw_resolve("sem_clockwait");
  real_sem_wait = nsw_resolve("sem_wait");
  real_sem_trywait = nsw_resolve("sem_trywait");
  real_pthread_mutex_timedlock = nsw_resolve("pthread_mutex_timedlock");
  real_execve = nsw_resolve("execve");
  real_execvpe = nsw_resolve("execvpe");
  real_fexecve = nsw_resolve("fexecve");
  real__Exit = nsw_resolve("_Exit");
  real_posix_spawn = nsw_resolve("posix_spawn");
  real_posix_spawnp = nsw_resolve("posix_spawnp");
  real_system = nsw_resolve("system");
  real_popen = nsw_resolve("popen");
  real_pclose = nsw_resolve("pclose");
  nsw_repair_real = (struct ftcp_repair_calls){.socket = real_socket, .setsockopt = real_setsockopt, .bind = real_bind,
                                               .connect = real_connect, .send = real_send, .close = real_close};

  const char *mode = getenv("FTCP_NSW_MODE");
  if (!mode || !*mode || !strcmp(mode, "off") || !strcmp(mode, "passthrough")) {
    nsw_mode = FTCP_NSW_MODE_OFF;
    return;
  }
  if (!strcmp(mode, "record")) nsw_mode = FTCP_NSW_MODE_RECORD;
  else if (!strcmp(mode, "playback")) nsw_mode = FTCP_NSW_MODE_PLAYBACK;
  else nsw_die(FTCP_NSW_EXIT_FATAL, "FTCP_NSW_MODE must be off, passthrough, record or playback, not ", mode, strlen(mode));

  const char *path = getenv("FTCP_NSW_SOCKET");
  if (!path || !*path || strlen(path) >= sizeof nsw_addr.sun_path) {
    nsw_die(FTCP_NSW_EXIT_FATAL, "FTCP_NSW_SOCKET must name the agent's socket (shorter than 108 bytes)", "", 0);
  }
  nsw_addr.sun_family = AF_UNIX;
  memcpy(nsw_addr.sun_path, path, strlen(path) + 1);
  nsw_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);

  const char *name = getenv("FTCP_NSW_NAME");
  if (name && *name) {
    size_t n = strlen(name);
    /* Leave room for a few levels of /f<k>, /t<k> and /e. */
    if (n > FTCP_NSW_MAX_NAME - 64) nsw_die(FTCP_NSW_EXIT_FATAL, "FTCP_NSW_NAME is too long: ", name, n);
    memcpy(nsw_root_name, name, n + 1);
    nsw_root_len = n;
  }

  const char *port = getenv("FTCP_NSW_PORT");
  if (port && *port) {
    char *end;
    unsigned long v = strtoul(port, &end, 10);
    if (*end || v == 0 || v > 65535) nsw_die(FTCP_NSW_EXIT_FATAL, "FTCP_NSW_PORT must be a TCP port, not ", port, strlen(port));
    nsw_service_port = (uint16_t)v;
  }

  if (!nsw_layout_fixed()) {
    /* Nothing is recorded, named or changed before the constructor runs this image again. */
    nsw_relayout_pending = 1;
    nsw_mode = FTCP_NSW_MODE_OFF;
    return;
  }

  nsw_name_exec_image(nsw_root_name, nsw_root_len);
  nsw_pid = real_getpid();
  nsw_main_self = &nsw_self;

  nsw_order = mmap(NULL, sizeof *nsw_order, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pthread_mutexattr_t ma;
  if (nsw_order == MAP_FAILED || pthread_mutexattr_init(&ma) != 0 || pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED) != 0 ||
      pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST) != 0 || pthread_mutex_init(&nsw_order->mu, &ma) != 0) {
    nsw_die(FTCP_NSW_EXIT_FATAL, "cannot set up the shared lock order", "", 0);
  }
  pthread_mutexattr_destroy(&ma);
  nsw_lock_domain = ftcp_nsw_hash(FTCP_NSW_HASH_INIT, nsw_mode == FTCP_NSW_MODE_RECORD ? "record:" : "live:", nsw_mode == FTCP_NSW_MODE_RECORD ? 7 : 5);
  nsw_lock_domain = ftcp_nsw_hash(nsw_lock_domain, nsw_root_name, nsw_root_len);

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= 64) {
    nsw_fd_floor = (int)(rl.rlim_cur * 3 / 4);
  }
  /* Stay below NSW_FDS so close() can recognise a channel and keep it. */
  if (nsw_fd_floor > NSW_FDS - NSW_FDS / 8) nsw_fd_floor = NSW_FDS - NSW_FDS / 8;
}

static pthread_once_t nsw_once = PTHREAD_ONCE_INIT;

/*
 * Our start-up calls into libc (getenv, setenv, getrlimit), and libc may call
 * the server's own allocator, which may call a wrapped function: jemalloc in
 * redis-server reads the clock. On this thread such a call must pass
 * through: marking the thread busy (the re-entry guard) makes it do so, and
 * returning here keeps it from waiting on the pthread_once it is inside.
 * The real_* pointers it then uses are resolved first thing in the init.
 */
static void nsw_init(void) {
  if (nsw_self.busy) return;
  nsw_self.busy = 1;
  pthread_once(&nsw_once, nsw_init_impl);
  nsw_self.busy = 0;
  __atomic_store_n(&nsw_ready, 1, __ATOMIC_RELEASE);
}

/* glibc gives constructors of the initial objects argc, argv and the environment. */
__attribute__((constructor)) static void nsw_ctor(int argc, char **argv, char **envp) {
  (void)argc;
  (void)envp;
  nsw_init();
  if (nsw_relayout_pending) nsw_relayout(argv);
}

/* Every wrapper starts with this: a call may arrive before our constructor ran. */
#define NSW_INIT()                                                                \
  do {                                                                            \
    if (NSW_UNLIKELY(!__atomic_load_n(&nsw_ready, __ATOMIC_ACQUIRE))) nsw_init(); \
  } while (0)

/* ---- the channel to the agent ------------------------------------------ */

/*
 * Record mode does not wait for the agent (FT-TCP 3.4: only output waits), so
 * a thread's CALL frames are coalesced in its buffer (nsw_self.out) and one
 * write carries many. They go out when the buffer is full; before the
 * thread blocks in a call the shim sees (readiness, accept, reads, waits,
 * locks, sleeps); before every other frame the thread sends on its channel
 * (WAIT above all); and, for every thread of the process, at an output
 * commit (so no output leaves while another thread's earlier records sit
 * here), at fork (this thread), exec and exit (after which records go out
 * one by one). Each thread with a channel is in nsw_threads so that another
 * thread can flush it; its out_lock orders the two.
 */
#define NSW_MAX_THREADS 1024
static struct nsw_thread *nsw_threads[NSW_MAX_THREADS];
static pthread_mutex_t nsw_threads_lock = PTHREAD_MUTEX_INITIALIZER;
/* Set at exit: from then on each record is sent at once (destructors may still record). */
static int nsw_unbuffered;

static inline void nsw_out_lock(struct nsw_thread *t) {
  while (__atomic_exchange_n(&t->out_lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
}

static inline void nsw_out_unlock(struct nsw_thread *t) { __atomic_store_n(&t->out_lock, 0, __ATOMIC_RELEASE); }

static void nsw_send_all(int fd, const unsigned char *buf, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = real_send(fd, buf + off, len - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) nsw_fatal("lost the agent while sending for stream ");
    off += (size_t)n;
  }
}

/* Sends t's coalesced records; t->out_lock is held. */
static void nsw_flush_locked(struct nsw_thread *t) {
  if (t->out_len == 0) return;
  nsw_send_all(t->fd, t->out, t->out_len);
  t->out_len = 0;
}

/* The owner's flush, outside the shim's own work (errno kept). */
static void __attribute__((noinline)) nsw_flush_self(void) {
  struct nsw_thread *t = &nsw_self;
  int saved = errno;
  if (t->clock_state) {
    /* A flush point after a clock read: the read was more than a deadline. */
    t->busy = 1;
    nsw_clock_settle(t);
    t->busy = 0;
  }
  nsw_out_lock(t);
  nsw_flush_locked(t);
  nsw_out_unlock(t);
  errno = saved;
}

/* Before a call that may block: this thread's coalesced records go out first. */
#define NSW_FLUSH()                                                                                \
  do {                                                                                             \
    if (NSW_UNLIKELY(nsw_self.out_len | nsw_self.clock_state) && !nsw_self.busy) nsw_flush_self(); \
  } while (0)

/* The same before a call that blocks unless it is REPLAYED: in playback a
 * replayed call is answered from records and does not block (and nsw_begin
 * settles a clock read). */
#define NSW_FLUSH_UNLESS(REPLAYED)                                                  \
  do {                                                                              \
    if (nsw_mode != FTCP_NSW_MODE_PLAYBACK || nsw_self.live || !(REPLAYED)) NSW_FLUSH(); \
  } while (0)

/*
 * Every thread's coalesced records go out (output commit, exec, exit). Not
 * in a child that vfork made: it runs on its parent's memory, so the
 * records stay where the parent flushes them, and its descriptors may be
 * closed already (CPython closes them before exec).
 */
static void nsw_flush_all(void) {
  if (nsw_mode == FTCP_NSW_MODE_OFF || real_getpid() != nsw_pid) return;
  int saved = errno;
  /* This thread's clock read counts. */
  if (nsw_self.clock_state && !nsw_self.busy) {
    nsw_self.busy = 1;
    nsw_clock_settle(&nsw_self);
    nsw_self.busy = 0;
  }
  pthread_mutex_lock(&nsw_threads_lock);
  for (int i = 0; i < NSW_MAX_THREADS; i++) {
    struct nsw_thread *t = nsw_threads[i];
    if (!t) continue;
    nsw_out_lock(t);
    /* What this output shows may depend on another thread's clock read too (see "deadline reads"). */
    if (t != &nsw_self && t->clock_state == NSW_CLOCK_KEPT) {
      nsw_clock_record_locked(t);
      t->clock_state = NSW_CLOCK_COMMITTED; /* a timed wait next says it was only a deadline */
    }
    nsw_flush_locked(t);
    nsw_out_unlock(t);
  }
  pthread_mutex_unlock(&nsw_threads_lock);
  errno = saved;
}

static void nsw_stream_end(uint64_t how);

/* The process ends: every thread's coalesced records go out, and any recorded after (a destructor's) at once. */
static void nsw_exiting(void) {
  if (nsw_mode == FTCP_NSW_MODE_OFF || real_getpid() != nsw_pid) return; /* a vfork child must not change its parent */
  static int ended;
  if (!__atomic_exchange_n(&ended, 1, __ATOMIC_ACQ_REL)) nsw_stream_end(FTCP_NSW_END_PROCESS);
  __atomic_store_n(&nsw_unbuffered, 1, __ATOMIC_RELEASE);
  nsw_flush_all();
}

/* exit() runs the destructors. */
__attribute__((destructor)) static void nsw_dtor(void) { nsw_exiting(); }

/* Adds (add 1) or removes this thread's buffer from nsw_threads. */
static void nsw_register(struct nsw_thread *t, int add) {
  pthread_mutex_lock(&nsw_threads_lock);
  for (int i = 0; i < NSW_MAX_THREADS; i++) {
    if (nsw_threads[i] == (add ? NULL : t)) {
      nsw_threads[i] = add ? t : NULL;
      break;
    }
  }
  pthread_mutex_unlock(&nsw_threads_lock);
  /* A thread past NSW_MAX_THREADS is not flushed by others: it still flushes itself. */
}

/* Sends one frame on t's channel after its coalesced records, so the agent sees them in order. */
static void nsw_send_frame(struct nsw_thread *t, const unsigned char *buf, size_t len) {
  nsw_out_lock(t);
  nsw_flush_locked(t);
  nsw_send_all(t->fd, buf, len);
  nsw_out_unlock(t);
}

static void nsw_recv_all(int fd, unsigned char *buf, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = real_recv(fd, buf + off, len - off, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) nsw_fatal("lost the agent while waiting for a reply for stream ");
    off += (size_t)n;
  }
}

/*
 * Sends a frame's head and then the first len bytes of the iovecs with as
 * few sendmsg calls as the kernel allows (one, usually): a replica's write
 * is a DONE of its bytes, and a syscall per piece would cost more than the
 * bytes. At most NSW_SEND_IOV pieces go in one call; the rest follow.
 */
#define NSW_SEND_IOV 64
static void nsw_send_head_iov(int fd, const unsigned char *head, size_t hlen, const struct iovec *iov, int n, size_t len) {
  struct iovec v[NSW_SEND_IOV + 1];
  int k = 0;
  v[k++] = (struct iovec){(void *)head, hlen};
  size_t left = len;
  for (int i = 0; i < n && left > 0 && k <= NSW_SEND_IOV; i++) {
    size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
    if (take) v[k++] = (struct iovec){iov[i].iov_base, take};
    left -= take;
  }
  size_t total = hlen + (len - left), sent = 0;
  struct msghdr m = {0};
  m.msg_iov = v;
  m.msg_iovlen = (size_t)k;
  while (sent < total) {
    ssize_t r = real_sendmsg(fd, &m, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) nsw_fatal("lost the agent while sending for stream ");
    sent += (size_t)r;
    /* A partial send: skip what went. */
    while (r > 0 && m.msg_iovlen > 0) {
      if ((size_t)r >= m.msg_iov[0].iov_len) {
        r -= (ssize_t)m.msg_iov[0].iov_len;
        m.msg_iov++;
        m.msg_iovlen--;
      } else {
        m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + r;
        m.msg_iov[0].iov_len -= (size_t)r;
        r = 0;
      }
    }
  }
  if (left == 0) return;
  /* More pieces than one call takes: the rest, piece by piece. */
  size_t skip = len - left;
  for (int i = 0; i < n && left > 0; i++) {
    size_t l = iov[i].iov_len;
    if (skip >= l) {
      skip -= l;
      continue;
    }
    size_t take = l - skip < left ? l - skip : left;
    nsw_send_all(fd, (const unsigned char *)iov[i].iov_base + skip, take);
    skip = 0;
    left -= take;
  }
}

/* Receives len bytes into the iovecs, in order (len <= their total). */
static void nsw_recv_iov(int fd, const struct iovec *iov, int n, size_t len) {
  for (int i = 0; i < n && len > 0; i++) {
    size_t take = iov[i].iov_len < len ? iov[i].iov_len : len;
    nsw_recv_all(fd, iov[i].iov_base, take);
    len -= take;
  }
}

/* Reads one frame into buf (FTCP_NSW_MAX_FRAME bytes); returns the body length. Only for frames that fit. */
static size_t nsw_recv_frame(int fd, unsigned char *buf) {
  nsw_recv_all(fd, buf, FTCP_NSW_HDR_SIZE);
  long len = ftcp_nsw_check_header(buf);
  if (len < 0 || len > FTCP_NSW_MAX_FRAME - FTCP_NSW_HDR_SIZE) nsw_fatal("the agent sent a bad frame header to stream ");
  nsw_recv_all(fd, buf + FTCP_NSW_HDR_SIZE, (size_t)len);
  return (size_t)len;
}

/* An ERROR from the agent ends the process: the replica cannot go on. */
static void nsw_agent_error(const unsigned char *body, size_t len) __attribute__((noreturn));
static void nsw_agent_error(const unsigned char *body, size_t len) {
  if (len < FTCP_NSW_ERROR_OFF_TEXT) nsw_fatal("the agent sent a short ERROR to stream ");
  size_t code_len = ftcp_get_u16(body + FTCP_NSW_ERROR_OFF_CODE_LEN);
  size_t msg_len = ftcp_get_u16(body + FTCP_NSW_ERROR_OFF_MSG_LEN);
  if (FTCP_NSW_ERROR_OFF_TEXT + code_len + msg_len != len) nsw_fatal("the agent sent a bad ERROR to stream ");
  const char *code = (const char *)body + FTCP_NSW_ERROR_OFF_TEXT;
  static const char div[] = "FTCP_ERR_DIVERGENCE";
  int diverged = code_len == sizeof div - 1 && !memcmp(code, div, code_len);
  char what[320];
  size_t n = code_len > 255 ? 255 : code_len;
  memcpy(what, code, n);
  what[n++] = ':';
  what[n++] = ' ';
  what[n] = 0;
  nsw_die(diverged ? FTCP_NSW_EXIT_DIVERGED : FTCP_NSW_EXIT_FATAL, what, code + code_len, msg_len);
}

static int nsw_channel(struct nsw_thread *t) {
  if (NSW_LIKELY(t->fd >= 0)) return t->fd;
  int fd = real_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) nsw_fatal("cannot create a socket to the agent for stream ");
  while (real_connect(fd, (const struct sockaddr *)&nsw_addr, nsw_addr_len) < 0) {
    if (errno != EINTR) nsw_fatal("cannot connect to the agent at FTCP_NSW_SOCKET for stream ");
  }
  int high = real_fcntl(fd, F_DUPFD_CLOEXEC, nsw_fd_floor);
  if (high >= 0) {
    real_close(fd);
    fd = high;
  }
  nsw_track_fd(fd, NSW_FD_CHANNEL);
  unsigned char buf[FTCP_NSW_HDR_SIZE + FTCP_NSW_HELLO_FIXED + FTCP_NSW_MAX_NAME];
  size_t n = ftcp_nsw_encode_hello(buf, sizeof buf, (uint32_t)real_getpid(), (uint32_t)real_getppid(), (uint8_t)nsw_mode,
                                   t->name, t->name_len);
  if (!n) nsw_fatal("cannot encode HELLO for stream ");
  t->fd = fd;
  t->out_len = 0;
  nsw_send_all(fd, buf, n);
  nsw_register(t, 1);
  return fd;
}

/* ---- stream names ------------------------------------------------------- */

/* dst = parent + "/" + tag + k; fatal when too long (names must match the primary's). */
static void nsw_child_name(char *dst, size_t *dst_len, const char *parent, size_t plen, char tag, uint32_t k) {
  char num[24];
  size_t nlen = nsw_utoa(num, k);
  if (plen + 2 + nlen > FTCP_NSW_MAX_NAME) nsw_fatal("stream name too deep below ");
  memmove(dst, parent, plen);
  dst[plen] = '/';
  dst[plen + 1] = tag;
  memcpy(dst + plen + 2, num, nlen);
  *dst_len = plen + 2 + nlen;
  dst[*dst_len] = 0;
}

static void nsw_name_thread(struct nsw_thread *t, const char *name, size_t len) {
  memcpy(t->name, name, len);
  t->name[len] = 0;
  t->name_len = len;
  t->named = 1;
  t->fd = -1;
  t->call_no = 0;
  t->forks = 0;
  t->threads = 0;
  t->spawns = 0;
  t->stable = 0;
  t->out_len = 0;
  t->out_lock = 0;
  t->clock_state = 0;
  /* A forked child keeps its parent's queue mapping, not its records. */
  t->q_len = t->q_pos = 0;
  t->noted = t->noted_peek = 0;
  /* The playback queue is mapped here, when the stream is named, in record
   * mode too: the program's own mappings (thread stacks, malloc arenas) then
   * land at the same addresses in both (README "Address layout"). Record
   * mode never touches its pages. */
  if (!t->q) {
    void *q = mmap(NULL, FTCP_NSW_MAX_BATCH, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q == MAP_FAILED) nsw_fatal("no memory for the playback queue of stream ");
    t->q = q;
  }
  /*
   * A new stream (a thread, a forked child) starts in playback even when its
   * creator went live: the primary's log may hold records of a stream of
   * that name (it started before its creator's records were lost), and the
   * agent answers its first PLAY with LIVE when it holds none. Starting
   * live would send records for a stream the agent still plays back.
   */
  t->live = 0;
}

/* The main thread takes the root name; any thread we did not create is unnamed. */
static int nsw_name_first(struct nsw_thread *t) {
  if (real_gettid() == real_getpid()) {
    nsw_name_thread(t, nsw_root_name, nsw_root_len);
    return 1;
  }
  static int warned;
  if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED)) {
    static const char msg[] = "a thread not created by pthread_create is not replicated";
    nsw_say(msg, sizeof msg - 1, "", 0);
  }
  return 0;
}

/* ---- the one pattern (rule 5) ------------------------------------------- */

enum { NSW_PASS, NSW_RECORD, NSW_PLAY };

/* Decides what this call does; takes the re-entry guard unless it passes through. */
static inline int nsw_begin(void) {
  if (NSW_LIKELY(nsw_mode == FTCP_NSW_MODE_OFF)) return NSW_PASS;
  struct nsw_thread *t = &nsw_self;
  if (t->busy) return NSW_PASS;
  if (NSW_UNLIKELY(!t->named) && !nsw_name_first(t)) return NSW_PASS;
  t->busy = 1;
  /* Another call after a clock read: that read was more than a deadline. */
  if (NSW_UNLIKELY(t->clock_state)) nsw_clock_settle(t);
  return nsw_mode == FTCP_NSW_MODE_RECORD || t->live ? NSW_RECORD : NSW_PLAY;
}

/* Releases the guard and sets errno last, after the shim's own I/O (rule 2). */
static inline void nsw_end(int err) {
  nsw_self.busy = 0;
  errno = err;
}

/* Record mode: sends the call's outcome; the shim does not wait (FT-TCP 3.4:
 * only output waits for stability, in an output commit). */
/* Appends a record to t's coalescing buffer; t's channel is open and t->out_lock held (another thread may be the caller). */
static void nsw_record_locked(struct nsw_thread *t, uint16_t kind, uint64_t arg, int64_t result, int err, const void *payload, size_t len) {
  int fd = t->fd;
  struct ftcp_nsw_call c = {++t->call_no, kind, 0, err, result, arg, (uint32_t)len, payload};
  size_t need = FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_FIXED + len;
  if (len > FTCP_NSW_MAX_PAYLOAD) nsw_fatal("a call payload is too large in stream ");
  if (t->out_len + need > sizeof t->out) nsw_flush_locked(t);
  if (NSW_LIKELY(need <= sizeof t->out)) {
    t->out_len += (uint32_t)ftcp_nsw_encode_call(t->out + t->out_len, sizeof t->out - t->out_len, FTCP_NSW_MSG_CALL, &c);
    if (NSW_UNLIKELY(nsw_unbuffered)) nsw_flush_locked(t);
  } else {
    /* Larger than the buffer (4 kB of random bytes): its head, then its payload. */
    unsigned char head[FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_FIXED];
    ftcp_nsw_encode_call_head(head, sizeof head, FTCP_NSW_MSG_CALL, &c);
    nsw_send_all(fd, head, sizeof head);
    nsw_send_all(fd, payload, len);
  }
}

static void nsw_record(uint16_t kind, uint64_t arg, int64_t result, int err, const void *payload, size_t len) {
  struct nsw_thread *t = &nsw_self;
  nsw_channel(t);
  nsw_out_lock(t);
  nsw_record_locked(t, kind, arg, result, err, payload, len);
  nsw_out_unlock(t);
}

static void nsw_adopt_pending(struct nsw_thread *t);

/* An ERROR whose header is in hdr: reads its body and ends the process (it always fits a small frame). */
static void __attribute__((noinline, noreturn)) nsw_recv_error(int fd, const unsigned char *hdr, long len) {
  unsigned char body[FTCP_NSW_MAX_FRAME];
  if (len < 0 || len > FTCP_NSW_MAX_FRAME - FTCP_NSW_HDR_SIZE) nsw_fatal("the agent sent a bad ERROR to stream ");
  (void)hdr;
  nsw_recv_all(fd, body, (size_t)len);
  nsw_agent_error(body, (size_t)len);
}

/*
 * Reads a RESULT's header and fixed part (into fixed, FTCP_NSW_CALL_FIXED
 * bytes) and decodes it into r; its payload, r->payload_len bytes, is still
 * on the channel for the caller to read where it belongs. An ERROR instead
 * ends the process.
 */
static void nsw_recv_result(int fd, unsigned char *fixed, struct ftcp_nsw_call *r) {
  unsigned char hdr[FTCP_NSW_HDR_SIZE];
  nsw_recv_all(fd, hdr, sizeof hdr);
  long len = ftcp_nsw_check_header(hdr);
  if (len >= 0 && hdr[FTCP_NSW_HDR_OFF_TYPE] == FTCP_NSW_MSG_ERROR) nsw_recv_error(fd, hdr, len);
  if (len < FTCP_NSW_CALL_FIXED || hdr[FTCP_NSW_HDR_OFF_TYPE] != FTCP_NSW_MSG_RESULT) nsw_fatal("the agent sent a bad RESULT to stream ");
  nsw_recv_all(fd, fixed, FTCP_NSW_CALL_FIXED);
  if (ftcp_nsw_decode_call(FTCP_NSW_MSG_RESULT, fixed, (size_t)len, r) != 0) nsw_fatal("the agent sent a bad RESULT to stream ");
}

/* After a DONE the agent will refuse (the shim saw the difference first): waits for its ERROR and ends. */
static void __attribute__((noreturn)) nsw_await_error(void) {
  unsigned char hdr[FTCP_NSW_HDR_SIZE];
  nsw_recv_all(nsw_self.fd, hdr, sizeof hdr);
  long len = ftcp_nsw_check_header(hdr);
  if (len >= 0 && hdr[FTCP_NSW_HDR_OFF_TYPE] == FTCP_NSW_MSG_ERROR) nsw_recv_error(nsw_self.fd, hdr, len);
  nsw_die(FTCP_NSW_EXIT_DIVERGED, "diverged from the primary (the agent answered otherwise) in stream ", nsw_self.name, nsw_self.name_len);
}

/* Reads and drops len bytes of the channel: a body we cannot use must not desynchronize it. */
static void nsw_skip(int fd, size_t len) {
  unsigned char sink[4096];
  while (len > 0) {
    size_t k = len < sizeof sink ? len : sizeof sink;
    nsw_recv_all(fd, sink, k);
    len -= k;
  }
}

/*
 * Playback from a queue (FT-TCP 3.7 without a round trip per call). The
 * agent sends a stream's next records in batches (RECORDS, at most
 * FTCP_NSW_MAX_BATCH bytes) when the thread asks with its queue empty (PLAY
 * with FETCH), and the shim answers calls from them, checking each against
 * its record exactly as the agent checks a PLAY (nsw_matches). A record
 * marked SYNC (a lock's turn, a read whose client bytes did not come with
 * it) and a call that does not match its record go to the agent as a PLAY:
 * it answers the first and reports the second as a divergence, so there is
 * one place that decides. How far the thread got goes to the agent in
 * PLAYED, coalesced like records: when the queue runs dry, before the thread
 * blocks for real, at exit; a PLAY or DONE says as much. The queue is mapped
 * when the stream is named (no malloc, rule 1) and unmapped at its end.
 */

/* Notes how far the thread answered calls (consumed, and a clock read answered without consuming its record)
 * for the next PLAYED; sends it now when `now`, or once exit began (another thread's exit flush may be past). */
static void nsw_played_note(struct nsw_thread *t, uint64_t consumed, uint64_t peeked, int now) {
  if (consumed == t->noted && peeked == t->noted_peek && !(now && t->out_len)) return;
  nsw_out_lock(t);
  if (consumed != t->noted || peeked != t->noted_peek) {
    t->noted = consumed;
    t->noted_peek = peeked;
    t->out_len = (uint32_t)ftcp_nsw_encode_played(t->out, sizeof t->out, consumed, peeked);
  }
  /* Checked under the lock: an exit flush that takes it after us sees the note, one before it set this first. */
  if (now || __atomic_load_n(&nsw_unbuffered, __ATOMIC_SEQ_CST)) nsw_flush_locked(t);
  nsw_out_unlock(t);
}

/* The agent knows this much already (it answered, or was told by a PLAY): no PLAYED for it. */
static void nsw_played_known(struct nsw_thread *t, uint64_t consumed) {
  nsw_out_lock(t);
  t->noted = consumed;
  t->noted_peek = 0;
  t->out_len = 0;
  nsw_out_unlock(t);
}

static void nsw_queue_drop(struct nsw_thread *t) {
  t->q_len = t->q_pos = 0;
}

/* The record at the head of the queue (call t->q_next); its size, 0 when the queue is empty. */
static size_t nsw_queue_head(struct nsw_thread *t, struct ftcp_nsw_call *rec) {
  if (t->q_pos == t->q_len) return 0;
  size_t size = ftcp_nsw_decode_record(t->q + t->q_pos, t->q_len - t->q_pos, rec);
  if (!size) nsw_fatal("the agent sent a bad record to stream ");
  rec->call_no = t->q_next;
  return size;
}

/* The head record was consumed. */
static void nsw_queue_pop(struct nsw_thread *t, size_t size) {
  t->q_pos += (uint32_t)size;
  t->q_next++;
}

/*
 * Housekeeping clocks. The coarse clocks are read to pace housekeeping, not
 * to decide what a server says: jemalloc reads CLOCK_MONOTONIC_COARSE for
 * its decay timer only when a trylock succeeds, so whether a thread reads it
 * at some point depends on what the other threads hold at that moment, which
 * a replica cannot reproduce. Such a read is recorded as any other (a server
 * that reads it at the same point in both gets the primary's value), but
 * playback does not hold a replica to it: a replica's read the primary did
 * not make gets the real clock and no divergence, and a primary's read the
 * replica does not make is skipped. What the replica then sends is still
 * compared, so one that used such a reading for its output is caught there.
 */
static inline int nsw_clock_is_housekeeping(uint64_t id) {
  return id == CLOCK_MONOTONIC_COARSE || id == CLOCK_REALTIME_COARSE;
}

static inline int nsw_is_deadline_mark(const struct ftcp_nsw_call *rec) {
  return rec->kind == FTCP_NSW_KIND_CLOCK_GETTIME && rec->arg == FTCP_NSW_CLOCK_DEADLINE && !(rec->flags & FTCP_NSW_CALL_F_SYNC);
}

/* The size of the record after the head (of head_size bytes) when it is a deadline mark (see "deadline reads"), else 0. */
static size_t nsw_queue_mark(struct nsw_thread *t, size_t head_size) {
  uint32_t pos = t->q_pos + (uint32_t)head_size;
  if (pos >= t->q_len) return 0;
  struct ftcp_nsw_call rec;
  size_t size = ftcp_nsw_decode_record(t->q + pos, t->q_len - pos, &rec);
  if (!size) nsw_fatal("the agent sent a bad record to stream ");
  return nsw_is_deadline_mark(&rec) ? size : 0;
}

/* Going live (the agent's RESULT with LIVE): this call is performed for real and recorded under its number.
 * Before it is, the process's replicated connections become real sockets. */
static void nsw_go_live(struct nsw_thread *t, int fd, uint32_t payload_len) {
  nsw_skip(fd, payload_len);
  nsw_queue_drop(t);
  t->live = 1;
  t->went_live = 1;
  t->call_no--;
  nsw_adopt_pending(t);
}

/*
 * The queue is empty: asks for the stream's records from call c on (PLAY
 * with FETCH; the agent waits for them as long as the replica is ahead of
 * the log). Returns 0 when the agent answered LIVE instead.
 */
static int nsw_fetch(struct nsw_thread *t, const struct ftcp_nsw_call *c) {
  int fd = t->fd;
  struct ftcp_nsw_call f = *c;
  f.flags |= FTCP_NSW_CALL_F_FETCH;
  unsigned char buf[FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_FIXED + FTCP_NSW_SOCKOPT_CMP];
  size_t n = ftcp_nsw_encode_call(buf, sizeof buf, FTCP_NSW_MSG_PLAY, &f);
  if (!n) nsw_fatal("a call payload is too large in stream ");
  nsw_played_known(t, c->call_no - 1);
  nsw_send_frame(t, buf, n);
  unsigned char hdr[FTCP_NSW_HDR_SIZE];
  nsw_recv_all(fd, hdr, sizeof hdr);
  long len = ftcp_nsw_check_header(hdr);
  uint8_t type = hdr[FTCP_NSW_HDR_OFF_TYPE];
  if (len >= 0 && type == FTCP_NSW_MSG_ERROR) nsw_recv_error(fd, hdr, len);
  if (len >= FTCP_NSW_CALL_FIXED && type == FTCP_NSW_MSG_RESULT) {
    struct ftcp_nsw_call r;
    unsigned char fixed[FTCP_NSW_CALL_FIXED];
    nsw_recv_all(fd, fixed, sizeof fixed);
    if (ftcp_nsw_decode_call(type, fixed, (size_t)len, &r) != 0 || !(r.flags & FTCP_NSW_CALL_F_LIVE)) nsw_fatal("the agent answered a FETCH with a RESULT in stream ");
    nsw_go_live(t, fd, r.payload_len);
    return 0;
  }
  if (len < FTCP_NSW_RECORDS_FIXED || type != FTCP_NSW_MSG_RECORDS) nsw_fatal("the agent sent a bad RECORDS to stream ");
  nsw_recv_all(fd, t->q, (size_t)len);
  if (ftcp_get_u64(t->q + FTCP_NSW_RECORDS_OFF_FIRST) != c->call_no || ftcp_get_u32(t->q + FTCP_NSW_RECORDS_OFF_COUNT) == 0 ||
      ftcp_get_u32(t->q + FTCP_NSW_RECORDS_OFF_RESERVED) != 0) {
    nsw_fatal("the agent sent RECORDS for another call to stream ");
  }
  t->q_pos = FTCP_NSW_RECORDS_FIXED;
  t->q_len = (uint32_t)len;
  t->q_next = c->call_no;
  return 1;
}

/*
 * Whether call c is its record's, as the agent's compare decides: kind and
 * arg; a set socket option's value; a replicated read's or write's
 * connection (the key its payload begins with); with COMPARE, result, errno
 * and payload.
 */
static int nsw_matches(const struct ftcp_nsw_call *rec, const struct ftcp_nsw_call *c) {
  if (rec->kind != c->kind || rec->arg != c->arg) return 0;
  int same_payload = rec->payload_len == c->payload_len && (c->payload_len == 0 || !memcmp(rec->payload, c->payload, c->payload_len));
  if (rec->kind == FTCP_NSW_KIND_SOCKOPT && !(rec->arg & FTCP_NSW_SOCKOPT_GET) && !same_payload) return 0;
  if (rec->kind == FTCP_NSW_KIND_RECV || rec->kind == FTCP_NSW_KIND_SEND) {
    if (rec->payload_len < FTCP_NSW_CONN_KEY_SIZE || c->payload_len < FTCP_NSW_CONN_KEY_SIZE ||
        memcmp(rec->payload, c->payload, FTCP_NSW_CONN_KEY_SIZE) != 0) {
      return 0;
    }
  }
  if (c->flags & FTCP_NSW_CALL_F_COMPARE) return rec->result == c->result && rec->err == c->err && same_payload;
  return 1;
}

/* Copies a record's payload to the iovecs (the key of a read or write is the shim's, not the caller's). */
static void nsw_give(const struct ftcp_nsw_call *rec, const struct iovec *out, int out_n) {
  const unsigned char *p = rec->payload;
  size_t len = rec->payload_len;
  if (rec->kind == FTCP_NSW_KIND_RECV || rec->kind == FTCP_NSW_KIND_SEND) {
    p += FTCP_NSW_CONN_KEY_SIZE;
    len -= FTCP_NSW_CONN_KEY_SIZE;
  }
  size_t cap = 0;
  for (int i = 0; i < out_n; i++) cap += out[i].iov_len;
  if (len > cap) nsw_die(FTCP_NSW_EXIT_DIVERGED, "recorded payload larger than the buffer in stream ", nsw_self.name, nsw_self.name_len);
  for (int i = 0; i < out_n && len > 0; i++) {
    size_t k = out[i].iov_len < len ? out[i].iov_len : len;
    memcpy(out[i].iov_base, p, k);
    p += k;
    len -= k;
  }
}

/*
 * Plays call c with the agent (PLAY, then its RESULT): a SYNC record, or a
 * call that does not match its record (the agent reports the divergence and
 * this process ends). The payload goes straight into the iovecs `out` (a
 * replicated read's bytes land in the program's buffers).
 */
static int64_t nsw_play_agent(struct nsw_thread *t, const struct ftcp_nsw_call *c, size_t queued, const struct iovec *out, int out_n,
                              int *out_err) {
  int fd = t->fd;
  unsigned char buf[FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_FIXED + FTCP_NSW_SOCKOPT_CMP];
  struct ftcp_nsw_call r;
  size_t n = ftcp_nsw_encode_call(buf, sizeof buf, FTCP_NSW_MSG_PLAY, c);
  if (!n) nsw_fatal("a call payload is too large in stream ");
  nsw_played_known(t, c->call_no - 1);
  nsw_send_frame(t, buf, n);
  nsw_recv_result(fd, buf, &r);
  if (r.flags & FTCP_NSW_CALL_F_LIVE) {
    nsw_go_live(t, fd, r.payload_len);
    return 0;
  }
  /* The agent checks kind and arg; this catches an agent that answered another call. */
  if (r.call_no != c->call_no || r.kind != c->kind || r.arg != c->arg) nsw_die(FTCP_NSW_EXIT_DIVERGED, "RESULT for another call in stream ", t->name, t->name_len);
  size_t cap = 0;
  for (int i = 0; i < out_n; i++) cap += out[i].iov_len;
  if (r.payload_len > cap) nsw_die(FTCP_NSW_EXIT_DIVERGED, "recorded payload larger than the buffer in stream ", t->name, t->name_len);
  nsw_recv_iov(fd, out, out_n, r.payload_len);
  if (queued) nsw_queue_pop(t, queued);
  nsw_played_known(t, c->call_no);
  *out_err = r.err;
  return r.result;
}

/*
 * Playback (the "one pattern" of rule 5): the primary's outcome of this
 * stream's next call, from the queue (fetched when empty; a replica ahead of
 * the log waits there). When the agent answers LIVE instead, returns with
 * nsw_went_live() true and the caller performs and records the call. With
 * FTCP_NSW_CALL_F_COMPARE, `result`, `err` and the payload are what the real
 * call did, compared with the record. A TENTATIVE clock read leaves its
 * record queued (see "deadline reads"), or sets t->nomatch when the next
 * record is no such read. Returns the result; *out_err gets its errno.
 */
static int64_t nsw_play_iov(uint16_t kind, uint64_t arg, uint16_t flags, int64_t result, int err, const void *payload, size_t len,
                            const struct iovec *out, int out_n, int *out_err) {
  struct nsw_thread *t = &nsw_self;
  nsw_channel(t);
  struct ftcp_nsw_call c = {++t->call_no, kind, flags, err, result, arg, (uint32_t)len, payload};
  struct ftcp_nsw_call rec = {0};
  t->nomatch = 0;
  size_t size;
  int match;
  for (;;) {
    size = nsw_queue_head(t, &rec);
    if (!size) {
      if (!nsw_fetch(t, &c)) return 0;
      size = nsw_queue_head(t, &rec);
    }
    match = !(rec.flags & FTCP_NSW_CALL_F_SYNC) && nsw_matches(&rec, &c);
    /* A deadline mark, a housekeeping clock read this call is not, or another clock read this call is
     * not with its mark (see "deadline reads" and "housekeeping clocks"): skipped. */
    size_t mark = nsw_is_deadline_mark(&rec) ? size : 0;
    if (!mark && !match && rec.kind == FTCP_NSW_KIND_CLOCK_GETTIME && !(rec.flags & FTCP_NSW_CALL_F_SYNC)) {
      if (nsw_clock_is_housekeeping(rec.arg)) {
        mark = size; /* alone: a mark after it goes next time round */
      } else if ((mark = nsw_queue_mark(t, size))) {
        nsw_queue_pop(t, size);
        c.call_no = ++t->call_no;
      }
    }
    if (!mark) break;
    nsw_queue_pop(t, mark);
    c.call_no = ++t->call_no;
  }
  if (flags & FTCP_NSW_CALL_F_TENTATIVE) {
    if (!match) {
      t->nomatch = 1;
      nsw_played_note(t, c.call_no - 1, 0, 0);
      return 0;
    }
    nsw_give(&rec, out, out_n);
    nsw_played_note(t, c.call_no - 1, c.call_no, 0);
    *out_err = rec.err;
    return rec.result;
  }
  if (!match) return nsw_play_agent(t, &c, size, out, out_n, out_err);
  nsw_give(&rec, out, out_n);
  nsw_queue_pop(t, size);
  /* A send's DONE says it was answered; until then the agent must not think so. */
  int owes_done = rec.kind == FTCP_NSW_KIND_SEND && rec.result > 0;
  nsw_played_note(t, owes_done ? c.call_no - 1 : c.call_no, 0, t->q_pos == t->q_len && !owes_done);
  *out_err = rec.err;
  return rec.result;
}

/* nsw_play_iov with one flat buffer of cap bytes for the payload. */
static int64_t nsw_play(uint16_t kind, uint64_t arg, uint16_t flags, int64_t result, int err, const void *payload, size_t len,
                        void *out, size_t cap, int *out_err) {
  struct iovec one = {out, cap};
  return nsw_play_iov(kind, arg, flags, result, err, payload, len, &one, 1, out_err);
}

/*
 * Playback: DONE, what the call the last RESULT answered did for real (see
 * the header): its result, errno, and the first len bytes of the iovecs,
 * which the caller sends next unless it passes them here (n > 0: one
 * sendmsg for the head and the bytes). out_lock is held. A PLAYED noted
 * before says less than the DONE does (every call before this one was
 * answered): it is dropped, not sent.
 */
static void nsw_done_head(uint16_t kind, uint64_t arg, uint16_t flags, int64_t result, int err, size_t len, const struct iovec *iov, int n) {
  struct nsw_thread *t = &nsw_self;
  struct ftcp_nsw_call c = {t->call_no, kind, flags, err, result, arg, (uint32_t)len, NULL};
  unsigned char head[FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_FIXED];
  if (!ftcp_nsw_encode_call_head(head, sizeof head, FTCP_NSW_MSG_DONE, &c)) nsw_fatal("a DONE payload is too large in stream ");
  t->out_len = 0;
  t->noted = t->call_no;
  t->noted_peek = 0;
  nsw_send_head_iov(t->fd, head, sizeof head, iov, n, n > 0 ? len : 0);
}

/* The whole DONE is sent under out_lock. */
static void nsw_done(uint16_t kind, uint64_t arg, uint16_t flags, int64_t result, int err, const struct iovec *iov, int n, size_t len) {
  nsw_out_lock(&nsw_self);
  nsw_done_head(kind, arg, flags, result, err, len, iov, n);
  nsw_out_unlock(&nsw_self);
}

/* True once, right after nsw_play found the stream gone live. */
static inline int nsw_went_live(void) {
  int v = nsw_self.went_live;
  nsw_self.went_live = 0;
  return v;
}

/*
 * The pattern for a query of the environment (FT-TCP 3.7, first category):
 * record runs the real call and sends ARG, its result, errno and OUT_LEN
 * bytes of OUT; playback sends ARG (the agent checks it against the record),
 * skips the real call and returns the primary's, copying its bytes to OUT.
 * A stream gone live records from then on. `r_` names the result inside
 * OUT_LEN. Failure is a result of -1 for every call wrapped this way.
 */
#define NSW_QUERY(TYPE, KIND, ARG, REAL_CALL, OUT, OUT_CAP, OUT_LEN)                \
  do {                                                                             \
    NSW_INIT();                                                                    \
    int mode_ = nsw_begin();                                                       \
    if (NSW_LIKELY(mode_ == NSW_PASS)) return REAL_CALL;                           \
    int saved_ = errno;                                                            \
    TYPE r_;                                                                       \
    int e_ = 0;                                                                    \
    if (mode_ == NSW_PLAY) {                                                       \
      r_ = (TYPE)nsw_play(KIND, ARG, 0, 0, 0, NULL, 0, OUT, OUT_CAP, &e_);         \
      if (NSW_LIKELY(!nsw_went_live())) {                                          \
        nsw_end(e_ ? e_ : saved_);                                                 \
        return r_;                                                                 \
      }                                                                            \
      errno = saved_;                                                              \
    }                                                                              \
    r_ = REAL_CALL;                                                                \
    e_ = r_ == (TYPE)-1 ? errno : 0;                                               \
    nsw_record(KIND, ARG, (int64_t)r_, e_, OUT, r_ == (TYPE)-1 ? 0 : (size_t)(OUT_LEN)); \
    nsw_end(e_ ? e_ : saved_);                                                     \
    return r_;                                                                     \
  } while (0)

/* Hides a pointer's origin from the optimizer: libc declares some arguments
 * nonnull, yet programs do pass NULL and the real call accepts it. */
static inline void *nsw_launder(void *p) {
  __asm__("" : "+r"(p));
  return p;
}

/* Largest request recorded as one call; getrandom may return fewer bytes. */
static inline size_t nsw_cap(size_t len) {
  return nsw_mode != FTCP_NSW_MODE_OFF && len > FTCP_NSW_MAX_PAYLOAD ? FTCP_NSW_MAX_PAYLOAD : len;
}

/* ---- clocks: the replica's clock differs from the primary's (FT-TCP 3.7) -- */

/* Wrapped because: the wall clock in seconds differs between hosts. */
NSW_EXPORT time_t time(time_t *tloc) {
  NSW_QUERY(time_t, FTCP_NSW_KIND_TIME, 0, real_time(tloc), tloc, tloc ? sizeof *tloc : 0, tloc ? sizeof *tloc : 0);
}

/* Wrapped because: the wall clock in microseconds differs between hosts. */
NSW_EXPORT int gettimeofday(struct timeval *restrict tv_, void *restrict tz) {
  struct timeval *tv = nsw_launder(tv_);
  NSW_QUERY(int, FTCP_NSW_KIND_GETTIMEOFDAY, 0, real_gettimeofday(tv, tz), tv, tv ? sizeof *tv : 0, tv ? sizeof *tv : 0);
}

/*
 * Deadline reads. A thread that waits with a timeout often reads the clock
 * only to compute the wait's deadline, and how often it waits can depend on
 * scheduling: CPython's GIL makes one timed wait, with one clock_gettime,
 * each time a thread finds the GIL held, so a replica's thread would make
 * reads its primary's did not, or the reverse. Such a read is not part of
 * the stream: record mode keeps a clock_gettime aside (NSW_CLOCK_KEPT) and
 * records it only when the thread's next event is another call or a flush
 * point; when it is a timed wait (pthread_cond_timedwait and the others
 * below), the read is dropped. Playback cannot know what comes next either:
 * it asks for the stream's next record without consuming it (TENTATIVE).
 * If that is this clock read, the replica gets the primary's value
 * (NSW_CLOCK_PEEKED) and the next call consumes the record, or a timed wait
 * leaves it for the next read; if it is not, the replica gets its own clock
 * (NSW_CLOCK_REAL), which is right for a deadline and a divergence for
 * anything else (reported at the next call). Only clock_gettime is treated
 * so. Another thread's output commit records a read kept aside as it does
 * every buffered record (what that output shows may depend on it); if the
 * thread's next event is then a timed wait after all (NSW_CLOCK_COMMITTED),
 * it records a deadline mark (FTCP_NSW_CLOCK_DEADLINE). Playback skips a
 * mark: a timed wait after a PEEKED read consumes the read and its mark
 * when the mark is in the queue, and a call that is not that clock read
 * skips the read with its mark.
 */

/* The thread's clock read was more than a deadline: record mode records it; playback lets the next PLAY consume it, or stops. */
/* Records t's kept clock read; out_lock held (by t, or by another thread's flush). */
static void nsw_clock_record_locked(struct nsw_thread *t) {
  t->clock_state = NSW_CLOCK_NONE;
  nsw_record_locked(t, FTCP_NSW_KIND_CLOCK_GETTIME, (uint64_t)t->clock_id, t->clock_result, t->clock_err, &t->clock_value,
                    t->clock_result == 0 ? sizeof t->clock_value : 0);
}

static void nsw_clock_settle(struct nsw_thread *t) {
  int state = t->clock_state;
  if (state == NSW_CLOCK_KEPT) {
    /* Under out_lock: another thread's flush may record it first (then it is gone from here). */
    nsw_channel(t);
    nsw_out_lock(t);
    if (t->clock_state == NSW_CLOCK_KEPT) nsw_clock_record_locked(t);
    t->clock_state = NSW_CLOCK_NONE;
    nsw_out_unlock(t);
    return;
  }
  /* COMMITTED: recorded already, and more than a deadline. */
  t->clock_state = NSW_CLOCK_NONE;
  if (state == NSW_CLOCK_PEEKED) {
    /* The call after the read consumes the record the read was answered from. */
    struct ftcp_nsw_call rec;
    size_t size = nsw_queue_head(t, &rec);
    if (!size || rec.call_no != t->call_no) nsw_fatal("a clock read's record left the queue in stream ");
    nsw_queue_pop(t, size);
    nsw_played_note(t, t->call_no, 0, t->q_pos == t->q_len);
    return;
  }
  if (state == NSW_CLOCK_REAL && nsw_clock_is_housekeeping((uint64_t)t->clock_id)) {
    t->call_no--; /* a housekeeping read the primary did not make: its number goes to the next call */
    return;
  }
  if (state == NSW_CLOCK_REAL) {
    /* The replica used a clock read the primary never made: the agent sees the record that is there instead. */
    int e = 0;
    struct timespec ts;
    t->call_no--;
    (void)nsw_play(FTCP_NSW_KIND_CLOCK_GETTIME, (uint64_t)t->clock_id, 0, 0, 0, NULL, 0, &ts, sizeof ts, &e);
    nsw_die(FTCP_NSW_EXIT_DIVERGED, "a clock read the primary did not make was more than a deadline, in stream ", t->name, t->name_len);
  }
}

/* Before a timed wait: the thread's clock read, if it was its last event, was only this wait's deadline. */
static void nsw_clock_deadline(void) {
  struct nsw_thread *t = &nsw_self;
  if (NSW_LIKELY(!t->clock_state) || t->busy) return;
  int saved = errno;
  if (nsw_mode == FTCP_NSW_MODE_RECORD || t->live) {
    nsw_out_lock(t); /* another thread's flush may be recording it */
    /* Recorded by another thread's output commit already: a mark says it was only this deadline. */
    if (t->clock_state == NSW_CLOCK_COMMITTED) nsw_record_locked(t, FTCP_NSW_KIND_CLOCK_GETTIME, FTCP_NSW_CLOCK_DEADLINE, 0, 0, NULL, 0);
    t->clock_state = NSW_CLOCK_NONE;
    nsw_out_unlock(t);
    errno = saved;
    return;
  }
  int state = t->clock_state;
  t->clock_state = NSW_CLOCK_NONE;
  struct ftcp_nsw_call rec;
  size_t size = state == NSW_CLOCK_PEEKED ? nsw_queue_head(t, &rec) : 0;
  size_t mark = size ? nsw_queue_mark(t, size) : 0;
  if (mark) {
    /* The primary's read was this deadline too, and says so: both records are consumed. */
    nsw_queue_pop(t, size);
    nsw_queue_pop(t, mark);
    t->call_no++;
    nsw_played_note(t, t->call_no, 0, t->q_pos == t->q_len);
  } else {
    t->call_no--; /* its number goes to the next call */
  }
  errno = saved;
}

/* Wrapped because: every clock (realtime, monotonic, CPU time) differs between hosts and runs. */
NSW_EXPORT int clock_gettime(clockid_t id, struct timespec *ts_) {
  struct timespec *ts = nsw_launder(ts_);
  NSW_INIT();
  int mode = nsw_begin();
  if (NSW_LIKELY(mode == NSW_PASS)) return real_clock_gettime(id, ts);
  struct nsw_thread *t = &nsw_self;
  int saved = errno, e = 0, r;
  if (mode == NSW_PLAY) {
    r = (int)nsw_play(FTCP_NSW_KIND_CLOCK_GETTIME, (uint64_t)id, FTCP_NSW_CALL_F_TENTATIVE, 0, 0, NULL, 0, ts, ts ? sizeof *ts : 0, &e);
    if (NSW_LIKELY(!nsw_went_live())) {
      t->clock_state = NSW_CLOCK_PEEKED;
      if (t->nomatch) {
        r = real_clock_gettime(id, ts);
        e = r < 0 ? errno : 0;
        t->clock_state = NSW_CLOCK_REAL;
      }
      t->clock_id = id;
      nsw_end(e ? e : saved);
      return r;
    }
    errno = saved;
  }
  nsw_channel(t); /* registered: an output commit of another thread records the read if it must */
  r = real_clock_gettime(id, ts);
  e = r < 0 ? errno : 0;
  t->clock_id = id;
  t->clock_result = r;
  t->clock_err = e;
  if (r == 0) t->clock_value = *ts;
  nsw_out_lock(t);
  t->clock_state = NSW_CLOCK_KEPT;
  nsw_out_unlock(t);
  nsw_end(e ? e : saved);
  return r;
}

/* Wrapped because: a clock read right before it was only its deadline (see "deadline reads"). */
NSW_EXPORT int pthread_cond_timedwait(pthread_cond_t *restrict c, pthread_mutex_t *restrict m, const struct timespec *restrict at) {
  NSW_INIT();
  nsw_clock_deadline();
  NSW_FLUSH();
  return real_pthread_cond_timedwait(c, m, at);
}

/* Wrapped because: the same as pthread_cond_timedwait, with its clock named. */
NSW_EXPORT int pthread_cond_clockwait(pthread_cond_t *restrict c, pthread_mutex_t *restrict m, clockid_t id, const struct timespec *restrict at) {
  NSW_INIT();
  nsw_clock_deadline();
  NSW_FLUSH();
  return real_pthread_cond_clockwait(c, m, id, at);
}

/* Wrapped because: a clock read right before it was only its deadline (CPython's lock.acquire(timeout=...)). */
NSW_EXPORT int sem_timedwait(sem_t *restrict sem, const struct timespec *restrict at) {
  NSW_INIT();
  nsw_clock_deadline();
  NSW_FLUSH();
  return real_sem_timedwait(sem, at);
}

/* Wrapped because: the same as sem_timedwait, with its clock named. */
NSW_EXPORT int sem_clockwait(sem_t *restrict sem, clockid_t id, const struct timespec *restrict at) {
  NSW_INIT();
  nsw_clock_deadline();
  NSW_FLUSH();
  return real_sem_clockwait(sem, id, at);
}

/*
 * Wrapped because: CPython 3.11 reads the monotonic clock for a deadline in
 * every lock acquisition, also when it then waits without one or only tries;
 * how many acquisitions a lock takes (a try, then a wait) depends on
 * scheduling. The clock read right before was nothing more.
 */
NSW_EXPORT int sem_wait(sem_t *sem) {
  NSW_INIT();
  nsw_clock_deadline();
  NSW_FLUSH();
  return real_sem_wait(sem);
}

/* Wrapped because: the same as sem_wait (a try never blocks: no flush point). */
NSW_EXPORT int sem_trywait(sem_t *sem) {
  NSW_INIT();
  nsw_clock_deadline();
  return real_sem_trywait(sem);
}

/* Wrapped because: a clock read right before it was only its deadline. */
NSW_EXPORT int pthread_mutex_timedlock(pthread_mutex_t *restrict m, const struct timespec *restrict at) {
  NSW_INIT();
  nsw_clock_deadline();
  NSW_FLUSH();
  return real_pthread_mutex_timedlock(m, at);
}

/* Wrapped because: the CPU time a process used differs between runs (glibc's clock reads it internally). */
NSW_EXPORT clock_t clock(void) { NSW_QUERY(clock_t, FTCP_NSW_KIND_CLOCK, 0, real_clock(), NULL, 0, 0); }

/* Wrapped because: CPU times and resource counts differ between runs (iperf3 reports them). */
NSW_EXPORT int getrusage(int who, struct rusage *ru_) {
  struct rusage *ru = nsw_launder(ru_);
  NSW_QUERY(int, FTCP_NSW_KIND_GETRUSAGE, (uint64_t)(uint32_t)who, real_getrusage(who, ru), ru, ru ? sizeof *ru : 0, ru ? sizeof *ru : 0);
}

/* Wrapped because: CPU times and the ticks since boot differ between runs and hosts. */
NSW_EXPORT clock_t times(struct tms *t_) {
  struct tms *t = nsw_launder(t_);
  NSW_QUERY(clock_t, FTCP_NSW_KIND_TIMES, 0, real_times(t), t, t ? sizeof *t : 0, t ? sizeof *t : 0);
}

/* ---- the host: the backup's name is not the primary's ----------------- */

/* Wrapped because: the node name (and kernel release) of the backup's host is not the primary's. */
NSW_EXPORT int uname(struct utsname *u_) {
  struct utsname *u = nsw_launder(u_);
  NSW_QUERY(int, FTCP_NSW_KIND_UNAME, 0, real_uname(u), u, u ? sizeof *u : 0, u ? sizeof *u : 0);
}

/* Wrapped because: the same as uname (glibc's gethostname calls uname internally). */
NSW_EXPORT int gethostname(char *name, size_t len) {
  size_t n = nsw_cap(len);
  NSW_QUERY(int, FTCP_NSW_KIND_GETHOSTNAME, n, real_gethostname(name, n), name, n, n);
}

/* ---- randomness: seeds, session ids, keys (FT-TCP 3.8, HotSwap's OpenSSL) -- */

/* Wrapped because: the kernel's random bytes differ on every call. */
NSW_EXPORT ssize_t getrandom(void *buf, size_t len, unsigned int flags) {
  size_t n = nsw_cap(len);
  NSW_QUERY(ssize_t, FTCP_NSW_KIND_GETRANDOM, n, real_getrandom(buf, n, flags), buf, n, r_);
}

/* Wrapped because: the kernel's random bytes differ on every call. */
NSW_EXPORT int getentropy(void *buf, size_t len) {
  NSW_QUERY(int, FTCP_NSW_KIND_GETENTROPY, len, real_getentropy(buf, len), buf, len, len);
}

static int nsw_is_random_path(const char *path) {
  return path && (!strcmp(path, "/dev/urandom") || !strcmp(path, "/dev/random"));
}

/* open's mode argument exists only when the flags ask for a new file. */
#define NSW_OPEN_MODE(flags, last)                                    \
  mode_t mode = 0;                                                    \
  if ((flags) & O_CREAT || ((flags) & O_TMPFILE) == O_TMPFILE) {      \
    va_list ap;                                                       \
    va_start(ap, last);                                               \
    mode = (mode_t)va_arg(ap, int);                                   \
    va_end(ap);                                                       \
  }

/* Wrapped because: a descriptor on /dev/urandom or /dev/random is a source of randomness. */
NSW_EXPORT int open(const char *path, int flags, ...) {
  NSW_INIT();
  NSW_OPEN_MODE(flags, flags);
  int fd = real_open(path, flags, mode);
  if (nsw_mode != FTCP_NSW_MODE_OFF && fd >= 0) nsw_track_fd(fd, nsw_is_random_path(path) ? NSW_FD_RANDOM : NSW_FD_PLAIN);
  return fd;
}

/* Wrapped because: the same as open, under its large-file name. */
NSW_EXPORT int open64(const char *path, int flags, ...) {
  NSW_INIT();
  NSW_OPEN_MODE(flags, flags);
  int fd = real_open64(path, flags, mode);
  if (nsw_mode != FTCP_NSW_MODE_OFF && fd >= 0) nsw_track_fd(fd, nsw_is_random_path(path) ? NSW_FD_RANDOM : NSW_FD_PLAIN);
  return fd;
}

/* Wrapped because: the same as open, relative to a directory descriptor. */
NSW_EXPORT int openat(int dirfd, const char *path, int flags, ...) {
  NSW_INIT();
  NSW_OPEN_MODE(flags, flags);
  int fd = real_openat(dirfd, path, flags, mode);
  if (nsw_mode != FTCP_NSW_MODE_OFF && fd >= 0) nsw_track_fd(fd, nsw_is_random_path(path) ? NSW_FD_RANDOM : NSW_FD_PLAIN);
  return fd;
}

static ssize_t nsw_conn_read(int fd, void *buf, size_t count);

/* Wrapped because: reads of /dev/urandom and /dev/random return random bytes,
 * and reads of replicated connections have nondeterministic lengths; every
 * other read passes straight through. */
NSW_EXPORT ssize_t read(int fd, void *buf, size_t count) {
  NSW_INIT();
  NSW_FLUSH_UNLESS(nsw_fd_kind(fd) == NSW_FD_CONN || nsw_fd_kind(fd) == NSW_FD_RANDOM);
  int kind = nsw_fd_kind(fd);
  if (NSW_LIKELY(kind == NSW_FD_PLAIN)) return real_read(fd, buf, count);
  if (kind == NSW_FD_CONN) return nsw_conn_read(fd, buf, count);
  size_t n = nsw_cap(count);
  NSW_QUERY(ssize_t, FTCP_NSW_KIND_READ_RANDOM, n, real_read(fd, buf, n), buf, n, r_);
}

/* ---- readiness: whether a descriptor is ready depends on timing (FT-TCP 3.8) -- */

/*
 * FT-TCP 3.8: "poll must return the same result on both replicas", or a
 * replica that sees no data where the primary saw some takes another path.
 * Record keeps the result and every revents; playback skips the real call
 * and returns the primary's (blocking until the primary's call returned).
 */
#define NSW_MAX_POLLFDS (FTCP_NSW_MAX_PAYLOAD / 2)

static int nsw_poll_common(struct pollfd *fds, nfds_t nfds, int mode, int r) {
  int saved = errno;
  unsigned char revents[2 * NSW_MAX_POLLFDS];
  int e = 0;
  if (mode == NSW_RECORD) {
    e = r < 0 ? errno : 0;
    for (nfds_t i = 0; r > 0 && i < nfds; i++) ftcp_put_u16(revents + 2 * i, (uint16_t)fds[i].revents);
    nsw_record(FTCP_NSW_KIND_POLL, nfds, r, e, revents, r > 0 ? nfds * 2 : 0);
  } else {
    r = (int)nsw_play(FTCP_NSW_KIND_POLL, nfds, 0, 0, 0, NULL, 0, revents, nfds * 2, &e);
    if (NSW_UNLIKELY(nsw_self.went_live)) return 0; /* the caller records the real call */
    for (nfds_t i = 0; i < nfds && r >= 0; i++) fds[i].revents = r > 0 ? (short)ftcp_get_u16(revents + 2 * i) : 0;
  }
  nsw_end(e ? e : saved);
  return r;
}

/* Wrapped because: readiness depends on when data arrived (FT-TCP 3.8). */
NSW_EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout) {
  NSW_INIT();
  NSW_FLUSH_UNLESS(1);
  int mode = nsw_begin();
  if (NSW_LIKELY(mode == NSW_PASS)) return real_poll(fds, nfds, timeout);
  if (nfds > NSW_MAX_POLLFDS) nsw_fatal("poll with more descriptors than a record holds in stream ");
  if (mode == NSW_PLAY) {
    int r = nsw_poll_common(fds, nfds, NSW_PLAY, 0);
    if (NSW_LIKELY(!nsw_went_live())) return r;
  }
  return nsw_poll_common(fds, nfds, NSW_RECORD, real_poll(fds, nfds, timeout));
}

/* Wrapped because: readiness depends on when data arrived (FT-TCP 3.8). */
NSW_EXPORT int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo, const sigset_t *mask) {
  NSW_INIT();
  NSW_FLUSH_UNLESS(1);
  int mode = nsw_begin();
  if (NSW_LIKELY(mode == NSW_PASS)) return real_ppoll(fds, nfds, tmo, mask);
  if (nfds > NSW_MAX_POLLFDS) nsw_fatal("ppoll with more descriptors than a record holds in stream ");
  if (mode == NSW_PLAY) {
    int r = nsw_poll_common(fds, nfds, NSW_PLAY, 0);
    if (NSW_LIKELY(!nsw_went_live())) return r;
  }
  return nsw_poll_common(fds, nfds, NSW_RECORD, real_ppoll(fds, nfds, tmo, mask));
}

static void nsw_set_bytes(unsigned char *dst, const fd_set *set, size_t n) {
  if (set) memcpy(dst, set, n);
  else memset(dst, 0, n);
}

static void nsw_bytes_set(fd_set *set, const unsigned char *src, size_t n) {
  if (set) memcpy(set, src, n);
}

/* Shared by select and pselect: the three sets travel as one payload, after
 * the time select left in its timeout (tmo: select's, NULL for pselect). */
static int nsw_select_common(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tmo, int mode, int r) {
  int saved = errno;
  size_t n = ((size_t)nfds + 7) / 8;
  size_t t = tmo ? sizeof *tmo : 0;
  uint64_t arg = (uint64_t)nfds | (tmo ? FTCP_NSW_SELECT_TIMEOUT : 0);
  unsigned char sets[sizeof(struct timeval) + 3 * (FD_SETSIZE / 8)];
  int e = 0;
  if (mode == NSW_RECORD) {
    e = r < 0 ? errno : 0;
    if (tmo) memcpy(sets, tmo, t);
    nsw_set_bytes(sets + t, rd, n);
    nsw_set_bytes(sets + t + n, wr, n);
    nsw_set_bytes(sets + t + 2 * n, ex, n);
    nsw_record(FTCP_NSW_KIND_SELECT, arg, r, e, sets, t + (r >= 0 ? 3 * n : 0));
  } else {
    r = (int)nsw_play(FTCP_NSW_KIND_SELECT, arg, 0, 0, 0, NULL, 0, sets, t + 3 * n, &e);
    if (NSW_UNLIKELY(nsw_self.went_live)) return 0; /* the caller records the real call */
    if (tmo) memcpy(tmo, sets, t);
    if (r >= 0) {
      nsw_bytes_set(rd, sets + t, n);
      nsw_bytes_set(wr, sets + t + n, n);
      nsw_bytes_set(ex, sets + t + 2 * n, n);
    }
  }
  nsw_end(e ? e : saved);
  return r;
}

/* Wrapped because: readiness depends on when data arrived (FT-TCP 3.8), and
 * the time left in the timeout on when the call returned. */
NSW_EXPORT int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tmo) {
  NSW_INIT();
  NSW_FLUSH_UNLESS(1);
  int mode = nsw_begin();
  if (NSW_LIKELY(mode == NSW_PASS)) return real_select(nfds, rd, wr, ex, tmo);
  if (nfds < 0 || nfds > FD_SETSIZE) {
    nsw_end(errno);
    return real_select(nfds, rd, wr, ex, tmo);
  }
  if (mode == NSW_PLAY) {
    int r = nsw_select_common(nfds, rd, wr, ex, tmo, NSW_PLAY, 0);
    if (NSW_LIKELY(!nsw_went_live())) return r;
  }
  return nsw_select_common(nfds, rd, wr, ex, tmo, NSW_RECORD, real_select(nfds, rd, wr, ex, tmo));
}

/* Wrapped because: readiness depends on when data arrived (FT-TCP 3.8). */
NSW_EXPORT int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *tmo, const sigset_t *mask) {
  NSW_INIT();
  NSW_FLUSH_UNLESS(1);
  int mode = nsw_begin();
  if (NSW_LIKELY(mode == NSW_PASS)) return real_pselect(nfds, rd, wr, ex, tmo, mask);
  if (nfds < 0 || nfds > FD_SETSIZE) {
    nsw_end(errno);
    return real_pselect(nfds, rd, wr, ex, tmo, mask);
  }
  if (mode == NSW_PLAY) {
    int r = nsw_select_common(nfds, rd, wr, ex, NULL, NSW_PLAY, 0);
    if (NSW_LIKELY(!nsw_went_live())) return r;
  }
  return nsw_select_common(nfds, rd, wr, ex, NULL, NSW_RECORD, real_pselect(nfds, rd, wr, ex, tmo, mask));
}

/*
 * epoll hands back the caller's opaque data (often a pointer, which ASLR
 * makes differ on the replica), so records name the descriptor instead:
 * epoll_ctl keeps (epfd, fd, data) here, record maps data to fd, playback
 * maps fd back to the replica's own data. The event mask is kept too: a
 * promoted replica registers each rebuilt connection again exactly as the
 * program did. Fixed table, no allocation.
 */
#define NSW_EPOLL_SLOTS 4096
static struct {
  int epfd, fd;
  uint32_t events;
  uint64_t data;
} nsw_ep[NSW_EPOLL_SLOTS];
static int nsw_ep_used; /* slots in use are [0, nsw_ep_used) with epfd >= 0 */
static pthread_mutex_t nsw_ep_lock = PTHREAD_MUTEX_INITIALIZER;

/* Sets (ev given) or removes (ev NULL) the entry of (epfd, fd); fd -1 removes every entry of epfd or fd. */
static void nsw_ep_set(int epfd, int fd, const struct epoll_event *ev) {
  const struct epoll_event *data = ev;
  pthread_mutex_lock(&nsw_ep_lock);
  int free_slot = -1;
  for (int i = 0; i < nsw_ep_used; i++) {
    if (nsw_ep[i].epfd < 0) {
      if (free_slot < 0) free_slot = i;
      continue;
    }
    int match = fd < 0 ? (nsw_ep[i].epfd == epfd || nsw_ep[i].fd == epfd) : (nsw_ep[i].epfd == epfd && nsw_ep[i].fd == fd);
    if (!match) continue;
    if (data && fd >= 0) {
      nsw_ep[i].events = data->events;
      nsw_ep[i].data = data->data.u64;
      data = NULL;
      break;
    }
    nsw_ep[i].epfd = -1;
    if (free_slot < 0) free_slot = i;
  }
  if (data && fd >= 0) {
    if (free_slot < 0 && nsw_ep_used < NSW_EPOLL_SLOTS) free_slot = nsw_ep_used++;
    if (free_slot < 0) {
      pthread_mutex_unlock(&nsw_ep_lock);
      nsw_fatal("too many epoll registrations to replicate in stream ");
    }
    nsw_ep[free_slot].epfd = epfd;
    nsw_ep[free_slot].fd = fd;
    nsw_ep[free_slot].events = data->events;
    nsw_ep[free_slot].data = data->data.u64;
  }
  pthread_mutex_unlock(&nsw_ep_lock);
}

/* Finds fd by data (to_fd) or data by fd; returns 0 when known. */
static int nsw_ep_find(int epfd, int *fd, uint64_t *data, int to_fd) {
  int found = -1;
  pthread_mutex_lock(&nsw_ep_lock);
  for (int i = 0; i < nsw_ep_used && found < 0; i++) {
    if (nsw_ep[i].epfd != epfd) continue;
    if (to_fd ? nsw_ep[i].data == *data : nsw_ep[i].fd == *fd) {
      *fd = nsw_ep[i].fd;
      *data = nsw_ep[i].data;
      found = 0;
    }
  }
  pthread_mutex_unlock(&nsw_ep_lock);
  return found;
}

/* Wrapped because: epoll_wait reports the caller's data, which must be mapped to descriptors and back. */
NSW_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  NSW_INIT();
  int r = real_epoll_ctl(epfd, op, fd, ev);
  if (nsw_mode == FTCP_NSW_MODE_OFF || r != 0) return r;
  int saved = errno;
  if (op == EPOLL_CTL_DEL) nsw_ep_set(epfd, fd, NULL);
  else if (ev) nsw_ep_set(epfd, fd, ev);
  errno = saved;
  return r;
}

#define NSW_MAX_EVENTS (FTCP_NSW_MAX_PAYLOAD / 8)

static int nsw_epoll_common(int epfd, struct epoll_event *events, int max, int mode, int r) {
  int saved = errno;
  unsigned char rec[FTCP_NSW_MAX_PAYLOAD];
  int e = 0;
  if (mode == NSW_RECORD) {
    e = r < 0 ? errno : 0;
    for (int i = 0; i < r; i++) {
      int fd = -1;
      uint64_t data = events[i].data.u64;
      if (nsw_ep_find(epfd, &fd, &data, 1) != 0) nsw_fatal("epoll_wait reported data no epoll_ctl registered in stream ");
      ftcp_put_u32(rec + 8 * i, events[i].events);
      ftcp_put_u32(rec + 8 * i + 4, (uint32_t)fd);
    }
    nsw_record(FTCP_NSW_KIND_EPOLL_WAIT, (uint64_t)max, r, e, rec, r > 0 ? 8 * (size_t)r : 0);
  } else {
    r = (int)nsw_play(FTCP_NSW_KIND_EPOLL_WAIT, (uint64_t)max, 0, 0, 0, NULL, 0, rec, 8 * (size_t)max, &e);
    if (NSW_UNLIKELY(nsw_self.went_live)) return 0; /* the caller records the real call */
    for (int i = 0; i < r; i++) {
      int fd = (int)ftcp_get_u32(rec + 8 * i + 4);
      uint64_t data = 0;
      if (nsw_ep_find(epfd, &fd, &data, 0) != 0) {
        nsw_die(FTCP_NSW_EXIT_DIVERGED, "epoll_wait: the primary's descriptor is not registered here, in stream ", nsw_self.name,
                nsw_self.name_len);
      }
      events[i].events = ftcp_get_u32(rec + 8 * i);
      events[i].data.u64 = data;
    }
  }
  nsw_end(e ? e : saved);
  return r;
}

/* Wrapped because: readiness depends on when data arrived (FT-TCP 3.8). */
NSW_EXPORT int epoll_wait(int epfd, struct epoll_event *events, int max, int timeout) {
  NSW_INIT();
  NSW_FLUSH_UNLESS(1);
  int mode = nsw_begin();
  if (NSW_LIKELY(mode == NSW_PASS)) return real_epoll_wait(epfd, events, max, timeout);
  /* Fewer events than asked is always allowed; a record holds NSW_MAX_EVENTS. */
  if (max > NSW_MAX_EVENTS) max = NSW_MAX_EVENTS;
  if (mode == NSW_PLAY) {
    int r = nsw_epoll_common(epfd, events, max, NSW_PLAY, 0);
    if (NSW_LIKELY(!nsw_went_live())) return r;
  }
  return nsw_epoll_common(epfd, events, max, NSW_RECORD, real_epoll_wait(epfd, events, max, timeout));
}

/* Wrapped because: readiness depends on when data arrived (FT-TCP 3.8). */
NSW_EXPORT int epoll_pwait(int epfd, struct epoll_event *events, int max, int timeout, const sigset_t *mask) {
  NSW_INIT();
  NSW_FLUSH_UNLESS(1);
  int mode = nsw_begin();
  if (NSW_LIKELY(mode == NSW_PASS)) return real_epoll_pwait(epfd, events, max, timeout, mask);
  if (max > NSW_MAX_EVENTS) max = NSW_MAX_EVENTS;
  if (mode == NSW_PLAY) {
    int r = nsw_epoll_common(epfd, events, max, NSW_PLAY, 0);
    if (NSW_LIKELY(!nsw_went_live())) return r;
  }
  return nsw_epoll_common(epfd, events, max, NSW_RECORD, real_epoll_pwait(epfd, events, max, timeout, mask));
}

/* ---- replicated connections: FT-TCP 3.4 (record), 3.7 (playback) ------ */

/*
 * Output commit (FT-TCP 3.4; DESIGN invariant 2): before a byte leaves on a
 * replicated connection, every earlier record of this stream must be
 * stable. Asks the agent (WAIT) and blocks until it answers (STABLE).
 */
static void nsw_commit(struct nsw_thread *t) {
  if (t->stable >= t->call_no) return;
  int fd = nsw_channel(t);
  unsigned char buf[FTCP_NSW_MAX_FRAME];
  size_t n = ftcp_nsw_encode_seq(buf, sizeof buf, FTCP_NSW_MSG_WAIT, t->call_no);
  /* Other threads' earlier records go out too: what this output shows may depend on them. */
  nsw_flush_all();
  nsw_send_frame(t, buf, n);
  size_t blen = nsw_recv_frame(fd, buf);
  const unsigned char *body = buf + FTCP_NSW_HDR_SIZE;
  if (buf[FTCP_NSW_HDR_OFF_TYPE] == FTCP_NSW_MSG_ERROR) nsw_agent_error(body, blen);
  if (buf[FTCP_NSW_HDR_OFF_TYPE] != FTCP_NSW_MSG_STABLE || blen != FTCP_NSW_SEQ_SIZE) nsw_fatal("the agent sent a bad STABLE to stream ");
  uint64_t stable = ftcp_get_u64(body + FTCP_NSW_SEQ_OFF_CALL_NO);
  if (stable < t->call_no) nsw_fatal("the agent answered WAIT before the records were stable, stream ");
  t->stable = stable;
}

/* Whether fd listens on the service's port: only its connections are replicated. */
static int nsw_is_service_socket(int fd) {
  if (nsw_service_port == 0) return 0;
  struct sockaddr_storage a;
  socklen_t len = sizeof a;
  if (real_getsockname(fd, (struct sockaddr *)&a, &len) != 0) return 0;
  if (a.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&a)->sin_port) == nsw_service_port;
  if (a.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&a)->sin6_port) == nsw_service_port;
  return 0;
}

/*
 * A replicated read or write moves at most FTCP_NSW_MAX_IO bytes a call, in
 * both modes (what the kernel moves, up to that): the RESULT of a replayed
 * read and the DONE of a replayed write carry that much. Fewer bytes than
 * asked is a legal result of every one of these calls.
 */
#define NSW_MAX_IOV 64

/*
 * The iovecs a replicated call uses: the caller's own when they hold at most
 * FTCP_NSW_MAX_IO bytes (the usual case: no copy), else a copy in `tr` cut
 * there (in at most NSW_MAX_IOV pieces). Sets *tn and *len to its count and
 * byte total.
 */
static const struct iovec *nsw_io_iov(const struct iovec *iov, int n, struct iovec *tr, int *tn, size_t *len) {
  size_t total = 0;
  int i = 0;
  for (; i < n && total <= FTCP_NSW_MAX_IO; i++) total += iov[i].iov_len;
  if (i == n && total <= FTCP_NSW_MAX_IO) {
    *tn = n;
    *len = total;
    return iov;
  }
  size_t max = FTCP_NSW_MAX_IO;
  int k = 0;
  for (i = 0; i < n && k < NSW_MAX_IOV && max > 0; i++) {
    if (iov[i].iov_len == 0) continue;
    tr[k].iov_base = iov[i].iov_base;
    tr[k].iov_len = iov[i].iov_len < max ? iov[i].iov_len : max;
    max -= tr[k].iov_len;
    k++;
  }
  *tn = k;
  *len = FTCP_NSW_MAX_IO - max;
  return tr;
}

/* Hashes the first `sent` bytes of the iovecs. */
static uint64_t nsw_iov_hash(const struct iovec *iov, int n, size_t sent) {
  uint64_t h = FTCP_NSW_HASH_INIT;
  for (int i = 0; i < n && sent > 0; i++) {
    size_t take = iov[i].iov_len < sent ? iov[i].iov_len : sent;
    h = ftcp_nsw_hash(h, iov[i].iov_base, take);
    sent -= take;
  }
  return h;
}

static void nsw_opts_drop(uint64_t key);
static int64_t nsw_now_ms(void);

/*
 * How long a replayed accept waits for the primary's descriptor number to
 * be free. In a thread-per-connection server another thread closes the
 * previous connection (no recorded call) and the kernel gives its number to
 * the next accept; in the replica that thread may not have closed it yet.
 */
#define NSW_FD_FREE_WAIT_MS 10000

/* Waits until descriptor fd is closed (bounded); true when it is free. */
static int nsw_await_free_fd(int fd) {
  int64_t deadline = nsw_now_ms() + NSW_FD_FREE_WAIT_MS;
  while (real_fcntl(fd, F_GETFD) != -1) {
    if (nsw_now_ms() > deadline) return 0;
    struct timespec ms = {0, 1000000};
    real_nanosleep(&ms, NULL);
  }
  return 1;
}

/*
 * accept and accept4. Record: a connection accepted from the service's
 * socket becomes replicated; the record keeps its descriptor number and
 * peer address. Playback: no client reaches the replica, so nothing is
 * accepted for real; the replica gets a placeholder socket at the primary's
 * descriptor number and the primary's peer address (the issue's promotion
 * later puts a rebuilt connection at that number).
 */
static int nsw_accept_common(int lfd, struct sockaddr *addr, socklen_t *alen, int flags, int use4) {
  int mode = nsw_begin();
  if (mode == NSW_PASS || !nsw_is_service_socket(lfd)) {
    if (mode != NSW_PASS) nsw_end(errno);
    return use4 ? real_accept4(lfd, addr, alen, flags) : real_accept(lfd, addr, alen);
  }
  int saved = errno;
  struct sockaddr_storage peer;
  int r, e = 0;
  if (mode == NSW_PLAY) {
    r = (int)nsw_play(FTCP_NSW_KIND_ACCEPT, (uint64_t)lfd, 0, 0, 0, NULL, 0, &peer, sizeof peer, &e);
    if (NSW_LIKELY(!nsw_went_live())) {
      if (r >= 0) {
        /* The primary's descriptor number must be free here too, or the replica has diverged. */
        if (r >= NSW_FDS || !nsw_await_free_fd(r)) {
          nsw_die(FTCP_NSW_EXIT_DIVERGED, "accept: the primary's descriptor number is taken in stream ", nsw_self.name,
                  nsw_self.name_len);
        }
        int sp[2];
        if (real_socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) nsw_fatal("accept: no placeholder socket in stream ");
        /* The pair may already sit at the primary's number (it was free). */
        if (sp[0] != r && sp[1] != r && real_dup3(sp[0], r, 0) != r) nsw_fatal("accept: cannot place the descriptor in stream ");
        if (sp[0] != r) real_close(sp[0]);
        if (sp[1] != r) real_close(sp[1]);
        if (flags & SOCK_CLOEXEC) real_fcntl(r, F_SETFD, FD_CLOEXEC);
        if (flags & SOCK_NONBLOCK) real_fcntl(r, F_SETFL, O_NONBLOCK);
        nsw_track_fd(r, NSW_FD_CONN);
        nsw_placeholder_set(r, NSW_PH_PLACEHOLDER);
        /* The agent sent the peer address as the payload; its length is the record's. */
        socklen_t plen = (socklen_t)(peer.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
        nsw_conn_keys[r] = ftcp_nsw_hash(FTCP_NSW_HASH_INIT, &peer, plen);
        nsw_opts_drop(nsw_conn_keys[r]); /* an earlier connection from the same address */
        if (addr && alen) {
          memcpy(addr, &peer, *alen < plen ? *alen : plen);
          *alen = plen;
        }
      }
      nsw_end(e ? e : saved);
      return r;
    }
  }
  r = use4 ? real_accept4(lfd, addr, alen, flags) : real_accept(lfd, addr, alen);
  e = r < 0 ? errno : 0;
  size_t plen = 0;
  if (r >= 0) {
    /* The peer is recorded even when the caller did not ask for it: playback needs it. */
    socklen_t len = sizeof peer;
    if (real_getpeername(r, (struct sockaddr *)&peer, &len) == 0) plen = len;
    nsw_track_fd(r, NSW_FD_CONN);
    if (r < NSW_FDS) nsw_conn_keys[r] = ftcp_nsw_hash(FTCP_NSW_HASH_INIT, &peer, plen);
  }
  nsw_record(FTCP_NSW_KIND_ACCEPT, (uint64_t)lfd, r, e, &peer, plen);
  nsw_end(e ? e : saved);
  return r;
}

static socklen_t nsw_sockaddr_len(const struct sockaddr_storage *a) {
  return (socklen_t)(a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
}

/* getsockname and getpeername of a replicated connection: the primary's addresses. */
static int nsw_sockname(int fd, struct sockaddr *addr, socklen_t *alen, int peer) {
  int (*fn)(int, struct sockaddr *, socklen_t *) = peer ? real_getpeername : real_getsockname;
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return fn(fd, addr, alen);
  int mode = nsw_begin();
  if (mode == NSW_PASS) return fn(fd, addr, alen);
  int saved = errno;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  int r, e = 0;
  if (mode == NSW_PLAY) {
    r = (int)nsw_play(FTCP_NSW_KIND_SOCKNAME, (uint64_t)peer, 0, 0, 0, NULL, 0, &ss, sizeof ss, &e);
    if (NSW_LIKELY(!nsw_went_live())) {
      if (r == 0 && addr && alen) {
        socklen_t len = nsw_sockaddr_len(&ss);
        memcpy(addr, &ss, *alen < len ? *alen : len);
        *alen = len;
      }
      nsw_end(e ? e : saved);
      return r;
    }
  }
  socklen_t len = sizeof ss;
  r = fn(fd, (struct sockaddr *)&ss, &len);
  e = r < 0 ? errno : 0;
  if (r == 0 && addr && alen) {
    memcpy(addr, &ss, *alen < len ? *alen : len);
    *alen = len;
  }
  nsw_record(FTCP_NSW_KIND_SOCKNAME, (uint64_t)peer, r, e, &ss, r == 0 ? len : 0);
  nsw_end(e ? e : saved);
  return r;
}

/* Wrapped because: a replica's replicated connection is a placeholder; its addresses are the primary's. */
NSW_EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *alen) {
  NSW_INIT();
  return nsw_sockname(fd, addr, alen, 1);
}

/* Wrapped because: a replica's replicated connection is a placeholder; its addresses are the primary's. */
NSW_EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *alen) {
  NSW_INIT();
  return nsw_sockname(fd, addr, alen, 0);
}

/* Wrapped because: a connection of the service is replicated; its number and peer are part of the record. */
NSW_EXPORT int accept(int lfd, struct sockaddr *addr, socklen_t *alen) {
  NSW_INIT();
  NSW_FLUSH();
  return nsw_accept_common(lfd, addr, alen, 0, 0);
}

/* Wrapped because: the same as accept, with flags. */
NSW_EXPORT int accept4(int lfd, struct sockaddr *addr, socklen_t *alen, int flags) {
  NSW_INIT();
  NSW_FLUSH();
  return nsw_accept_common(lfd, addr, alen, flags, 1);
}

/*
 * The pattern for reads on a replicated connection (FT-TCP 3.8 readlength).
 * IOV, IOVCNT: the program's buffers, as nsw_io_iov gives them (LEN bytes).
 * Record: the real call; the record keeps the length asked and the result
 * or the error (EAGAIN included), not the bytes, which the SSW logged as
 * client segments. Playback: the primary's result and error, with the bytes
 * from the buffer read straight into the program's buffers (FT-TCP 3.7:
 * "copies the same number of bytes as the primary got").
 */
#define NSW_CONN_READ(FD, IOV, IOVCNT, LEN, REAL_CALL)                                   \
  do {                                                                                  \
    int mode_ = nsw_begin();                                                            \
    if (mode_ == NSW_PASS) return REAL_CALL;                                            \
    int saved_ = errno;                                                                 \
    ssize_t r_;                                                                         \
    int e_ = 0;                                                                         \
    unsigned char key_[FTCP_NSW_CONN_KEY_SIZE];                                         \
    ftcp_put_u64(key_, nsw_conn_keys[FD]);                                              \
    if (mode_ == NSW_PLAY) {                                                            \
      r_ = (ssize_t)nsw_play_iov(FTCP_NSW_KIND_RECV, LEN, 0, 0, 0, key_, 8, IOV, IOVCNT, &e_); \
      if (NSW_LIKELY(!nsw_went_live())) {                                               \
        nsw_end(e_ ? e_ : saved_);                                                      \
        return r_;                                                                      \
      }                                                                                 \
    }                                                                                   \
    r_ = REAL_CALL;                                                                     \
    e_ = r_ < 0 ? errno : 0;                                                            \
    nsw_record(FTCP_NSW_KIND_RECV, LEN, r_, e_, key_, sizeof key_);                     \
    nsw_end(e_ ? e_ : saved_);                                                          \
    return r_;                                                                          \
  } while (0)

/*
 * Playback of a write: the bytes the primary's call moved, as many as it
 * moved, go to the agent (DONE), which compares their hash with the
 * record's and keeps them in the connection's send buffer. The shim compares
 * too, so a replica that diverged stops here, before it goes on.
 */
static void nsw_sent(const struct iovec *iov, int n, size_t len, uint64_t arg, ssize_t r, const unsigned char *hash) {
  if (r <= 0) return;
  if ((size_t)r > len) nsw_die(FTCP_NSW_EXIT_DIVERGED, "the primary's write moved more bytes than the replica's offers, in stream ", nsw_self.name, nsw_self.name_len);
  uint64_t mine = nsw_iov_hash(iov, n, (size_t)r);
  int same = mine == ftcp_get_u64(hash);
  nsw_done(FTCP_NSW_KIND_SEND, arg, same ? FTCP_NSW_CALL_F_CHECKED : 0, r, 0, iov, n, (size_t)r);
  if (!same) nsw_await_error();
}

/*
 * The pattern for writes on a replicated connection. Record: output commit
 * first (FT-TCP 3.4; DESIGN invariant 2), then the real call, then a record
 * with the length asked, the result and a hash of the bytes sent ("a short
 * hash ... as a safety check against divergence"). Playback: nothing
 * leaves; the call returns the primary's result (FT-TCP 3.7) and the bytes
 * it moved go to the agent (nsw_sent).
 */
#define NSW_CONN_WRITE(FD, IOV, IOVCNT, LEN, REAL_CALL)                                  \
  do {                                                                                  \
    int mode_ = nsw_begin();                                                            \
    if (mode_ == NSW_PASS) return REAL_CALL;                                            \
    int saved_ = errno;                                                                 \
    ssize_t r_;                                                                         \
    int e_ = 0;                                                                         \
    unsigned char h_[2 * 8]; /* the record's payload: key, hash */                     \
    ftcp_put_u64(h_, nsw_conn_keys[FD]);                                                \
    if (mode_ == NSW_PLAY) {                                                            \
      memset(h_ + 8, 0, 8);                                                             \
      r_ = (ssize_t)nsw_play(FTCP_NSW_KIND_SEND, LEN, 0, 0, 0, h_, 8, h_ + 8, 8, &e_);  \
      if (NSW_LIKELY(!nsw_went_live())) {                                               \
        nsw_sent(IOV, IOVCNT, LEN, LEN, r_, h_ + 8);                                    \
        nsw_end(e_ ? e_ : saved_);                                                      \
        return r_;                                                                      \
      }                                                                                 \
    }                                                                                   \
    nsw_commit(&nsw_self);                                                              \
    r_ = REAL_CALL;                                                                     \
    e_ = r_ < 0 ? errno : 0;                                                            \
    ftcp_put_u64(h_ + 8, nsw_iov_hash(IOV, IOVCNT, r_ > 0 ? (size_t)r_ : 0));            \
    nsw_record(FTCP_NSW_KIND_SEND, LEN, r_, e_, h_, sizeof h_);                         \
    nsw_end(e_ ? e_ : saved_);                                                          \
    return r_;                                                                          \
  } while (0)

static inline size_t nsw_io_cap(size_t len) { return len < FTCP_NSW_MAX_IO ? len : FTCP_NSW_MAX_IO; }

static ssize_t nsw_conn_read(int fd, void *buf, size_t count) {
  struct iovec one = {buf, nsw_io_cap(count)};
  NSW_CONN_READ(fd, &one, 1, one.iov_len, real_read(fd, buf, one.iov_len));
}

/* Wrapped because: a read on a replicated connection has a nondeterministic length (FT-TCP 3.8). */
NSW_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags) {
  NSW_INIT();
  NSW_FLUSH_UNLESS(nsw_fd_kind(fd) == NSW_FD_CONN);
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_recv(fd, buf, len, flags);
  struct iovec one = {buf, nsw_io_cap(len)};
  NSW_CONN_READ(fd, &one, 1, one.iov_len, real_recv(fd, buf, one.iov_len, flags));
}

/* Wrapped because: a read on a replicated connection has a nondeterministic length (FT-TCP 3.8). */
NSW_EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr, socklen_t *alen) {
  NSW_INIT();
  NSW_FLUSH_UNLESS(nsw_fd_kind(fd) == NSW_FD_CONN);
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_recvfrom(fd, buf, len, flags, addr, alen);
  struct iovec one = {buf, nsw_io_cap(len)};
  NSW_CONN_READ(fd, &one, 1, one.iov_len, real_recvfrom(fd, buf, one.iov_len, flags, addr, alen));
}

/* Wrapped because: a read on a replicated connection has a nondeterministic length (FT-TCP 3.8). */
NSW_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
  NSW_INIT();
  NSW_FLUSH_UNLESS(nsw_fd_kind(fd) == NSW_FD_CONN);
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_recvmsg(fd, msg, flags);
  struct iovec tr[NSW_MAX_IOV];
  int tn;
  size_t len;
  const struct iovec *io = nsw_io_iov(msg->msg_iov, (int)msg->msg_iovlen, tr, &tn, &len);
  struct msghdr m = *msg;
  m.msg_iov = (struct iovec *)io;
  m.msg_iovlen = (size_t)tn;
  /* A replicated read carries no ancillary data, in either mode, so both see the same. */
  m.msg_control = NULL;
  m.msg_controllen = 0;
  msg->msg_controllen = 0;
  msg->msg_flags = 0;
  NSW_CONN_READ(fd, io, tn, len, real_recvmsg(fd, &m, flags));
}

/* Wrapped because: a read on a replicated connection has a nondeterministic length (FT-TCP 3.8). */
NSW_EXPORT ssize_t readv(int fd, const struct iovec *iov, int n) {
  NSW_INIT();
  NSW_FLUSH_UNLESS(nsw_fd_kind(fd) == NSW_FD_CONN);
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_readv(fd, iov, n);
  struct iovec tr[NSW_MAX_IOV];
  int tn;
  size_t len;
  const struct iovec *io = nsw_io_iov(iov, n, tr, &tn, &len);
  NSW_CONN_READ(fd, io, tn, len, real_readv(fd, io, tn));
}

/* Wrapped because: output on a replicated connection waits for stability (output commit). */
NSW_EXPORT ssize_t write(int fd, const void *buf, size_t len) {
  NSW_INIT();
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_write(fd, buf, len);
  struct iovec one = {(void *)buf, nsw_io_cap(len)};
  NSW_CONN_WRITE(fd, &one, 1, one.iov_len, real_write(fd, buf, one.iov_len));
}

/* Wrapped because: output on a replicated connection waits for stability (output commit). */
NSW_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags) {
  NSW_INIT();
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_send(fd, buf, len, flags);
  struct iovec one = {(void *)buf, nsw_io_cap(len)};
  NSW_CONN_WRITE(fd, &one, 1, one.iov_len, real_send(fd, buf, one.iov_len, flags));
}

/* Wrapped because: output on a replicated connection waits for stability (output commit). */
NSW_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr, socklen_t alen) {
  NSW_INIT();
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_sendto(fd, buf, len, flags, addr, alen);
  struct iovec one = {(void *)buf, nsw_io_cap(len)};
  NSW_CONN_WRITE(fd, &one, 1, one.iov_len, real_sendto(fd, buf, one.iov_len, flags, addr, alen));
}

/* Wrapped because: output on a replicated connection waits for stability (output commit). */
NSW_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  NSW_INIT();
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_sendmsg(fd, msg, flags);
  struct iovec tr[NSW_MAX_IOV];
  int tn;
  size_t len;
  const struct iovec *io = nsw_io_iov(msg->msg_iov, (int)msg->msg_iovlen, tr, &tn, &len);
  struct msghdr m = *msg;
  m.msg_iov = (struct iovec *)io;
  m.msg_iovlen = (size_t)tn;
  NSW_CONN_WRITE(fd, io, tn, len, real_sendmsg(fd, &m, flags));
}

/* Wrapped because: output on a replicated connection waits for stability (output commit). */
NSW_EXPORT ssize_t writev(int fd, const struct iovec *iov, int n) {
  NSW_INIT();
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_writev(fd, iov, n);
  struct iovec tr[NSW_MAX_IOV];
  int tn;
  size_t len;
  const struct iovec *io = nsw_io_iov(iov, n, tr, &tn, &len);
  NSW_CONN_WRITE(fd, io, tn, len, real_writev(fd, io, tn));
}

/*
 * Bytes [at, at + len) of a file, a stack buffer at a time: hashed (sink -1)
 * or also sent to the channel `sink`. Past the end of the file (it shrank)
 * zeros stand in, so the hash differs and the divergence shows. Returns the
 * hash, and 0 or -1 in *short_read.
 */
static uint64_t nsw_file_bytes(int in, off_t at, size_t len, int sink, int *short_read) {
  unsigned char chunk[4096];
  uint64_t h = FTCP_NSW_HASH_INIT;
  *short_read = 0;
  while (len > 0) {
    size_t want = len < sizeof chunk ? len : sizeof chunk, got = 0;
    while (got < want && !*short_read) {
      ssize_t k = real_pread(in, chunk + got, want - got, at + (off_t)got);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) *short_read = -1;
      else got += (size_t)k;
    }
    if (got < want) memset(chunk + got, 0, want - got);
    h = ftcp_nsw_hash(h, chunk, want);
    if (sink >= 0) nsw_send_all(sink, chunk, want);
    at += (off_t)want;
    len -= want;
  }
  return h;
}

/*
 * Wrapped because: output on a replicated connection waits for stability
 * (output commit), and its bytes (read back from the file) are hashed in
 * record and compared and kept in playback, like a write's.
 */
NSW_EXPORT ssize_t sendfile(int out, int in, off_t *offset, size_t count) {
  NSW_INIT();
  if (NSW_LIKELY(nsw_fd_kind(out) != NSW_FD_CONN)) return real_sendfile(out, in, offset, count);
  int mode = nsw_begin();
  if (mode == NSW_PASS) return real_sendfile(out, in, offset, count);
  int saved = errno;
  size_t n = nsw_io_cap(count);
  off_t at = offset ? *offset : real_lseek(in, 0, SEEK_CUR);
  unsigned char key[FTCP_NSW_CONN_KEY_SIZE], hb[2 * 8]; /* hb: the record's payload, key and hash */
  ssize_t r;
  int e = 0, short_read;
  if (at < 0) nsw_fatal("sendfile from a file without a position in stream ");
  if (mode == NSW_PLAY) {
    /* The replica sends nothing: the file's bytes the primary's call moved go to the agent, and the position moves. */
    ftcp_put_u64(key, nsw_conn_keys[out]);
    r = (ssize_t)nsw_play(FTCP_NSW_KIND_SEND, n, 0, 0, 0, key, 8, hb, 8, &e);
    if (NSW_LIKELY(!nsw_went_live())) {
      if (r > 0) {
        if ((size_t)r > n) nsw_die(FTCP_NSW_EXIT_DIVERGED, "the primary's sendfile moved more bytes than the replica's asks, in stream ", nsw_self.name, nsw_self.name_len);
        nsw_out_lock(&nsw_self);
        nsw_done_head(FTCP_NSW_KIND_SEND, n, 0, r, 0, (size_t)r, NULL, 0);
        uint64_t mine = nsw_file_bytes(in, at, (size_t)r, nsw_self.fd, &short_read);
        nsw_out_unlock(&nsw_self);
        if (mine != ftcp_get_u64(hb)) nsw_await_error();
        if (offset) *offset = at + r;
        else real_lseek(in, at + r, SEEK_SET);
      }
      nsw_end(e ? e : saved);
      return r;
    }
  }
  nsw_commit(&nsw_self);
  r = real_sendfile(out, in, offset, n);
  e = r < 0 ? errno : 0;
  uint64_t h = FTCP_NSW_HASH_INIT;
  if (r > 0) {
    h = nsw_file_bytes(in, at, (size_t)r, -1, &short_read);
    if (short_read) nsw_fatal("sendfile: cannot read back the bytes sent in stream ");
  }
  ftcp_put_u64(hb, nsw_conn_keys[out]);
  ftcp_put_u64(hb + 8, h);
  nsw_record(FTCP_NSW_KIND_SEND, n, r, e, hb, sizeof hb);
  nsw_end(e ? e : saved);
  return r;
}

/* Wrapped because: the same as sendfile, under its large-file name. */
NSW_EXPORT ssize_t sendfile64(int out, int in, off_t *offset, size_t count) { return sendfile(out, in, offset, count); }

/* ---- the socket of a replicated connection: options, shutdown, queue sizes -- */

/*
 * A replica's replicated descriptor is a placeholder (a unix socket) until
 * promotion, so socket-level calls on it cannot be performed: a TCP option
 * fails there (iperf3 then gives up, and a replica that ends like that must
 * never look like a clean exit), and an answer (TCP_INFO, SO_DOMAIN, the
 * bytes queued) would be the placeholder's. They are recorded and answered
 * from the record like every other call. What the program set or shut down
 * on the placeholder is kept by connection and done again on the rebuilt
 * socket at promotion (nsw_opts_apply, nsw_opts_shutdown).
 */
#define NSW_OPTS 4096
#define NSW_OPT_SHUTDOWN (-1)       /* level of an entry that is a shutdown; name is how */
#define NSW_OPT_UNREPEATABLE 0xffffu /* len of an option that cannot be set again (kTLS keys, a long value) */
static struct {
  uint64_t key;
  int level, name;
  uint32_t len; /* 0 when the slot is free */
  unsigned char value[FTCP_NSW_SOCKOPT_CMP];
} nsw_opts[NSW_OPTS];
static int nsw_opts_used;
static pthread_mutex_t nsw_opts_lock = PTHREAD_MUTEX_INITIALIZER;

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

/* Keeps (or replaces) what the program set on connection key's placeholder. */
static void nsw_opts_keep(uint64_t key, int level, int name, const void *value, socklen_t len) {
  /* kTLS state is the kernel's record sequence at the time it was set: it cannot be set again later. */
  int unrepeatable = !value || len == 0 || len > FTCP_NSW_SOCKOPT_CMP || level == SOL_TLS || (level == IPPROTO_TCP && name == TCP_ULP);
  pthread_mutex_lock(&nsw_opts_lock);
  int slot = -1;
  for (int i = 0; i < nsw_opts_used; i++) {
    if (nsw_opts[i].len && nsw_opts[i].key == key && nsw_opts[i].level == level && nsw_opts[i].name == name) {
      slot = i;
      break;
    }
    if (!nsw_opts[i].len && slot < 0 && level != NSW_OPT_SHUTDOWN) slot = i; /* order matters for shutdowns: append */
  }
  if (slot < 0 && nsw_opts_used < NSW_OPTS) slot = nsw_opts_used++;
  if (slot < 0) {
    pthread_mutex_unlock(&nsw_opts_lock);
    nsw_fatal("too many socket options on replicated connections to keep for promotion, stream ");
  }
  nsw_opts[slot].key = key;
  nsw_opts[slot].level = level;
  nsw_opts[slot].name = name;
  nsw_opts[slot].len = unrepeatable ? NSW_OPT_UNREPEATABLE : (uint32_t)len;
  if (!unrepeatable) memcpy(nsw_opts[slot].value, value, len);
  pthread_mutex_unlock(&nsw_opts_lock);
}

/* Forgets what was kept for connection key (a new connection from the same peer, or its last descriptor closed). */
static void nsw_opts_drop(uint64_t key) {
  pthread_mutex_lock(&nsw_opts_lock);
  for (int i = 0; i < nsw_opts_used; i++) {
    if (nsw_opts[i].len && nsw_opts[i].key == key) nsw_opts[i].len = 0;
  }
  while (nsw_opts_used > 0 && !nsw_opts[nsw_opts_used - 1].len) nsw_opts_used--;
  pthread_mutex_unlock(&nsw_opts_lock);
}

/*
 * Sets again, on the rebuilt socket fd, every option the program set on
 * connection key's placeholder (shutdowns: apply_shutdowns). Returns 0, or
 * -1 with errno (ENOTSUP for an option that cannot be set again).
 */
static int nsw_opts_apply(uint64_t key, int fd, int apply_shutdowns) {
  int r = 0, e = 0;
  pthread_mutex_lock(&nsw_opts_lock);
  for (int i = 0; i < nsw_opts_used && r == 0; i++) {
    if (!nsw_opts[i].len || nsw_opts[i].key != key || (nsw_opts[i].level == NSW_OPT_SHUTDOWN) != apply_shutdowns) continue;
    if (nsw_opts[i].len == NSW_OPT_UNREPEATABLE) {
      r = -1;
      e = ENOTSUP;
    } else if (apply_shutdowns) {
      r = real_shutdown(fd, nsw_opts[i].name);
      e = errno;
    } else {
      r = real_setsockopt(fd, nsw_opts[i].level, nsw_opts[i].name, nsw_opts[i].value, nsw_opts[i].len);
      e = errno;
    }
  }
  pthread_mutex_unlock(&nsw_opts_lock);
  errno = e;
  return r;
}

/* Wrapped because: a replica's replicated descriptor is a placeholder that has no TCP options (see above). */
NSW_EXPORT int setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
  NSW_INIT();
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_setsockopt(fd, level, name, value, len);
  int mode = nsw_begin();
  if (mode == NSW_PASS) return real_setsockopt(fd, level, name, value, len);
  int saved = errno, e = 0, r;
  uint64_t arg = FTCP_NSW_SOCKOPT_ARG(level, name, 0);
  size_t cmp = value ? (len < FTCP_NSW_SOCKOPT_CMP ? len : FTCP_NSW_SOCKOPT_CMP) : 0;
  if (mode == NSW_PLAY) {
    unsigned char echo[FTCP_NSW_SOCKOPT_CMP];
    r = (int)nsw_play(FTCP_NSW_KIND_SOCKOPT, arg, 0, 0, 0, value, cmp, echo, sizeof echo, &e);
    if (NSW_LIKELY(!nsw_went_live())) {
      if (r == 0) nsw_opts_keep(nsw_conn_keys[fd], level, name, value, len);
      nsw_end(e ? e : saved);
      return r;
    }
  }
  r = real_setsockopt(fd, level, name, value, len);
  e = r < 0 ? errno : 0;
  nsw_record(FTCP_NSW_KIND_SOCKOPT, arg, r, e, value, cmp);
  nsw_end(e ? e : saved);
  return r;
}

/* Wrapped because: on a placeholder the answer would be a unix socket's (TCP_INFO, SO_DOMAIN), not the primary's. */
NSW_EXPORT int getsockopt(int fd, int level, int name, void *restrict value, socklen_t *restrict len_) {
  NSW_INIT();
  socklen_t *len = nsw_launder(len_);
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_getsockopt(fd, level, name, value, len);
  int mode = nsw_begin();
  if (mode == NSW_PASS) return real_getsockopt(fd, level, name, value, len);
  int saved = errno, e = 0, r;
  uint64_t arg = FTCP_NSW_SOCKOPT_ARG(level, name, 1);
  /* The payload: the option's length, then its value. */
  unsigned char rec[FTCP_NSW_MAX_PAYLOAD];
  size_t cap = value && len ? *len : 0;
  if (cap > sizeof rec - 4) cap = sizeof rec - 4;
  if (mode == NSW_PLAY) {
    memset(rec, 0, 4);
    r = (int)nsw_play(FTCP_NSW_KIND_SOCKOPT, arg, 0, 0, 0, NULL, 0, rec, 4 + cap, &e);
    if (NSW_LIKELY(!nsw_went_live())) {
      if (r == 0 && len) {
        socklen_t got = (socklen_t)ftcp_get_u32(rec);
        if (got > cap) got = (socklen_t)cap;
        if (value) memcpy(value, rec + 4, got);
        *len = got;
      }
      nsw_end(e ? e : saved);
      return r;
    }
  }
  socklen_t got = (socklen_t)cap;
  r = real_getsockopt(fd, level, name, cap ? rec + 4 : value, cap ? &got : len);
  e = r < 0 ? errno : 0;
  if (r == 0 && cap) {
    if (got > cap) got = (socklen_t)cap;
    memcpy(value, rec + 4, got);
    *len = got;
  }
  ftcp_put_u32(rec, r == 0 && cap ? (uint32_t)got : 0);
  nsw_record(FTCP_NSW_KIND_SOCKOPT, arg, r, e, rec, r == 0 ? 4 + (size_t)(cap ? got : 0) : 0);
  nsw_end(e ? e : saved);
  return r;
}

/* Wrapped because: a placeholder cannot send the FIN; the rebuilt socket does it at promotion. */
NSW_EXPORT int shutdown(int fd, int how) {
  NSW_INIT();
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN)) return real_shutdown(fd, how);
  int mode = nsw_begin();
  if (mode == NSW_PASS) return real_shutdown(fd, how);
  int saved = errno, e = 0, r;
  if (mode == NSW_PLAY) {
    r = (int)nsw_play(FTCP_NSW_KIND_SHUTDOWN, (uint64_t)how, 0, 0, 0, NULL, 0, NULL, 0, &e);
    if (NSW_LIKELY(!nsw_went_live())) {
      if (r == 0) nsw_opts_keep(nsw_conn_keys[fd], NSW_OPT_SHUTDOWN, how, &how, sizeof how);
      nsw_end(e ? e : saved);
      return r;
    }
  }
  r = real_shutdown(fd, how);
  e = r < 0 ? errno : 0;
  nsw_record(FTCP_NSW_KIND_SHUTDOWN, (uint64_t)how, r, e, NULL, 0);
  nsw_end(e ? e : saved);
  return r;
}

/* The ioctls whose answer is the connection's queue sizes (SIOCINQ is FIONREAD, SIOCOUTQ is TIOCOUTQ). */
static int nsw_is_queue_ioctl(unsigned long req) { return req == FIONREAD || req == SIOCOUTQ || req == SIOCOUTQNSD; }

/*
 * Wrapped because: how many bytes a connection has queued depends on timing,
 * and a placeholder has none. Every other request passes through.
 */
NSW_EXPORT int ioctl(int fd, unsigned long req, ...) {
  NSW_INIT();
  va_list ap;
  va_start(ap, req);
  void *argp = va_arg(ap, void *); /* every ioctl argument fits a pointer, as glibc reads it */
  va_end(ap);
  if (NSW_LIKELY(nsw_fd_kind(fd) != NSW_FD_CONN || !nsw_is_queue_ioctl(req))) return real_ioctl(fd, req, argp);
  int mode = nsw_begin();
  if (mode == NSW_PASS) return real_ioctl(fd, req, argp);
  int saved = errno, e = 0, r;
  unsigned char v[4] = {0};
  if (mode == NSW_PLAY) {
    r = (int)nsw_play(FTCP_NSW_KIND_IOCTL, req, 0, 0, 0, NULL, 0, v, sizeof v, &e);
    if (NSW_LIKELY(!nsw_went_live())) {
      if (r == 0 && argp) *(int *)argp = (int)ftcp_get_u32(v);
      nsw_end(e ? e : saved);
      return r;
    }
  }
  r = real_ioctl(fd, req, argp);
  e = r < 0 ? errno : 0;
  if (r == 0 && argp) ftcp_put_u32(v, (uint32_t) * (int *)argp);
  nsw_record(FTCP_NSW_KIND_IOCTL, req, r, e, v, r == 0 ? sizeof v : 0);
  nsw_end(e ? e : saved);
  return r;
}

/* ---- promotion: placeholders become rebuilt TCP sockets (DESIGN "Failover", step 4) -- */

/*
 * How long writing a rebuilt connection's unacknowledged outstream may go
 * without progress before the rebuild counts as failed. The send buffer is
 * made large enough to take it all at once, so this is only reached when
 * the kernel refuses that.
 */
#define NSW_OUTQ_STALL_MS 10000

/* Appends len bytes of s to a NUL-terminated line of cap bytes; cuts rather than overflows. */
static void nsw_cat(char *line, size_t *n, size_t cap, const char *s, size_t len) {
  if (len > cap - 1 - *n) len = cap - 1 - *n;
  memcpy(line + *n, s, len);
  *n += len;
  line[*n] = 0;
}

static void nsw_cat_num(char *line, size_t *n, size_t cap, int64_t v) {
  char num[24];
  size_t k = 0;
  if (v < 0) {
    num[k++] = '-';
    v = -v;
  }
  k += nsw_utoa(num + k, (uint64_t)v);
  nsw_cat(line, n, cap, num, k);
}

/* Removes (add 0) or restores (add 1) every epoll registration the program made for fd. Returns 0, or -1
 * with errno when a restore failed. The kernel would drop the old file's registrations only once every
 * reference to it is closed (a forked child may hold one), so they are removed explicitly. */
static int nsw_ep_rearm(int fd, int add) {
  int r = 0, e = 0;
  pthread_mutex_lock(&nsw_ep_lock);
  for (int i = 0; i < nsw_ep_used; i++) {
    if (nsw_ep[i].epfd < 0 || nsw_ep[i].fd != fd) continue;
    if (!add) {
      (void)real_epoll_ctl(nsw_ep[i].epfd, EPOLL_CTL_DEL, fd, NULL);
      continue;
    }
    struct epoll_event ev = {.events = nsw_ep[i].events, .data.u64 = nsw_ep[i].data};
    if (real_epoll_ctl(nsw_ep[i].epfd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno != EEXIST && r == 0) {
      r = -1;
      e = errno;
    }
  }
  pthread_mutex_unlock(&nsw_ep_lock);
  errno = e;
  return r;
}

/* Milliseconds on the monotonic clock (the real one: this is the shim's own timing). */
static int64_t nsw_now_ms(void) {
  struct timespec ts;
  real_clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Writes the unacknowledged outstream on a rebuilt socket, all of it, at
 * once (DESIGN "Failover" step 6: resend without waiting for the client's
 * retransmission timer). A send buffer that holds it lets the write
 * complete now, whatever the client's window, while the kernel sends as
 * the window allows, so one slow client does not hold up the process's
 * other rebuilds. Forcing the size locks it (no autotuning on this
 * connection), so only an outstream the default buffer cannot hold gets
 * it. Otherwise, or if the kernel refuses, poll for room, giving up after
 * NSW_OUTQ_STALL_MS without progress.
 */
static int nsw_write_outq(int fd, const unsigned char *p, size_t len) {
  if (len == 0) return 0;
  int have = 0;
  socklen_t sl = sizeof have;
  if (real_getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &have, &sl) == 0 && have >= 0 && (size_t)have < 2 * len && len < 0x3fff0000) {
    int want = (int)(len + 65536); /* doubled by the kernel, as SO_SNDBUF is */
    (void)real_setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof want); /* best effort: the loop waits otherwise */
  }
  int64_t progress = nsw_now_ms();
  while (len > 0) {
    ssize_t n = real_send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      progress = nsw_now_ms();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    int64_t left = NSW_OUTQ_STALL_MS - (nsw_now_ms() - progress);
    if (left <= 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    struct pollfd pfd = {fd, POLLOUT, 0};
    if (real_poll(&pfd, 1, (int)left) < 0 && errno != EINTR) return -1;
  }
  return 0;
}

/*
 * A rebuilt socket that cannot be used (its registrations or its outstream
 * failed) is reset, so the client learns at once instead of waiting on a
 * connection nobody serves, and the number gets a socket whose peer is
 * gone: the program reads EOF (its epoll sets report it readable) and
 * closes it, as after any client that went away.
 */
static void nsw_adopt_abandon(int fd, int fd_flags, int fl_flags) {
  struct linger lg = {1, 0};
  (void)real_setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  nsw_ep_rearm(fd, 0);
  int sp[2];
  if (real_socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) return; /* the broken socket stays; reads get errors */
  real_close(sp[1]);
  if (real_dup3(sp[0], fd, fd_flags & FD_CLOEXEC ? O_CLOEXEC : 0) == fd) {
    (void)real_fcntl(fd, F_SETFL, fl_flags);
    (void)nsw_ep_rearm(fd, 1);
  }
  real_close(sp[0]);
}

/*
 * Puts the connection `rb` describes at descriptor number fd in place of
 * its placeholder: the TCP_REPAIR rebuild, the number (dup3, with the
 * placeholder's FD_CLOEXEC and status flags, O_NONBLOCK above all), the
 * epoll registrations, then the outstream. Returns 0, or an errno with
 * *step naming what failed; on failure fd reads EOF and is not a TCP socket.
 */
static int nsw_rebuild(int fd, const struct ftcp_nsw_rebuild *rb, uint16_t *step, const char **step_name) {
  enum ftcp_repair_step failed = FTCP_REPAIR_SOCKET;
  int tmp = ftcp_tcp_repair_with(&rb->state, rb->inq, rb->inq_len, &failed, &nsw_repair_real);
  if (tmp < 0) {
    *step = (uint16_t)failed;
    *step_name = ftcp_repair_step_name(failed);
    return errno;
  }
  int e;
  int fd_flags = real_fcntl(fd, F_GETFD);
  int fl_flags = real_fcntl(fd, F_GETFL);
  *step = FTCP_NSW_ADOPT_STEP_PLACE;
  *step_name = "place";
  if (fd_flags < 0 || fl_flags < 0) {
    e = errno;
    real_close(tmp);
    return e;
  }
  nsw_ep_rearm(fd, 0);
  if (real_dup3(tmp, fd, fd_flags & FD_CLOEXEC ? O_CLOEXEC : 0) != fd) {
    e = errno;
    real_close(tmp);
    (void)nsw_ep_rearm(fd, 1); /* the placeholder is still there */
    return e;
  }
  real_close(tmp);
  if (real_fcntl(fd, F_SETFL, fl_flags) != 0) goto abandon;
  *step = FTCP_NSW_ADOPT_STEP_EPOLL;
  *step_name = "epoll re-registration";
  if (nsw_ep_rearm(fd, 1) != 0) goto abandon;
  *step = FTCP_NSW_ADOPT_STEP_OPTIONS;
  *step_name = "socket options set on the placeholder";
  if (nsw_opts_apply(nsw_conn_keys[fd], fd, 0) != 0) goto abandon;
  *step = FTCP_NSW_ADOPT_STEP_OUTQ;
  *step_name = "unacknowledged outstream";
  if (nsw_write_outq(fd, rb->outq, rb->outq_len) != 0) goto abandon;
  /* After the outstream: a FIN the program asked for follows its last byte. */
  *step = FTCP_NSW_ADOPT_STEP_SHUTDOWN;
  *step_name = "shutdown made on the placeholder";
  if (nsw_opts_apply(nsw_conn_keys[fd], fd, 1) != 0) goto abandon;
  *step = FTCP_NSW_ADOPT_STEP_NONE;
  *step_name = NULL;
  return 0;
abandon:
  e = errno;
  nsw_adopt_abandon(fd, fd_flags, fl_flags);
  return e;
}

/* Tells the agent how an adoption ended; a failure also gets one line on stderr (rule 6). */
static void nsw_adopt_report(struct nsw_thread *t, int fd, uint64_t key, int err, uint16_t step, const char *step_name,
                             const char *detail, size_t detail_len) {
  if (step != FTCP_NSW_ADOPT_STEP_NONE) {
    char line[640];
    size_t n = 0;
    line[0] = 0;
    nsw_cat(line, &n, sizeof line, "replicated descriptor ", 22);
    nsw_cat_num(line, &n, sizeof line, fd);
    nsw_cat(line, &n, sizeof line, " was not rebuilt, failed at ", 28);
    nsw_cat(line, &n, sizeof line, step_name, strlen(step_name));
    if (err) {
      nsw_cat(line, &n, sizeof line, " (errno ", 8);
      nsw_cat_num(line, &n, sizeof line, err);
      nsw_cat(line, &n, sizeof line, ")", 1);
    }
    if (detail_len) {
      nsw_cat(line, &n, sizeof line, ": ", 2);
      nsw_cat(line, &n, sizeof line, detail, detail_len);
    }
    nsw_cat(line, &n, sizeof line, "; it reads EOF now, stream ", 27);
    nsw_say(line, n, t->name, t->name_len);
  }
  struct ftcp_nsw_adopted a = {fd, step == FTCP_NSW_ADOPT_STEP_NONE ? fd : -1, key, err, step, step_name};
  unsigned char buf[FTCP_NSW_HDR_SIZE + FTCP_NSW_ADOPTED_FIXED + FTCP_NSW_MAX_STEP_NAME];
  size_t n = ftcp_nsw_encode_adopted(buf, sizeof buf, &a);
  if (!n) nsw_fatal("cannot encode ADOPTED in stream ");
  nsw_send_frame(t, buf, n);
}

/* One placeholder: ADOPT, the agent's REBUILD or ERROR, the rebuild, ADOPTED. */
/* Returns 0 when the connection at fd was rebuilt. */
static int nsw_adopt_one(struct nsw_thread *t, int fd) {
  int chan = nsw_channel(t);
  uint64_t key = nsw_conn_keys[fd];
  unsigned char buf[FTCP_NSW_MAX_FRAME];
  size_t n = ftcp_nsw_encode_adopt(buf, sizeof buf, fd, key);
  nsw_send_frame(t, buf, n);
  nsw_recv_all(chan, buf, FTCP_NSW_HDR_SIZE);
  if (buf[FTCP_NSW_HDR_OFF_TYPE] == FTCP_NSW_MSG_ERROR) {
    /* The agent refused this one rebuild (no plan for it); the stream goes on. */
    long len = ftcp_nsw_check_header(buf);
    if (len < FTCP_NSW_ERROR_OFF_TEXT) nsw_fatal("the agent sent a bad ERROR for ADOPT to stream ");
    nsw_recv_all(chan, buf + FTCP_NSW_HDR_SIZE, (size_t)len);
    const unsigned char *b = buf + FTCP_NSW_HDR_SIZE;
    size_t code_len = ftcp_get_u16(b + FTCP_NSW_ERROR_OFF_CODE_LEN), msg_len = ftcp_get_u16(b + FTCP_NSW_ERROR_OFF_MSG_LEN);
    if (FTCP_NSW_ERROR_OFF_TEXT + code_len + msg_len != (size_t)len) nsw_fatal("the agent sent a bad ERROR for ADOPT to stream ");
    char why[400];
    size_t w = 0;
    why[0] = 0;
    nsw_cat(why, &w, sizeof why, (const char *)b + FTCP_NSW_ERROR_OFF_TEXT, code_len);
    nsw_cat(why, &w, sizeof why, ": ", 2);
    nsw_cat(why, &w, sizeof why, (const char *)b + FTCP_NSW_ERROR_OFF_TEXT + code_len, msg_len);
    nsw_adopt_report(t, fd, key, 0, FTCP_NSW_ADOPT_STEP_AGENT, "agent", why, w);
    return -1;
  }
  if (buf[FTCP_NSW_HDR_OFF_TYPE] != FTCP_NSW_MSG_REBUILD) nsw_fatal("the agent answered ADOPT with neither REBUILD nor ERROR in stream ");
  long len = ftcp_nsw_check_header_cap(buf, FTCP_NSW_MAX_REBUILD_BODY);
  if (len < 0) nsw_fatal("the agent sent a bad REBUILD header to stream ");
  /* A one-time event, and the queues may be tens of megabytes: the heap, not the stack. */
  unsigned char *body = malloc(len > 0 ? (size_t)len : 1);
  if (!body) {
    nsw_skip(chan, (size_t)len);
    nsw_adopt_report(t, fd, key, ENOMEM, FTCP_NSW_ADOPT_STEP_MEMORY, "memory for REBUILD", NULL, 0);
    return -1;
  }
  nsw_recv_all(chan, body, (size_t)len);
  struct ftcp_nsw_rebuild rb;
  if (ftcp_nsw_decode_rebuild(body, (size_t)len, &rb) != 0) {
    free(body);
    nsw_fatal("the agent sent a bad REBUILD to stream ");
  }
  if (!nsw_placeholder_move(fd, NSW_PH_PLACEHOLDER, NSW_PH_ADOPTING)) {
    /* Another thread closed it while the agent waited for the process's streams: the number is not ours. */
    free(body);
    nsw_adopt_report(t, fd, key, EBADF, FTCP_NSW_ADOPT_STEP_PLACE, "place (closed by the program first)", NULL, 0);
    return -1;
  }
  uint16_t step;
  const char *step_name;
  int err = nsw_rebuild(fd, &rb, &step, &step_name);
  nsw_placeholder_set(fd, NSW_PH_NONE);
  nsw_opts_drop(key); /* from now on the socket is real: what the program sets is set */
  free(body);
  nsw_adopt_report(t, fd, key, err, step, step_name, NULL, 0);
  return err;
}

/*
 * The program's other copies of a rebuilt connection (dup and friends of
 * the placeholder) get the rebuilt socket too, each with its own
 * close-on-exec flag and epoll registrations; the agent rebuilds a
 * connection once. After a failed rebuild they stay copies of the
 * placeholder, which reads EOF like the descriptor that was adopted.
 */
static void nsw_adopt_copies(int fd, int rebuilt) {
  uint64_t key = nsw_conn_keys[fd];
  int end = __atomic_load_n(&nsw_fd_end, __ATOMIC_RELAXED);
  for (int other = 0; other < end; other++) {
    if (nsw_fd_kind(other) != NSW_FD_CONN || other == fd || nsw_conn_keys[other] != key) continue;
    if (!nsw_placeholder_move(other, NSW_PH_PLACEHOLDER, NSW_PH_ADOPTING)) continue;
    if (rebuilt) {
      int fd_flags = real_fcntl(other, F_GETFD);
      nsw_ep_rearm(other, 0);
      if (fd_flags >= 0 && real_dup3(fd, other, fd_flags & FD_CLOEXEC ? O_CLOEXEC : 0) == other) (void)nsw_ep_rearm(other, 1);
    }
    nsw_placeholder_set(other, NSW_PH_NONE);
  }
}

/*
 * Runs when a stream of a playback process goes live, before the call that
 * went live is performed: every placeholder of the process is adopted, once,
 * under one lock (threads going live meanwhile wait, then find nothing left).
 * The agent answers the first ADOPT only after every stream of the process
 * consumed its records, so no replay creates a placeholder after that; the
 * outer loop picks up one created while we waited, below the scan position.
 */
static void nsw_adopt_pending(struct nsw_thread *t) {
  int saved = errno;
  pthread_mutex_lock(&nsw_adopt_lock);
  for (int found = 1; found;) {
    found = 0;
    int end = __atomic_load_n(&nsw_fd_end, __ATOMIC_RELAXED);
    for (int fd = 0; fd < end; fd++) {
      if (__atomic_load_n(&nsw_placeholder[fd], __ATOMIC_ACQUIRE) != NSW_PH_PLACEHOLDER || nsw_fd_kind(fd) != NSW_FD_CONN) continue;
      found = 1;
      int err = nsw_adopt_one(t, fd);
      /* Rebuilt or not, it is no placeholder to adopt again; it stays a replicated connection. */
      nsw_placeholder_move(fd, NSW_PH_PLACEHOLDER, NSW_PH_NONE);
      nsw_adopt_copies(fd, err == 0);
    }
  }
  pthread_mutex_unlock(&nsw_adopt_lock);
  errno = saved;
}

/* ---- file locks: who gets a contended lock depends on timing (FT-TCP 3.8) -- */

/*
 * FT-TCP 3.8 enforces the primary's order of lock acquisitions on the
 * replicas. Recording, every lock operation of the process tree takes a
 * position in one order (nsw_order, shared with forked children): the
 * non-blocking attempt that every lock call starts with runs with the order
 * held, so the positions are the order in which the kernel saw the attempts.
 * A blocking call whose attempt was contended then waits in the kernel with
 * the order released, and takes a second position once granted. A replica
 * performs each attempt, and each grant, only when the agent says every
 * lower position of the domain was performed (FTCP_NSW_LOCK_* in the
 * header), and both sides compare the outcome. Locks taken by libc inside
 * other calls (lockf) and releases by close or exit are not ordered.
 */

/* The blocking form of a lock call: F_SETLKW, F_OFD_SETLKW, or flock without LOCK_NB. */
static int nsw_lock_blocks(int is_flock, int cmd) { return is_flock ? !(cmd & LOCK_NB) : cmd == F_SETLKW || cmd == F_OFD_SETLKW; }

/* The call's non-blocking attempt: the same lock with F_SETLK, F_OFD_SETLK or LOCK_NB (the call itself if it never blocks). */
static int nsw_lock_attempt(int fd, int is_flock, int cmd, void *arg) {
  if (is_flock) return real_flock(fd, cmd | LOCK_NB);
  return real_fcntl(fd, cmd == F_SETLKW ? F_SETLK : cmd == F_OFD_SETLKW ? F_OFD_SETLK : cmd, arg);
}

/* The call as the program made it (a blocking one waits in the kernel). */
static int nsw_lock_call(int fd, int is_flock, int cmd, void *arg) { return is_flock ? real_flock(fd, cmd) : real_fcntl(fd, cmd, arg); }

/* A lock another holder keeps: what a non-blocking attempt says (EACCES from fcntl, EAGAIN from both). */
static int nsw_lock_contended(int r, int e) { return r < 0 && (e == EAGAIN || e == EACCES); }

static void nsw_order_lock(void) {
  int r = pthread_mutex_lock(&nsw_order->mu);
  /* A process that died holding it left the counter whole: it is only ever incremented under the lock. */
  if (r == EOWNERDEAD) pthread_mutex_consistent(&nsw_order->mu);
  else if (r != 0) nsw_fatal("cannot take the lock order of stream ");
}

/* Record: the attempt at its position, then the wait and the grant's position if the attempt was contended. */
static int nsw_lock_record(int fd, int is_flock, int cmd, void *arg, uint64_t tag, int *err) {
  nsw_order_lock();
  int r = nsw_lock_attempt(fd, is_flock, cmd, arg);
  int e = r < 0 ? errno : 0;
  uint64_t attempt = ++nsw_order->next, grant = 0;
  pthread_mutex_unlock(&nsw_order->mu);
  if (nsw_lock_blocks(is_flock, cmd) && nsw_lock_contended(r, e)) {
    r = nsw_lock_call(fd, is_flock, cmd, arg);
    e = r < 0 ? errno : 0;
    nsw_order_lock();
    grant = ++nsw_order->next;
    pthread_mutex_unlock(&nsw_order->mu);
  }
  unsigned char pos[FTCP_NSW_LOCK_SIZE];
  ftcp_put_u64(pos + FTCP_NSW_LOCK_OFF_DOMAIN, nsw_lock_domain);
  ftcp_put_u64(pos + FTCP_NSW_LOCK_OFF_TRY, attempt);
  ftcp_put_u64(pos + FTCP_NSW_LOCK_OFF_GRANT, grant);
  nsw_record(FTCP_NSW_KIND_LOCK, tag, r, e, pos, sizeof pos);
  *err = e;
  return r;
}

/*
 * Playback: the attempt once the agent says its position is due (the
 * RESULT), reported in a DONE; if the primary's attempt was contended, the
 * blocking call once the grant's position is due (a second RESULT), unless
 * the primary's failed (a signal, EDEADLK): then the replica fails the same
 * way without waiting. Returns the primary's result; the shim stops here if
 * the replica's differs (after the agent's ERROR).
 */
static int nsw_lock_play(int fd, int is_flock, int cmd, void *arg, uint64_t tag, int *err) {
  unsigned char pos[FTCP_NSW_LOCK_SIZE];
  int pe = 0;
  int pr = (int)nsw_play(FTCP_NSW_KIND_LOCK, tag, 0, 0, 0, NULL, 0, pos, sizeof pos, &pe);
  if (NSW_UNLIKELY(nsw_went_live())) return nsw_lock_record(fd, is_flock, cmd, arg, tag, err);
  uint64_t grant = ftcp_get_u64(pos + FTCP_NSW_LOCK_OFF_GRANT);
  int r = nsw_lock_attempt(fd, is_flock, cmd, arg);
  int e = r < 0 ? errno : 0;
  if (grant) {
    nsw_done(FTCP_NSW_KIND_LOCK, tag, FTCP_NSW_CALL_F_TRY, r, e, NULL, 0, 0);
    if (!nsw_lock_contended(r, e)) nsw_await_error();
    struct ftcp_nsw_call go;
    unsigned char fixed[FTCP_NSW_CALL_FIXED];
    nsw_recv_result(nsw_self.fd, fixed, &go);
    if (go.call_no != nsw_self.call_no || go.kind != FTCP_NSW_KIND_LOCK || go.payload_len != 0) nsw_fatal("the agent sent a bad RESULT for a lock grant to stream ");
    if (pr == 0) {
      r = nsw_lock_call(fd, is_flock, cmd, arg);
      e = r < 0 ? errno : 0;
    } else {
      r = pr;
      e = pe;
    }
  }
  nsw_done(FTCP_NSW_KIND_LOCK, tag, 0, r, e, NULL, 0, 0);
  if (r != pr || e != pe) nsw_await_error();
  *err = pe;
  return pr;
}

static int nsw_is_lock_cmd(int cmd) {
  return cmd == F_SETLK || cmd == F_SETLKW || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW;
}

/* Wrapped because: which process gets a contended record lock depends on timing (FT-TCP 3.8). */
NSW_EXPORT int fcntl(int fd, int cmd, ...) {
  NSW_INIT();
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *); /* every fcntl argument fits a pointer, as glibc reads it */
  va_end(ap);
  if (NSW_LIKELY(!nsw_is_lock_cmd(cmd))) {
    int r = real_fcntl(fd, cmd, arg);
    /* A copy (F_DUPFD, F_DUPFD_CLOEXEC) is what its original is. */
    if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && r >= 0 && nsw_mode != FTCP_NSW_MODE_OFF && nsw_fd_kind(fd) != NSW_FD_PLAIN) {
      int saved = errno;
      nsw_copy_fd(fd, r);
      errno = saved;
    }
    return r;
  }
  NSW_FLUSH();
  int mode = nsw_begin();
  if (mode == NSW_PASS) return real_fcntl(fd, cmd, arg);
  int saved = errno, e;
  int r = mode == NSW_RECORD ? nsw_lock_record(fd, 0, cmd, arg, (uint64_t)cmd, &e) : nsw_lock_play(fd, 0, cmd, arg, (uint64_t)cmd, &e);
  nsw_end(e ? e : saved);
  return r;
}

/* Wrapped because: the same as fcntl, under the name large-file builds call. */
NSW_EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return fcntl(fd, cmd, arg);
}

/* Wrapped because: which process gets a contended flock depends on timing (FT-TCP 3.8). */
NSW_EXPORT int flock(int fd, int op) {
  NSW_INIT();
  NSW_FLUSH();
  int mode = nsw_begin();
  if (NSW_LIKELY(mode == NSW_PASS)) return real_flock(fd, op);
  int saved = errno, e;
  uint64_t tag = 0x10000u | (uint64_t)op;
  int r = mode == NSW_RECORD ? nsw_lock_record(fd, 1, op, NULL, tag, &e) : nsw_lock_play(fd, 1, op, NULL, tag, &e);
  nsw_end(e ? e : saved);
  return r;
}

/* ---- identity: pids and tids differ on the replica's host (FT-TCP 3.7) ---- */

/* Wrapped because: the replica's pid is not the primary's. */
NSW_EXPORT pid_t getpid(void) { NSW_QUERY(pid_t, FTCP_NSW_KIND_GETPID, 0, real_getpid(), NULL, 0, 0); }

/* Wrapped because: the replica's parent pid is not the primary's. */
NSW_EXPORT pid_t getppid(void) { NSW_QUERY(pid_t, FTCP_NSW_KIND_GETPPID, 0, real_getppid(), NULL, 0, 0); }

/* Wrapped because: the replica's thread ids are not the primary's. */
NSW_EXPORT pid_t gettid(void) { NSW_QUERY(pid_t, FTCP_NSW_KIND_GETTID, 0, real_gettid(), NULL, 0, 0); }

/*
 * Wrapped because: programs (Python among them) reach getrandom and the
 * identity calls through syscall(2) rather than the libc functions. Those
 * numbers go to the wrappers above; every other number passes through.
 * Reading six arguments is how syscall(2) itself is implemented on x86-64.
 */
NSW_EXPORT long syscall(long nr, ...) {
  NSW_INIT();
  va_list ap;
  va_start(ap, nr);
  long a0 = va_arg(ap, long), a1 = va_arg(ap, long), a2 = va_arg(ap, long);
  long a3 = va_arg(ap, long), a4 = va_arg(ap, long), a5 = va_arg(ap, long);
  va_end(ap);
  if (nsw_mode != FTCP_NSW_MODE_OFF && !nsw_self.busy) {
    switch (nr) {
      case SYS_getrandom: return getrandom((void *)a0, (size_t)a1, (unsigned int)a2);
      case SYS_getpid: return getpid();
      case SYS_getppid: return getppid();
      case SYS_gettid: return gettid();
      case SYS_clock_gettime: return clock_gettime((clockid_t)a0, (struct timespec *)a1);
      case SYS_gettimeofday: return gettimeofday((struct timeval *)a0, (void *)a1);
      case SYS_time: return time((time_t *)a0);
      default: break;
    }
  }
  return real_syscall(nr, a0, a1, a2, a3, a4, a5);
}

/* ---- process and thread identity --------------------------------------- */

/*
 * Pid translation for playback: the program holds the primary's child pids
 * (fork returned them); the kernel knows the replica's. A small fixed table,
 * no allocation; the oldest entry is reused when it is full.
 */
#define NSW_PIDS 256
static struct {
  pid_t virt, real;
} nsw_pids[NSW_PIDS];
static unsigned nsw_pids_next;
static pthread_mutex_t nsw_pids_lock = PTHREAD_MUTEX_INITIALIZER;

static void nsw_pid_add(pid_t virt, pid_t real) {
  pthread_mutex_lock(&nsw_pids_lock);
  nsw_pids[nsw_pids_next % NSW_PIDS].virt = virt;
  nsw_pids[nsw_pids_next % NSW_PIDS].real = real;
  nsw_pids_next++;
  pthread_mutex_unlock(&nsw_pids_lock);
}

/* Maps a pid between the two views; to_real picks the direction. Unknown pids map to themselves. */
static pid_t nsw_pid_map(pid_t pid, int to_real) {
  pid_t out = pid;
  pthread_mutex_lock(&nsw_pids_lock);
  for (unsigned i = 0; i < NSW_PIDS && i < nsw_pids_next; i++) {
    if (to_real ? nsw_pids[i].virt == pid : nsw_pids[i].real == pid) {
      out = to_real ? nsw_pids[i].real : nsw_pids[i].virt;
      break;
    }
  }
  pthread_mutex_unlock(&nsw_pids_lock);
  return out;
}

/*
 * In a child just forked (one thread): the parent's channels, this thread's
 * and the other threads' copies, are closed here (the agent sees a stream
 * end only when every copy is closed) and no buffer is registered; the
 * child's stream registers when it opens its own.
 */
static void nsw_fork_child_channels(struct nsw_thread *self) {
  for (int i = 0; i < NSW_MAX_THREADS; i++) {
    struct nsw_thread *o = nsw_threads[i];
    nsw_threads[i] = NULL;
    if (o && o != self && o->fd >= 0) {
      nsw_track_fd(o->fd, NSW_FD_PLAIN);
      real_close(o->fd);
    }
  }
  if (self->fd >= 0) {
    nsw_track_fd(self->fd, NSW_FD_PLAIN);
    real_close(self->fd);
  }
  /* Another thread of the parent may have held it at the fork. */
  pthread_mutex_init(&nsw_threads_lock, NULL);
}

/*
 * Wrapped because: the child is a new stream named by its parent's name and
 * fork order, and in playback the parent must see the primary's child pid.
 */
NSW_EXPORT pid_t fork(void) {
  NSW_INIT();
  int mode = nsw_begin();
  if (NSW_LIKELY(mode == NSW_PASS)) return real_fork();
  struct nsw_thread *t = &nsw_self;
  int saved = errno;
  uint32_t k = ++t->forks;
  if (t->fd >= 0) {
    nsw_out_lock(t);
    nsw_flush_locked(t);
    nsw_out_unlock(t);
  }
  pid_t r = real_fork();
  int e = r < 0 ? errno : 0;
  if (r == 0) {
    /* The child: the channels belong to the parent's streams; it starts its own. */
    nsw_fork_child_channels(t);
    char name[FTCP_NSW_MAX_NAME + 1];
    size_t len;
    nsw_child_name(name, &len, t->name, t->name_len, 'f', k);
    nsw_name_thread(t, name, len);
    nsw_name_exec_image(name, len);
    nsw_pid = real_getpid();
    nsw_main_self = t;
    nsw_pids_next = 0;
    /* Another thread of the parent may have held it at the fork; the child has one thread. */
    pthread_mutex_init(&nsw_adopt_lock, NULL);
    nsw_end(saved);
    return 0;
  }
  if (mode == NSW_RECORD) {
    nsw_record(FTCP_NSW_KIND_FORK, 0, r, e, NULL, 0);
    nsw_end(e ? e : saved);
    return r;
  }
  int pe = 0;
  int64_t v = nsw_play(FTCP_NSW_KIND_FORK, 0, 0, 0, 0, NULL, 0, NULL, 0, &pe);
  if (NSW_UNLIKELY(nsw_went_live())) {
    nsw_record(FTCP_NSW_KIND_FORK, 0, r, e, NULL, 0);
    nsw_end(e ? e : saved);
    return r;
  }
  if ((v < 0) != (r < 0)) nsw_die(FTCP_NSW_EXIT_DIVERGED, "fork failed on one replica only in stream ", t->name, t->name_len);
  if (r > 0) nsw_pid_add((pid_t)v, r);
  nsw_end(pe ? pe : saved);
  return (pid_t)v;
}

/* Wrapped because: in playback the pid the program waits for is the primary's. */
NSW_EXPORT pid_t waitpid(pid_t pid, int *status, int options) {
  NSW_INIT();
  NSW_FLUSH();
  if (NSW_LIKELY(nsw_mode != FTCP_NSW_MODE_PLAYBACK) || nsw_self.busy) return real_waitpid(pid, status, options);
  pid_t r = real_waitpid(pid > 0 ? nsw_pid_map(pid, 1) : pid, status, options);
  return r > 0 ? nsw_pid_map(r, 0) : r;
}

/* Wrapped because: in playback the pid wait returns must be the primary's. */
NSW_EXPORT pid_t wait(int *status) {
  NSW_INIT();
  NSW_FLUSH();
  if (NSW_LIKELY(nsw_mode != FTCP_NSW_MODE_PLAYBACK) || nsw_self.busy) return real_wait(status);
  pid_t r = real_wait(status);
  return r > 0 ? nsw_pid_map(r, 0) : r;
}

struct nsw_start {
  void *(*fn)(void *);
  void *arg;
  size_t name_len;
  char name[FTCP_NSW_MAX_NAME + 1];
};

/*
 * A stream ends with an END call (a thread's at its exit; the process's at
 * exit or _exit, in the thread that ends it): a replica's stream that ends
 * where its primary's went on stops as diverged instead of looking like a
 * clean exit, and a tentative clock read at a stream's end finds a record.
 */
static void nsw_stream_end(uint64_t how) {
  int mode = nsw_begin();
  if (mode == NSW_PASS) return;
  int saved = errno, e = 0;
  if (mode == NSW_PLAY) {
    (void)nsw_play(FTCP_NSW_KIND_END, how, 0, 0, 0, NULL, 0, NULL, 0, &e);
    if (NSW_LIKELY(!nsw_went_live())) {
      nsw_end(saved);
      return;
    }
  }
  nsw_record(FTCP_NSW_KIND_END, how, 0, 0, NULL, 0);
  nsw_end(saved);
}

static void nsw_thread_exit(void *unused) {
  (void)unused;
  struct nsw_thread *t = &nsw_self;
  nsw_stream_end(FTCP_NSW_END_THREAD);
  if (t->fd >= 0) {
    /* Out of the registry first: nobody flushes this buffer once the thread is gone. */
    nsw_register(t, 0);
    int saved = errno;
    nsw_out_lock(t);
    nsw_flush_locked(t);
    nsw_out_unlock(t);
    nsw_track_fd(t->fd, NSW_FD_PLAIN);
    real_close(t->fd);
    errno = saved;
  }
  t->fd = -1;
  if (t->q) munmap(t->q, FTCP_NSW_MAX_BATCH);
  t->q = NULL;
}

static void *nsw_thread_main(void *p) {
  struct nsw_start s;
  memcpy(&s, p, sizeof s);
  free(p);
  nsw_name_thread(&nsw_self, s.name, s.name_len);
  void *r;
  pthread_cleanup_push(nsw_thread_exit, NULL);
  r = s.fn(s.arg);
  pthread_cleanup_pop(1);
  return r;
}

/*
 * Wrapped because: each thread is its own stream of calls, named by its
 * creator's name and creation order so the replica's threads find the
 * primary's records. The result is compared in playback (FT-TCP 3.7).
 */
NSW_EXPORT int pthread_create(pthread_t *restrict th, const pthread_attr_t *restrict attr, void *(*fn)(void *),
                              void *restrict arg) {
  NSW_INIT();
  int mode = nsw_begin();
  if (NSW_LIKELY(mode == NSW_PASS)) return real_pthread_create(th, attr, fn, arg);
  struct nsw_thread *t = &nsw_self;
  int saved = errno;
  uint32_t k = ++t->threads;
  int r = EAGAIN;
  struct nsw_start *s = malloc(sizeof *s);
  if (s) {
    s->fn = fn;
    s->arg = arg;
    nsw_child_name(s->name, &s->name_len, t->name, t->name_len, 't', k);
    r = real_pthread_create(th, attr, nsw_thread_main, s);
    if (r != 0) free(s);
  }
  if (mode == NSW_RECORD) {
    nsw_record(FTCP_NSW_KIND_PTHREAD_CREATE, 0, r, 0, NULL, 0);
  } else {
    int pe = 0;
    (void)nsw_play(FTCP_NSW_KIND_PTHREAD_CREATE, 0, FTCP_NSW_CALL_F_COMPARE, r, 0, NULL, 0, NULL, 0, &pe);
    if (NSW_UNLIKELY(nsw_went_live())) nsw_record(FTCP_NSW_KIND_PTHREAD_CREATE, 0, r, 0, NULL, 0);
  }
  nsw_end(saved);
  return r;
}

/* ---- spawned children: posix_spawn, system, popen (named like forked ones) -- */

/*
 * The environment a spawned child gets: envp with its FTCP_NSW_NAME entry
 * (added when missing) saying `entry`. Spawning is no hot path: the array
 * is allocated, and freed by the caller.
 */
static char **nsw_spawn_env(char *const envp[], char *entry) {
  static const char key[] = "FTCP_NSW_NAME=";
  size_t n = 0;
  while (envp[n]) n++;
  char **out = malloc((n + 2) * sizeof *out);
  if (!out) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(envp[i], key, sizeof key - 1) != 0) out[k++] = envp[i];
  }
  out[k++] = entry;
  out[k] = NULL;
  return out;
}

/*
 * posix_spawn and posix_spawnp. The child is a new image and a new stream:
 * the k-th child a stream spawns is "<name>/s<k>" (its FTCP_NSW_NAME), by
 * spawn order, as forked children are by fork order. Record: the return
 * value and the child's pid. Playback: the child is spawned for real (it
 * replays its own stream), the program gets the primary's pid (waitpid and
 * wait translate it) and the outcome must agree.
 */
static int nsw_spawn(nsw_spawn_fn fn, pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
                     char *const argv[], char *const envp[]) {
  int mode = nsw_begin();
  if (mode == NSW_PASS) return fn(pid, file, fa, attr, argv, envp);
  struct nsw_thread *t = &nsw_self;
  int saved = errno;
  uint32_t k = ++t->spawns;
  char entry[sizeof "FTCP_NSW_NAME=" + FTCP_NSW_MAX_NAME];
  size_t len;
  memcpy(entry, "FTCP_NSW_NAME=", 14);
  nsw_child_name(entry + 14, &len, t->name, t->name_len, 's', k);
  /* An empty environment (envp NULL) stays empty: that child runs without the shim. */
  char **env = envp ? nsw_spawn_env(envp, entry) : NULL;
  pid_t child = -1;
  int r = envp && !env ? ENOMEM : fn(&child, file, fa, attr, argv, env);
  free(env);
  unsigned char pb[4];
  ftcp_put_u32(pb, (uint32_t)child);
  if (mode == NSW_PLAY) {
    unsigned char ppb[4] = {0};
    int pe = 0;
    int v = (int)nsw_play(FTCP_NSW_KIND_SPAWN, 0, 0, 0, 0, NULL, 0, ppb, sizeof ppb, &pe);
    if (NSW_LIKELY(!nsw_went_live())) {
      if ((v == 0) != (r == 0)) nsw_die(FTCP_NSW_EXIT_DIVERGED, "posix_spawn failed on one replica only in stream ", t->name, t->name_len);
      if (r == 0) {
        pid_t virt = (pid_t)ftcp_get_u32(ppb);
        nsw_pid_add(virt, child);
        if (pid) *pid = virt;
      }
      nsw_end(saved);
      return v;
    }
  }
  nsw_record(FTCP_NSW_KIND_SPAWN, 0, r, 0, pb, r == 0 ? sizeof pb : 0);
  if (r == 0 && pid) *pid = child;
  nsw_end(saved);
  return r;
}

/* Wrapped because: its child is a new stream, named by spawn order, and its pid differs on the replica. */
NSW_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
                           char *const argv[], char *const envp[]) {
  NSW_INIT();
  return nsw_spawn(real_posix_spawn, pid, path, fa, attr, argv, envp);
}

/* Wrapped because: the same as posix_spawn, searching PATH. */
NSW_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
                            char *const argv[], char *const envp[]) {
  NSW_INIT();
  return nsw_spawn(real_posix_spawnp, pid, file, fa, attr, argv, envp);
}

/* Waits for a child the shim spawned; returns its status, or -1 with errno. */
static int nsw_wait_child(pid_t pid) {
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

/*
 * system() as POSIX describes it, through posix_spawn above (glibc's calls
 * its own spawn, which the shim does not see): "/bin/sh -c cmd", SIGINT and
 * SIGQUIT ignored and SIGCHLD blocked in the caller while it waits (counted,
 * so concurrent calls restore the dispositions once), the child with the
 * caller's mask and those two signals at their defaults.
 */
static pthread_mutex_t nsw_system_lock = PTHREAD_MUTEX_INITIALIZER;
static int nsw_system_users;
static struct sigaction nsw_system_int, nsw_system_quit;

/* Wrapped because: its child would start without the shim seeing it (glibc spawns it internally). */
NSW_EXPORT int system(const char *cmd) {
  NSW_INIT();
  if (nsw_mode == FTCP_NSW_MODE_OFF || nsw_self.busy) return real_system(cmd);
  /* system(NULL) asks whether a shell exists, by running one. */
  if (!cmd) return system("exit 0") == 0;
  struct sigaction ign;
  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  sigset_t chld, omask, dfl;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigemptyset(&dfl);
  pthread_mutex_lock(&nsw_system_lock);
  if (nsw_system_users++ == 0) {
    sigaction(SIGINT, &ign, &nsw_system_int);
    sigaction(SIGQUIT, &ign, &nsw_system_quit);
  }
  if (nsw_system_int.sa_handler != SIG_IGN) sigaddset(&dfl, SIGINT);
  if (nsw_system_quit.sa_handler != SIG_IGN) sigaddset(&dfl, SIGQUIT);
  pthread_mutex_unlock(&nsw_system_lock);
  pthread_sigmask(SIG_BLOCK, &chld, &omask);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigdefault(&attr, &dfl);
  posix_spawnattr_setsigmask(&attr, &omask);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  char *argv[] = {"sh", "-c", (char *)cmd, NULL};
  pid_t pid;
  int r = posix_spawn(&pid, "/bin/sh", NULL, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  /* As glibc: a child that could not start is a shell that exited 127. */
  int status = r == 0 ? nsw_wait_child(pid) : 127 << 8;
  int e = errno;
  pthread_mutex_lock(&nsw_system_lock);
  if (--nsw_system_users == 0) {
    sigaction(SIGINT, &nsw_system_int, NULL);
    sigaction(SIGQUIT, &nsw_system_quit, NULL);
  }
  pthread_mutex_unlock(&nsw_system_lock);
  pthread_sigmask(SIG_SETMASK, &omask, NULL);
  errno = e;
  return status;
}

/* The streams popen returned, with their children, for pclose. */
#define NSW_POPEN 256
static struct {
  FILE *f;
  pid_t pid;
} nsw_popen[NSW_POPEN];
static pthread_mutex_t nsw_popen_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * popen() through posix_spawn above, as glibc does it: a pipe, "/bin/sh -c
 * cmd" with the child's end as its stdin or stdout, the earlier popen
 * streams closed in the child, "e" for close-on-exec.
 */
/* Wrapped because: its child would start without the shim seeing it (glibc spawns it internally). */
NSW_EXPORT FILE *popen(const char *cmd, const char *type) {
  NSW_INIT();
  if (nsw_mode == FTCP_NSW_MODE_OFF || nsw_self.busy) return real_popen(cmd, type);
  int rd = type && type[0] == 'r';
  if (!type || (type[0] != 'r' && type[0] != 'w')) {
    errno = EINVAL;
    return NULL;
  }
  int cloexec = strchr(type, 'e') != NULL;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return NULL;
  int mine = rd ? fds[0] : fds[1], theirs = rd ? fds[1] : fds[0], target = rd ? 1 : 0;
  if (theirs == target) {
    /* dup2 onto itself would keep close-on-exec: move it first. */
    int moved = real_fcntl(theirs, F_DUPFD_CLOEXEC, 3);
    real_close(theirs);
    theirs = moved;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, theirs, target);
  pthread_mutex_lock(&nsw_popen_lock);
  int slot = -1;
  for (int i = 0; i < NSW_POPEN; i++) {
    if (nsw_popen[i].f) posix_spawn_file_actions_addclose(&fa, fileno(nsw_popen[i].f));
    else if (slot < 0) slot = i;
  }
  pthread_mutex_unlock(&nsw_popen_lock);
  char *argv[] = {"sh", "-c", (char *)cmd, NULL};
  pid_t pid;
  int r = theirs < 0 || slot < 0 ? (slot < 0 ? EMFILE : errno) : posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (theirs >= 0) real_close(theirs);
  if (r != 0) {
    real_close(mine);
    errno = r;
    return NULL;
  }
  if (!cloexec) real_fcntl(mine, F_SETFD, 0);
  FILE *f = fdopen(mine, rd ? "r" : "w");
  if (!f) {
    int e = errno;
    real_close(mine);
    nsw_wait_child(pid);
    errno = e;
    return NULL;
  }
  pthread_mutex_lock(&nsw_popen_lock);
  nsw_popen[slot].f = f;
  nsw_popen[slot].pid = pid;
  pthread_mutex_unlock(&nsw_popen_lock);
  return f;
}

/* Wrapped because: a stream popen above returned is closed here, and its child waited for. */
NSW_EXPORT int pclose(FILE *f) {
  NSW_INIT();
  pid_t pid = 0;
  pthread_mutex_lock(&nsw_popen_lock);
  for (int i = 0; i < NSW_POPEN && !pid; i++) {
    if (f && nsw_popen[i].f == f) {
      pid = nsw_popen[i].pid;
      nsw_popen[i].f = NULL;
    }
  }
  pthread_mutex_unlock(&nsw_popen_lock);
  if (!pid) return real_pclose(f);
  fclose(f);
  return nsw_wait_child(pid);
}

/* fd, a replicated connection, is closed: what was kept of its placeholder goes with its last descriptor. */
static void nsw_opts_forget_conn(int fd) {
  if (fd < 0 || fd >= NSW_FDS || !__atomic_load_n(&nsw_opts_used, __ATOMIC_RELAXED)) return;
  uint64_t key = nsw_conn_keys[fd];
  int end = __atomic_load_n(&nsw_fd_end, __ATOMIC_RELAXED);
  for (int other = 0; other < end; other++) {
    if (other != fd && nsw_fd_kind(other) == NSW_FD_CONN && nsw_conn_keys[other] == key) return;
  }
  nsw_opts_drop(key);
}

/* fd is about to be closed (close, or dup2 and dup3 onto it): it stops being what it was. */
static void nsw_forget_fd(int fd) {
  int kind = nsw_fd_kind(fd);
  if (NSW_UNLIKELY(kind != NSW_FD_PLAIN)) {
    if (kind == NSW_FD_CONN) nsw_placeholder_close(fd);
    nsw_track_fd(fd, NSW_FD_PLAIN);
    if (kind == NSW_FD_CONN && nsw_mode == FTCP_NSW_MODE_PLAYBACK) nsw_opts_forget_conn(fd);
  }
  if (nsw_mode != FTCP_NSW_MODE_OFF && __atomic_load_n(&nsw_ep_used, __ATOMIC_RELAXED) > 0) {
    int saved = errno;
    nsw_ep_set(fd, -1, NULL); /* the kernel drops a closed descriptor from every epoll set */
    errno = saved;
  }
}

/* Wrapped because: a closed descriptor number is reused and must stop counting as
 * /dev/urandom or a replicated connection; and the agent channel must stay open. */
NSW_EXPORT int close(int fd) {
  NSW_INIT();
  /* Daemons close every descriptor at start-up; the agent channel must survive it. */
  if (NSW_UNLIKELY(nsw_fd_kind(fd) == NSW_FD_CHANNEL)) return 0;
  nsw_forget_fd(fd);
  return real_close(fd);
}

/* Wrapped because: a copy of /dev/urandom or of a replicated connection is one too. */
NSW_EXPORT int dup(int fd) {
  NSW_INIT();
  int r = real_dup(fd);
  if (nsw_mode != FTCP_NSW_MODE_OFF && r >= 0 && nsw_fd_kind(fd) != NSW_FD_PLAIN) nsw_copy_fd(fd, r);
  return r;
}

/* Wrapped because: a copy of /dev/urandom or of a replicated connection is one too, and what newfd was ends. */
NSW_EXPORT int dup2(int oldfd, int newfd) {
  NSW_INIT();
  if (nsw_mode == FTCP_NSW_MODE_OFF || oldfd == newfd) return real_dup2(oldfd, newfd);
  if (NSW_UNLIKELY(nsw_fd_kind(newfd) != NSW_FD_PLAIN) && real_fcntl(oldfd, F_GETFD) >= 0) nsw_forget_fd(newfd);
  int r = real_dup2(oldfd, newfd);
  if (r >= 0) {
    int saved = errno;
    nsw_forget_fd(r);
    nsw_copy_fd(oldfd, r);
    errno = saved;
  }
  return r;
}

/* Wrapped because: the same as dup2, with flags. */
NSW_EXPORT int dup3(int oldfd, int newfd, int flags) {
  NSW_INIT();
  if (nsw_mode == FTCP_NSW_MODE_OFF) return real_dup3(oldfd, newfd, flags);
  if (NSW_UNLIKELY(nsw_fd_kind(newfd) != NSW_FD_PLAIN) && oldfd != newfd && real_fcntl(oldfd, F_GETFD) >= 0) nsw_forget_fd(newfd);
  int r = real_dup3(oldfd, newfd, flags);
  if (r >= 0) {
    int saved = errno;
    nsw_forget_fd(r);
    nsw_copy_fd(oldfd, r);
    errno = saved;
  }
  return r;
}

/* ---- flush points: calls that block, or end the image, and record nothing -- */

/* Wrapped because: a thread about to sleep sends its coalesced records first. */
NSW_EXPORT int nanosleep(const struct timespec *req, struct timespec *rem) {
  NSW_INIT();
  NSW_FLUSH();
  return real_nanosleep(req, rem);
}

/* Wrapped because: a thread about to sleep sends its coalesced records first. */
NSW_EXPORT int clock_nanosleep(clockid_t id, int flags, const struct timespec *req, struct timespec *rem) {
  NSW_INIT();
  NSW_FLUSH();
  return real_clock_nanosleep(id, flags, req, rem);
}

/* Wrapped because: a thread about to sleep sends its coalesced records first. */
NSW_EXPORT unsigned sleep(unsigned seconds) {
  NSW_INIT();
  NSW_FLUSH();
  return real_sleep(seconds);
}

/* Wrapped because: a thread about to sleep sends its coalesced records first. */
NSW_EXPORT int usleep(useconds_t usec) {
  NSW_INIT();
  NSW_FLUSH();
  return real_usleep(usec);
}

/* Wrapped because: a thread about to wait for another sends its coalesced records first. */
NSW_EXPORT int pthread_join(pthread_t th, void **ret) {
  NSW_INIT();
  NSW_FLUSH();
  return real_pthread_join(th, ret);
}

/*
 * The FTCP_NSW_NAME of the image an exec starts. Usually this process's
 * "<name>/e" (nsw_env_name, in environ since load or fork). In a child that
 * vfork made (CPython's subprocess does), which runs on its parent's memory
 * until it execs, it is "<name>/s<k>" by the calling stream's spawn order
 * (the parent's counter counts it), as posix_spawn's children are named.
 */
#define NSW_ENTRY_CAP (sizeof "FTCP_NSW_NAME=" + FTCP_NSW_MAX_NAME)
static const char *nsw_exec_entry(char *buf) {
  struct nsw_thread *t = &nsw_self;
  if (real_getpid() == nsw_pid) return nsw_env_name;
  if (!t->named) {
    /* The parent's main thread had made no wrapped call yet: it gets its name now, as it would then. */
    if (t != nsw_main_self) return nsw_env_name;
    nsw_name_thread(t, nsw_root_name, nsw_root_len);
  }
  size_t len;
  memcpy(buf, "FTCP_NSW_NAME=", 14);
  nsw_child_name(buf + 14, &len, t->name, t->name_len, 's', ++t->spawns);
  return buf;
}

/*
 * How many entries envp has when its FTCP_NSW_NAME entry is not `entry` (a
 * program may pass an environment copied before it forked), else 0: envp is
 * used as it is. The copy is made on the stack (the caller may be a vfork
 * child, which must not allocate), so only up to NSW_EXEC_ENV_MAX entries.
 */
#define NSW_EXEC_ENV_MAX 4096
static size_t nsw_exec_env_len(char *const envp[], const char *entry) {
  static const char key[] = "FTCP_NSW_NAME=";
  if (nsw_mode == FTCP_NSW_MODE_OFF || !envp) return 0;
  size_t n = 0, found = 0;
  for (; envp[n] && n <= NSW_EXEC_ENV_MAX; n++) {
    if (!strncmp(envp[n], key, sizeof key - 1) && strcmp(envp[n], entry) != 0) found = 1;
  }
  return found && n <= NSW_EXEC_ENV_MAX ? n : 0;
}

/* Copies envp's n entries into env (n + 1 slots) with `entry` for its FTCP_NSW_NAME. */
static char *const *nsw_exec_env(char *const envp[], char **env, size_t n, const char *entry) {
  for (size_t i = 0; i < n; i++) env[i] = strncmp(envp[i], "FTCP_NSW_NAME=", 14) ? envp[i] : (char *)entry;
  env[n] = NULL;
  return env;
}

/* Wrapped because: exec ends this image and every thread (their coalesced records go out first), and names the new image. */
NSW_EXPORT int execve(const char *path, char *const argv[], char *const envp[]) {
  NSW_INIT();
  nsw_flush_all();
  char buf[NSW_ENTRY_CAP];
  const char *entry = nsw_mode == FTCP_NSW_MODE_OFF ? NULL : nsw_exec_entry(buf);
  size_t n = entry ? nsw_exec_env_len(envp, entry) : 0;
  char *env[n + 1];
  return real_execve(path, argv, n ? nsw_exec_env(envp, env, n, entry) : envp);
}

/* Wrapped because: the same as execve, with this process's environment. */
NSW_EXPORT int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

/* Wrapped because: the same as execvpe, with this process's environment. */
NSW_EXPORT int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }

/* Wrapped because: exec ends this image and every thread: their coalesced records go out first. */
NSW_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) {
  NSW_INIT();
  nsw_flush_all();
  char buf[NSW_ENTRY_CAP];
  const char *entry = nsw_mode == FTCP_NSW_MODE_OFF ? NULL : nsw_exec_entry(buf);
  size_t n = entry ? nsw_exec_env_len(envp, entry) : 0;
  char *env[n + 1];
  return real_execvpe(file, argv, n ? nsw_exec_env(envp, env, n, entry) : envp);
}

/* Wrapped because: exec ends this image and every thread: their coalesced records go out first. */
NSW_EXPORT int fexecve(int fd, char *const argv[], char *const envp[]) {
  NSW_INIT();
  nsw_flush_all();
  char buf[NSW_ENTRY_CAP];
  const char *entry = nsw_mode == FTCP_NSW_MODE_OFF ? NULL : nsw_exec_entry(buf);
  size_t n = entry ? nsw_exec_env_len(envp, entry) : 0;
  char *env[n + 1];
  return real_fexecve(fd, argv, n ? nsw_exec_env(envp, env, n, entry) : envp);
}

/* Fills argv (n + 1 entries) with `arg`, the next n - 1 arguments of *ap and a NULL. */
static void nsw_exec_argv(char **argv, const char *arg, size_t n, va_list *ap) {
  argv[0] = (char *)arg;
  for (size_t i = 1; i < n; i++) argv[i] = va_arg(*ap, char *);
  argv[n] = NULL;
}

/* How many arguments execl, execlp or execle got from `arg` to their NULL (exclusive). */
#define NSW_EXEC_ARGC(AP, N)                  \
  do {                                        \
    va_list c_;                               \
    va_copy(c_, AP);                          \
    for (N = 1; va_arg(c_, char *); N++) {    \
    }                                         \
    va_end(c_);                               \
  } while (0)

/* Wrapped because: exec ends this image and every thread: their coalesced records go out first. */
NSW_EXPORT int execl(const char *path, const char *arg, ...) {
  NSW_INIT();
  va_list ap;
  va_start(ap, arg);
  size_t n;
  NSW_EXEC_ARGC(ap, n);
  char *argv[n + 1];
  nsw_exec_argv(argv, arg, n, &ap);
  va_end(ap);
  return execve(path, argv, environ);
}

/* Wrapped because: exec ends this image and every thread: their coalesced records go out first. */
NSW_EXPORT int execlp(const char *file, const char *arg, ...) {
  NSW_INIT();
  va_list ap;
  va_start(ap, arg);
  size_t n;
  NSW_EXEC_ARGC(ap, n);
  char *argv[n + 1];
  nsw_exec_argv(argv, arg, n, &ap);
  va_end(ap);
  return execvpe(file, argv, environ);
}

/* Wrapped because: exec ends this image and every thread: their coalesced records go out first. */
NSW_EXPORT int execle(const char *path, const char *arg, ...) {
  NSW_INIT();
  va_list ap;
  va_start(ap, arg);
  size_t n;
  NSW_EXEC_ARGC(ap, n);
  char *argv[n + 1];
  nsw_exec_argv(argv, arg, n, &ap);
  (void)va_arg(ap, char *); /* the NULL */
  char *const *envp = va_arg(ap, char *const *);
  va_end(ap);
  return execve(path, argv, envp);
}

/* Wrapped because: _exit ends the process without exit's destructors: coalesced records go out first. */
NSW_EXPORT void _exit(int status) {
  NSW_INIT();
  nsw_exiting();
  real__exit(status);
}

/* Wrapped because: the same as _exit, under its C99 name. */
NSW_EXPORT void _Exit(int status) {
  NSW_INIT();
  nsw_exiting();
  real__Exit(status);
}
