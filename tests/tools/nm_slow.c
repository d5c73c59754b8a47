// SPDX-License-Identifier: Apache-2.0
/*
 * nm_slow - a slow receiver, for the relay's memory bound (test_36).
 *
 *   nm_slow serve --port P --delay-ms D [--read-pause-us U]
 *       Per connection (one at a time): reads nothing for D ms, then reads
 *       until EOF and answers "got N HASH\n" (N bytes, HASH their FNV-1a
 *       64) and closes. With U, it stays slow: one 16 KiB read every U us
 *       (a relay in front of it keeps pausing and resuming).
 *   nm_slow send --to IP:PORT --bytes N --probe-ms T [--timeout-ms W]
 *       Sends N pseudo-random bytes as fast as the connection takes them;
 *       T ms after connecting (before the receiver reads) it notes how many
 *       went out: everything between sender and receiver is buffered
 *       somewhere, so a bounded relay stops the sender well below N. Then
 *       it sends the rest, half-closes, reads the answer and prints one
 *       JSON line {"sent":N,"at_probe":X,"match":true|false,"answer":"..."}
 *       (exit 0 when the answer names exactly the bytes sent).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FNV_OFF 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * FNV_PRIME;
	return h;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The byte at stream offset off: the same for any chunking. */
static void fill(uint8_t *buf, size_t n, uint64_t off)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t x = (off + i) * 0x9e3779b97f4a7c15ull;

		buf[i] = (uint8_t)(x >> 56 ^ x >> 23);
	}
}

static int serve(int port, int delay_ms, int read_pause_us)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	static uint8_t buf[65536];
	int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(lfd, 16)) {
		perror("listen");
		return 1;
	}
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		uint64_t h = FNV_OFF, n = 0;
		char ans[96];
		ssize_t r;

		if (fd < 0)
			continue;
		printf("accept\n");
		fflush(stdout);
		usleep((useconds_t)delay_ms * 1000);
		while ((r = read(fd, buf, read_pause_us ? 16384 : sizeof(buf))) > 0) {
			h = fnv(h, buf, r);
			n += r;
			if (read_pause_us)
				usleep((useconds_t)read_pause_us);
		}
		snprintf(ans, sizeof(ans), "got %" PRIu64 " %016" PRIx64 "\n", n, h);
		if (write(fd, ans, strlen(ans)) < 0)
			perror("write");
		printf("%s", ans);
		fflush(stdout);
		close(fd);
	}
}

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

static int send_slow(const char *to, uint64_t total, int probe_ms, int timeout_ms)
{
	static uint8_t buf[65536];
	struct sockaddr_in sin;
	uint64_t sent = 0, at_probe = 0, h = FNV_OFF;
	bool probed = false;
	int64_t start, deadline;
	char ans[128] = "", want[96];
	size_t alen = 0;
	int fd;

	if (parse_to(to, &sin)) {
		fprintf(stderr, "bad --to %s\n", to);
		return 2;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin))) {
		printf("{\"error\":\"connect: %s\"}\n", strerror(errno));
		return 1;
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	start = now_ms();
	deadline = start + timeout_ms;
	while (sent < total || !probed) {
		struct pollfd p = { .fd = fd, .events = sent < total ? POLLOUT : 0 };
		int64_t now = now_ms(), wait;

		if (!probed && now - start >= probe_ms) {
			at_probe = sent;
			probed = true;
			continue;
		}
		if (now > deadline) {
			printf("{\"error\":\"timeout\",\"sent\":%" PRIu64 "}\n", sent);
			return 1;
		}
		wait = probed ? deadline - now : start + probe_ms - now;
		if (poll(&p, 1, (int)(wait > 0 ? wait : 0)) <= 0)
			continue;
		while (sent < total) {
			size_t n = total - sent < sizeof(buf) ? total - sent : sizeof(buf);
			ssize_t w;

			fill(buf, n, sent);
			w = write(fd, buf, n);
			if (w <= 0) {
				if (w < 0 && errno != EAGAIN) {
					printf("{\"error\":\"write: %s\"}\n", strerror(errno));
					return 1;
				}
				break;
			}
			h = fnv(h, buf, w);
			sent += w;
			if (!probed && now_ms() - start >= probe_ms)
				break;
		}
	}
	shutdown(fd, SHUT_WR);
	fcntl(fd, F_SETFL, 0);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		r = read(fd, ans + alen, sizeof(ans) - 1 - alen);
		if (r <= 0)
			break;
		alen += r;
	}
	ans[alen] = 0;
	snprintf(want, sizeof(want), "got %" PRIu64 " %016" PRIx64 "\n", total, h);
	printf("{\"sent\":%" PRIu64 ",\"at_probe\":%" PRIu64 ",\"match\":%s,\"answer\":\"%.*s\"}\n",
	       sent, at_probe, strcmp(ans, want) == 0 ? "true" : "false",
	       (int)strcspn(ans, "\n"), ans);
	return strcmp(ans, want) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *to = NULL;
	uint64_t bytes = 0;
	int port = 0, delay = 0, probe = 1000, timeout = 30000, read_pause = 0;

	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--port"))
			port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--delay-ms"))
			delay = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--read-pause-us"))
			read_pause = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--to"))
			to = argv[i + 1];
		else if (!strcmp(argv[i], "--bytes"))
			bytes = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--probe-ms"))
			probe = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--timeout-ms"))
			timeout = atoi(argv[i + 1]);
	}
	if (argc >= 2 && !strcmp(argv[1], "serve") && port)
		return serve(port, delay, read_pause);
	if (argc >= 2 && !strcmp(argv[1], "send") && to && bytes)
		return send_slow(to, bytes, probe, timeout);
	fprintf(stderr, "usage: nm_slow serve --port P --delay-ms D [--read-pause-us U] | send --to IP:PORT --bytes N --probe-ms T [--timeout-ms W]\n");
	return 2;
}
