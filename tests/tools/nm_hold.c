// SPDX-License-Identifier: Apache-2.0
/*
 * nm_hold - load for the overload tests: many connections held open.
 *
 *   nm_hold open --to IP:PORT --count N [--src IP] [--settle-ms S]
 *                [--hold-ms T] [--rate R]
 *                [--tls CERTDIR --id NS/SA --peer SPIFFE-ID]
 *       Opens N TCP connections at once (optionally from source address
 *       IP), with --tls completes a TLS 1.3 handshake on each (presenting
 *       NS/SA's certificate, expecting SPIFFE-ID) and then sends nothing.
 *       After S ms (default 300) it prints
 *         ready connected=C refused=R failed=F handshakes=H
 *       where refused counts connections the server reset or closed in
 *       that time. Then it holds them T ms (0 = until SIGTERM); with
 *       --rate it also opens R new connections per second meanwhile and
 *       at the end prints
 *         done extra=X extra_refused=Y extra_open=Z
 *
 *   nm_hold stream --to IP:PORT
 *       Sends "WAIT" (for nm_closer serve) and then 1 KiB every 10 ms,
 *       reading whatever comes back, until the connection ends; prints
 *       "stream: started" once 64 KiB went out, then "stream: EOF" or
 *       "stream: <ERRNO name>", and exits 0 only on ECONNRESET (a truncated
 *       stream must not look complete). Bounded by 30 s.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>

#include "mesh/tls.h"

enum conn_state { C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DONE };

struct conn {
	int fd;
	SSL *ssl;
	enum conn_state st;
	bool refused;
};

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	stop = 1;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int parse_to(const char *s, struct sockaddr_in *sin)
{
	char host[64];
	const char *colon = s ? strrchr(s, ':') : NULL;

	if (!colon || colon - s >= (long)sizeof(host))
		return -1;
	memcpy(host, s, colon - s);
	host[colon - s] = 0;
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(atoi(colon + 1));
	return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -1;
}

static const char *opt(int argc, char **argv, const char *name)
{
	for (int i = 2; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return argv[i + 1];
	return NULL;
}

struct ctx {
	struct sockaddr_in to, src;
	bool has_src;
	struct nm_tls *tls;
	char ns[64], sa[64];
	struct nm_spiffe_id peer;
};

static int conn_start(const struct ctx *c, struct conn *k)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	memset(k, 0, sizeof(*k));
	k->fd = fd;
	if (fd < 0) {
		k->st = C_DONE;
		return -1;
	}
	if (c->has_src && bind(fd, (const struct sockaddr *)&c->src, sizeof(c->src))) {
		close(fd);
		k->fd = -1;
		k->st = C_DONE;
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)&c->to, sizeof(c->to)) &&
	    errno != EINPROGRESS) {
		close(fd);
		k->fd = -1;
		k->st = C_DONE;
		return -1;
	}
	k->st = C_CONNECTING;
	return 0;
}

/* Advances one connection; returns true when it changed state. */
static bool conn_step(const struct ctx *c, struct conn *k, short rev)
{
	int err = 0, r;
	socklen_t len = sizeof(err);

	switch (k->st) {
	case C_CONNECTING:
		if (!(rev & (POLLOUT | POLLERR | POLLHUP)))
			return false;
		getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			close(k->fd);
			k->fd = -1;
			k->st = C_DONE;
			k->refused = err == ECONNRESET || err == ECONNREFUSED;
			return true;
		}
		if (!c->tls) {
			k->st = C_OPEN;
			return true;
		}
		if (nm_tls_client_new(c->tls, c->ns, c->sa, &c->peer, NULL, k->fd, &k->ssl)) {
			close(k->fd);
			k->fd = -1;
			k->st = C_DONE;
			return true;
		}
		k->st = C_HANDSHAKE;
		/* fall through */
	case C_HANDSHAKE:
		ERR_clear_error();
		r = SSL_do_handshake(k->ssl);
		if (r == 1) {
			k->st = C_OPEN;
			return true;
		}
		r = SSL_get_error(k->ssl, r);
		if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
			return false;
		SSL_free(k->ssl);
		k->ssl = NULL;
		close(k->fd);
		k->fd = -1;
		k->st = C_DONE;
		k->refused = true;
		return true;
	case C_OPEN: {
		char buf[4096];
		ssize_t n;

		if (!(rev & (POLLIN | POLLERR | POLLHUP)))
			return false;
		if (k->ssl) {
			/* Session tickets and the like: read and drop them. */
			ERR_clear_error();
			r = SSL_read(k->ssl, buf, sizeof(buf));
			if (r > 0)
				return false;
			r = SSL_get_error(k->ssl, r);
			if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
				return false;
		} else {
			n = recv(k->fd, buf, sizeof(buf), 0);
			if (n > 0 || (n < 0 && errno == EAGAIN))
				return false;
		}
		SSL_free(k->ssl);
		k->ssl = NULL;
		close(k->fd);
		k->fd = -1;
		k->st = C_DONE;
		k->refused = true;
		return true;
	}
	case C_DONE:
		break;
	}
	return false;
}

