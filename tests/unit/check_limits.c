// SPDX-License-Identifier: Apache-2.0
/* check_limits.c - overload limits: defaults derived from RLIMIT_NOFILE,
 * overrides, take/put with per-reason refusal counts, and the per-key
 * count table (against a reference model, many keys and deletions). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nm_check.h"
#include "mesh/limits.h"

START_TEST(test_derive_defaults)
{
	struct nm_limits_cfg m;

	nm_limits_derive(20000, NULL, &m);
	ck_assert_uint_eq(m.max_flows, (20000 - 64) / 2);
	ck_assert_uint_eq(m.max_handshakes, 9968 / 4);
	ck_assert_uint_eq(m.max_flows_per_pod, 9968 / 4);
	ck_assert_uint_eq(m.max_flows_per_peer, 9968 / 2);

	/* Few descriptors: at least 64 handshakes, never more than flows. */
	nm_limits_derive(264, NULL, &m);
	ck_assert_uint_eq(m.max_flows, 100);
	ck_assert_uint_eq(m.max_handshakes, 64);
	ck_assert_uint_eq(m.max_flows_per_pod, 25);
	ck_assert_uint_eq(m.max_flows_per_peer, 50);
	nm_limits_derive(100, NULL, &m);
	ck_assert_uint_eq(m.max_flows, 18);
	ck_assert_uint_eq(m.max_handshakes, 18);
	ck_assert_uint_eq(m.max_flows_per_pod, 4);
	ck_assert_uint_eq(m.max_flows_per_peer, 9);

	/* Below the reserve: one flow, never 0 (0 would mean "unset"). */
	nm_limits_derive(10, NULL, &m);
	ck_assert_uint_eq(m.max_flows, 1);
	ck_assert_uint_eq(m.max_handshakes, 1);
	ck_assert_uint_eq(m.max_flows_per_pod, 1);
	ck_assert_uint_eq(m.max_flows_per_peer, 1);

	/* Huge limits stay within 32 bits. */
	nm_limits_derive(UINT64_MAX, NULL, &m);
	ck_assert_uint_eq(m.max_flows, UINT32_MAX);
}
END_TEST

START_TEST(test_derive_overrides)
{
	struct nm_limits_cfg cfg = { .max_flows = 1000 }, m;

	/* A configured maxFlows drives the other defaults. */
	nm_limits_derive(20000, &cfg, &m);
	ck_assert_uint_eq(m.max_flows, 1000);
	ck_assert_uint_eq(m.max_handshakes, 250);
	ck_assert_uint_eq(m.max_flows_per_pod, 250);
	ck_assert_uint_eq(m.max_flows_per_peer, 500);

	cfg = (struct nm_limits_cfg){ .max_handshakes = 7,
				      .max_flows_per_pod = 3,
				      .max_flows_per_peer = 5 };
	nm_limits_derive(264, &cfg, &m);
	ck_assert_uint_eq(m.max_flows, 100);
	ck_assert_uint_eq(m.max_handshakes, 7);
	ck_assert_uint_eq(m.max_flows_per_pod, 3);
	ck_assert_uint_eq(m.max_flows_per_peer, 5);
}
END_TEST

