// SPDX-License-Identifier: Apache-2.0
/* check_log.c - the data-path rate limiter: burst per interval, a new
 * interval starts a new burst, the first line after a suppressed stretch
 * says how many were dropped, and lines below the level cost nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nm_check.h"
#include "lib/log.h"

START_TEST(test_ratelimit_burst_interval)
{
	struct nm_ratelimit rs = { .interval_ms = 1000, .burst = 3 };
	uint64_t sup = 99;
	int ok = 0;

	for (int i = 0; i < 10; i++)
		ok += nm_ratelimit_check(&rs, 5000 + i, &sup);
	ck_assert_int_eq(ok, 3);
	ck_assert_uint_eq(rs.suppressed, 7);
	/* Still inside the interval: dropped. */
	ck_assert(!nm_ratelimit_check(&rs, 5999, &sup));
	/* Next interval: allowed, and it reports the 8 dropped. */
	ck_assert(nm_ratelimit_check(&rs, 6000, &sup));
	ck_assert_uint_eq(sup, 8);
	ck_assert(nm_ratelimit_check(&rs, 6001, &sup));
	ck_assert_uint_eq(sup, 0);
}
END_TEST

START_TEST(test_ratelimit_zero_state_defaults)
{
	struct nm_ratelimit rs = { 0 };
	int ok = 0;

	for (int i = 0; i < 1000; i++)
		ok += nm_ratelimit_check(&rs, 1 + i, NULL);
	ck_assert_int_eq(ok, NM_RATELIMIT_BURST);
	ck_assert(nm_ratelimit_check(&rs, 1 + NM_RATELIMIT_INTERVAL_MS, NULL));
}
END_TEST

/* Runs fn with stderr sent to a file; returns what it printed. */
static char *capture_stderr(void (*fn)(void))
{
	static char out[65536];
	FILE *tmp = tmpfile();
	int saved = dup(2);
	size_t n;

	ck_assert_ptr_nonnull(tmp);
	fflush(stderr);
	dup2(fileno(tmp), 2);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, sizeof(out) - 1, tmp);
	out[n] = 0;
	fclose(tmp);
	return out;
}

static struct nm_ratelimit shared_rs = { .interval_ms = 60000, .burst = 2 };

static void log_many(void)
{
	nm_log_set_level(NM_LOG_INFO);
	for (int i = 0; i < 50; i++)
		pr_warn_ratelimited(&shared_rs, "msg=\"connect failed\" n=%d", i);
	/* Below the level: neither printed nor counted as suppressed. */
	for (int i = 0; i < 50; i++)
		nm_log_ratelimited(&shared_rs, NM_LOG_DEBUG, "msg=\"dbg\" n=%d", i);
	/* A new interval: the next line says what was dropped. */
	shared_rs.begin_ms -= 60000;
	pr_warn_ratelimited(&shared_rs, "msg=\"connect failed\" n=%d", 50);
}

START_TEST(test_ratelimited_lines)
{
	char *out = capture_stderr(log_many);
	int lines = 0;

	for (char *p = out; (p = strchr(p, '\n')); p++)
		lines++;
	ck_assert_int_eq(lines, 3);
	ck_assert_ptr_nonnull(strstr(out, "msg=\"connect failed\" n=0\n"));
	ck_assert_ptr_nonnull(strstr(out, "msg=\"connect failed\" n=1\n"));
	ck_assert_ptr_nonnull(strstr(out, "msg=\"connect failed\" n=50 suppressed=48\n"));
	ck_assert_ptr_null(strstr(out, "dbg"));
}
END_TEST

static Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("ratelimit");

	tcase_add_test(tc, test_ratelimit_burst_interval);
	tcase_add_test(tc, test_ratelimit_zero_state_defaults);
	tcase_add_test(tc, test_ratelimited_lines);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(log_suite)
