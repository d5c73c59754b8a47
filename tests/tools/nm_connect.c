// SPDX-License-Identifier: Apache-2.0
/*
 * nm_connect - one TCP connection with the knobs a hostile pod would turn:
 *
 *   nm_connect --to IP:PORT [--bind IP:PORT] [--mark N] [--send TEXT]
 *              [--timeout-ms N]
 *
 * Sets SO_MARK (needs CAP_NET_ADMIN) and binds before connect(), sends
 * TEXT, half-closes, and prints one line: "ok <bytes read back>" or
 * "error <errno name>: <message>" (connect, read). Exit 0 when the
 * connection carried TEXT back, 1 otherwise, 2 for usage.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/addr.h"

static const char *errno_name(int e)
{
	switch (e) {
	case ECONNRESET: return "ECONNRESET";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EPERM: return "EPERM";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ENETUNREACH: return "ENETUNREACH";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case EADDRINUSE: return "EADDRINUSE";
	default: return "E?";
	}
}

static int fail(const char *what, int e)
{
	printf("error %s: %s: %s\n", errno_name(e), what, strerror(e));
	return 1;
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int n = poll(&p, 1, timeout_ms);

	return n < 0 ? -errno : n == 0 ? -ETIMEDOUT : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "bind", required_argument, NULL, 'b' },
		{ "mark", required_argument, NULL, 'm' },
		{ "send", required_argument, NULL, 's' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ 0 },
	};
	struct sockaddr_storage to = { 0 }, from = { 0 };
	const char *text = "nodemesh";
	bool have_to = false, have_from = false;
	long mark = -1;
	int timeout = 3000, opt, fd, one = 1;
	char buf[4096];
	size_t got = 0;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 't':
			have_to = !nm_sockaddr_parse(optarg, &to);
			break;
		case 'b':
			have_from = !nm_sockaddr_parse(optarg, &from);
			break;
		case 'm':
			mark = strtol(optarg, NULL, 0);
			break;
		case 's':
			text = optarg;
			break;
		case 'T':
			timeout = atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (!have_to || optind != argc) {
		fprintf(stderr, "usage: nm_connect --to IP:PORT [--bind IP:PORT] [--mark N] [--send TEXT] [--timeout-ms N]\n");
		return 2;
	}
	fd = socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fail("socket", errno);
	if (mark >= 0) {
		unsigned int m = (unsigned int)mark;

		if (setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof(m)))
			return fail("SO_MARK", errno);
	}
	if (have_from) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&from, to.ss_family == AF_INET ?
			 sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)))
			return fail("bind", errno);
	}
	if (connect(fd, (struct sockaddr *)&to, to.ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) &&
	    errno != EINPROGRESS)
		return fail("connect", errno);
	{
		int e = wait_fd(fd, POLLOUT, timeout), soerr = 0;
		socklen_t len = sizeof(soerr);

		if (e)
			return fail("connect", -e);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
		if (soerr)
			return fail("connect", soerr);
	}
	if (write(fd, text, strlen(text)) < 0)
		return fail("write", errno);
	shutdown(fd, SHUT_WR);
	for (;;) {
		ssize_t n;
		int e = wait_fd(fd, POLLIN, timeout);

		if (e)
			return fail("read", -e);
		n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n < 0)
			return fail("read", errno);
		if (n == 0 || got + (size_t)n >= sizeof(buf) - 1) {
			got += n > 0 ? (size_t)n : 0;
			break;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	printf("ok %s\n", buf);
	close(fd);
	return strcmp(buf, text) == 0 ? 0 : 1;
}
