// SPDX-License-Identifier: Apache-2.0
/*
 * check_srcaddr.c - source preservation's decisions that need no kernel:
 * which client/pod pairs share a link (the pod would answer the client
 * directly, so the agent must not pose as the client), and that an
 * inactive agent leaves the upstream socket alone.
 */
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nm_check.h"
#include "mesh/srcaddr.h"

static struct nm_addr ip(const char *s)
{
	struct nm_addr a;

	ck_assert_int_eq(nm_addr_parse(s, &a, NULL), 0);
	return a;
}

static struct nm_prefix pfx(const char *s, unsigned int len)
{
	struct nm_prefix p = { .addr = ip(s) };

	p.len = nm_addr_is_v4(&p.addr) ? 96 + len : len;
	return p;
}

START_TEST(test_onlink_pair)
{
	/* A bridge subnet, a routed pod (/32), a v6 subnet. */
	struct nm_prefix p[] = { pfx("198.18.1.0", 24), pfx("198.18.2.11", 32),
				 pfx("fd00:18:1::", 64), pfx("10.0.0.0", 9) };
	struct nm_addr a = ip("198.18.1.11"), b = ip("198.18.1.12"),
		       c = ip("198.18.2.11"), d = ip("198.18.2.12");

	ck_assert(nm_srcaddr_onlink_pair(p, 4, &a, &b));
	ck_assert(!nm_srcaddr_onlink_pair(p, 4, &a, &c));
	/* A /32 holds one pod: never a pair. */
	ck_assert(!nm_srcaddr_onlink_pair(p, 4, &c, &d));
	a = ip("fd00:18:1::11");
	b = ip("fd00:18:1::12");
	ck_assert(nm_srcaddr_onlink_pair(p, 4, &a, &b));
	b = ip("fd00:18:2::12");
	ck_assert(!nm_srcaddr_onlink_pair(p, 4, &a, &b));
	/* A prefix length that is not a whole byte. */
	a = ip("10.1.2.3");
	b = ip("10.127.0.1");
	ck_assert(nm_srcaddr_onlink_pair(p, 4, &a, &b));
	b = ip("10.128.0.1");
	ck_assert(!nm_srcaddr_onlink_pair(p, 4, &a, &b));
	/* No prefixes: nothing is on-link. */
	ck_assert(!nm_srcaddr_onlink_pair(NULL, 0, &a, &b));
}
END_TEST

static void sin_of(const char *s, uint16_t port, struct sockaddr_storage *ss)
{
	struct nm_addr a = ip(s);

	nm_addr_to_sockaddr(&a, htons(port), ss);
}

START_TEST(test_bind_decisions)
{
	struct nm_srcaddr sa;
	struct sockaddr_storage src, dst, got;
	socklen_t len = sizeof(got);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	memset(&sa, 0, sizeof(sa));
	sin_of("198.18.1.11", 40000, &src);
	sin_of("198.18.1.12", 8080, &dst);
	/* Inactive (fallback): the socket stays unbound. */
	ck_assert_int_eq(nm_srcaddr_bind(&sa, fd, &src, &dst, 1000), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&got, &len), 0);
	ck_assert_uint_eq(((struct sockaddr_in *)&got)->sin_port, 0);
	/* Active, but client and pod share a link: counted, unbound. */
	struct nm_prefix p = pfx("198.18.1.0", 24);

	sa.active = true;
	sa.onlink = &p;
	sa.n_onlink = 1;
	sa.onlink_ms = 1000;
	ck_assert_int_eq(nm_srcaddr_bind(&sa, fd, &src, &dst, 1000), 0);
	ck_assert_uint_eq(sa.onlink_pairs, 1);
	ck_assert_uint_eq(sa.preserved, 0);
	/* A host-network pod (its address is local): counted, unbound. */
	struct nm_addr here = ip("198.18.1.12");

	sa.local = &here;
	sa.n_local = 1;
	ck_assert_int_eq(nm_srcaddr_bind(&sa, fd, &src, &dst, 1000), 0);
	ck_assert_uint_eq(sa.local_dst, 1);
	ck_assert_uint_eq(sa.onlink_pairs, 1);
	/* Families differ: the agent's address. */
	sin_of("fd00::1", 8080, &dst);
	ck_assert_int_eq(nm_srcaddr_bind(&sa, fd, &src, &dst, 1000), 0);
	ck_assert_uint_eq(sa.onlink_pairs, 1);
	ck_assert(nm_srcaddr_counts_changed(&sa));
	ck_assert(!nm_srcaddr_counts_changed(&sa));
	len = sizeof(got);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&got, &len), 0);
	ck_assert_uint_eq(((struct sockaddr_in *)&got)->sin_port, 0);
	close(fd);
}
END_TEST

static Suite *srcaddr_suite(void)
{
	Suite *s = suite_create("srcaddr");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_onlink_pair);
	tcase_add_test(tc, test_bind_decisions);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(srcaddr_suite)
