/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_policy.h - the body of fuzz_policy_json.c and fuzz_policy_yaml.c
 * (FUZZ_NAME picks the parser by its extension).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)               \
	do {                      \
		if (!(cond))      \
			abort();  \
	} while (0)

static void check_verdict(const struct nm_policy_set *ps,
			  const struct nm_policy_verdict *v)
{
	struct nm_policy_info info;

	CHECK(v->reason && v->dry_run_reason);
	CHECK(v->policy >= -1 && v->policy < (int)nm_policy_count(ps));
	CHECK((v->policy < 0) == (v->rule < 0));
	if (v->policy >= 0) {
		CHECK(nm_policy_get(ps, (unsigned int)v->policy, &info) == 0);
		CHECK(info.enforced && !info.dry_run);
		CHECK((unsigned int)v->rule < info.n_rules);
		CHECK(v->allow == (info.action == NM_POLICY_ALLOW));
	}
	if (!v->dry_run)
		CHECK(v->dry_run_allow == v->allow && v->dry_run_policy == v->policy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const principals[] = {
		NULL, "cluster.local/ns/foo/sa/a", "x/ns/bar/sa/b", "weird",
	};
	static const char *const nss[] = { "foo", "default", "istio-system", "bar" };
	struct nm_policy_set *ps = (struct nm_policy_set *)&size; /* must be reset */
	char err[1024];
	unsigned int i, n;
	int ret;

	ret = nm_policy_load_buf((const char *)data, size, FUZZ_NAME, NULL, &ps, err,
				 sizeof(err));
	if (ret) {
		CHECK(ps == NULL);
		CHECK(ret == -EINVAL || ret == -ENOMEM);
		CHECK(strncmp(err, FUZZ_NAME ": ", strlen(FUZZ_NAME) + 2) == 0);
		CHECK(strnlen(err, sizeof(err)) < sizeof(err));
		return 0;
	}
	CHECK(ps != NULL);
	{
		const char *const *w = nm_policy_set_warnings(ps, &n);

		for (i = 0; i < n; i++)
			CHECK(strncmp(w[i], FUZZ_NAME ": ", strlen(FUZZ_NAME) + 2) == 0);
	}
	for (i = 0; i < nm_policy_count(ps); i++) {
		struct nm_policy_info info;

		CHECK(nm_policy_get(ps, i, &info) == 0);
		CHECK(info.ns && info.name && !strcmp(info.file, FUZZ_NAME));
		CHECK(!info.has_selector || !info.mesh_wide);
	}
	for (i = 0; i < 16; i++) {
		struct nm_label l = { "app", "x" };
		struct nm_policy_conn c = {
			.dst_ns = nss[i % 4], .dst_labels = &l, .n_dst_labels = 1,
			.dst_port = (uint16_t)(i < 8 ? 80 + i : 9000),
			.src_principal = principals[(i / 4) % 4],
		};
		struct nm_policy_verdict v;

		c.src_ip.a[10] = c.src_ip.a[11] = 0xff; /* 0.0.0.0, mapped */
		c.src_ip.a[12] = (uint8_t)(i * 16);
		if (i & 1)
			c.dst_ip.a[0] = 0x20; /* a v6 destination */
		nm_policy_evaluate(ps, &c, &v);
		check_verdict(ps, &v);
	}
	nm_policy_set_free(ps);
	return 0;
}
