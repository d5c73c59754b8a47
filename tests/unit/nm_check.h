/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nm_check.h - the runner every Check suite shares (unit and BPF tests):
 * run the suite, let Check print its summary (tests/run.sh sums them) and
 * exit non-zero when any test failed.
 */
#ifndef NM_CHECK_H
#define NM_CHECK_H

#include <check.h>
#include <stdlib.h>

/*
 * Runs s, freeing it; fork is CK_FORK_GETENV for Check's default (each test
 * forked unless CK_FORK=no) or CK_FORK to insist. The number of failures.
 */
static inline int nm_check_run(Suite *s, enum fork_status fork)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_set_fork_status(sr, fork);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed;
}

/* main() of a suite that needs no set-up of its own. */
#define NM_CHECK_MAIN(suite_fn)                                          \
	int main(void)                                                   \
	{                                                                \
		return nm_check_run(suite_fn(), CK_FORK_GETENV) ?        \
			       EXIT_FAILURE :                            \
			       EXIT_SUCCESS;                             \
	}

#endif
