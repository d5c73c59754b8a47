// SPDX-License-Identifier: Apache-2.0
/* check_pool.c - the tunnel pool's bookkeeping (mesh/pool.h): the key
 * (exact identities, node address and port), how many to start, staleness,
 * misses and warm-ups per key, refill attempts that fail giving every limit
 * slot back, expiry of unused keys, flush and prune. The TLS side of a
 * pooled tunnel is exercised end to end by test_34_tunnel_pool. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nm_check.h"
#include "mesh/pool.h"
#include "mesh/proxy.h"

static void id(struct nm_spiffe_id *out, const char *ns, const char *sa)
{
	memset(out, 0, sizeof(*out));
	strcpy(out->trust_domain, "cluster.local");
	strcpy(out->ns, ns);
	strcpy(out->sa, sa);
}

static void key(struct nm_pool_key *k, const char *src, const char *peer,
		const char *ip, uint16_t port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&k->node;

	memset(k, 0, sizeof(*k));
	id(&k->src, "default", src);
	id(&k->peer, "default", peer);
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	inet_pton(AF_INET, ip, &sin->sin_addr);
}

START_TEST(test_key_equal)
{
	struct nm_pool_key a, b;

	key(&a, "client", "echo", "10.0.0.2", 15008);
	key(&b, "client", "echo", "10.0.0.2", 15008);
	ck_assert(nm_pool_key_equal(&a, &b));
	/* Each part of the triple tells keys apart: a tunnel verified for one
	 * destination identity never serves another. */
	key(&b, "client", "other", "10.0.0.2", 15008);
	ck_assert(!nm_pool_key_equal(&a, &b));
	key(&b, "other", "echo", "10.0.0.2", 15008);
	ck_assert(!nm_pool_key_equal(&a, &b));
	key(&b, "client", "echo", "10.0.0.3", 15008);
	ck_assert(!nm_pool_key_equal(&a, &b));
	key(&b, "client", "echo", "10.0.0.2", 15009);
	ck_assert(!nm_pool_key_equal(&a, &b));
	key(&b, "client", "echo", "10.0.0.2", 15008);
	strcpy(b.peer.trust_domain, "other.local");
	ck_assert(!nm_pool_key_equal(&a, &b));
	key(&b, "client", "echo", "10.0.0.2", 15008);
	strcpy(b.src.ns, "prod");
	ck_assert(!nm_pool_key_equal(&a, &b));
}
END_TEST

START_TEST(test_room_and_stale)
{
	struct nm_pool_cfg c = { .size = 2, .idle_ms = 8000, .max_total = 5 };

	ck_assert_uint_eq(nm_pool_room(&c, 0, 0), 2);
	ck_assert_uint_eq(nm_pool_room(&c, 1, 0), 1);
	ck_assert_uint_eq(nm_pool_room(&c, 2, 0), 0);
	ck_assert_uint_eq(nm_pool_room(&c, 3, 0), 0);
	/* The whole pool's bound wins over the per-key size. */
	ck_assert_uint_eq(nm_pool_room(&c, 0, 4), 1);
	ck_assert_uint_eq(nm_pool_room(&c, 0, 5), 0);
	ck_assert_uint_eq(nm_pool_room(&c, 0, 9), 0);
	c.size = 0;
	ck_assert_uint_eq(nm_pool_room(&c, 0, 0), 0);

	c.idle_ms = 8000;
	ck_assert(!nm_pool_stale(&c, 1000, 1000));
	ck_assert(!nm_pool_stale(&c, 1000, 8999));
	ck_assert(nm_pool_stale(&c, 1000, 9000));
	ck_assert(nm_pool_stale(&c, 1000, 100000));
}
END_TEST

static int64_t stop_loop(struct nm_loop *loop, uint64_t id, void *data)
{
	(void)id;
	(void)data;
	nm_loop_stop(loop);
	return NM_TIMER_STOP;
}

static void run_for(struct nm_loop *loop, int64_t ms)
{
	ck_assert(nm_loop_add_timer(loop, ms, stop_loop, NULL));
	ck_assert_int_eq(nm_loop_run(loop), 0);
}

/* An agent with a loop and limits, no TLS: every handshake the pool starts
 * fails at nm_tls_client_new, which is what the bookkeeping needs. */
static struct nm_agent *agent_new(uint32_t size)
{
	struct nm_agent *a = calloc(1, sizeof(*a));
	struct nm_pool_cfg c = { .size = size, .idle_ms = 1000, .max_total = 3 };

	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(nm_loop_create(&a->loop), 0);
	nm_limits_configure(&a->limits, 20000, NULL);
	nm_pool_configure(&a->tpool, a, &c);
	return a;
}

static void agent_free(struct nm_agent *a)
{
	nm_pool_flush(&a->tpool, "test");
	nm_limits_free(&a->limits);
	nm_loop_free(a->loop);
	free(a);
}

/* A listener on 127.0.0.1 that accepts (the backlog does) and never
 * speaks: the pool's TCP connects succeed. */
