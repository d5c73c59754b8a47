// SPDX-License-Identifier: Apache-2.0
/* check_breaker.c - per-service circuit breakers: maxConnections and
 * maxPendingConnects refuse beyond the maximum and count it, slots come
 * back, services are independent, a lowered maximum applies to new flows
 * only, and the table keeps many services apart. */
#include <errno.h>

#include "nm_check.h"
#include "mesh/breaker.h"

START_TEST(test_connections)
{
	struct nm_breakers b = { 0 };
	struct nm_breaker_svc *s = nm_breaker_get(&b, 42);

	ck_assert_ptr_nonnull(s);
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(nm_breaker_take_conn(s, 50), 0);
	/* The 51st is refused, counted, and takes nothing. */
	ck_assert_int_eq(nm_breaker_take_conn(s, 50), -EBUSY);
	ck_assert_int_eq(nm_breaker_take_conn(s, 50), -EBUSY);
	ck_assert_uint_eq(s->connections, 50);
	ck_assert_uint_eq(s->refused_connections, 2);
	ck_assert_uint_eq(s->admitted, 50);
	/* One ends: one more fits, then the limit holds again. */
	nm_breaker_put_conn(s);
	ck_assert_int_eq(nm_breaker_take_conn(s, 50), 0);
	ck_assert_int_eq(nm_breaker_take_conn(s, 50), -EBUSY);
	/* A lowered maximum (reload) refuses new ones only. */
	ck_assert_int_eq(nm_breaker_take_conn(s, 10), -EBUSY);
	ck_assert_uint_eq(s->connections, 50);
	for (int i = 0; i < 41; i++)
		nm_breaker_put_conn(s);
	ck_assert_int_eq(nm_breaker_take_conn(s, 10), 0);
	ck_assert_int_eq(nm_breaker_take_conn(s, 10), -EBUSY);
	/* Never below 0. */
	for (int i = 0; i < 20; i++)
		nm_breaker_put_conn(s);
	ck_assert_uint_eq(s->connections, 0);
	nm_breakers_free(&b);
}
END_TEST

START_TEST(test_pending_and_services)
{
	struct nm_breakers b = { 0 };
	struct nm_breaker_svc *s;

	s = nm_breaker_get(&b, 1);
	ck_assert_int_eq(nm_breaker_take_pending(s, 2), 0);
	ck_assert_int_eq(nm_breaker_take_pending(s, 2), 0);
	ck_assert_int_eq(nm_breaker_take_pending(s, 2), -EBUSY);
	ck_assert_uint_eq(s->refused_pending, 1);
	/* Pending and connections are separate counts. */
	ck_assert_int_eq(nm_breaker_take_conn(s, 1), 0);
	/* Another service is not affected. */
	s = nm_breaker_get(&b, 2);
	ck_assert_int_eq(nm_breaker_take_pending(s, 2), 0);
	ck_assert_int_eq(nm_breaker_take_conn(s, 1), 0);
	s = nm_breaker_find(&b, 1);
	ck_assert_uint_eq(s->pending, 2);
	nm_breaker_put_pending(s);
	ck_assert_int_eq(nm_breaker_take_pending(s, 2), 0);
	/* Service ID 0 is "no service": never an entry. */
	ck_assert_ptr_null(nm_breaker_get(&b, 0));
	ck_assert_ptr_null(nm_breaker_find(&b, 0));
	ck_assert_ptr_null(nm_breaker_find(&b, 3));
	nm_breakers_free(&b);
}
END_TEST

START_TEST(test_many_services)
{
	struct nm_breakers b = { 0 };

	for (uint32_t id = 1; id <= 5000; id++) {
		struct nm_breaker_svc *s = nm_breaker_get(&b, id * 7919u);

		ck_assert_ptr_nonnull(s);
		for (uint32_t k = 0; k < id % 5; k++)
			ck_assert_int_eq(nm_breaker_take_conn(s, 1000), 0);
	}
	ck_assert_uint_eq(b.used, 5000);
	for (uint32_t id = 1; id <= 5000; id++) {
		struct nm_breaker_svc *s = nm_breaker_find(&b, id * 7919u);

		ck_assert_ptr_nonnull(s);
		ck_assert_uint_eq(s->service_id, id * 7919u);
		ck_assert_uint_eq(s->connections, id % 5);
	}
	nm_breakers_free(&b);
}
END_TEST

static Suite *breaker_suite(void)
{
	Suite *s = suite_create("breaker");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_connections);
	tcase_add_test(tc, test_pending_and_services);
	tcase_add_test(tc, test_many_services);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(breaker_suite)
