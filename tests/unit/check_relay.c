// SPDX-License-Identifier: Apache-2.0
/* check_relay.c - plain-side I/O semantics the proxy relies on: EAGAIN
 * clears readiness, FIN reads as 0, half-close keeps the other direction,
 * an RST reads as -ECONNRESET, and the buffer pool recycles. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nm_check.h"
#include "mesh/relay.h"

/* A connected loopback TCP pair (RST needs TCP; a socketpair has none). */
static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(l, 1), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sin, &len), 0);
	*a = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	connect(*a, (struct sockaddr *)&sin, sizeof(sin));
	*b = accept4(l, NULL, NULL, SOCK_NONBLOCK);
	ck_assert_int_ge(*b, 0);
	close(l);
	usleep(1000);
}

START_TEST(test_eagain_and_data)
{
	struct nm_side s = { .readable = true };
	uint8_t buf[64];
	int a, b;

	tcp_pair(&a, &b);
	s.fd = b;
	ck_assert_int_eq(nm_side_read(&s, buf, sizeof(buf)), -EAGAIN);
	ck_assert(!s.readable);
	ck_assert_int_eq(write(a, "hello", 5), 5);
	usleep(1000);
	ck_assert_int_eq(nm_side_read(&s, buf, sizeof(buf)), 5);
	ck_assert_mem_eq(buf, "hello", 5);
	ck_assert_int_eq(s.bytes_read, 5);
	nm_side_close(&s, false);
	ck_assert_int_eq(s.fd, -1);
	close(a);
}
END_TEST

START_TEST(test_half_close)
{
	struct nm_side sa = { .writable = true }, sb = { .writable = true };
	uint8_t buf[16];
	int a, b;

	tcp_pair(&a, &b);
	sa.fd = a;
	sb.fd = b;
	ck_assert_int_eq(nm_side_shutdown(&sa), 0);
	usleep(1000);
	ck_assert_int_eq(nm_side_read(&sb, buf, sizeof(buf)), 0); /* FIN */
	/* The other direction still flows after a half-close. */
	ck_assert_int_eq(nm_side_write(&sb, (const uint8_t *)"back", 4), 4);
	usleep(1000);
	ck_assert_int_eq(nm_side_read(&sa, buf, sizeof(buf)), 4);
	ck_assert_mem_eq(buf, "back", 4);
	nm_side_close(&sa, false);
	nm_side_close(&sb, false);
}
END_TEST

START_TEST(test_reset_maps_to_econnreset)
{
	struct nm_side sa = { 0 }, sb = { 0 };
	uint8_t buf[16];
	int a, b;

	tcp_pair(&a, &b);
	sa.fd = a;
	sb.fd = b;
	nm_side_close(&sa, true); /* SO_LINGER 0: the peer sees an RST */
	usleep(2000);
	ck_assert_int_eq(nm_side_read(&sb, buf, sizeof(buf)), -ECONNRESET);
	nm_side_close(&sb, false);
}
END_TEST

/* An armed pod-facing side: if the process dies with it open (a bare
 * close() is what the kernel does at exit) the peer sees an RST; a clean
 * nm_side_close() disarms it and the peer reads a normal EOF. */
START_TEST(test_armed_side_resets_on_death)
{
	struct nm_side sa = { 0 }, sb = { 0 };
	uint8_t buf[16];
	int a, b;

	tcp_pair(&a, &b);
	sa.fd = a;
	sb.fd = b;
	ck_assert_int_eq(nm_side_arm_reset(&sa), 0);
	ck_assert(sa.rst_armed);
	close(sa.fd); /* as at SIGKILL: no disarming */
	usleep(2000);
	ck_assert_int_eq(nm_side_read(&sb, buf, sizeof(buf)), -ECONNRESET);
	nm_side_close(&sb, false);

	tcp_pair(&a, &b);
	sa = (struct nm_side){ .fd = a };
	sb = (struct nm_side){ .fd = b };
	ck_assert_int_eq(nm_side_arm_reset(&sa), 0);
	nm_side_close(&sa, false); /* clean end: FIN */
	ck_assert(!sa.rst_armed);
	usleep(2000);
	ck_assert_int_eq(nm_side_read(&sb, buf, sizeof(buf)), 0);
	nm_side_close(&sb, false);

	/* Armed and closed with reset: still an RST. */
	tcp_pair(&a, &b);
	sa = (struct nm_side){ .fd = a };
	sb = (struct nm_side){ .fd = b };
	ck_assert_int_eq(nm_side_arm_reset(&sa), 0);
	nm_side_close(&sa, true);
	usleep(2000);
	ck_assert_int_eq(nm_side_read(&sb, buf, sizeof(buf)), -ECONNRESET);
	nm_side_close(&sb, false);
}
END_TEST

START_TEST(test_bufpool)
{
	struct nm_bufpool pool = { 0 };
	struct nm_buf x = { 0 }, y = { 0 };
	uint8_t *first;

	ck_assert(nm_buf_empty(&x));
	ck_assert_int_eq(nm_buf_get(&pool, &x), 0);
	first = x.data;
	ck_assert_ptr_nonnull(first);
	ck_assert_int_eq(pool.in_use, 1);
	nm_buf_put(&pool, &x);
	ck_assert_ptr_null(x.data);
	ck_assert_int_eq(pool.in_use, 0);
	ck_assert_int_eq(nm_buf_get(&pool, &y), 0);
	ck_assert_ptr_eq(y.data, first); /* recycled, not reallocated */
	nm_buf_put(&pool, &y);
	nm_bufpool_drain(&pool);
	ck_assert_int_eq(pool.n_free, 0);
}
END_TEST

static Suite *relay_suite(void)
{
	Suite *s = suite_create("relay");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_eagain_and_data);
	tcase_add_test(tc, test_half_close);
	tcase_add_test(tc, test_reset_maps_to_econnreset);
	tcase_add_test(tc, test_armed_side_resets_on_death);
	tcase_add_test(tc, test_bufpool);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(relay_suite)