static int listener(uint16_t *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

START_TEST(test_miss_warm_fail)
{
	struct nm_agent *a = agent_new(2);
	struct nm_pool *p = &a->tpool;
	struct nm_pool_key k;
	uint16_t port;
	int lfd = listener(&port), fd = -1;
	SSL *ssl = NULL;

	ck_assert(a->paths.tunnel_pool.active);
	ck_assert_str_eq(a->paths.tunnel_pool.mode, "2 per key");
	key(&k, "client", "echo", "127.0.0.1", port);
	/* Unknown key: a miss, nothing warmed (the flow's own tunnel
	 * warms it once it answered). */
	ck_assert_int_eq(nm_pool_take(p, &k, &fd, &ssl), -ENOENT);
	ck_assert_uint_eq(p->stats.misses, 1);
	ck_assert_ptr_null(p->buckets);
	ck_assert_uint_eq(p->refill_timer, 0);

	nm_pool_warm(p, &k);
	ck_assert_ptr_nonnull(p->buckets);
	ck_assert_uint_ne(p->refill_timer, 0);
	ck_assert_uint_eq(p->total, 0); /* deferred: nothing on the caller's path */
	run_for(a->loop, 300);
	/* Two connects, each failed at the TLS step (no credentials): every
	 * flow and handshake slot is back, nothing left in the pool. */
	ck_assert_uint_eq(p->stats.warm_failed, 2);
	ck_assert_uint_eq(p->stats.warmed, 0);
	ck_assert_uint_eq(p->total, 0);
	ck_assert_uint_eq(p->idle, 0);
	ck_assert_uint_eq(a->limits.flows, 0);
	ck_assert_uint_eq(a->limits.handshakes, 0);
	/* Still a miss; the key is forgotten once unused for idleTimeoutMs. */
	ck_assert_int_eq(nm_pool_take(p, &k, &fd, &ssl), -ENOENT);
	ck_assert_uint_eq(p->stats.misses, 2);
	nm_pool_expire(p, nm_loop_now_ms() + 999);
	ck_assert_ptr_nonnull(p->buckets);
	nm_pool_expire(p, nm_loop_now_ms() + 1000);
	ck_assert_ptr_null(p->buckets);
	close(lfd);
	agent_free(a);
}
END_TEST

START_TEST(test_limits_bound_warmup)
{
	struct nm_agent *a = agent_new(2);
	struct nm_pool *p = &a->tpool;
	struct nm_pool_key k;
	uint16_t port;
	int lfd = listener(&port);

	key(&k, "client", "echo", "127.0.0.1", port);
	/* maxHandshakes full: the pool starts nothing, takes no slot. */
	a->limits.handshakes = a->limits.max.max_handshakes;
	nm_pool_warm(p, &k);
	run_for(a->loop, 50);
	ck_assert_uint_eq(p->total, 0);
	ck_assert_uint_eq(p->stats.warm_failed, 0);
	ck_assert_uint_eq(a->limits.flows, 0);
	ck_assert_uint_eq(a->limits.handshakes, a->limits.max.max_handshakes);
	a->limits.handshakes = 0;
	/* While connecting, each tunnel holds one flow and one handshake slot. */
	nm_pool_warm(p, &k);
	ck_assert_uint_eq(p->total, 0);
	{
		/* Run only the refill timer's turn: the connects are started,
		 * their completion not yet seen. */
		run_for(a->loop, 0);
	}
	ck_assert_uint_eq(p->total, 2);
	ck_assert_uint_eq(a->limits.flows, p->total);
	ck_assert_uint_eq(a->limits.handshakes, p->total);
	/* A flush closes them and gives the slots back. */
	nm_pool_flush(p, "test");
	ck_assert_uint_eq(p->total, 0);
	ck_assert_uint_eq(a->limits.flows, 0);
	ck_assert_uint_eq(a->limits.handshakes, 0);
	ck_assert_ptr_null(p->buckets);
	close(lfd);
	agent_free(a);
}
END_TEST

START_TEST(test_size_zero)
{
	struct nm_agent *a = agent_new(0);
	struct nm_pool_key k;
	int fd = -1;
	SSL *ssl = NULL;

	ck_assert(!a->paths.tunnel_pool.active);
	ck_assert_str_eq(a->paths.tunnel_pool.mode, "off");
	key(&k, "client", "echo", "127.0.0.1", 1);
	ck_assert_int_eq(nm_pool_take(&a->tpool, &k, &fd, &ssl), -ENOENT);
	nm_pool_warm(&a->tpool, &k);
	ck_assert_ptr_null(a->tpool.buckets);
	ck_assert_uint_eq(a->tpool.refill_timer, 0);
	agent_free(a);
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_key_equal);
	tcase_add_test(tc, test_room_and_stale);
	tcase_add_test(tc, test_miss_warm_fail);
	tcase_add_test(tc, test_limits_bound_warmup);
	tcase_add_test(tc, test_size_zero);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(pool_suite)
