// SPDX-License-Identifier: Apache-2.0
/* check_outlier.c - passive outlier detection: consecutive failures eject,
 * a success ends the run, ejection time grows with the count, at most
 * maxEjectionPercent of a service's endpoints are out, ejected endpoints
 * return on time, and the table keeps many endpoints apart. */
#include <arpa/inet.h>
#include <string.h>

#include "nm_check.h"
#include "mesh/outlier.h"

static struct nm_resilience_cfg cfg(uint32_t n, uint32_t base, uint32_t pct)
{
	struct nm_resilience_cfg r;

	nm_resilience_defaults(&r);
	r.outlier_failures = n;
	r.outlier_base_ms = base;
	r.outlier_max_percent = pct;
	return r;
}

static struct nm_outlier_key key(uint32_t svc, uint8_t last)
{
	struct nm_outlier_key k;
	struct nm_addr a = { .a = { [10] = 0xff, [11] = 0xff, 198, 18, 2, last } };

	nm_outlier_key_make(&k, svc, &a, htons(8080));
	return k;
}

/* n failures of k at now; the last verdict. */
static enum nm_outlier_verdict fail_n(struct nm_outlier *o,
				      const struct nm_outlier_key *k,
				      const struct nm_resilience_cfg *r,
				      unsigned int eps, unsigned int n,
				      int64_t now)
{
	enum nm_outlier_verdict v = NM_OUTLIER_KEPT;

	for (unsigned int i = 0; i < n; i++)
		v = nm_outlier_failure(o, nm_outlier_get(o, k), r, eps, now);
	return v;
}

START_TEST(test_consecutive_failures)
{
	struct nm_outlier o = { 0 };
	struct nm_resilience_cfg r = cfg(5, 1000, 100);
	struct nm_outlier_key k = key(1, 11);
	struct nm_outlier_ep *e;

	ck_assert_int_eq(fail_n(&o, &k, &r, 3, 4, 0), NM_OUTLIER_KEPT);
	ck_assert(!nm_outlier_is_ejected(&o, &k, 0));
	/* A success ends the run: four more are not enough. */
	nm_outlier_success(nm_outlier_get(&o, &k));
	ck_assert_int_eq(fail_n(&o, &k, &r, 3, 4, 0), NM_OUTLIER_KEPT);
	ck_assert(!nm_outlier_is_ejected(&o, &k, 0));
	ck_assert_int_eq(fail_n(&o, &k, &r, 3, 1, 0), NM_OUTLIER_EJECTED);
	ck_assert(nm_outlier_is_ejected(&o, &k, 0));
	e = nm_outlier_find(&o, &k);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->ejections, 1);
	ck_assert_int_eq(e->ejected_until, 1000);
	ck_assert_uint_eq(e->failures, 9);
	ck_assert_uint_eq(e->successes, 1);
	/* Failures while out do not eject again or extend the time. */
	ck_assert_int_eq(fail_n(&o, &k, &r, 3, 10, 10), NM_OUTLIER_KEPT);
	ck_assert_uint_eq(nm_outlier_find(&o, &k)->ejections, 1);
	ck_assert_int_eq(nm_outlier_find(&o, &k)->ejected_until, 1000);
	nm_outlier_free(&o);
}
END_TEST

static unsigned int returned;
static void on_return(const struct nm_outlier_ep *e, void *arg)
{
	const struct nm_outlier_key *want = arg;

	ck_assert_mem_eq(&e->key, want, sizeof(*want));
	returned++;
}

START_TEST(test_growing_ejection_and_return)
{
	struct nm_outlier o = { 0 };
	struct nm_resilience_cfg r = cfg(2, 1000, 50);
	struct nm_outlier_key k = key(7, 12);
	int64_t t = 5000;

	returned = 0;
	for (unsigned int n = 1; n <= 4; n++) {
		ck_assert_int_eq(fail_n(&o, &k, &r, 4, 2, t), NM_OUTLIER_EJECTED);
		/* base x ejections */
		ck_assert_int_eq(nm_outlier_find(&o, &k)->ejected_until,
				 t + 1000 * (int64_t)n);
		ck_assert_int_eq(nm_outlier_next_expiry(&o), t + 1000 * (int64_t)n);
		/* Still out one ms before, back at the time. */
		ck_assert_uint_eq(nm_outlier_expire(&o, t + 1000 * n - 1,
						    on_return, &k), 0);
		ck_assert(nm_outlier_is_ejected(&o, &k, t + 1000 * n - 1));
		ck_assert_uint_eq(nm_outlier_expire(&o, t + 1000 * n,
						    on_return, &k), 1);
		ck_assert(!nm_outlier_is_ejected(&o, &k, t + 1000 * n));
		ck_assert_uint_eq(returned, n);
		ck_assert_int_eq(nm_outlier_next_expiry(&o), 0);
		/* The run starts from 0 after a return: one failure keeps it. */
		t += 1000 * n;
		ck_assert_int_eq(fail_n(&o, &k, &r, 4, 1, t), NM_OUTLIER_KEPT);
		nm_outlier_success(nm_outlier_get(&o, &k));
	}
	nm_outlier_free(&o);
}
END_TEST

