/*
 * echod: a small streaming echo server for the failover tests (issue 5,
 * e2e scenario 1). It stands for an ordinary unmodified server: one thread,
 * one epoll loop, non-blocking sockets, plain libc calls (socket, bind,
 * listen, accept4, epoll_wait, read, write, close) and nothing that knows
 * about ftcp.
 *
 *   echod ADDR PORT [-v]
 *
 * Every byte a connection sends is written back to it, in order. Each
 * connection has a buffer of its own; while that buffer is full the server
 * stops reading from the connection (so a slow reader pushes back on its
 * writer through TCP flow control instead of growing memory). A partial
 * write keeps the rest for the next EPOLLOUT. When the client has closed
 * its side (read returns 0) and every byte it sent has been echoed, the
 * server closes the connection.
 *
 * Prints one JSON line on stdout once it listens:
 *   {"ev":"listening","port":P}
 * With -v, one line on stderr per connection at close:
 *   {"ev":"closed","fd":N,"in":BYTES,"out":BYTES,"reason":"eof|error"}
 *
 * Exits 2 on bad arguments, 1 if it cannot listen.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Per-connection echo buffer. 256 KiB covers a few windows' worth in flight. */
#define CONN_BUF (256 * 1024)
#define MAX_EVENTS 64

struct conn {
    int fd;
    uint32_t interest;    /* the events registered with epoll now */
    int eof;              /* the client closed its side */
    size_t head, tail;    /* bytes [head, tail) of buf are waiting to be echoed */
    uint64_t in, out;     /* totals, for the -v report */
    unsigned char buf[CONN_BUF];
};

static int verbose;
static int epfd;

static void die(const char *what) {
    fprintf(stderr, "echod: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void conn_close(struct conn *c, const char *reason) {
    if (verbose)
        fprintf(stderr, "{\"ev\":\"closed\",\"fd\":%d,\"in\":%llu,\"out\":%llu,\"reason\":\"%s\"}\n", c->fd,
                (unsigned long long)c->in, (unsigned long long)c->out, reason);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Registers what the connection can make progress on: input while there is
 * room (and the client has not closed), output while bytes wait. */
static int conn_update(struct conn *c) {
    uint32_t want = 0;
    if (!c->eof && c->tail < CONN_BUF) want |= EPOLLIN;
    if (c->tail > c->head) want |= EPOLLOUT;
    if (want == c->interest) return 0;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) return -1;
    c->interest = want;
    return 0;
}

/* Writes what is buffered until it is gone or the socket is full. */
static int conn_flush(struct conn *c) {
    while (c->tail > c->head) {
        ssize_t n = write(c->fd, c->buf + c->head, c->tail - c->head);
        if (n > 0) {
            c->head += (size_t)n;
            c->out += (uint64_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -1;
        }
    }
    if (c->head == c->tail) {
        c->head = c->tail = 0;
    } else if (c->tail == CONN_BUF && c->head > 0) {
        /* Make room at the end for more input. */
        memmove(c->buf, c->buf + c->head, c->tail - c->head);
        c->tail -= c->head;
        c->head = 0;
    }
    return 0;
}

/* Reads while there is room; notes the client's close. */
static int conn_fill(struct conn *c) {
    while (!c->eof && c->tail < CONN_BUF) {
        ssize_t n = read(c->fd, c->buf + c->tail, CONN_BUF - c->tail);
        if (n > 0) {
            c->tail += (size_t)n;
            c->in += (uint64_t)n;
        } else if (n == 0) {
            c->eof = 1;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            return -1;
        }
    }
    return 0;
}

static void conn_event(struct conn *c, uint32_t events) {
    if (events & EPOLLERR) {
        conn_close(c, "error");
        return;
    }
    if ((events & (EPOLLIN | EPOLLHUP)) && conn_fill(c) < 0) {
        conn_close(c, "error");
        return;
    }
    if (conn_flush(c) < 0) {
        conn_close(c, "error");
        return;
    }
    /* Read again if the flush made room, so a full buffer never stalls input. */
    if (!c->eof && c->tail < CONN_BUF && (events & EPOLLIN) && conn_fill(c) < 0) {
        conn_close(c, "error");
        return;
    }
    if (c->eof && c->head == c->tail) {
        conn_close(c, "eof");
        return;
    }
    if (conn_update(c) < 0) conn_close(c, "error");
}

static void accept_all(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) fprintf(stderr, "echod: accept: %s\n", strerror(errno));
            return;
        }
        struct conn *c = malloc(sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        memset(c, 0, offsetof(struct conn, buf));
        c->fd = fd;
        c->interest = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "-v") != 0)) {
        fprintf(stderr, "usage: echod ADDR PORT [-v]\n");
        return 2;
    }
    verbose = argc == 4;
    struct sockaddr_in addr = {.sin_family = AF_INET};
    char *end;
    long port = strtol(argv[2], &end, 10);
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 || *end != '\0' || port <= 0 || port > 65535) {
        fprintf(stderr, "echod: bad address %s:%s\n", argv[1], argv[2]);
        return 2;
    }
    addr.sin_port = htons((uint16_t)port);
    /* A peer that resets while we write must not kill the server. */
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("setsockopt");
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 128) < 0) die("listen");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl");

    printf("{\"ev\":\"listening\",\"port\":%ld}\n", port);
    fflush(stdout);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL)
                accept_all(lfd);
            else
                conn_event(events[i].data.ptr, events[i].events);
        }
    }
}
