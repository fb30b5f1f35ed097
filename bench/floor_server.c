/* The floor of a local credentials endpoint (bench/percall.py): one thread, epoll, keep-alive,
 * and for every request (whatever it asks) the same HTTP/1.1 200 with the body keyless served
 * (argv[1], read once). No parsing beyond finding each request's blank line, no allocation per
 * request: what wrk on loopback can get out of this machine, to set keyless's figures against.
 * Writes its port to argv[2]. Built by the bench with `cc -O2`. */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BODY (16 * 1024)

static char response[MAX_BODY + 256];
static size_t response_len;
static char pending[65536][4]; /* per fd: the tail of the last read, to find a split "\r\n\r\n" */

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    char body[MAX_BODY];
    int fd = open(argv[1], O_RDONLY);
    ssize_t body_len = fd < 0 ? -1 : read(fd, body, sizeof body);
    if (body_len <= 0) return 1;
    close(fd);
    response_len = (size_t)snprintf(response, sizeof response,
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                    "content-length: %zd\r\n\r\n", body_len);
    memcpy(response + response_len, body, (size_t)body_len);
    response_len += (size_t)body_len;

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 4096) ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen))
        return 1;
    FILE *pf = fopen(argv[2], "w");
    if (!pf) return 1;
    fprintf(pf, "%d", ntohs(addr.sin_port));
    fclose(pf);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[256];
    static char buf[65536], out[1 << 20];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int c = events[i].data.fd;
            if (c == lfd) {
                int a;
                while ((a = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (a >= 65536) { close(a); continue; }
                    setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    memset(pending[a], 0, 4);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = a};
                    epoll_ctl(ep, EPOLL_CTL_ADD, a, &cev);
                }
                continue;
            }
            ssize_t r = read(c, buf, sizeof buf);
            if (r <= 0) { close(c); continue; }
            /* Count the requests completed by this read: each ends with "\r\n\r\n". */
            size_t requests = 0;
            char *p = pending[c];
            for (ssize_t k = 0; k < r; k++) {
                memmove(p, p + 1, 3);
                p[3] = buf[k];
                if (memcmp(p, "\r\n\r\n", 4) == 0) requests++;
            }
            size_t len = 0;
            while (requests-- && len + response_len <= sizeof out) {
                memcpy(out + len, response, response_len);
                len += response_len;
            }
            if (len && write(c, out, len) != (ssize_t)len) close(c);
        }
    }
}