/* Polls every live connection once for up to ms; advances them. */
static void conns_poll(const struct ctx *c, struct conn *ks, int n,
		       struct pollfd *pf, int ms)
{
	int m = 0;
	int *idx = calloc(n ? n : 1, sizeof(*idx));

	for (int i = 0; i < n; i++) {
		if (ks[i].st == C_DONE)
			continue;
		pf[m].fd = ks[i].fd;
		pf[m].events = ks[i].st == C_CONNECTING ? POLLOUT :
			       ks[i].st == C_HANDSHAKE ?
			       (SSL_want_write(ks[i].ssl) ? POLLOUT : POLLIN) : POLLIN;
		pf[m].revents = 0;
		idx[m++] = i;
	}
	if (poll(pf, m, ms) > 0)
		for (int j = 0; j < m; j++)
			if (pf[j].revents)
				while (conn_step(c, &ks[idx[j]], pf[j].revents) &&
				       ks[idx[j]].st == C_HANDSHAKE)
					;
	free(idx);
}

static int count_state(const struct conn *ks, int n, enum conn_state st)
{
	int k = 0;

	for (int i = 0; i < n; i++)
		k += ks[i].st == st;
	return k;
}

static int cmd_open(int argc, char **argv)
{
	const char *to = opt(argc, argv, "--to"), *src = opt(argc, argv, "--src");
	const char *tlsdir = opt(argc, argv, "--tls"), *id = opt(argc, argv, "--id");
	const char *peer = opt(argc, argv, "--peer");
	int count = atoi(opt(argc, argv, "--count") ? opt(argc, argv, "--count") : "1");
	int settle = atoi(opt(argc, argv, "--settle-ms") ? opt(argc, argv, "--settle-ms") : "300");
	int hold = atoi(opt(argc, argv, "--hold-ms") ? opt(argc, argv, "--hold-ms") : "0");
	int rate = atoi(opt(argc, argv, "--rate") ? opt(argc, argv, "--rate") : "0");
	int cap = count + (rate ? rate * (hold ? hold / 1000 + 2 : 600) : 0);
	struct ctx c = { 0 };
	struct conn *ks;
	struct pollfd *pf;
	int n = 0, failed = 0, extra = 0;
	int64_t t0, next_extra;

	if (parse_to(to, &c.to) || count < 0) {
		fprintf(stderr, "nm_hold open: --to IP:PORT --count N\n");
		return 2;
	}
	if (src) {
		c.src.sin_family = AF_INET;
		c.has_src = inet_pton(AF_INET, src, &c.src.sin_addr) == 1;
	}
	if (tlsdir) {
		char err[256];
		const char *why = NULL, *slash = id ? strchr(id, '/') : NULL;

		if (!slash || !peer || nm_spiffe_parse(peer, &c.peer, &why) ||
		    nm_tls_create(tlsdir, c.peer.trust_domain, &c.tls, err, sizeof(err))) {
			fprintf(stderr, "nm_hold open: bad --tls/--id/--peer\n");
			return 2;
		}
		snprintf(c.ns, sizeof(c.ns), "%.*s", (int)(slash - id), id);
		snprintf(c.sa, sizeof(c.sa), "%s", slash + 1);
		nm_tls_set_resumption(c.tls, false);
	}
	signal(SIGTERM, on_term);
	signal(SIGPIPE, SIG_IGN);
	ks = calloc(cap ? cap : 1, sizeof(*ks));
	pf = calloc(cap ? cap : 1, sizeof(*pf));
	if (!ks || !pf)
		return 1;
	for (; n < count; n++)
		failed += conn_start(&c, &ks[n]) ? 1 : 0;
	/* Connect (and handshake) everything, at most 20 s. */
	t0 = now_ms();
	while (!stop && now_ms() - t0 < 20000 &&
	       (count_state(ks, n, C_CONNECTING) || count_state(ks, n, C_HANDSHAKE)))
		conns_poll(&c, ks, n, pf, 100);
	t0 = now_ms();
	while (!stop && now_ms() - t0 < settle)
		conns_poll(&c, ks, n, pf, (int)(settle - (now_ms() - t0)));
	{
		int refused = 0, open = count_state(ks, n, C_OPEN);

		for (int i = 0; i < n; i++)
			refused += ks[i].refused;
		printf("ready connected=%d refused=%d failed=%d handshakes=%d\n",
		       open, refused, failed, c.tls ? open : 0);
		fflush(stdout);
	}
	t0 = now_ms();
	next_extra = t0;
	while (!stop && (!hold || now_ms() - t0 < hold)) {
		if (rate && now_ms() >= next_extra && n < cap) {
			conn_start(&c, &ks[n++]);
			extra++;
			next_extra += 1000 / rate;
		}
		conns_poll(&c, ks, n, pf, rate ? 1000 / rate : 200);
	}
	if (rate) {
		int er = 0, eo = 0;

		for (int i = count; i < n; i++) {
			er += ks[i].refused;
			eo += ks[i].st == C_OPEN;
		}
		printf("done extra=%d extra_refused=%d extra_open=%d\n", extra, er, eo);
		fflush(stdout);
	}
	return 0;
}

