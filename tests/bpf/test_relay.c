// SPDX-License-Identifier: Apache-2.0
/*
 * test_relay.c - the sockmap relay's kernel side (bpf/nm_relay.bpf.h,
 * agent/datapath/sockmap.h) over real loopback TCP connections in a private
 * network namespace: the behaviours mesh/zerocopy.c relies on, per kernel.
 * Run as root.
 *
 * Two connected pairs c<->a and b<->s: a and b are the agent's two legs of
 * one flow (the client's and the server's socket), c and s the endpoints.
 *   redirect      bytes written on c come out of s unchanged and the other
 *                 way, without the legs reading; nm_relay_dirs counts them;
 *                 nothing waits for user space on the legs
 *   fin           c's FIN: a reads EOF by MSG_PEEK, b has no error (the
 *                 FIN's empty skb is not redirected: EPIPE), and s gets
 *                 every byte then EOF once b is shut down
 *   pause         a out of nm_relay_src: c's bytes wait on a's side, s
 *                 gets none; back in and kicked (SO_RCVLOWAT) they go out,
 *                 in order, then new ones after them
 *   tail          sources stopped, bytes arrive, both legs leave the maps:
 *                 a plain read of a gets every one, then EOF
 *   signal        passing `high` bytes redirected and not yet `sent` puts
 *                 a's cookie on the signal ring, once until re-armed
 *   overlap       a retransmission that repeats bytes a already got goes
 *                 on without them (redirected, and parked: passed to a)
 *   fault         one the verdict cannot cut is dropped, flagged and
 *                 signalled (the agent resets the flow)
 * Each suite runs this kernel's verdict (nm_probe_relay_verdict); 6.2+ runs
 * the 5.13-6.1 one too. Before 5.13 the relay is not offered (on 5.10 pause
 * and tail fail: a socket out of nm_relay_src keeps its verdict), and the
 * one suite there checks that nm_sockmap_open refuses, saying so.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sockios.h>

#include <net/if.h>

#include "datapath/probe.h"
#include "datapath/sockmap.h"
#include "../lib/pattern.h"
#include "../lib/tcp_repair.h"
#include "../unit/nm_check.h"

#define HIGH_DEFAULT (1u << 30)

static struct nm_sockmap *sm;
static struct nm_sockmap_opts sm_opts; /* the verdict under test */
static int c_fd = -1, a_fd = -1, b_fd = -1, s_fd = -1;
static uint64_t a_ck, b_ck, signals[8];
static unsigned int n_signals;

static void on_sig(uint64_t cookie, void *arg)
{
	(void)arg;
	if (n_signals < 8)
		signals[n_signals] = cookie;
	n_signals++;
}

/* A connected loopback pair: *cli connected, *srv accepted. */
static void tcp_pair(int *cli, int *srv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(l, 1), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sin, &len), 0);
	*cli = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(*cli, (struct sockaddr *)&sin, sizeof(sin)), 0);
	*srv = accept(l, NULL, NULL);
	ck_assert_int_ge(*srv, 0);
	close(l);
}

static uint64_t cookie_of(int fd)
{
	uint64_t ck = 0;
	socklen_t len = sizeof(ck);

	ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &ck, &len), 0);
	return ck;
}

static void kick(int fd)
{
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
}

/* The flow's two legs a and b in the maps, both redirecting. */
static void setup_with(uint64_t high)
{
	char err[160] = "";

	n_signals = 0;
	ck_assert_msg(nm_sockmap_open(&sm, &sm_opts, on_sig, NULL, err, sizeof(err)) == 0,
		      "%s", err);
	tcp_pair(&c_fd, &a_fd);
	tcp_pair(&b_fd, &s_fd);
	a_ck = cookie_of(a_fd);
	b_ck = cookie_of(b_fd);
	ck_assert_int_eq(nm_sockmap_add_dst(sm, a_fd, a_ck), 0);
	ck_assert_int_eq(nm_sockmap_add_dst(sm, b_fd, b_ck), 0);
	ck_assert_int_eq(nm_sockmap_add_dir(sm, a_ck, b_ck, high), 0);
	ck_assert_int_eq(nm_sockmap_add_dir(sm, b_ck, a_ck, high), 0);
	ck_assert_int_eq(nm_sockmap_start(sm, a_fd, a_ck), 0);
	ck_assert_int_eq(nm_sockmap_start(sm, b_fd, b_ck), 0);
}

static void setup(void)
{
	setup_with(HIGH_DEFAULT);
}

