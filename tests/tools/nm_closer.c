// SPDX-License-Identifier: Apache-2.0
/*
 * nm_closer - end-of-stream semantics through the mesh.
 *
 *   nm_closer serve --port P
 *       Per connection, the first 4 bytes choose the behaviour:
 *       HALF  read until EOF, then answer "got N\n" (N = bytes after the
 *             command) and close: data flows after the client's FIN.
 *       RSET  reset the connection at once (SO_LINGER 0).
 *       WAIT  read until EOF or error; print "wait: ok" or "wait: ERRNO".
 *   nm_closer halfclose --to IP:PORT --bytes N
 *       sends HALF + N bytes, shuts down writing, reads the answer until EOF;
 *       exit 0 when it is exactly "got N\n".
 *   nm_closer reset --to IP:PORT
 *       sends RSET; exit 0 when the read fails with ECONNRESET.
 *   nm_closer client-reset --to IP:PORT
 *       sends WAIT, then resets its side; the server prints what it saw.
 * Every call is bounded by a 5 s timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse_to(const char *s, struct sockaddr_in *sin)
{
	char host[64];
	const char *colon = strrchr(s, ':');

	if (!colon || colon - s >= (long)sizeof(host))
		return -1;
	memcpy(host, s, colon - s);
	host[colon - s] = 0;
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(atoi(colon + 1));
	return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -1;
}

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = 5 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void reset_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static int read_exact(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);

		if (r <= 0)
			return -1;
		got += r;
	}
	return 0;
}

static void serve_one(int fd)
{
	char cmd[4], buf[16384];
	long total = 0;
	ssize_t r;

	set_timeouts(fd);
	if (read_exact(fd, cmd, 4)) {
		close(fd);
		return;
	}
	if (!memcmp(cmd, "RSET", 4)) {
		reset_close(fd);
		return;
	}
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		total += r;
	if (!memcmp(cmd, "WAIT", 4)) {
		printf("wait: %s\n", r == 0 ? "ok" : strerrorname_np(errno));
		fflush(stdout);
		close(fd);
		return;
	}
	if (r == 0) {
		int n = snprintf(buf, sizeof(buf), "got %ld\n", total);

		if (write(fd, buf, n) != n)
			perror("write");
	}
	close(fd);
}

static int cmd_serve(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&sin, sizeof(sin)) || listen(l, 64)) {
		perror("listen");
		return 1;
	}
	for (;;) {
		int fd = accept(l, NULL, NULL);

		if (fd >= 0)
			serve_one(fd);
	}
}

static int dial(const char *to)
{
	struct sockaddr_in sin;
	int fd;

	if (parse_to(to, &sin)) {
		fprintf(stderr, "bad address %s\n", to);
		return -1;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	set_timeouts(fd);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin))) {
		printf("connect: %s\n", strerrorname_np(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int cmd_halfclose(const char *to, long bytes)
{
	char buf[16384], want[64], got[64] = "";
	size_t used = 0;
	long sent = 0;
	ssize_t r;
	int fd = dial(to);

	if (fd < 0)
		return 1;
	memset(buf, 'h', sizeof(buf));
	if (write(fd, "HALF", 4) != 4)
		return 1;
	while (sent < bytes) {
		size_t n = bytes - sent < (long)sizeof(buf) ? (size_t)(bytes - sent) : sizeof(buf);

		r = write(fd, buf, n);
		if (r <= 0)
			return 1;
		sent += r;
	}
	shutdown(fd, SHUT_WR);
	while (used < sizeof(got) - 1 &&
	       (r = read(fd, got + used, sizeof(got) - 1 - used)) > 0)
		used += r;
	got[used] = 0;
	snprintf(want, sizeof(want), "got %ld\n", bytes);
	printf("halfclose: sent %ld, answer \"%.*s\"\n", sent,
	       (int)strcspn(got, "\n"), got);
	close(fd);
	return strcmp(got, want) ? 1 : 0;
}

static int cmd_reset(const char *to)
{
	char c;
	ssize_t r;
	int fd = dial(to);

	if (fd < 0)
		return 1;
	if (write(fd, "RSET", 4) != 4)
		return 1;
	r = read(fd, &c, 1);
	printf("reset: read %s\n", r < 0 ? strerrorname_np(errno) :
				   r == 0 ? "EOF" : "data");
	close(fd);
	return r < 0 && errno == ECONNRESET ? 0 : 1;
}

static int cmd_client_reset(const char *to)
{
	int fd = dial(to);

	if (fd < 0)
		return 1;
	if (write(fd, "WAIT", 4) != 4)
		return 1;
	usleep(200 * 1000); /* let the tunnel come up before the reset */
	reset_close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "serve") && !strcmp(argv[2], "--port"))
		return cmd_serve(atoi(argv[3]));
	if (argc == 6 && !strcmp(argv[1], "halfclose") && !strcmp(argv[2], "--to") &&
	    !strcmp(argv[4], "--bytes"))
		return cmd_halfclose(argv[3], atol(argv[5]));
	if (argc == 4 && !strcmp(argv[1], "reset") && !strcmp(argv[2], "--to"))
		return cmd_reset(argv[3]);
	if (argc == 4 && !strcmp(argv[1], "client-reset") && !strcmp(argv[2], "--to"))
		return cmd_client_reset(argv[3]);
	fprintf(stderr, "usage: nm_closer serve --port P | halfclose --to A:P --bytes N |\n"
			"       reset --to A:P | client-reset --to A:P\n");
	return 2;
}
