// SPDX-License-Identifier: Apache-2.0
/*
 * nm_peer - the traffic tool of the integration tests.
 *
 *   nm_peer serve   --port P [--addr A] [--log-conns]
 *       Echo server (epoll, non-blocking). Echoes every byte until the peer
 *       half-closes, then half-closes its side. With --log-conns it prints
 *       one line per accepted and per finished connection on stdout.
 *   nm_peer send    --to IP:PORT --bytes N [--timeout-ms T] [--dump-sent F]
 *       Sends N random bytes while reading the echo, half-closes after the
 *       last byte, and checks that exactly the same bytes came back. Prints
 *       one JSON line; exit 0 only on an exact match.
 *   nm_peer connect --to IP:PORT [--timeout-ms T] [--wait-close-ms W]
 *       Opens one connection and reports how connect() ended. Exit codes:
 *       0 connected (and, with --wait-close-ms, closed by the peer in time),
 *       1 refused, 2 timed out, 3 other error, 4 connected but still open
 *       after W ms.
 *   nm_peer find    --haystack F --needles F [--chunk C]
 *       Exit 0 when any aligned C-byte chunk (default 32) of the needle file
 *       occurs anywhere in the haystack, 1 when none does.
 *   nm_peer tlsrec  --pcap F --port P [--min-bytes N]
 *       Reassembles the TCP streams to and from port P in a pcap file and
 *       walks them as TLS records. Exit 0 when every stream is a well-formed
 *       TLS record sequence that starts with a handshake, application data
 *       records carry version 0x0303, and each direction carried at least N
 *       bytes of application data (default 1).
 *
 *   nm_peer nmtp    --to IP:PORT --dst IP:PORT [--src IP:PORT]
 *                   [--cert F --key F]
 *                   [--sni NAME] [--alpn P | --no-alpn] [--tls12]
 *                   [--plaintext] [--bytes N] [--timeout-ms T]
 *       A hand-made NMTP client (the hostile client of the bypass tests):
 *       TLS to an agent's inbound port with exactly the options given
 *       (cert.pem may hold a chain after the leaf; the server is not
 *       verified), then the preamble (DST, and SRC with --src: the client
 *       address it claims to speak for) and N bytes, then reads the
 *       status; on status 0 it half-closes and reads the echo back.
 *       --plaintext sends the same bytes without TLS. One JSON line (status
 *       -1: none received; echoed: bytes read back); exit 0 when the agent
 *       answered status 0 (ok), 1 otherwise.
 *   nm_peer tls-serve --port P [--addr A] --cert F --key F
 *       A fake inbound agent: TLS 1.3 server with ALPN nmtp/1 presenting F
 *       (leaf + chain); asks for but does not verify a client certificate.
 *       Prints "conn handshake=ok|failed app_bytes=N" per connection.
 *   nm_peer mkcert  --ca-dir D --out DIR --kind K [--id SPIFFE-ID]
 *       Writes DIR/cert.pem and DIR/key.pem: a certificate the development
 *       CA in D would never issue (kinds in mkcert_kinds[]), for the id
 *       (default spiffe://<td>/ns/default/sa/client).
 *
 * The traffic subcommands are self-contained (libc; the TLS ones OpenSSL
 * directly), never the agent's code, so that a broken agent library can
 * never make the tests that judge it pass; mkcert uses the CLI's dev CA.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tools/devca.h"

#define IO_CHUNK (64 * 1024)
#define ECHO_BUF (64 * 1024)

enum connect_exit {
	CX_CONNECTED = 0,
	CX_REFUSED = 1,
	CX_TIMEOUT = 2,
	CX_ERROR = 3,
	CX_STILL_OPEN = 4,
	CX_USAGE = 64,
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *errno_name(int err)
{
	const char *n = strerrorname_np(err);

	return n ? n : "EUNKNOWN";
}

static void usage(void)
{
	fprintf(stderr,
		"usage: nm_peer serve --port P [--addr A] [--log-conns]\n"
		"       nm_peer send --to IP:PORT --bytes N [--timeout-ms T] [--dump-sent FILE]\n"
		"                    [--duration-ms D]   (spread the bytes over D ms)\n"
		"       nm_peer connect --to IP:PORT [--timeout-ms T] [--wait-close-ms W]\n"
		"       nm_peer find --haystack FILE --needles FILE [--chunk C]\n"
		"       nm_peer tlsrec --pcap FILE --port P [--min-bytes N]\n"
		"       nm_peer nmtp --to IP:PORT --dst IP:PORT [--src IP:PORT] [--cert F --key F] [--sni S]\n"
		"                    [--alpn P | --no-alpn] [--tls12] [--plaintext] [--bytes N]\n"
		"       nm_peer tls-serve --port P [--addr A] --cert F --key F\n"
		"       nm_peer mkcert --ca-dir D --out DIR --kind K [--id SPIFFE-ID]\n");
}

/* "1.2.3.4:80" or "[::1]:80" */
static int parse_hostport(const char *s, struct sockaddr_storage *ss,
			  socklen_t *len)
{
	char host[128];
	const char *colon, *h = s;
	size_t hl;
	char *end;
	unsigned long port;

	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port == 0 || port > 65535)
		return -EINVAL;

	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -EINVAL;
}

static void format_addr(const struct sockaddr_storage *ss, char *buf,
			size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
}

static void local_addr(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		format_addr(&ss, buf, len);
	else
		snprintf(buf, len, "?");
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': v *= 1024ULL; end++; break;
	case 'm': case 'M': v *= 1024ULL * 1024; end++; break;
	case 'g': case 'G': v *= 1024ULL * 1024 * 1024; end++; break;
	default: break;
	}
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Option lookup: every subcommand takes "--name value" pairs and flags. */
struct opts {
	int argc;
	char **argv;
};

static const char *opt_get(const struct opts *o, const char *name)
{
	for (int i = 0; i < o->argc; i++)
		if (!strcmp(o->argv[i], name))
			return i + 1 < o->argc ? o->argv[i + 1] : NULL;
	return NULL;
}

static bool opt_flag(const struct opts *o, const char *name)
{
	for (int i = 0; i < o->argc; i++)
		if (!strcmp(o->argv[i], name))
			return true;
	return false;
}

