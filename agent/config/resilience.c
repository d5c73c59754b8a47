// SPDX-License-Identifier: Apache-2.0
/*
 * resilience.c - "services[].resilience": connect timeout, retries, outlier
 * ejection, circuit breakers, idle timeout and TCP keepalive of one service
 * (docs/config.md, "services[].resilience"). Every field is optional; the
 * defaults come from nm_resilience_defaults() (state/cluster.h).
 */
#include <errno.h>

#include "config/sections.h"

struct res_int {
	const char *key;
	long long min, max;
	const char *what;
	uint32_t *dst;
};

/* The integer fields of one object (obj at path); 0 or -EINVAL. */
static int get_ints(struct nm_cfg_parser *p, const json_t *obj,
		    const char *path, const struct res_int *f)
{
	for (; f->key; f++) {
		long long v;
		int ret = nm_jw_get_int(&p->j, obj, path, f->key, false, f->min,
					f->max, f->what, &v);

		if (ret < 0)
			return ret;
		if (ret)
			*f->dst = (uint32_t)v;
	}
	return 0;
}

/* An optional sub-object with its own keys; absent leaves the defaults. */
static int get_sub(struct nm_cfg_parser *p, const json_t *obj,
		   const char *path, const char *key,
		   const char *const *keys, const struct res_int *f)
{
	struct nm_jw_field sub;
	int ret;

	ret = nm_jw_field(&p->j, obj, path, key, JSON_OBJECT, false, &sub);
	if (ret <= 0)
		return ret;
	ret = nm_jw_check_keys(&p->j, sub.v, sub.path, keys);
	if (ret)
		return ret;
	return get_ints(p, sub.v, sub.path, f);
}

int nm_cfg_parse_resilience(struct nm_cfg_parser *p, const json_t *svc,
			    const char *svc_path, struct nm_resilience_cfg *r)
{
	static const char *const keys[] = { "connectTimeoutMs", "retries",
					    "outlier", "circuitBreaker",
					    "idleTimeoutMs", "keepalive", NULL };
	static const char *const outlier_keys[] = { "consecutiveFailures",
						    "baseEjectionMs",
						    "maxEjectionPercent", NULL };
	static const char *const breaker_keys[] = { "maxConnections",
						    "maxPendingConnects", NULL };
	static const char *const ka_keys[] = { "timeS", "intervalS", "count",
					       NULL };
	const struct res_int top[] = {
		{ "connectTimeoutMs", 1, 600000, "a timeout in ms (1..600000)",
		  &r->connect_timeout_ms },
		{ "retries", 0, 10, "a retry count (0..10)", &r->retries },
		{ "idleTimeoutMs", 0, 2147483647,
		  "a timeout in ms (0 = none, at most 2147483647)",
		  &r->idle_timeout_ms },
		{ 0 }
	};
	const struct res_int outlier[] = {
		{ "consecutiveFailures", 1, 1000, "a failure count (1..1000)",
		  &r->outlier_failures },
		{ "baseEjectionMs", 1, 86400000, "a duration in ms (1..86400000)",
		  &r->outlier_base_ms },
		{ "maxEjectionPercent", 0, 100,
		  "a percentage (0..100; 0 = never eject)",
		  &r->outlier_max_percent },
		{ 0 }
	};
	const struct res_int breaker[] = {
		{ "maxConnections", 1, 10000000, "a limit (1..10000000)",
		  &r->max_connections },
		{ "maxPendingConnects", 1, 10000000, "a limit (1..10000000)",
		  &r->max_pending },
		{ 0 }
	};
	/* The kernel's own bounds for TCP_KEEPIDLE/INTVL (32767 s) and
	 * TCP_KEEPCNT (127). */
	const struct res_int ka[] = {
		{ "timeS", 0, 32767, "a time in s (0 = keepalive off, at most 32767)",
		  &r->keepalive_time_s },
		{ "intervalS", 1, 32767, "an interval in s (1..32767)",
		  &r->keepalive_interval_s },
		{ "count", 1, 127, "a probe count (1..127)", &r->keepalive_count },
		{ 0 }
	};
	struct nm_jw_field f;
	int ret;

	nm_resilience_defaults(r);
	ret = nm_jw_field(&p->j, svc, svc_path, "resilience", JSON_OBJECT, false, &f);
	if (ret <= 0)
		return ret;
	r->present = true;
	ret = nm_jw_check_keys(&p->j, f.v, f.path, keys);
	if (ret)
		return ret;
	ret = get_ints(p, f.v, f.path, top);
	if (!ret)
		ret = get_sub(p, f.v, f.path, "outlier", outlier_keys, outlier);
	if (!ret)
		ret = get_sub(p, f.v, f.path, "circuitBreaker", breaker_keys, breaker);
	if (!ret)
		ret = get_sub(p, f.v, f.path, "keepalive", ka_keys, ka);
	return ret;
}