START_TEST(test_take_put)
{
	struct nm_limits_cfg cfg = { .max_flows = 3, .max_handshakes = 2,
				     .max_flows_per_pod = 2,
				     .max_flows_per_peer = 1 };
	struct nm_limits l = { 0 };
	struct nm_addr a = { 0 }, b = { 0 };

	nm_limits_configure(&l, 1 << 20, &cfg);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(nm_limits_take_flow(&l), 0);
	ck_assert_int_eq(nm_limits_take_flow(&l), -EBUSY);
	ck_assert_int_eq(nm_limits_take_flow(&l), -EBUSY);
	ck_assert_uint_eq(l.refused[NM_LIMIT_FLOWS], 2);
	nm_limits_put_flow(&l);
	ck_assert_int_eq(nm_limits_take_flow(&l), 0);
	ck_assert_uint_eq(l.flows, 3);

	ck_assert_int_eq(nm_limits_take_handshake(&l), 0);
	ck_assert_int_eq(nm_limits_take_handshake(&l), 0);
	ck_assert_int_eq(nm_limits_take_handshake(&l), -EBUSY);
	ck_assert_uint_eq(l.refused[NM_LIMIT_HANDSHAKES], 1);
	nm_limits_put_handshake(&l);
	nm_limits_put_handshake(&l);
	nm_limits_put_handshake(&l); /* never below 0 */
	ck_assert_uint_eq(l.handshakes, 0);

	/* Per pod: each workload on its own. */
	ck_assert_int_eq(nm_limits_take_pod(&l, 7), 0);
	ck_assert_int_eq(nm_limits_take_pod(&l, 7), 0);
	ck_assert_int_eq(nm_limits_take_pod(&l, 7), -EBUSY);
	ck_assert_int_eq(nm_limits_take_pod(&l, 8), 0);
	ck_assert_uint_eq(nm_limits_pod_count(&l, 7), 2);
	ck_assert_uint_eq(nm_limits_pod_count(&l, 8), 1);
	ck_assert_uint_eq(l.refused[NM_LIMIT_POD], 1);
	nm_limits_put_pod(&l, 7);
	ck_assert_int_eq(nm_limits_take_pod(&l, 7), 0);

	/* Per peer address. */
	a.a[15] = 1;
	b.a[15] = 2;
	ck_assert_int_eq(nm_limits_take_peer(&l, &a), 0);
	ck_assert_int_eq(nm_limits_take_peer(&l, &a), -EBUSY);
	ck_assert_int_eq(nm_limits_take_peer(&l, &b), 0);
	ck_assert_uint_eq(l.refused[NM_LIMIT_PEER], 1);
	nm_limits_put_peer(&l, &a);
	ck_assert_uint_eq(nm_limits_peer_count(&l, &a), 0);
	ck_assert_int_eq(nm_limits_take_peer(&l, &a), 0);
	nm_limits_free(&l);
}
END_TEST

/* The table against a plain array, through growth and many deletions that
 * exercise backward-shift deletion across wrapped probe runs. */
START_TEST(test_count_table_model)
{
	enum { NKEYS = 3000 };
	static uint32_t want[NKEYS];
	struct nm_count_table t = { 0 };
	uint8_t key[16];
	unsigned int seed = 12345;

	memset(want, 0, sizeof(want));
	for (int step = 0; step < 200000; step++) {
		uint32_t k = (uint32_t)rand_r(&seed) % NKEYS;
		int delta = rand_r(&seed) % 3 ? 1 : -1;
		int got;

		/* Drain phases make the table sparse again. */
		if ((step / 20000) % 2)
			delta = rand_r(&seed) % 4 ? -1 : 1;
		memset(key, 0, sizeof(key));
		memcpy(key + 12, &k, sizeof(k));
		got = nm_count_add(&t, key, delta);
		if (delta > 0)
			want[k]++;
		else if (want[k])
			want[k]--;
		ck_assert_int_eq(got, (int)want[k]);
		if (step % 997 == 0) {
			uint32_t live = 0;

			for (uint32_t i = 0; i < NKEYS; i++) {
				memset(key, 0, sizeof(key));
				memcpy(key + 12, &i, sizeof(i));
				ck_assert_uint_eq(nm_count_get(&t, key), want[i]);
				live += want[i] != 0;
			}
			/* Zero counts leave no entries behind. */
			ck_assert_uint_eq(t.used, live);
			ck_assert(t.used * 2 <= t.cap);
		}
	}
	nm_count_free(&t);
	ck_assert_ptr_null(t.slots);
}
END_TEST

static Suite *limits_suite(void)
{
	Suite *s = suite_create("limits");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_derive_defaults);
	tcase_add_test(tc, test_derive_overrides);
	tcase_add_test(tc, test_take_put);
	tcase_add_test(tc, test_count_table_model);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(limits_suite)