static int opt_u64(const struct opts *o, const char *name, uint64_t def,
		   uint64_t *out)
{
	const char *v = opt_get(o, name);

	if (!v) {
		if (opt_flag(o, name))
			return -EINVAL; /* given without a value */
		*out = def;
		return 0;
	}
	return parse_u64(v, out);
}

/*
 * Non-blocking connect bounded by timeout_ms. Returns the fd, or -errno
 * (-ETIMEDOUT when the deadline passed).
 */
static int dial(const struct sockaddr_storage *to, socklen_t tolen,
		int timeout_ms, char *la, size_t lalen)
{
	int fd, err = 0;
	socklen_t el = sizeof(err);
	struct pollfd pfd;
	int64_t deadline = now_ms() + timeout_ms;

	fd = socket(to->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)to, tolen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		err = errno;
		goto fail;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	for (;;) {
		int64_t left = deadline - now_ms();
		int n;

		if (left <= 0) {
			err = ETIMEDOUT;
			goto fail;
		}
		n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			goto fail;
		}
		if (n > 0)
			break;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err)
		goto fail;
	return fd;
fail:
	/* The port the kernel picked still names the attempt in peer logs. */
	if (la)
		local_addr(fd, la, lalen);
	close(fd);
	return -err;
}

static int fill_random(uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = getrandom(buf + off, len - off, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)n;
	}
	return 0;
}

static int write_file(const char *path, const uint8_t *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	int ret = 0;

	if (!f)
		return -errno;
	if (len && fwrite(buf, 1, len, f) != len)
		ret = -EIO;
	if (fclose(f) != 0 && !ret)
		ret = -errno;
	return ret;
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t cap = 0, n = 0;
	int ret = 0;

	if (!f)
		return -errno;
	for (;;) {
		size_t r;

		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 1 << 20;
			uint8_t *nb = realloc(buf, ncap);

			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0) {
			if (ferror(f))
				ret = -EIO;
			break;
		}
	}
out:
	fclose(f);
	if (ret) {
		free(buf);
		return ret;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* ---------------------------------------------------------------- serve */

struct echo_conn {
	int fd;
	char peer[64];
	uint8_t buf[ECHO_BUF];
	size_t len, off;   /* pending bytes are buf[off..len) */
	bool rd_eof;
	uint64_t echoed;
};

static void echo_close(int ep, struct echo_conn *c, bool log, const char *why)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (log) {
		printf("close peer=%s bytes=%" PRIu64 " reason=%s\n", c->peer,
		       c->echoed, why);
		fflush(stdout);
	}
	free(c);
}

static void echo_rearm(int ep, struct echo_conn *c)
{
	struct epoll_event ev = { .data.ptr = c };

	if (!c->rd_eof && c->len < sizeof(c->buf))
		ev.events |= EPOLLIN;
	if (c->off < c->len)
		ev.events |= EPOLLOUT;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Sends what is buffered; false when the connection was closed and freed. */
static bool echo_flush(int ep, struct echo_conn *c, bool log)
{
	while (c->off < c->len) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off,
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN)
				break;
			echo_close(ep, c, log, errno_name(errno));
			return false;
		}
		c->off += (size_t)n;
		c->echoed += (uint64_t)n;
	}
	if (c->off == c->len)
		c->off = c->len = 0;
	return true;
}

/* Returns false when the connection was closed and freed. */
static bool echo_service(int ep, struct echo_conn *c, uint32_t events,
			 bool log)
{
	if ((events & EPOLLOUT || c->off < c->len) && !echo_flush(ep, c, log))
		return false;
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->rd_eof) {
		while (c->len < sizeof(c->buf)) {
			ssize_t n = recv(c->fd, c->buf + c->len,
					 sizeof(c->buf) - c->len, 0);

			if (n < 0) {
				if (errno == EAGAIN)
					break;
				echo_close(ep, c, log, errno_name(errno));
				return false;
			}
			if (n == 0) {
				c->rd_eof = true;
				break;
			}
			c->len += (size_t)n;
		}
		/* Try to push what we just read right away. */
		if (!echo_flush(ep, c, log))
			return false;
	}
	if (c->rd_eof && c->off == c->len) {
		/* Everything echoed and the peer is done: half-close, finish. */
		shutdown(c->fd, SHUT_WR);
		echo_close(ep, c, log, "eof");
		return false;
	}
	echo_rearm(ep, c);
	return true;
}

static int cmd_serve(const struct opts *o)
{
	uint64_t port;
	const char *addr = opt_get(o, "--addr");
	bool log = opt_flag(o, "--log-conns");
	struct sockaddr_storage ss;
	socklen_t sl;
	char hp[160];
	int lfd, ep, one = 1;
	struct epoll_event ev;

	if (opt_u64(o, "--port", 0, &port) || port == 0 || port > 65535) {
		usage();
		return CX_USAGE;
	}
	if (!addr)
		addr = "0.0.0.0";
	snprintf(hp, sizeof(hp), strchr(addr, ':') ? "[%s]:%" PRIu64 : "%s:%" PRIu64,
		 addr, port);
	if (parse_hostport(hp, &ss, &sl)) {
		fprintf(stderr, "nm_peer: bad --addr %s\n", addr);
		return CX_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0) {
		perror("nm_peer: socket");
		return 1;
	}
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&ss, sl) < 0 || listen(lfd, 1024) < 0) {
		fprintf(stderr, "nm_peer: listen %s: %s\n", hp, strerror(errno));
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		perror("nm_peer: epoll_create1");
		return 1;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = NULL; /* NULL marks the listener */
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	if (log) {
		printf("listening addr=%s\n", hp);
		fflush(stdout);
	}
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("nm_peer: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct echo_conn *c = evs[i].data.ptr;

			if (c) {
				echo_service(ep, c, evs[i].events, log);
				continue;
			}
			for (;;) {
				struct sockaddr_storage peer;
				socklen_t pl = sizeof(peer);
				int fd = accept4(lfd, (struct sockaddr *)&peer, &pl,
						 SOCK_NONBLOCK | SOCK_CLOEXEC);

				if (fd < 0)
					break;
				c = calloc(1, sizeof(*c));
				if (!c) {
					close(fd);
					continue;
				}
				c->fd = fd;
				format_addr(&peer, c->peer, sizeof(c->peer));
				if (log) {
					char la[64];

					local_addr(fd, la, sizeof(la));
					printf("accept peer=%s local=%s\n", c->peer, la);
					fflush(stdout);
				}
				struct epoll_event cev = { .events = EPOLLIN,
							   .data.ptr = c };
				epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
			}
		}
	}
}