static int cmd_stream(int argc, char **argv)
{
	struct sockaddr_in to;
	char buf[1024], in[4096];
	long sent = 0;
	bool started = false;
	int64_t t0 = now_ms();
	int fd;

	if (parse_to(opt(argc, argv, "--to"), &to)) {
		fprintf(stderr, "nm_hold stream: --to IP:PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&to, sizeof(to))) {
		printf("stream: connect %s\n", strerrorname_np(errno));
		return 1;
	}
	memset(buf, 's', sizeof(buf));
	if (write(fd, "WAIT", 4) != 4) {
		printf("stream: %s\n", strerrorname_np(errno));
		return 1;
	}
	while (now_ms() - t0 < 30000) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 10) > 0) {
			n = read(fd, in, sizeof(in));
			if (n == 0) {
				printf("stream: EOF\n");
				return 1;
			}
			if (n < 0) {
				printf("stream: %s\n", strerrorname_np(errno));
				return errno == ECONNRESET ? 0 : 1;
			}
		}
		n = send(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN) {
			printf("stream: %s\n", strerrorname_np(errno));
			return errno == ECONNRESET ? 0 : 1;
		}
		if (n > 0)
			sent += n;
		if (!started && sent >= 65536) {
			printf("stream: started\n");
			fflush(stdout);
			started = true;
		}
	}
	printf("stream: timeout\n");
	return 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "open"))
		return cmd_open(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "stream"))
		return cmd_stream(argc, argv);
	fprintf(stderr, "usage: nm_hold open|stream ... (see the source)\n");
	return 2;
}