static void teardown(void)
{
	int *fds[] = { &c_fd, &a_fd, &b_fd, &s_fd };

	if (sm) {
		nm_sockmap_forget(sm, a_ck);
		nm_sockmap_forget(sm, b_ck);
	}
	for (size_t i = 0; i < 4; i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
	nm_sockmap_close(sm);
	sm = NULL;
}

static void send_pattern(int fd, size_t n, unsigned int seed, uint64_t from)
{
	int err = nm_pattern_send(fd, n, seed, from);

	ck_assert_msg(err == 0, "send: %s", strerror(-err));
}

/* Reads n bytes of the pattern, waiting at most ms for each one; every byte
 * that arrives must be right. Returns the bytes that arrived (n unless the
 * wait ran out or the stream ended). */
static size_t recv_pattern(int fd, size_t n, unsigned int seed, uint64_t from, int ms)
{
	size_t got;
	int err = nm_pattern_recv(fd, n, seed, from, ms, &got);

	ck_assert_msg(err != -EBADMSG, "byte %zu differs", (size_t)(from + got));
	return got;
}

static int inq(int fd)
{
	int n = -1;

	ck_assert_int_eq(ioctl(fd, SIOCINQ, &n), 0);
	return n;
}

START_TEST(test_redirect)
{
	struct nm_relay_dir d;
	uint8_t c;
	const size_t up = 1u << 20, down = 65537;

	send_pattern(c_fd, up, 1, 0);
	ck_assert_uint_eq(recv_pattern(s_fd, up, 1, 0, 2000), up);
	send_pattern(s_fd, down, 2, 0);
	ck_assert_uint_eq(recv_pattern(c_fd, down, 2, 0, 2000), down);
	ck_assert_int_eq(nm_sockmap_get_dir(sm, a_ck, &d), 0);
	ck_assert_uint_eq(d.peer, b_ck);
	ck_assert_uint_eq(d.redirected, up);
	ck_assert_int_eq(nm_sockmap_get_dir(sm, b_ck, &d), 0);
	ck_assert_uint_eq(d.redirected, down);
	/* Nothing left for user space on the legs. */
	ck_assert_int_eq(recv(a_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(inq(b_fd), 0);
}
END_TEST

START_TEST(test_fin)
{
	const size_t n = 300001;
	int soerr = -1, i;
	socklen_t len = sizeof(soerr);
	uint8_t c;
	ssize_t r = -1;

	send_pattern(c_fd, n, 3, 0);
	ck_assert_int_eq(shutdown(c_fd, SHUT_WR), 0);
	for (i = 0; i < 200; i++) {
		r = recv(a_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		if (r == 0)
			break;
		usleep(5000);
	}
	ck_assert_msg(r == 0, "a did not see EOF (recv %zd, errno %d)", r, errno);
	ck_assert_uint_eq(recv_pattern(s_fd, n, 3, 0, 2000), n);
	ck_assert_int_eq(getsockopt(b_fd, SOL_SOCKET, SO_ERROR, &soerr, &len), 0);
	ck_assert_int_eq(soerr, 0);
	ck_assert_int_eq(shutdown(b_fd, SHUT_WR), 0);
	ck_assert_int_eq(read(s_fd, &c, 1), 0);
	/* The other way still works after the half-close. */
	send_pattern(s_fd, 4096, 4, 0);
	ck_assert_uint_eq(recv_pattern(c_fd, 4096, 4, 0, 2000), 4096);
}
END_TEST

START_TEST(test_pause)
{
	const size_t n = 100000;
	struct nm_relay_dir d;

	ck_assert_int_eq(nm_sockmap_stop(sm, a_ck), 0);
	send_pattern(c_fd, n, 5, 0);
	ck_assert_uint_eq(recv_pattern(s_fd, 1, 5, 0, 200), 0);
	/* Where they wait differs by kernel (the receive queue, or the
	 * psock when its data_ready stays hooked without a program): what
	 * counts is that none went out and none is lost. */
	ck_assert_int_eq(nm_sockmap_get_dir(sm, a_ck, &d), 0);
	ck_assert_uint_eq(d.redirected, 0);
	ck_assert_int_eq(nm_sockmap_start(sm, a_fd, a_ck), 0);
	kick(a_fd);
	ck_assert_uint_eq(recv_pattern(s_fd, n, 5, 0, 2000), n);
	ck_assert_int_eq(inq(a_fd), 0);
	/* And new bytes keep flowing after them. */
	send_pattern(c_fd, n, 5, n);
	ck_assert_uint_eq(recv_pattern(s_fd, n, 5, n, 2000), n);
}
END_TEST

/* The agent's tail (mesh/zerocopy.c sm_to_tail): sources stopped, bytes
 * arrive, then both legs leave every map; a plain read gets them all. */
START_TEST(test_tail)
{
	const size_t first = 70000, n = 200000;

	send_pattern(c_fd, first, 7, 0);
	ck_assert_uint_eq(recv_pattern(s_fd, first, 7, 0, 2000), first);
	ck_assert_int_eq(nm_sockmap_stop(sm, a_ck), 0);
	ck_assert_int_eq(nm_sockmap_stop(sm, b_ck), 0);
	send_pattern(c_fd, n, 7, first);
	usleep(100 * 1000);
	nm_sockmap_forget(sm, a_ck);
	nm_sockmap_forget(sm, b_ck);
	ck_assert_uint_eq(recv_pattern(a_fd, n, 7, first, 2000), n);
	ck_assert_int_eq(shutdown(c_fd, SHUT_WR), 0);
	ck_assert_uint_eq(recv_pattern(a_fd, 1, 7, first + n, 2000), 0);
}
END_TEST

START_TEST(test_signal)
{
	const size_t n = 256 * 1024;

	teardown();
	setup_with(64 * 1024);
	send_pattern(c_fd, n, 6, 0);
	ck_assert_uint_eq(recv_pattern(s_fd, n, 6, 0, 2000), n);
	nm_sockmap_sig_poll(sm);
	ck_assert_uint_eq(n_signals, 1); /* latched until re-armed */
	ck_assert_uint_eq(signals[0], a_ck);
	ck_assert_int_eq(nm_sockmap_set_sent(sm, a_ck, n, 64 * 1024), 0);
	send_pattern(c_fd, n, 6, n);
	ck_assert_uint_eq(recv_pattern(s_fd, n, 6, n, 2000), n);
	nm_sockmap_sig_poll(sm);
	ck_assert_uint_eq(n_signals, 2);
}
END_TEST

/*
 * c rebuilt (tests/lib/tcp_repair.h) to send back + more bytes from
 * sent - back in one retransmission that starts before what a already has;
 * a's acknowledgements are dropped until drop_input(c_fd, false).
 */
static void resend_overlapping(size_t sent, size_t back, size_t more, unsigned int seed)
{
	uint8_t buf[1024];
	int err;

	ck_assert_uint_le(back + more, sizeof(buf));
	for (size_t i = 0; i < back + more; i++)
		buf[i] = nm_pattern_byte(sent - back + i, seed);
	err = nm_tcp_resend_overlapping(&c_fd, back, buf, back + more);
	ck_assert_msg(err == 0, "TCP_REPAIR rebuild: %s", strerror(-err));
}

static void drop_input(int fd, bool on)
{
	ck_assert_int_eq(nm_tcp_drop_input(fd, on), 0);
}

/*
 * bpf/nm_relay.bpf.h, nm_relay_trim: a gets 1000 bytes, then one segment
 * [700, 1200). The verdict must pass on the 200 new bytes only, and count
 * the 300 it cut. `out` is where a's bytes go: s (redirected) or a itself
 * (parked).
 */
static void overlap_run(int out, bool parked)
{
	const unsigned int seed = 9;
	/* back + more in one segment of the default MSS (536): the rebuilt
	 * socket retransmits with it. */
	const size_t sent = 1000, back = 300, more = 200;
	struct nm_relay_dir d;
	uint8_t c;

	if (parked)
		ck_assert_int_eq(nm_sockmap_park(sm, a_ck), 0);
	send_pattern(c_fd, sent, seed, 0);
	ck_assert_uint_eq(recv_pattern(out, sent, seed, 0, 2000), sent);
	resend_overlapping(sent, back, more, seed);
	/* The first retransmission comes after the initial RTO (1 s). */
	ck_assert_uint_eq(recv_pattern(out, more, seed, sent, 8000), more);
	drop_input(c_fd, false);
	usleep(200 * 1000);
	ck_assert_int_eq(recv(out, &c, 1, MSG_DONTWAIT), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(nm_sockmap_get_dir(sm, a_ck, &d), 0);
	ck_assert_uint_eq(d.fault, 0);
	ck_assert_uint_eq(d.trimmed, back);
	ck_assert_uint_eq(d.redirected, parked ? 0 : sent + more);
}

START_TEST(test_overlap)
{
	overlap_run(s_fd, false);
}
END_TEST

START_TEST(test_overlap_parked)
{
	overlap_run(a_fd, true);
}
END_TEST

/*
 * An skb that repeats bytes and cannot be cut (here: the verdict may make
 * no cut at all) is dropped whole, new bytes with it, so the verdict marks
 * the direction faulty and signals: the agent must reset the flow
 * (mesh/zerocopy.c, sm_check_fault) rather than go on past a hole.
 */
START_TEST(test_fault)
{
	const unsigned int seed = 11;
	const size_t sent = 1000, back = 300, more = 200;
	struct nm_relay_dir d;
	uint8_t c;

	teardown();
	sm_opts.no_trim = true;
	setup();
	sm_opts.no_trim = false;
	send_pattern(c_fd, sent, seed, 0);
	ck_assert_uint_eq(recv_pattern(s_fd, sent, seed, 0, 2000), sent);
	ck_assert_int_eq(nm_sockmap_get_dir(sm, a_ck, &d), 0);
	ck_assert_uint_eq(d.fault, 0);
	resend_overlapping(sent, back, more, seed);
	/* The first retransmission comes after the initial RTO (1 s). */
	for (int i = 0; i < 80 && !d.fault; i++) {
		usleep(100 * 1000);
		ck_assert_int_eq(nm_sockmap_get_dir(sm, a_ck, &d), 0);
	}
	ck_assert_uint_eq(d.fault, 1);
	ck_assert_uint_eq(d.trimmed, 0);
	ck_assert_uint_eq(d.redirected, sent);
	nm_sockmap_sig_poll(sm);
	ck_assert_uint_ge(n_signals, 1);
	ck_assert_uint_eq(signals[0], a_ck);
	/* Neither the repeated nor the new bytes went anywhere. */
	ck_assert_int_eq(recv(s_fd, &c, 1, MSG_DONTWAIT), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(recv(a_fd, &c, 1, MSG_DONTWAIT), -1);
	ck_assert_int_eq(errno, EAGAIN);
}
END_TEST

/* The suite for one verdict program (opts.verdict). */
static Suite *relay_suite(const char *verdict)
{
	Suite *s = suite_create(verdict);
	TCase *tc = tcase_create("sockmap");

	sm_opts.verdict = verdict;
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_redirect);
	tcase_add_test(tc, test_fin);
	tcase_add_test(tc, test_pause);
	tcase_add_test(tc, test_tail);
	tcase_add_test(tc, test_signal);
	tcase_add_test(tc, test_overlap);
	tcase_add_test(tc, test_overlap_parked);
	tcase_add_test(tc, test_fault);
	suite_add_tcase(s, tc);
	return s;
}

/* Before 5.13: the kernel's pick is none, and opening says why (the agent
 * logs it and splices, paths.relay.reason). */
START_TEST(test_refused)
{
	struct nm_sockmap *none = NULL;
	char err[256] = "";

	ck_assert_int_eq(nm_sockmap_open(&none, NULL, on_sig, NULL, err, sizeof(err)),
			 -EOPNOTSUPP);
	ck_assert_ptr_null(none);
	ck_assert_str_eq(err, NM_PROBE_RELAY_TOO_OLD);
}
END_TEST

static Suite *refused_suite(void)
{
	Suite *s = suite_create("nm_relay not offered");
	TCase *tc = tcase_create("sockmap");

	tcase_add_test(tc, test_refused);
	suite_add_tcase(s, tc);
	return s;
}

static int loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0 ||
	    (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr) < 0))
		ret = -errno;
	close(fd);
	return ret;
}

int main(void)
{
	const char *pick;
	int failed;

	if (unshare(CLONE_NEWNET) || loopback_up()) {
		fprintf(stderr, "test_relay: private network namespace: %s\n",
			strerror(errno));
		return EXIT_FAILURE;
	}
	pick = nm_probe_relay_verdict();
	if (!pick) {
		fprintf(stderr, "test_relay: %s; checking that it is refused\n",
			NM_PROBE_RELAY_TOO_OLD);
		failed = nm_check_run(refused_suite(), CK_FORK_GETENV);
		return failed ? EXIT_FAILURE : EXIT_SUCCESS;
	}
	fprintf(stderr, "test_relay: this kernel's verdict: %s\n", pick);
	failed = nm_check_run(relay_suite(pick), CK_FORK_GETENV);
	/* 6.2+ also runs the verdict of 5.13-6.1 (bpf_probe_read_kernel), so
	 * a host without those kernels still proves it. */
	if (strcmp(pick, "nm_relay_verdict") == 0)
		failed |= nm_check_run(relay_suite("nm_relay_verdict_probe"), CK_FORK_GETENV);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
