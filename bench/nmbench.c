// SPDX-License-Identifier: Apache-2.0
/*
 * nmbench - load tools of nodemesh's benchmark (bench/run.sh). Libc only, so
 * a broken agent library can never distort the tool that measures it.
 *
 *   nmbench echo ADDR PORT LIFETIME_S
 *       Epoll echo server bound to ADDR:PORT (0.0.0.0 inside a pod). Echoes
 *       what it reads, closes when the peer closes, exits after LIFETIME_S.
 *   nmbench connrate ADDR PORT SECONDS
 *       The kit's connrate client for any IPv4 address (the kit's own binary
 *       only dials 127.0.0.1): one connection at a time, connect, write 1 B,
 *       read the echo, close with RST (SO_LINGER 0), for SECONDS; every op
 *       bounded by 2 s; stops after 50 errors. Prints
 *         conns_per_s=<f> ok=<n> err=<n> secs=<f>
 *   nmbench hold ADDR PORT N HOLD_S
 *       Opens N connections (at most 256 in flight), sends 1 B on each and
 *       waits for its echo, so every proxied flow is fully set up end to
 *       end; then prints "ready held=<n> failed=<n> secs=<f>" and keeps them
 *       open, idle, until HOLD_S passed or SIGTERM/SIGINT. Raises
 *       RLIMIT_NOFILE as far as it may.
 *   nmbench conntime ADDR PORT N
 *       Times N non-blocking connect() calls (the syscall alone, which is
 *       where cgroup/connect4 runs), each on a fresh socket closed at once.
 *       Refused and unreachable results count (connect4 ran either way).
 *       Prints "median_ns=<n> p10_ns=<n> p90_ns=<n> mean_ns=<n> n=<n>".
 *
 * Exit status 0 on success, 1 on failure, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HOLD_WINDOW 256
#define IO_TIMEOUT_S 2

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int parse_addr(const char *ip, const char *port, struct sockaddr_in *out)
{
	char *end;
	long p = strtol(port, &end, 10);

	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	if (*end || p < 1 || p > 65535 || inet_pton(AF_INET, ip, &out->sin_addr) != 1)
		return -EINVAL;
	out->sin_port = htons((uint16_t)p);
	return 0;
}

static void set_rst_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	rl.rlim_cur = rl.rlim_max;
	/* Root may also lift the hard limit (CAP_SYS_RESOURCE). */
	if (rl.rlim_max < 65536) {
		struct rlimit want = { 65536, 65536 };

		if (!setrlimit(RLIMIT_NOFILE, &want))
			return;
	}
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* ------------------------------------------------------------------ echo */

static int cmd_echo(const struct sockaddr_in *a, double lifetime)
{
	int one = 1, lfd, ep;
	struct epoll_event ev, evs[256];
	static char buf[65536];
	double deadline = now_s() + lifetime;

	raise_nofile();
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		perror("socket");
		return 1;
	}
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (const struct sockaddr *)a, sizeof(*a)) || listen(lfd, 4096)) {
		perror("bind/listen");
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = lfd };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev)) {
		perror("epoll");
		return 1;
	}
	while (!stop_flag && now_s() < deadline) {
		int n = epoll_wait(ep, evs, 256, 200);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == lfd) {
				int c;

				while ((c = accept4(lfd, NULL, NULL,
						    SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct epoll_event cev = { .events = EPOLLIN, .data.fd = c };

					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev))
						close(c);
				}
				continue;
			}
			ssize_t r = read(fd, buf, sizeof(buf));

			if (r > 0) {
				ssize_t off = 0;

				/* Small echoes: a short busy retry is fine. */
				while (off < r) {
					ssize_t w = write(fd, buf + off, (size_t)(r - off));

					if (w < 0 && errno == EAGAIN) {
						usleep(50);
						continue;
					}
					if (w < 0)
						break;
					off += w;
				}
				if (off < r)
					close(fd);
			} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(fd);
			}
		}
	}
	return 0;
}

/* -------------------------------------------------------------- connrate */

static int one_conn(const struct sockaddr_in *a)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	int one = 1, ok, fd;
	char b = 'x', r = 0;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ok = connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0 &&
	     write(fd, &b, 1) == 1 && read(fd, &r, 1) == 1 && r == b;
	set_rst_close(fd);
	close(fd);
	return ok ? 0 : -1;
}

