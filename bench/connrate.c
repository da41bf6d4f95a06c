/* connrate: the TCP connection-rate client and server of bench/datapath.py, compiled at bench time
 * (gcc -O2), so that the numbers are the kernel's datapath and not the Python interpreter's.
 *
 *   connrate serve PORT                  accept on 0.0.0.0:PORT and close at once, forever
 *   connrate connect IP PORT SECONDS     connect + close in a loop for SECONDS; prints one JSON line
 *
 * The client closes with SO_LINGER {1, 0}: an RST, so no TIME_WAIT piles up on its side and the ephemeral
 * ports do not run out; every connection is one SYN, SYN-ACK, ACK, RST through every hop and its NAT. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int serve(int port) {
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 4096) < 0) {
        perror("connrate serve");
        return 1;
    }
    printf("serving %d\n", port);
    fflush(stdout);
    for (;;) {
        int conn = accept(fd, NULL, NULL);
        if (conn >= 0)
            close(conn);
    }
}

static int connect_loop(const char *ip, int port, double seconds) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct linger rst = {.l_onoff = 1, .l_linger = 0};
    long done = 0, failed = 0;
    int last_errno = 0;
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) {
        fprintf(stderr, "connrate: %s is not an IPv4 address\n", ip);
        return 2;
    }
    double start = now(), end = start + seconds, t = start;
    while (t < end) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            perror("connrate socket");
            return 1;
        }
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
            done++;
        } else {
            failed++;
            last_errno = errno;
        }
        close(fd);
        t = now();
    }
    double elapsed = t - start;
    printf("{\"target\": \"%s:%d\", \"connections\": %ld, \"failed\": %ld, \"last_error\": \"%s\", "
           "\"seconds\": %.4f, \"connections_per_second\": %.1f}\n",
           ip, port, done, failed, failed ? strerror(last_errno) : "", elapsed, done / elapsed);
    return failed > done / 100 ? 3 : 0; /* more than 1% failed: the number would not mean much */
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return serve(atoi(argv[2]));
    if (argc == 5 && strcmp(argv[1], "connect") == 0)
        return connect_loop(argv[2], atoi(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: connrate serve PORT | connrate connect IP PORT SECONDS\n");
    return 2;
}