START_TEST(test_max_percent)
{
	struct nm_outlier o = { 0 };
	struct nm_resilience_cfg r = cfg(1, 1000, 50);
	struct nm_outlier_key a = key(3, 1), b = key(3, 2), c = key(3, 3),
			      other = key(4, 1);

	/* 3 endpoints, 50 %: one out at most. */
	ck_assert_int_eq(fail_n(&o, &a, &r, 3, 1, 0), NM_OUTLIER_EJECTED);
	ck_assert_int_eq(fail_n(&o, &b, &r, 3, 1, 0), NM_OUTLIER_CAPPED);
	ck_assert_int_eq(fail_n(&o, &c, &r, 3, 1, 0), NM_OUTLIER_CAPPED);
	ck_assert_uint_eq(nm_outlier_ejected_count(&o, 3, 0), 1);
	ck_assert_uint_eq(nm_outlier_find(&o, &b)->eject_refused, 1);
	/* Another service has its own share. */
	ck_assert_int_eq(fail_n(&o, &other, &r, 2, 1, 0), NM_OUTLIER_EJECTED);
	/* When a returns, b (still failing) may go. */
	ck_assert_uint_eq(nm_outlier_expire(&o, 1000, NULL, NULL), 2);
	ck_assert_int_eq(fail_n(&o, &b, &r, 3, 1, 1000), NM_OUTLIER_EJECTED);
	ck_assert(!nm_outlier_is_ejected(&o, &a, 1000));
	nm_outlier_free(&o);

	/* 4 endpoints at 50 %: two; a single endpoint is never ejected below
	 * 100 %; 0 % never ejects; 100 % may eject them all. */
	r = cfg(1, 1000, 50);
	for (uint8_t i = 1; i <= 4; i++) {
		struct nm_outlier_key k = key(5, i);

		ck_assert_int_eq(fail_n(&o, &k, &r, 4, 1, 0),
				 i <= 2 ? NM_OUTLIER_EJECTED : NM_OUTLIER_CAPPED);
	}
	a = key(6, 1);
	ck_assert_int_eq(fail_n(&o, &a, &r, 1, 1, 0), NM_OUTLIER_CAPPED);
	r = cfg(1, 1000, 0);
	a = key(8, 1);
	ck_assert_int_eq(fail_n(&o, &a, &r, 10, 5, 0), NM_OUTLIER_CAPPED);
	r = cfg(1, 1000, 100);
	a = key(9, 1);
	ck_assert_int_eq(fail_n(&o, &a, &r, 1, 1, 0), NM_OUTLIER_EJECTED);
	nm_outlier_free(&o);
}
END_TEST

START_TEST(test_many_endpoints)
{
	struct nm_outlier o = { 0 };
	struct nm_resilience_cfg r = cfg(3, 1000, 100);

	/* 2000 endpoints across 10 services: every key keeps its own count
	 * through the table's growth. */
	for (uint32_t i = 0; i < 2000; i++) {
		struct nm_outlier_key k = key(1 + i % 10, (uint8_t)(i / 10));

		k.addr.a[13] = (uint8_t)(i >> 8);
		ck_assert_int_eq(fail_n(&o, &k, &r, 200, 1 + i % 3, 0),
				 i % 3 == 2 ? NM_OUTLIER_EJECTED : NM_OUTLIER_KEPT);
	}
	ck_assert_uint_eq(o.used, 2000);
	for (uint32_t i = 0; i < 2000; i++) {
		struct nm_outlier_key k = key(1 + i % 10, (uint8_t)(i / 10));
		struct nm_outlier_ep *e;

		k.addr.a[13] = (uint8_t)(i >> 8);
		e = nm_outlier_find(&o, &k);
		ck_assert_ptr_nonnull(e);
		ck_assert_uint_eq(e->failures, 1 + i % 3);
		ck_assert_uint_eq(nm_outlier_is_ejected(&o, &k, 0), i % 3 == 2);
	}
	ck_assert_uint_eq(nm_outlier_expire(&o, 1000, NULL, NULL), 666);
	nm_outlier_free(&o);
}
END_TEST

static Suite *outlier_suite(void)
{
	Suite *s = suite_create("outlier");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_consecutive_failures);
	tcase_add_test(tc, test_growing_ejection_and_return);
	tcase_add_test(tc, test_max_percent);
	tcase_add_test(tc, test_many_endpoints);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(outlier_suite)
