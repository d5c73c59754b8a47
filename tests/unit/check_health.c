// SPDX-License-Identifier: Apache-2.0
/*
 * check_health.c - the readiness responder's request handling
 * (telemetry/health.c, nm_health_respond()).
 */
#include <errno.h>
#include <string.h>

#include "nm_check.h"
#include "telemetry/health.h"

static const char *answer(const char *req, bool ready)
{
	const char *resp = NULL;

	ck_assert_int_eq(nm_health_respond(req, strlen(req), ready, &resp), 0);
	return resp;
}

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

START_TEST(test_ready_and_not)
{
	const char *kubelet = "GET /healthz/ready HTTP/1.1\r\nHost: 10.0.0.1:15021\r\n"
			      "User-Agent: kube-probe/1.30\r\nAccept: */*\r\n\r\n";

	ck_assert(starts(answer(kubelet, true), "HTTP/1.1 200 OK\r\n"));
	ck_assert_ptr_nonnull(strstr(answer(kubelet, true), "\r\n\r\nready\n"));
	ck_assert(starts(answer(kubelet, false), "HTTP/1.1 503 "));
	ck_assert(starts(answer("HEAD /healthz/ready HTTP/1.0\r\n\r\n", true),
			 "HTTP/1.1 200 OK\r\n"));
	ck_assert(starts(answer("GET /healthz/ready?verbose=1 HTTP/1.1\r\n\r\n", true),
			 "HTTP/1.1 200 OK\r\n"));
}
END_TEST

START_TEST(test_other_requests)
{
	const char *resp = NULL;

	ck_assert(starts(answer("GET / HTTP/1.1\r\n\r\n", true), "HTTP/1.1 404 "));
	ck_assert(starts(answer("GET /healthz/readyx HTTP/1.1\r\n\r\n", true), "HTTP/1.1 404 "));
	ck_assert(starts(answer("POST /healthz/ready HTTP/1.1\r\n\r\n", true), "HTTP/1.1 405 "));
	ck_assert(starts(answer("garbage\n\n", true), "HTTP/1.1 400 "));
	ck_assert(starts(answer("GET\n\n", true), "HTTP/1.1 400 "));
	/* Incomplete: ask for more (the request line alone is not enough:
	 * headers follow), until the buffer would overflow. */
	ck_assert_int_eq(nm_health_respond("GET /healthz/re", 15, true, &resp), -EAGAIN);
	{
		const char *part = "GET /healthz/ready HTTP/1.1\r\nHost: x\r\n";

		ck_assert_int_eq(nm_health_respond(part, strlen(part), true, &resp),
				 -EAGAIN);
	}
	{
		char big[1024];

		memset(big, 'a', sizeof(big));
		ck_assert_int_eq(nm_health_respond(big, sizeof(big), true, &resp), 0);
		ck_assert(starts(resp, "HTTP/1.1 400 "));
	}
}
END_TEST

static Suite *health_suite(void)
{
	Suite *s = suite_create("health");
	TCase *tc = tcase_create("respond");

	tcase_add_test(tc, test_ready_and_not);
	tcase_add_test(tc, test_other_requests);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(health_suite)