/* ----------------------------------------------------------------- send */

static int cmd_send(const struct opts *o)
{
	const char *to = opt_get(o, "--to");
	const char *dump = opt_get(o, "--dump-sent");
	uint64_t nbytes, timeout, duration;
	struct sockaddr_storage ss;
	socklen_t sl;
	uint8_t *payload = NULL, *rbuf = NULL;
	uint64_t sent = 0, rcvd = 0;
	int64_t first_bad = -1;
	int64_t t0, t_conn = 0;
	const char *result = "ok", *stage = "", *ename = "";
	char la[64] = "?";
	bool shut = false, eof = false;
	int fd = -1, rc = 1;

	if (!to || parse_hostport(to, &ss, &sl) ||
	    opt_u64(o, "--bytes", 0, &nbytes) ||
	    opt_u64(o, "--timeout-ms", 10000, &timeout) ||
	    opt_u64(o, "--duration-ms", 0, &duration)) {
		usage();
		return CX_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	payload = malloc(nbytes ? nbytes : 1);
	rbuf = malloc(IO_CHUNK);
	if (!payload || !rbuf || fill_random(payload, nbytes)) {
		fprintf(stderr, "nm_peer: cannot prepare %" PRIu64 " bytes\n", nbytes);
		goto out;
	}
	if (dump) {
		int err = write_file(dump, payload, nbytes);

		if (err) {
			fprintf(stderr, "nm_peer: %s: %s\n", dump, strerror(-err));
			goto out;
		}
	}

	t0 = now_ms();
	fd = dial(&ss, sl, (int)timeout, la, sizeof(la));
	if (fd < 0) {
		result = "error";
		stage = "connect";
		ename = errno_name(-fd);
		goto report;
	}
	t_conn = now_ms() - t0;
	local_addr(fd, la, sizeof(la));

	while (!eof) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = (int64_t)timeout - (now_ms() - t0);
		uint64_t allowed = nbytes;
		int wait = (int)left;
		int n;

		/* Paced: a long-lived stream with data moving all along. */
		if (duration) {
			double f = (double)(now_ms() - t0 - t_conn) / (double)duration;

			allowed = f >= 1.0 ? nbytes : (uint64_t)(f * (double)nbytes);
			if (wait > 10)
				wait = 10;
		}
		if (sent == nbytes && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		if (sent < allowed)
			pfd.events |= POLLOUT;
		if (left <= 0) {
			result = "error";
			stage = "transfer";
			ename = "ETIMEDOUT";
			goto report;
		}
		n = poll(&pfd, 1, wait);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			continue;
		if (pfd.revents & POLLOUT && sent < allowed) {
			size_t chunk = allowed - sent > IO_CHUNK ? IO_CHUNK
							       : (size_t)(allowed - sent);
			ssize_t w = send(fd, payload + sent, chunk, MSG_NOSIGNAL);

			if (w < 0 && errno != EAGAIN) {
				result = "error";
				stage = "send";
				ename = errno_name(errno);
				goto report;
			}
			if (w > 0)
				sent += (uint64_t)w;
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = recv(fd, rbuf, IO_CHUNK, 0);

			if (r < 0 && errno != EAGAIN) {
				result = "error";
				stage = "recv";
				ename = errno_name(errno);
				goto report;
			}
			if (r == 0) {
				eof = true;
			} else if (r > 0) {
				for (ssize_t i = 0; i < r && first_bad < 0; i++)
					if (rcvd + (uint64_t)i >= nbytes ||
					    rbuf[i] != payload[rcvd + (uint64_t)i])
						first_bad = (int64_t)(rcvd + (uint64_t)i);
				rcvd += (uint64_t)r;
			}
		}
	}
	if (first_bad >= 0 || rcvd != nbytes || sent != nbytes) {
		result = "mismatch";
		if (first_bad < 0)
			first_bad = (int64_t)(rcvd < nbytes ? rcvd : nbytes);
	}
report:
	printf("{\"cmd\":\"send\",\"result\":\"%s\",\"to\":\"%s\",\"local\":\"%s\","
	       "\"bytes\":%" PRIu64 ",\"bytes_sent\":%" PRIu64
	       ",\"bytes_received\":%" PRIu64 ",\"match\":%s,"
	       "\"first_mismatch\":%" PRId64 ",\"connect_ms\":%" PRId64
	       ",\"elapsed_ms\":%" PRId64 ",\"stage\":\"%s\",\"errno\":\"%s\"}\n",
	       result, to, la, nbytes, sent, rcvd,
	       strcmp(result, "ok") ? "false" : "true", first_bad, t_conn,
	       now_ms() - t0, stage, ename);
	fflush(stdout);
	rc = strcmp(result, "ok") ? 1 : 0;
out:
	if (fd >= 0)
		close(fd);
	free(payload);
	free(rbuf);
	return rc;
}

/* -------------------------------------------------------------- connect */

static int cmd_connect(const struct opts *o)
{
	const char *to = opt_get(o, "--to");
	uint64_t timeout, wait_close;
	struct sockaddr_storage ss;
	socklen_t sl;
	char la[64] = "?";
	const char *result, *ename = "", *closed = "";
	int64_t t0, elapsed, close_ms = -1;
	int fd, rc;

	if (!to || parse_hostport(to, &ss, &sl) ||
	    opt_u64(o, "--timeout-ms", 3000, &timeout) ||
	    opt_u64(o, "--wait-close-ms", 0, &wait_close)) {
		usage();
		return CX_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	t0 = now_ms();
	fd = dial(&ss, sl, (int)timeout, la, sizeof(la));
	elapsed = now_ms() - t0;
	if (fd < 0) {
		ename = errno_name(-fd);
		if (fd == -ECONNRESET && wait_close) {
			/*
			 * The handshake completed and the peer reset the
			 * connection before poll() reported it writable: that
			 * is the fastest possible close by the peer.
			 */
			result = "reset";
			closed = ename;
			close_ms = 0;
			rc = CX_CONNECTED;
		} else if (fd == -ECONNREFUSED) {
			result = "refused";
			rc = CX_REFUSED;
		} else if (fd == -ETIMEDOUT) {
			result = "timeout";
			rc = CX_TIMEOUT;
		} else {
			result = "error";
			rc = CX_ERROR;
		}
		goto report;
	}
	result = "connected";
	rc = CX_CONNECTED;
	local_addr(fd, la, sizeof(la));
	if (wait_close) {
		/* Wait for the peer to end the connection without sending. */
		int64_t t1 = now_ms(), deadline = t1 + (int64_t)wait_close;

		closed = "no";
		rc = CX_STILL_OPEN;
		for (;;) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int64_t left = deadline - now_ms();
			uint8_t b[512];
			ssize_t r;

			if (left <= 0)
				break;
			if (poll(&pfd, 1, (int)left) <= 0)
				continue;
			r = recv(fd, b, sizeof(b), 0);
			if (r == 0 || (r < 0 && errno != EAGAIN)) {
				closed = r == 0 ? "eof" : errno_name(errno);
				close_ms = now_ms() - t1;
				rc = CX_CONNECTED;
				break;
			}
			if (r > 0) {
				closed = "data";
				break;
			}
		}
	}
	close(fd);
report:
	printf("{\"cmd\":\"connect\",\"result\":\"%s\",\"to\":\"%s\",\"local\":\"%s\","
	       "\"errno\":\"%s\",\"elapsed_ms\":%" PRId64 ",\"closed_by_peer\":\"%s\","
	       "\"close_ms\":%" PRId64 "}\n",
	       result, to, la, ename, elapsed, closed, close_ms);
	fflush(stdout);
	return rc;
}

/* ----------------------------------------------------------------- find */

/*
 * Rabin-Karp: hash every aligned chunk of the needles into an open-addressing
 * table, then roll a window of the same width over every haystack offset.
 */
#define RK_BASE 1099511628211ULL

static uint64_t rk_hash(const uint8_t *p, size_t n)
{
	uint64_t h = 0;

	for (size_t i = 0; i < n; i++)
		h = h * RK_BASE + p[i];
	return h;
}

static int cmd_find(const struct opts *o)
{
	const char *hp = opt_get(o, "--haystack"), *np = opt_get(o, "--needles");
	uint64_t chunk;
	uint8_t *hay = NULL, *nee = NULL;
	size_t hlen = 0, nlen = 0, nchunks, tsize = 1;
	uint64_t *tab_h = NULL;
	int64_t *tab_i = NULL;
	uint64_t pow = 1, h;
	int64_t found_n = -1, found_h = -1;
	int err, rc = 2;

	if (!hp || !np || opt_u64(o, "--chunk", 32, &chunk) || chunk == 0 ||
	    chunk > 4096) {
		usage();
		return CX_USAGE;
	}
	err = read_file(hp, &hay, &hlen);
	if (err) {
		fprintf(stderr, "nm_peer: %s: %s\n", hp, strerror(-err));
		goto out;
	}
	err = read_file(np, &nee, &nlen);
	if (err) {
		fprintf(stderr, "nm_peer: %s: %s\n", np, strerror(-err));
		goto out;
	}
	nchunks = nlen / chunk;
	if (nchunks == 0) {
		fprintf(stderr, "nm_peer: %s: shorter than one chunk\n", np);
		goto out;
	}
	while (tsize < nchunks * 2)
		tsize <<= 1;
	tab_h = calloc(tsize, sizeof(*tab_h));
	tab_i = malloc(tsize * sizeof(*tab_i));
	if (!tab_h || !tab_i)
		goto out;
	for (size_t i = 0; i < tsize; i++)
		tab_i[i] = -1;
	for (size_t c = 0; c < nchunks; c++) {
		uint64_t hc = rk_hash(nee + c * chunk, chunk);
		size_t slot = (size_t)(hc * 0x9e3779b97f4a7c15ULL) & (tsize - 1);

		while (tab_i[slot] >= 0)
			slot = (slot + 1) & (tsize - 1);
		tab_h[slot] = hc;
		tab_i[slot] = (int64_t)c;
	}
	for (uint64_t i = 1; i < chunk; i++)
		pow *= RK_BASE;
	if (hlen >= chunk) {
		h = rk_hash(hay, chunk);
		for (size_t off = 0;; off++) {
			size_t slot = (size_t)(h * 0x9e3779b97f4a7c15ULL) & (tsize - 1);

			for (; tab_i[slot] >= 0; slot = (slot + 1) & (tsize - 1)) {
				if (tab_h[slot] == h &&
				    !memcmp(hay + off, nee + (size_t)tab_i[slot] * chunk,
					    chunk)) {
					found_n = tab_i[slot] * (int64_t)chunk;
					found_h = (int64_t)off;
					break;
				}
			}
			if (found_h >= 0 || off + chunk >= hlen)
				break;
			h = (h - hay[off] * pow) * RK_BASE + hay[off + chunk];
		}
	}
	printf("{\"cmd\":\"find\",\"found\":%s,\"chunk\":%" PRIu64 ",\"chunks\":%zu,"
	       "\"haystack_bytes\":%zu,\"needle_offset\":%" PRId64
	       ",\"haystack_offset\":%" PRId64 "}\n",
	       found_h >= 0 ? "true" : "false", chunk, nchunks, hlen, found_n,
	       found_h);
	rc = found_h >= 0 ? 0 : 1;
out:
	free(hay);
	free(nee);
	free(tab_h);
	free(tab_i);
	return rc;
}

/* --------------------------------------------------------------- tlsrec */

#define MAX_STREAMS 256
#define MAX_STREAM_BYTES (256u << 20)

struct stream {
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
	bool v6, have_isn;
	uint32_t isn;
	uint8_t *data;      /* stream bytes by relative sequence number */
	uint8_t *covered;   /* 1 per byte we have */
	size_t cap;
};

static struct stream *stream_get(struct stream *ss, int *n, bool v6,
				 const uint8_t *src, const uint8_t *dst,
				 uint16_t sport, uint16_t dport)
{
	size_t al = v6 ? 16 : 4;

	for (int i = 0; i < *n; i++) {
		struct stream *s = &ss[i];

		if (s->v6 == v6 && s->sport == sport && s->dport == dport &&
		    !memcmp(s->src, src, al) && !memcmp(s->dst, dst, al))
			return s;
	}
	if (*n >= MAX_STREAMS)
		return NULL;
	struct stream *s = &ss[(*n)++];

	memset(s, 0, sizeof(*s));
	s->v6 = v6;
	memcpy(s->src, src, al);
	memcpy(s->dst, dst, al);
	s->sport = sport;
	s->dport = dport;
	return s;
}

static int stream_put(struct stream *s, uint32_t seq, const uint8_t *p,
		      size_t len)
{
	uint32_t rel = seq - s->isn;
	size_t end;

	if (!s->have_isn || len == 0)
		return 0;
	if (rel >= MAX_STREAM_BYTES)
		return 0; /* retransmission from before the SYN, or garbage */
	end = (size_t)rel + len;
	if (end > MAX_STREAM_BYTES)
		end = MAX_STREAM_BYTES;
	if (end > s->cap) {
		size_t ncap = s->cap ? s->cap : 1 << 20;

		while (ncap < end)
			ncap *= 2;
		uint8_t *nd = realloc(s->data, ncap);

		if (!nd)
			return -ENOMEM;
		s->data = nd;
		uint8_t *nc = realloc(s->covered, ncap);

		if (!nc)
			return -ENOMEM;
		memset(nc + s->cap, 0, ncap - s->cap);
		s->covered = nc;
		s->cap = ncap;
	}
	memcpy(s->data + rel, p, end - rel);
	memset(s->covered + rel, 1, end - rel);
	return 0;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* One captured frame: find IP and TCP, feed the stream. */
static void pcap_frame(struct stream *ss, int *n, uint32_t linktype,
		       const uint8_t *f, size_t len, uint16_t port)
{
	size_t off;
	uint16_t etype;
	const uint8_t *ip, *tcp, *src, *dst;
	size_t iplen, thl, plen;
	bool v6;

	switch (linktype) {
	case 1: /* Ethernet */
		if (len < 14)
			return;
		etype = rd16(f + 12);
		off = 14;
		while (etype == 0x8100 && len >= off + 4) {
			etype = rd16(f + off + 2);
			off += 4;
		}
		break;
	case 113: /* Linux cooked v1 */
		if (len < 16)
			return;
		etype = rd16(f + 14);
		off = 16;
		break;
	case 276: /* Linux cooked v2 */
		if (len < 20)
			return;
		etype = rd16(f);
		off = 20;
		break;
	case 101: /* raw IP */
		if (len < 1)
			return;
		etype = (f[0] >> 4) == 6 ? 0x86dd : 0x0800;
		off = 0;
		break;
	default:
		return;
	}
	ip = f + off;
	len -= off;
	if (etype == 0x0800) {
		size_t ihl, tot;

		if (len < 20 || (ip[0] >> 4) != 4 || ip[9] != IPPROTO_TCP)
			return;
		ihl = (size_t)(ip[0] & 0xf) * 4;
		tot = rd16(ip + 2);
		if (tot == 0 || tot > len) /* GSO super-packets may carry 0 */
			tot = len;
		if (ihl < 20 || tot < ihl)
			return;
		src = ip + 12;
		dst = ip + 16;
		tcp = ip + ihl;
		iplen = tot - ihl;
		v6 = false;
	} else if (etype == 0x86dd) {
		size_t pl;

		if (len < 40 || ip[6] != IPPROTO_TCP)
			return; /* extension headers are not used by the tests */
		pl = rd16(ip + 4);
		if (pl == 0 || pl + 40 > len)
			pl = len - 40;
		src = ip + 8;
		dst = ip + 24;
		tcp = ip + 40;
		iplen = pl;
		v6 = true;
	} else {
		return;
	}
	if (iplen < 20)
		return;
	thl = (size_t)(tcp[12] >> 4) * 4;
	if (thl < 20 || thl > iplen)
		return;
	uint16_t sp = rd16(tcp), dp = rd16(tcp + 2);
	uint32_t seq = rd32(tcp + 4);
	uint8_t flags = tcp[13];

	if (sp != port && dp != port)
		return;
	struct stream *s = stream_get(ss, n, v6, src, dst, sp, dp);

	if (!s)
		return;
	if (flags & 0x02) { /* SYN: the stream starts at seq + 1 */
		s->isn = seq + 1;
		s->have_isn = true;
		return;
	}
	plen = iplen - thl;
	stream_put(s, seq, tcp + thl, plen);
}

struct rec_stats {
	uint64_t records, app_records, app_bytes, bad_version_app;
	int first_type;
	int64_t invalid_at;
	size_t contiguous;
};

static void walk_records(const struct stream *s, struct rec_stats *st)
{
	size_t len = 0, off = 0;

	memset(st, 0, sizeof(*st));
	st->first_type = -1;
	st->invalid_at = -1;
	while (len < s->cap && s->covered[len])
		len++;
	st->contiguous = len;
	while (off + 5 <= len) {
		const uint8_t *h = s->data + off;
		uint8_t type = h[0];
		uint16_t ver = rd16(h + 1), rlen = rd16(h + 3);

		if (type < 20 || type > 23 || (ver != 0x0301 && ver != 0x0302 &&
					       ver != 0x0303) ||
		    rlen == 0 || rlen > 16384 + 256) {
			st->invalid_at = (int64_t)off;
			return;
		}
		if (st->first_type < 0)
			st->first_type = type;
		st->records++;
		if (type == 23) {
			st->app_records++;
			st->app_bytes += rlen;
			if (ver != 0x0303)
				st->bad_version_app++;
		}
		off += 5 + (size_t)rlen;
	}
}

static int cmd_tlsrec(const struct opts *o)
{
	const char *path = opt_get(o, "--pcap");
	uint64_t port, min_bytes;
	uint8_t *buf = NULL;
	size_t len = 0, off;
	struct stream *ss = NULL;
	int n = 0, rc = 2, err;
	bool swap, ok = true;
	uint32_t magic, linktype;
	uint64_t to_app = 0, from_app = 0, to_streams = 0, from_streams = 0;

	if (!path || opt_u64(o, "--port", 0, &port) || port == 0 ||
	    port > 65535 || opt_u64(o, "--min-bytes", 1, &min_bytes)) {
		usage();
		return CX_USAGE;
	}
	err = read_file(path, &buf, &len);
	if (err) {
		fprintf(stderr, "nm_peer: %s: %s\n", path, strerror(-err));
		return 2;
	}
	if (len < 24) {
		fprintf(stderr, "nm_peer: %s: not a pcap file\n", path);
		goto out;
	}
	memcpy(&magic, buf, 4);
	if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d) {
		swap = false;
	} else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1) {
		swap = true;
	} else {
		fprintf(stderr, "nm_peer: %s: not a pcap file (pcapng?)\n", path);
		goto out;
	}
#define FIX32(v) (swap ? __builtin_bswap32(v) : (v))
	memcpy(&linktype, buf + 20, 4);
	linktype = FIX32(linktype);
	ss = calloc(MAX_STREAMS, sizeof(*ss));
	if (!ss)
		goto out;
	for (off = 24; off + 16 <= len;) {
		uint32_t incl;

		memcpy(&incl, buf + off + 8, 4);
		incl = FIX32(incl);
		if (off + 16 + incl > len)
			break; /* truncated last record: capture was cut */
		pcap_frame(ss, &n, linktype, buf + off + 16, incl, (uint16_t)port);
		off += 16 + incl;
	}
#undef FIX32
	printf("{\"cmd\":\"tlsrec\",\"port\":%" PRIu64 ",\"streams\":[", port);
	for (int i = 0; i < n; i++) {
		struct stream *s = &ss[i];
		struct rec_stats st;
		char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
		bool to_port = s->dport == port;
		bool good;

		if (!s->have_isn)
			continue; /* started before the capture: no anchor */
		walk_records(s, &st);
		inet_ntop(s->v6 ? AF_INET6 : AF_INET, s->src, a, sizeof(a));
		inet_ntop(s->v6 ? AF_INET6 : AF_INET, s->dst, b, sizeof(b));
		/* An empty stream (e.g. a probe that sent nothing) is fine. */
		good = st.invalid_at < 0 && st.bad_version_app == 0 &&
		       (st.records == 0 || st.first_type == 22);
		if (!good)
			ok = false;
		if (to_port) {
			to_app += st.app_bytes;
			to_streams++;
		} else {
			from_app += st.app_bytes;
			from_streams++;
		}
		printf("%s{\"src\":\"%s:%u\",\"dst\":\"%s:%u\",\"bytes\":%zu,"
		       "\"records\":%" PRIu64 ",\"first_type\":%d,"
		       "\"app_data_records\":%" PRIu64 ",\"app_data_bytes\":%" PRIu64
		       ",\"app_data_not_0303\":%" PRIu64 ",\"invalid_at\":%" PRId64
		       ",\"ok\":%s}",
		       i ? "," : "", a, s->sport, b, s->dport, st.contiguous,
		       st.records, st.first_type, st.app_records, st.app_bytes,
		       st.bad_version_app, st.invalid_at, good ? "true" : "false");
	}
	if (to_streams == 0 || from_streams == 0 || to_app < min_bytes ||
	    from_app < min_bytes)
		ok = false;
	printf("],\"app_data_bytes_to_port\":%" PRIu64
	       ",\"app_data_bytes_from_port\":%" PRIu64 ",\"ok\":%s}\n",
	       to_app, from_app, ok ? "true" : "false");
	rc = ok ? 0 : 1;
out:
	if (ss) {
		for (int i = 0; i < n; i++) {
			free(ss[i].data);
			free(ss[i].covered);
		}
		free(ss);
	}
	free(buf);
	return rc;
}


