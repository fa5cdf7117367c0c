/*
 * echo_ref.c: the reference for bench/echo.sh, a minimal single-threaded epoll echo server
 * (TCP and UDP, IPv4 and IPv6 on one dual-stack port), written only to show what this
 * machine can do with no runtime at all. Same behaviour as echo-server on the hot path:
 * read into one buffer per connection, write it all back before reading more (a partial
 * write parks the connection on EPOLLOUT: backpressure), TCP_NODELAY on every connection.
 * No limits, no timeouts, no logging: do not run it anywhere but a benchmark.
 *
 * Build: gcc -O2 -o echo_ref bench/echo_ref.c      Run: ./echo_ref PORT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define MAX_EVENTS 256

struct conn {
    int fd;
    size_t off, len; /* bytes of buf still to be written back */
    char buf[BUF_SIZE];
};

static int listen_fd, udp_fd, ep;
static struct conn listen_tag, udp_tag;

static int open_socket(int type, int port) {
    int fd = socket(AF_INET6, type | SOCK_NONBLOCK, 0);
    int off = 0, on = 1;
    struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_port = htons(port),
                                .sin6_addr = in6addr_any};
    if (fd < 0) { perror("socket"); exit(1); }
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("bind"); exit(1); }
    return fd;
}

static void watch(int op, int fd, unsigned events, void *ptr) {
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(ep, op, fd, &ev) < 0) perror("epoll_ctl");
}

static void close_conn(struct conn *c) {
    close(c->fd); /* closing removes it from the epoll set */
    free(c);
}

static void on_accept(void) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) return; /* EAGAIN, or an error we ignore in a benchmark */
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        struct conn *c = malloc(sizeof *c);
        if (!c) { close(fd); continue; }
        c->fd = fd;
        c->off = c->len = 0;
        watch(EPOLL_CTL_ADD, fd, EPOLLIN, c);
    }
}

/* Writes what is pending; returns 1 when all is written, 0 when the socket is full, -1 on error. */
static int flush_conn(struct conn *c) {
    while (c->off < c->len) {
        ssize_t n = write(c->fd, c->buf + c->off, c->len - c->off);
        if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        c->off += (size_t)n;
    }
    c->off = c->len = 0;
    return 1;
}

static void on_conn(struct conn *c, unsigned events) {
    if (events & EPOLLOUT) {
        int r = flush_conn(c);
        if (r < 0) { close_conn(c); return; }
        if (r == 0) return;
        watch(EPOLL_CTL_MOD, c->fd, EPOLLIN, c);
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || c->len) return;
    ssize_t n = read(c->fd, c->buf, BUF_SIZE);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) { close_conn(c); return; }
    if (n < 0) return;
    c->off = 0;
    c->len = (size_t)n;
    int r = flush_conn(c);
    if (r < 0) close_conn(c);
    else if (r == 0) watch(EPOLL_CTL_MOD, c->fd, EPOLLOUT, c);
}

static void on_udp(void) {
    static char buf[BUF_SIZE];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(udp_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 0) return;
        sendto(udp_fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8007;
    listen_fd = open_socket(SOCK_STREAM, port);
    if (listen(listen_fd, 1024) < 0) { perror("listen"); return 1; }
    udp_fd = open_socket(SOCK_DGRAM, port);
    ep = epoll_create1(0);
    watch(EPOLL_CTL_ADD, listen_fd, EPOLLIN, &listen_tag);
    watch(EPOLL_CTL_ADD, udp_fd, EPOLLIN, &udp_tag);
    fprintf(stderr, "listening on [::]:%d (IPv4 and IPv6, TCP and UDP)\n", port);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            if (p == &listen_tag) on_accept();
            else if (p == &udp_tag) on_udp();
            else on_conn(p, events[i].events);
        }
    }
}