static int cmd_connrate(const struct sockaddr_in *a, double secs)
{
	long ok = 0, err = 0;
	double t0 = now_s(), el;

	while (now_s() - t0 < secs && err < 50 && !stop_flag) {
		if (one_conn(a) == 0)
			ok++;
		else
			err++;
	}
	el = now_s() - t0;
	printf("conns_per_s=%.1f ok=%ld err=%ld secs=%.3f\n", (double)ok / el, ok,
	       err, el);
	return ok > 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ hold */

enum hold_state { H_CONNECTING, H_WAIT_ECHO, H_DONE, H_FAILED };

static int cmd_hold(const struct sockaddr_in *a, long n, double hold_s)
{
	enum hold_state *st = calloc((size_t)n, sizeof(*st));
	int *fds = calloc((size_t)n, sizeof(*fds));
	struct epoll_event evs[256];
	long next = 0, inflight = 0, done = 0, failed = 0;
	double t0 = now_s(), deadline;
	int ep, one = 1;

	if (!st || !fds) {
		fprintf(stderr, "hold: out of memory\n");
		return 1;
	}
	raise_nofile();
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		perror("epoll_create1");
		return 1;
	}
	/* Set-up phase: bounded by 2 s per connection on average, 600 s max. */
	deadline = t0 + (n * 0.05 > 600 ? 600 : n * 0.05 + 30);
	while ((done + failed < n) && !stop_flag && now_s() < deadline) {
		while (next < n && inflight < HOLD_WINDOW) {
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			struct epoll_event ev = { .events = EPOLLOUT };

			if (fd < 0) {
				fprintf(stderr, "hold: socket #%ld: %s\n", next, strerror(errno));
				failed += n - next;
				next = n;
				break;
			}
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			fds[next] = fd;
			if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) &&
			    errno != EINPROGRESS) {
				st[next] = H_FAILED;
				failed++;
				close(fd);
				next++;
				continue;
			}
			ev.data.u64 = (uint64_t)next;
			epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
			st[next++] = H_CONNECTING;
			inflight++;
		}
		int k = epoll_wait(ep, evs, 256, 200);

		for (int i = 0; i < k; i++) {
			long id = (long)evs[i].data.u64;
			int fd = fds[id], soerr = 0;
			socklen_t len = sizeof(soerr);
			char b = 'h';

			if (st[id] == H_CONNECTING) {
				struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)id };

				getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
				if (soerr || write(fd, &b, 1) != 1)
					goto fail;
				st[id] = H_WAIT_ECHO;
				epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
			} else if (st[id] == H_WAIT_ECHO) {
				ssize_t r = read(fd, &b, 1);

				if (r < 0 && errno == EAGAIN)
					continue;
				if (r != 1)
					goto fail;
				st[id] = H_DONE;
				done++;
				inflight--;
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			}
			continue;
fail:
			st[id] = H_FAILED;
			failed++;
			inflight--;
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			close(fd);
		}
	}
	printf("ready held=%ld failed=%ld secs=%.3f\n", done, n - done, now_s() - t0);
	fflush(stdout);
	deadline = now_s() + hold_s;
	while (!stop_flag && now_s() < deadline)
		usleep(100000);
	for (long i = 0; i < next; i++) {
		if (st[i] == H_DONE || st[i] == H_WAIT_ECHO || st[i] == H_CONNECTING) {
			set_rst_close(fds[i]);
			close(fds[i]);
		}
	}
	free(st);
	free(fds);
	return done == n ? 0 : 1;
}

/* -------------------------------------------------------------- conntime */

static int cmp_i64(const void *x, const void *y)
{
	int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;

	return a < b ? -1 : a > b;
}

static int cmd_conntime(const struct sockaddr_in *a, long n)
{
	int64_t *t = calloc((size_t)n, sizeof(*t)), sum = 0;
	long got = 0;

	if (!t)
		return 1;
	for (long i = 0; i < n && !stop_flag; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int64_t t0, t1;
		int r;

		if (fd < 0) {
			perror("socket");
			break;
		}
		t0 = now_ns();
		r = connect(fd, (const struct sockaddr *)a, sizeof(*a));
		t1 = now_ns();
		/* Any outcome the connect path itself produced counts; the
		 * benchmark aims at an unreachable route so that no packet is
		 * sent and the syscall is CPU work only. */
		if (r == 0 || errno == EINPROGRESS || errno == ECONNREFUSED ||
		    errno == ENETUNREACH || errno == EHOSTUNREACH) {
			t[got++] = t1 - t0;
			sum += t1 - t0;
		} else if (got == 0 && i > 100) {
			fprintf(stderr, "conntime: connect: %s\n", strerror(errno));
			break;
		}
		set_rst_close(fd);
		close(fd);
	}
	if (!got) {
		free(t);
		return 1;
	}
	qsort(t, (size_t)got, sizeof(*t), cmp_i64);
	printf("median_ns=%lld p10_ns=%lld p90_ns=%lld mean_ns=%lld n=%ld\n",
	       (long long)t[got / 2], (long long)t[got / 10],
	       (long long)t[got * 9 / 10], (long long)(sum / got), got);
	free(t);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a;
	double v;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	if (argc != 5 && !(argc == 6 && !strcmp(argv[1], "hold")))
		goto usage;
	if (parse_addr(argv[2], argv[3], &a)) {
		fprintf(stderr, "nmbench: bad address %s:%s\n", argv[2], argv[3]);
		return 2;
	}
	v = atof(argv[4]);
	if (v <= 0 || v > 1e6)
		goto usage;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "echo"))
		return cmd_echo(&a, v);
	if (!strcmp(argv[1], "connrate"))
		return cmd_connrate(&a, v);
	if (!strcmp(argv[1], "conntime"))
		return cmd_conntime(&a, (long)v);
	if (!strcmp(argv[1], "hold") && argc == 6)
		return cmd_hold(&a, (long)v, atof(argv[5]));
usage:
	fprintf(stderr,
		"usage: nmbench echo ADDR PORT LIFETIME_S | connrate ADDR PORT SECONDS |\n"
		"               hold ADDR PORT N HOLD_S | conntime ADDR PORT N\n");
	return 2;
}