/* ----------------------------------------------------------------- nmtp */

static void put_addr_tlv(uint8_t *b, size_t *n, uint8_t type,
			 const struct sockaddr_storage *ss)
{
	b[(*n)++] = type;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		b[(*n)++] = 7;
		b[(*n)++] = 4;
		memcpy(b + *n, &a->sin_addr, 4);
		*n += 4;
		memcpy(b + *n, &a->sin_port, 2);
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

		b[(*n)++] = 19;
		b[(*n)++] = 6;
		memcpy(b + *n, &a->sin6_addr, 16);
		*n += 16;
		memcpy(b + *n, &a->sin6_port, 2);
	}
	*n += 2;
}

/* Loads leaf + chain from a PEM file into ctx. */
static int use_cert_file(SSL_CTX *ctx, const char *cert, const char *key)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return -EINVAL;
	}
	return 0;
}

static const char *ossl_err(void)
{
	static char buf[200];
	unsigned long e = ERR_peek_last_error();

	buf[0] = '\0';
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf[0] ? buf : "-";
}

/* Blocking I/O on fd with SO_RCVTIMEO/SO_SNDTIMEO = timeout. */
static void set_blocking_timeouts(int fd, uint64_t timeout_ms)
{
	struct timeval tv = { .tv_sec = (time_t)(timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000 };

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int cmd_nmtp(const struct opts *o)
{
	const char *to = opt_get(o, "--to"), *dst = opt_get(o, "--dst");
	const char *cert = opt_get(o, "--cert"), *key = opt_get(o, "--key");
	const char *sni = opt_get(o, "--sni"), *alpn = opt_get(o, "--alpn");
	const char *src = opt_get(o, "--src");
	bool plain = opt_flag(o, "--plaintext"), tls12 = opt_flag(o, "--tls12");
	bool no_alpn = opt_flag(o, "--no-alpn");
	struct sockaddr_storage tss, dss, sss;
	socklen_t tl, dl, sl;
	uint64_t nbytes, timeout;
	uint8_t pre[64], *data = NULL, st[5];
	size_t pn = 6, got = 0;
	uint64_t echoed = 0;
	const char *hs = "none", *err = "-";
	char la[64] = "-";
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	int fd, status = -1, rc = 1;

	if (!to || !dst || parse_hostport(to, &tss, &tl) ||
	    parse_hostport(dst, &dss, &dl) || (cert && !key) ||
	    (src && parse_hostport(src, &sss, &sl)) ||
	    opt_u64(o, "--bytes", 1024, &nbytes) || nbytes > (1 << 24) ||
	    opt_u64(o, "--timeout-ms", 3000, &timeout)) {
		usage();
		return CX_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	memcpy(pre, "NMT1", 4);
	put_addr_tlv(pre, &pn, 1, &dss);
	if (src)
		put_addr_tlv(pre, &pn, 2, &sss);
	pre[4] = (uint8_t)(pn >> 8);
	pre[5] = (uint8_t)pn;
	data = malloc(nbytes + 1);
	if (!data || fill_random(data, nbytes))
		return CX_ERROR;

	fd = dial(&tss, tl, (int)timeout, la, sizeof(la));
	if (fd < 0) {
		printf("{\"connect\":\"%s\",\"handshake\":\"none\",\"status\":-1}\n",
		       errno_name(-fd));
		free(data);
		return 1;
	}
	local_addr(fd, la, sizeof(la));
	set_blocking_timeouts(fd, timeout);
	if (!plain) {
		ctx = SSL_CTX_new(TLS_client_method());
		if (!ctx)
			goto out;
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		if (tls12) {
			SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
			SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
		} else {
			SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
		}
		if (!no_alpn) {
			unsigned char wire[64];
			size_t n = strlen(alpn ? alpn : "nmtp/1");

			if (n == 0 || n > 60)
				goto out;
			wire[0] = (unsigned char)n;
			memcpy(wire + 1, alpn ? alpn : "nmtp/1", n);
			SSL_CTX_set_alpn_protos(ctx, wire, (unsigned int)n + 1);
		}
		if (cert && use_cert_file(ctx, cert, key))
			goto out;
		ssl = SSL_new(ctx);
		if (!ssl)
			goto out;
		SSL_set_fd(ssl, fd);
		if (sni)
			SSL_set_tlsext_host_name(ssl, sni);
		if (SSL_connect(ssl) != 1) {
			hs = "failed";
			err = ossl_err();
			goto out;
		}
		hs = "ok";
		/* TLS 1.3: the server judges our certificate after this; what
		 * follows is what a hostile client would push regardless. */
		if (SSL_write(ssl, pre, (int)pn) <= 0 ||
		    (nbytes && SSL_write(ssl, data, (int)nbytes) <= 0)) {
			err = ossl_err();
			goto out;
		}
		while (got < sizeof(st)) {
			int r = SSL_read(ssl, st + got, (int)(sizeof(st) - got));

			if (r <= 0) {
				err = ossl_err();
				goto out;
			}
			got += (size_t)r;
		}
	} else {
		if (send(fd, pre, pn, MSG_NOSIGNAL) != (ssize_t)pn ||
		    send(fd, data, nbytes, MSG_NOSIGNAL) != (ssize_t)nbytes) {
			err = errno_name(errno);
			goto out;
		}
		while (got < sizeof(st)) {
			ssize_t r = recv(fd, st + got, sizeof(st) - got, 0);

			if (r <= 0) {
				err = r == 0 ? "eof" : errno_name(errno);
				goto out;
			}
			got += (size_t)r;
		}
	}
	if (!memcmp(st, "NMT1", 4))
		status = st[4];
	rc = status == 0 ? 0 : 1;
	/* Accepted: half-close and take the echo back, so the pod's side
	 * ends cleanly and the caller sees the bytes made the round trip. */
	if (status == 0) {
		if (ssl)
			SSL_shutdown(ssl);
		else
			shutdown(fd, SHUT_WR);
		for (;;) {
			char buf[4096];
			int r = ssl ? SSL_read(ssl, buf, sizeof(buf))
				    : (int)recv(fd, buf, sizeof(buf), 0);

			if (r <= 0)
				break;
			echoed += (uint64_t)r;
		}
		ERR_clear_error();
	}
out:
	printf("{\"connect\":\"ok\",\"local\":\"%s\",\"handshake\":\"%s\",\"status\":%d,\"echoed\":%" PRIu64 ",\"error\":\"%s\"}\n",
	       la, plain ? "plaintext" : hs, status, echoed, err);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	free(data);
	return rc;
}

/* ------------------------------------------------------------ tls-serve */

static int serve_alpn_cb(SSL *ssl, const unsigned char **out,
			 unsigned char *outlen, const unsigned char *in,
			 unsigned int inlen, void *arg)
{
	static const unsigned char want[] = "\x06nmtp/1";
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, want, sizeof(want) - 1, in,
				  inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static int accept_any_cert(int ok, X509_STORE_CTX *x)
{
	return 1;
}

static int cmd_tls_serve(const struct opts *o)
{
	const char *addr = opt_get(o, "--addr");
	const char *cert = opt_get(o, "--cert"), *key = opt_get(o, "--key");
	struct sockaddr_storage ss;
	uint64_t port;
	socklen_t sl;
	char hp[160];
	SSL_CTX *ctx;
	int lfd, one = 1;

	if (opt_u64(o, "--port", 0, &port) || port == 0 || port > 65535 ||
	    !cert || !key) {
		usage();
		return CX_USAGE;
	}
	snprintf(hp, sizeof(hp), "%s:%u", addr ? addr : "0.0.0.0",
		 (unsigned int)port);
	if (parse_hostport(hp, &ss, &sl)) {
		usage();
		return CX_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return 1;
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_cert);
	SSL_CTX_set_alpn_select_cb(ctx, serve_alpn_cb, NULL);
	SSL_CTX_set_num_tickets(ctx, 0);
	if (use_cert_file(ctx, cert, key))
		return 1;
	lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&ss, sl) < 0 || listen(lfd, 64) < 0) {
		fprintf(stderr, "nm_peer: listen %s: %s\n", hp, strerror(errno));
		return 1;
	}
	printf("listening addr=%s\n", hp);
	fflush(stdout);
	for (;;) {
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		uint64_t app = 0;
		char pa[64], buf[4096];
		const char *hs = "failed";
		int fd = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
		SSL *ssl;

		if (fd < 0)
			continue;
		format_addr(&peer, pa, sizeof(pa));
		set_blocking_timeouts(fd, 2000);
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) == 1) {
			int r;

			hs = "ok";
			while ((r = SSL_read(ssl, buf, sizeof(buf))) > 0)
				app += (uint64_t)r;
		}
		printf("conn peer=%s handshake=%s app_bytes=%" PRIu64 " reason=\"%s\"\n",
		       pa, hs, app, ossl_err());
		fflush(stdout);
		SSL_free(ssl);
		close(fd);
	}
}

