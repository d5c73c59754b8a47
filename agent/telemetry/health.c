// SPDX-License-Identifier: Apache-2.0
/*
 * health.c - :15021/healthz/ready (health.h).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "telemetry/health.h"

#define REQ_MAX 1024 /* a request line and headers that fit, or 400 */
#define MAX_CONNS 64 /* probes, not traffic: a few at a time */

struct health_conn {
	struct nm_health *h;
	int fd;
	size_t len;
	char buf[REQ_MAX];
	struct health_conn *next;
};

struct nm_health {
	struct nm_loop *loop;
	int fd;
	bool ready;
	unsigned int n_conns;
	struct health_conn *conns;
};

#define R_OK_BODY "ready\n"
static const char resp_ready[] =
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n"
	"Connection: close\r\n\r\n" R_OK_BODY;
static const char resp_not_ready[] =
	"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
	"Content-Length: 10\r\nConnection: close\r\n\r\nnot ready\n";
static const char resp_not_found[] =
	"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
	"Content-Length: 10\r\nConnection: close\r\n\r\nnot found\n";
static const char resp_bad[] =
	"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
static const char resp_method[] =
	"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"
	"Content-Length: 0\r\nConnection: close\r\n\r\n";

int nm_health_respond(const char *req, size_t len, bool ready,
		      const char **resp)
{
	const char *eol = memchr(req, '\n', len), *sp, *path, *end;
	size_t plen;

	/* Answer only once the whole header block is in: closing while the
	 * client still sends headers would reset the connection and throw
	 * the answer away on the client's side. */
	if (!memmem(req, len, "\r\n\r\n", 4) && !memmem(req, len, "\n\n", 2))
		return len >= REQ_MAX ? (*resp = resp_bad, 0) : -EAGAIN;
	/* "GET /healthz/ready HTTP/1.1": the request line is enough. */
	sp = memchr(req, ' ', (size_t)(eol - req));
	if (!sp) {
		*resp = resp_bad;
		return 0;
	}
	if (!((sp - req == 3 && !memcmp(req, "GET", 3)) ||
	      (sp - req == 4 && !memcmp(req, "HEAD", 4)))) {
		*resp = resp_method;
		return 0;
	}
	path = sp + 1;
	end = memchr(path, ' ', (size_t)(eol - path));
	if (!end) {
		*resp = resp_bad;
		return 0;
	}
	plen = (size_t)(end - path);
	/* A query string is allowed and ignored, as kubelet never sends one. */
	if (memchr(path, '?', plen))
		plen = (size_t)((const char *)memchr(path, '?', plen) - path);
	if (plen == strlen("/healthz/ready") && !memcmp(path, "/healthz/ready", plen))
		*resp = ready ? resp_ready : resp_not_ready;
	else
		*resp = resp_not_found;
	return 0;
}

static void conn_free(struct health_conn *c)
{
	struct nm_health *h = c->h;
	struct health_conn **pp;

	for (pp = &h->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	nm_loop_del(h->loop, c->fd);
	close(c->fd);
	h->n_conns--;
	free(c);
}

static void on_conn(struct nm_loop *loop, int fd, unsigned int events, void *data)
{
	struct health_conn *c = data;
	const char *resp;
	ssize_t n;

	n = read(fd, c->buf + c->len, sizeof(c->buf) - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_free(c);
		return;
	}
	c->len += (size_t)n;
	if (nm_health_respond(c->buf, c->len, c->h->ready, &resp) == -EAGAIN)
		return;
	/* A few hundred bytes into an empty socket buffer: one send does. */
	if (send(fd, resp, strlen(resp), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		pr_debug("msg=\"health response not sent\" err=\"%s\"", strerror(errno));
	conn_free(c);
}

static void on_accept(struct nm_loop *loop, int lfd, unsigned int events, void *data)
{
	struct nm_health *h = data;

	for (int i = 0; i < 16; i++) {
		struct health_conn *c;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return; /* EAGAIN, or out of fds: probes retry */
		if (h->n_conns >= MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
			close(fd);
			continue;
		}
		c->h = h;
		c->fd = fd;
		if (nm_loop_add(loop, fd, NM_EV_READ, on_conn, c)) {
			close(fd);
			free(c);
			continue;
		}
		c->next = h->conns;
		h->conns = c;
		h->n_conns++;
	}
}

int nm_health_open(struct nm_loop *loop, const struct sockaddr_storage *addr,
		   struct nm_health **out)
{
	socklen_t len = addr->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
						     sizeof(struct sockaddr_in6);
	struct nm_health *h;
	int one = 1, ret;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->loop = loop;
	h->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd < 0) {
		ret = -errno;
		goto err_free;
	}
	setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(h->fd, (const struct sockaddr *)addr, len) || listen(h->fd, 64)) {
		ret = -errno;
		goto err_close;
	}
	ret = nm_loop_add(loop, h->fd, NM_EV_READ, on_accept, h);
	if (ret)
		goto err_close;
	*out = h;
	return 0;

err_close:
	close(h->fd);
err_free:
	free(h);
	return ret;
}

void nm_health_set_ready(struct nm_health *h, bool ready)
{
	if (h)
		h->ready = ready;
}

void nm_health_close(struct nm_health *h)
{
	if (!h)
		return;
	while (h->conns)
		conn_free(h->conns);
	nm_loop_del(h->loop, h->fd);
	close(h->fd);
	free(h);
}
