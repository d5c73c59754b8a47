/* SPDX-License-Identifier: Apache-2.0 */
/*
 * compile.h - the policy set turned into nm_policy map records (nm_abi.h)
 * for one node, so connect4/6 can refuse before any packet leaves a
 * connection the destination agent would deny. Pure.
 *
 * A record says what nm_policy_evaluate() answers for a meshed source
 * workload of this node, a destination workload and a destination port
 * (the backend's port; port 0 = every port no policy names). Where the
 * verdict depends on something connect4/6 cannot know for sure, no record
 * is written and the destination agent decides (it always does anyway: the
 * kernel verdict only ever refuses earlier, never admits more).
 */
#ifndef NM_POLICY_COMPILE_H
#define NM_POLICY_COMPILE_H

#include <stddef.h>

#include "nm_abi.h"
#include "policy/policy.h"
#include "state/state.h"

struct nm_policy_rec {
	struct nm_policy_key key;
	struct nm_policy_val val;
};

/*
 * Records for state s (its local meshed workloads as sources, every
 * workload as destination) under policy set ps (NULL: no policies, which
 * allows everything, compiled as the empty set). *out is heap (free()), *n its length. 0, -ENOMEM, or -E2BIG
 * when more than max records would be needed (the caller then writes none
 * and lets the agent decide everything, with a warning).
 */
int nm_policy_compile(const struct nm_policy_set *ps, const struct nm_state *s,
		      size_t max, struct nm_policy_rec **out, size_t *n);

#endif