/* --------------------------------------------------------------- mkcert */

static const char *const mkcert_kinds[] = {
	"valid", "selfsigned", "two-uris", "non-spiffe", "no-san", "dns-only",
	"port", "query", "nul", "expired", "not-yet-valid", "ca-leaf",
	"leaf-signed", NULL,
};

static int cmd_mkcert(const struct opts *o)
{
	const char *dir = opt_get(o, "--ca-dir"), *out = opt_get(o, "--out");
	const char *kind = opt_get(o, "--kind"), *id = opt_get(o, "--id");
	char err[512] = "", path[1024], uri[512], odd[600];
	struct nm_ca ca = { 0 };
	EVP_PKEY *key = NULL, *wkey = NULL;
	X509 *certs[2] = { NULL, NULL };
	unsigned int n = 1;
	bool known = false;
	int ret = 1;

	if (!dir || !out || !kind) {
		usage();
		return CX_USAGE;
	}
	for (int i = 0; mkcert_kinds[i]; i++)
		known |= !strcmp(kind, mkcert_kinds[i]);
	if (!known) {
		fprintf(stderr, "nm_peer mkcert: unknown kind %s\n", kind);
		return CX_USAGE;
	}
	if (nm_ca_load(dir, &ca, err, sizeof(err))) {
		fprintf(stderr, "nm_peer mkcert: %s\n", err);
		return 1;
	}
	if (id)
		snprintf(uri, sizeof(uri), "%s", id);
	else
		snprintf(uri, sizeof(uri), "spiffe://%s/ns/default/sa/client",
			 ca.trust_domain);
	if (nm_ca_new_key(&key) || nm_ca_new_key(&wkey))
		goto out;

	struct nm_ca_craft sp = { .issuer = ca.cert, .issuer_key = ca.key,
				  .key = key, .uri = { uri } };
	const char *rest = uri + strlen("spiffe://");

	if (strncmp(uri, "spiffe://", 9) != 0)
		rest = uri;
	if (!strcmp(kind, "selfsigned")) {
		sp.issuer = NULL;
	} else if (!strcmp(kind, "two-uris")) {
		snprintf(odd, sizeof(odd), "spiffe://%s/ns/default/sa/admin",
			 ca.trust_domain);
		sp.uri[1] = odd;
	} else if (!strcmp(kind, "non-spiffe")) {
		snprintf(odd, sizeof(odd), "https://%s", rest);
		sp.uri[0] = odd;
	} else if (!strcmp(kind, "no-san")) {
		sp.uri[0] = NULL;
	} else if (!strcmp(kind, "dns-only")) {
		sp.uri[0] = NULL;
		sp.dns[0] = "client.default.cluster.local";
	} else if (!strcmp(kind, "port") || !strcmp(kind, "query")) {
		const char *slash = strchr(rest, '/');
		int tdl = slash ? (int)(slash - rest) : (int)strlen(rest);

		if (!strcmp(kind, "port"))
			snprintf(odd, sizeof(odd), "spiffe://%.*s:8443%s", tdl,
				 rest, slash ? slash : "");
		else
			snprintf(odd, sizeof(odd), "%s?admin=1", uri);
		sp.uri[0] = odd;
	} else if (!strcmp(kind, "nul")) {
		int l = snprintf(odd, sizeof(odd), "%s", uri);

		memcpy(odd + l, "\0.evil", 7);
		sp.uri[0] = odd;
		sp.uri_len[0] = l + 6;
	} else if (!strcmp(kind, "expired")) {
		sp.not_before = -7200;
		sp.not_after = -3600;
	} else if (!strcmp(kind, "not-yet-valid")) {
		sp.not_before = 3600;
		sp.not_after = 7200;
	} else if (!strcmp(kind, "ca-leaf")) {
		sp.ca = true;
		sp.key_usage = "critical,digitalSignature,keyCertSign,cRLSign";
		sp.ext_key_usage = "serverAuth,clientAuth";
	} else if (!strcmp(kind, "leaf-signed")) {
		/* A CA:TRUE certificate carrying a workload ID, signed by the
		 * cluster CA, signs the leaf (id given) and rides along. */
		struct nm_ca_craft w = { .issuer = ca.cert, .issuer_key = ca.key,
					 .key = wkey, .ca = true,
					 .cn = "workload-as-issuer" };

		snprintf(odd, sizeof(odd), "spiffe://%s/ns/default/sa/echo",
			 ca.trust_domain);
		w.uri[0] = odd;
		if (nm_ca_craft(&w, &certs[1]))
			goto out;
		sp.issuer = certs[1];
		sp.issuer_key = wkey;
		n = 2;
	}
	if (nm_ca_craft(&sp, &certs[0]) ||
	    nm_ca_mkdirs(out, 0700, err, sizeof(err)))
		goto out;
	snprintf(path, sizeof(path), "%s/cert.pem", out);
	if (nm_ca_write_certs(path, certs, n, err, sizeof(err)))
		goto out;
	snprintf(path, sizeof(path), "%s/key.pem", out);
	if (nm_ca_write_key(path, key, err, sizeof(err)))
		goto out;
	ret = 0;
out:
	if (ret)
		fprintf(stderr, "nm_peer mkcert %s: failed %s\n", kind, err);
	X509_free(certs[0]);
	X509_free(certs[1]);
	EVP_PKEY_free(key);
	EVP_PKEY_free(wkey);
	nm_ca_release(&ca);
	return ret;
}

int main(int argc, char **argv)
{
	struct opts o;

	if (argc < 2) {
		usage();
		return CX_USAGE;
	}
	o.argc = argc - 2;
	o.argv = argv + 2;
	if (!strcmp(argv[1], "serve"))
		return cmd_serve(&o);
	if (!strcmp(argv[1], "send"))
		return cmd_send(&o);
	if (!strcmp(argv[1], "connect"))
		return cmd_connect(&o);
	if (!strcmp(argv[1], "find"))
		return cmd_find(&o);
	if (!strcmp(argv[1], "tlsrec"))
		return cmd_tlsrec(&o);
	if (!strcmp(argv[1], "nmtp"))
		return cmd_nmtp(&o);
	if (!strcmp(argv[1], "tls-serve"))
		return cmd_tls_serve(&o);
	if (!strcmp(argv[1], "mkcert"))
		return cmd_mkcert(&o);
	usage();
	return CX_USAGE;
}
