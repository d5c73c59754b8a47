// SPDX-License-Identifier: Apache-2.0
/*
 * check_policy.c - agent/policy: parsing (JSON, YAML, strictness, the
 * warnings for what ztunnel narrows) and evaluation with ztunnel's
 * semantics, one test per rule of docs/policy.md, over the fixtures in
 * tests/fixtures/policy/ok (Istio's L4-expressible documentation examples
 * among them) and inline documents.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nm_check.h"
#include "lib/file.h"
#include "policy/policy.h"

#define FIX "tests/fixtures/policy/ok/"
#define NAME "t.yaml"

static char err[1024];

static struct nm_policy_set *load_text(const char *text, const char *name)
{
	struct nm_policy_set *ps = NULL;
	int ret = nm_policy_load_buf(text, strlen(text), name, NULL, &ps, err,
				     sizeof(err));

	ck_assert_msg(ret == 0, "load %s: %d %s", name, ret, err);
	return ps;
}

static struct nm_policy_set *load_fix(const char *file)
{
	char path[256], *buf = NULL;
	struct nm_policy_set *ps = NULL;
	size_t len;
	int ret;

	snprintf(path, sizeof(path), FIX "%s", file);
	ck_assert_int_eq(nm_file_read(path, 0, &buf, &len, NULL), 0);
	ret = nm_policy_load_buf(buf, len, path, NULL, &ps, err, sizeof(err));
	free(buf);
	ck_assert_msg(ret == 0, "load %s: %s", path, err);
	return ps;
}

/* A refusal: -EINVAL, nothing returned, err starts with want. */
static void refused(const char *text, const char *name, const char *want)
{
	struct nm_policy_set *ps = (struct nm_policy_set *)err;
	int ret = nm_policy_load_buf(text, strlen(text), name, NULL, &ps, err,
				     sizeof(err));

	ck_assert_msg(ret == -EINVAL, "accepted: %s", text);
	ck_assert_ptr_null(ps);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0,
		      "message \"%s\" does not start with \"%s\"", err, want);
}

/* A connection; from is a principal or NULL, labels "k=v" or NULL. */
struct conn {
	const char *ns, *label, *from, *src_ip, *dst_ip;
	uint16_t port;
};

static struct nm_policy_verdict eval(const struct nm_policy_set *ps,
				     struct conn c)
{
	struct nm_policy_verdict v;
	struct nm_policy_conn pc = { 0 };
	struct nm_label l = { 0 };

	if (c.label) {
		const char *eq = strchr(c.label, '=');

		snprintf(l.key, sizeof(l.key), "%.*s", (int)(eq - c.label), c.label);
		snprintf(l.value, sizeof(l.value), "%s", eq + 1);
		pc.dst_labels = &l;
		pc.n_dst_labels = 1;
	}
	pc.dst_ns = c.ns;
	pc.dst_port = c.port ? c.port : 80;
	pc.src_principal = c.from;
	ck_assert_int_eq(nm_addr_parse(c.src_ip ? c.src_ip : "198.18.1.2", &pc.src_ip, NULL), 0);
	ck_assert_int_eq(nm_addr_parse(c.dst_ip ? c.dst_ip : "198.18.1.10", &pc.dst_ip, NULL), 0);
	nm_policy_evaluate(ps, &pc, &v);
	return v;
}

static bool allowed(const struct nm_policy_set *ps, struct conn c)
{
	return eval(ps, c).allow;
}

static const char *decider(const struct nm_policy_set *ps, struct nm_policy_verdict v)
{
	static char buf[256];
	struct nm_policy_info info;

	if (v.policy < 0)
		return "-";
	ck_assert_int_eq(nm_policy_get(ps, (unsigned int)v.policy, &info), 0);
	snprintf(buf, sizeof(buf), "%s/%s#%d", info.ns, info.name, v.rule);
	return buf;
}

static bool has_warning(const struct nm_policy_set *ps, const char *needle)
{
	unsigned int n, i;
	const char *const *w = nm_policy_set_warnings(ps, &n);

	for (i = 0; i < n; i++)
		if (strstr(w[i], needle))
			return true;
	return false;
}

#define AP "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
#define MD "metadata: {name: p, namespace: foo}\n"
#define SA(ns, sa) "cluster.local/ns/" ns "/sa/" sa

/* --- scope and precedence -------------------------------------------------- */

START_TEST(no_policy_allows)
{
	struct nm_policy_set *ps = load_text("", NAME);
	struct nm_policy_verdict v = eval(ps, (struct conn){ .ns = "foo" });

	ck_assert_uint_eq(nm_policy_count(ps), 0);
	ck_assert(v.allow);
	ck_assert_int_eq(v.policy, -1);
	ck_assert_str_eq(v.reason, "no ALLOW policy applies");
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(allow_nothing_denies_all_of_its_namespace)
{
	struct nm_policy_set *ps = load_fix("allow-nothing.yaml");
	struct nm_policy_verdict v = eval(ps, (struct conn){ .ns = "foo", .from = SA("foo", "a") });

	ck_assert(!v.allow);
	ck_assert_str_eq(v.reason, "no ALLOW policy matched");
	ck_assert(allowed(ps, (struct conn){ .ns = "bar", .from = SA("foo", "a") }));
	ck_assert(has_warning(ps, "ALLOW without rules matches nothing"));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(deny_all_and_allow_all)
{
	struct nm_policy_set *ps = load_fix("deny-all.yaml");
	struct nm_policy_verdict v = eval(ps, (struct conn){ .ns = "foo", .from = SA("foo", "a") });

	ck_assert(!v.allow);
	ck_assert_str_eq(decider(ps, v), "foo/deny-all#0");
	ck_assert_str_eq(v.reason, "denied by DENY policy");
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo" }));
	nm_policy_set_free(ps);

	ps = load_fix("allow-all.yaml");
	v = eval(ps, (struct conn){ .ns = "foo" });
	ck_assert(v.allow);
	ck_assert_str_eq(decider(ps, v), "foo/allow-all#0");
	ck_assert(has_warning(ps, "empty rule: matches every connection"));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(deny_wins_over_allow)
{
	struct nm_policy_set *ps = load_text(
		"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		"metadata: {name: a-allow, namespace: foo}\nspec: {rules: [{}]}\n---\n"
		"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		"metadata: {name: z-deny, namespace: foo}\n"
		"spec: {action: DENY, rules: [{to: [{operation: {ports: ['22']}}]}]}\n", NAME);
	struct nm_policy_verdict v = eval(ps, (struct conn){ .ns = "foo", .port = 22 });

	ck_assert(!v.allow);
	ck_assert_str_eq(decider(ps, v), "foo/z-deny#0");
	v = eval(ps, (struct conn){ .ns = "foo", .port = 23 });
	ck_assert(v.allow);
	ck_assert_str_eq(decider(ps, v), "foo/a-allow#0");
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(selector_scope)
{
	struct nm_policy_set *ps = load_fix("ztunnel-principal.yaml");
	struct conn gw = { .ns = "default", .label = "app=productpage",
			   .from = SA("default", "bookinfo-gateway-istio") };
	struct conn other = gw;

	other.from = SA("default", "curl");
	ck_assert(allowed(ps, gw));
	ck_assert(!allowed(ps, other));
	/* another workload of the namespace is not selected */
	other.label = "app=reviews";
	ck_assert(allowed(ps, other));
	/* nor the same labels in another namespace */
	other.label = "app=productpage";
	other.ns = "prod";
	ck_assert(allowed(ps, other));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(root_namespace_mesh_wide_and_selector)
{
	struct nm_policy_set *ps = load_fix("mesh-wide.yaml");
	struct nm_policy_info info;

	ck_assert_int_eq(nm_policy_get(ps, 1, &info), 0);
	ck_assert_str_eq(info.name, "deny-legacy");
	ck_assert(info.mesh_wide);
	/* mesh-wide DENY reaches every namespace */
	ck_assert(!allowed(ps, (struct conn){ .ns = "anything", .from = SA("legacy", "x") }));
	ck_assert(allowed(ps, (struct conn){ .ns = "anything", .from = SA("new", "x") }));
	/* a root-namespace selector selects in every namespace */
	ck_assert(!allowed(ps, (struct conn){ .ns = "data", .label = "app=db", .from = SA("web", "x") }));
	ck_assert(allowed(ps, (struct conn){ .ns = "data", .label = "app=db",
					     .from = SA("api", "api-server") }));
	ck_assert(nm_policy_selects(ps, 0, "data", &(struct nm_label){ "app", "db" }, 1));
	ck_assert(!nm_policy_selects(ps, 0, "data", &(struct nm_label){ "app", "web" }, 1));
	nm_policy_set_free(ps);

	/* another root namespace: istio-system is then an ordinary one */
	{
		static const char doc[] = AP "metadata: {name: p, namespace: istio-system}\n"
					  "spec: {}\n";

		ck_assert_int_eq(nm_policy_load_buf(doc, strlen(doc), NAME, "mesh-root",
						    &ps, err, sizeof(err)), 0);
	}
	ck_assert(allowed(ps, (struct conn){ .ns = "foo" }));
	ck_assert(!allowed(ps, (struct conn){ .ns = "istio-system" }));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(empty_selector_selects_nothing)
{
	struct nm_policy_set *ps = load_text(
		"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		"metadata: {name: p, namespace: foo}\nspec: {selector: {}}\n", NAME);

	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .label = "app=x" }));
	ck_assert(has_warning(ps, "selects no workload"));
	nm_policy_set_free(ps);
}
END_TEST

/* --- rules ------------------------------------------------------------------- */

START_TEST(or_between_rules_and_inside_one)
{
	struct nm_policy_set *ps = load_fix("when-l4.yaml");

	/* rule 0: namespace bar AND port not 22 */
	ck_assert_str_eq(decider(ps, eval(ps, (struct conn){ .ns = "foo", .from = SA("bar", "x") })),
			 "foo/when-l4#0");
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo", .from = SA("bar", "x"), .port = 22 }));
	/* rule 1: source.ip AND destination.ip */
	ck_assert_str_eq(decider(ps, eval(ps, (struct conn){ .ns = "foo", .src_ip = "10.1.2.3" })),
			 "foo/when-l4#1");
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo", .src_ip = "10.1.2.3",
					      .dst_ip = "198.18.1.11" }));
	/* rule 2: principal suffix */
	ck_assert_str_eq(decider(ps, eval(ps, (struct conn){ .ns = "foo",
							     .from = "other.td/ns/q/sa/admin" })),
			 "foo/when-l4#2");
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo", .from = SA("q", "user") }));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(or_inside_lists)
{
	struct nm_policy_set *ps = load_text(
		"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		"metadata: {name: p, namespace: foo}\n"
		"spec:\n  rules:\n  - from:\n    - source: {namespaces: [a]}\n"
		"    - source: {principals: [" SA("b", "x") "]}\n"
		"    to:\n    - operation: {ports: ['80']}\n    - operation: {ports: ['81']}\n",
		NAME);

	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .from = SA("a", "y"), .port = 81 }));
	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .from = SA("b", "x"), .port = 80 }));
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo", .from = SA("b", "y"), .port = 80 }));
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo", .from = SA("a", "y"), .port = 82 }));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(string_matches)
{
	struct nm_policy_set *ps = load_fix("by-namespace.json");

	ck_assert(allowed(ps, (struct conn){ .ns = "bar", .from = SA("foo", "x") }));
	ck_assert(allowed(ps, (struct conn){ .ns = "bar", .from = SA("test-1", "x") }));
	ck_assert(allowed(ps, (struct conn){ .ns = "bar", .from = SA("test", "x") }));
	ck_assert(!allowed(ps, (struct conn){ .ns = "bar", .from = SA("foo2", "x") }));
	ck_assert(!allowed(ps, (struct conn){ .ns = "bar", .from = SA("atest", "x") }));
	nm_policy_set_free(ps);

	ps = load_text("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		       "metadata: {name: p, namespace: foo}\n"
		       "spec: {rules: [{from: [{source: {principals: ['*']}}]}]}\n", NAME);
	/* presence: any identity, from any trust domain */
	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .from = "example.org/ns/a/sa/b" }));
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo" }));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(unauthenticated_sources)
{
	struct nm_policy_set *ps = load_fix("require-mtls.yaml");
	struct nm_policy_verdict v = eval(ps, (struct conn){ .ns = "foo" });

	/* plaintext matches the negative field, so the DENY applies */
	ck_assert(!v.allow);
	ck_assert_str_eq(decider(ps, v), "foo/require-mtls#0");
	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .from = SA("x", "y") }));
	nm_policy_set_free(ps);

	/* positive identity fields never match plaintext */
	ps = load_text("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		       "metadata: {name: p, namespace: foo}\n"
		       "spec: {rules: [{from: [{source: {notNamespaces: [bar]}}]},"
		       " {from: [{source: {namespaces: ['*']}}]}]}\n", NAME);
	/* notNamespaces holds for no identity: allowed by rule 0 */
	ck_assert_str_eq(decider(ps, eval(ps, (struct conn){ .ns = "foo" })), "foo/p#0");
	/* bar fails rule 0; presence holds for any identity: rule 1 */
	ck_assert_str_eq(decider(ps, eval(ps, (struct conn){ .ns = "foo", .from = SA("bar", "z") })),
			 "foo/p#1");
	nm_policy_set_free(ps);

	ps = load_text("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		       "metadata: {name: p, namespace: foo}\n"
		       "spec: {rules: [{from: [{source: {namespaces: ['*']}}]},"
		       " {from: [{source: {serviceAccounts: [x]}}]},"
		       " {from: [{source: {notServiceAccounts: [foo/x]}}]}]}\n", NAME);
	/* unauthenticated: rule 0 and 1 fail, rule 2 (negative) holds */
	ck_assert_str_eq(decider(ps, eval(ps, (struct conn){ .ns = "foo" })), "foo/p#2");
	/* "x" means the policy's namespace: foo/x */
	ck_assert_str_eq(decider(ps, eval(ps, (struct conn){ .ns = "foo", .from = SA("foo", "x") })),
			 "foo/p#0");
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(service_accounts)
{
	struct nm_policy_set *ps = load_text(
		"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		"metadata: {name: p, namespace: foo}\n"
		"spec: {rules: [{from: [{source: {serviceAccounts: [x, bar/y]}}]}]}\n", NAME);

	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .from = SA("foo", "x") }));
	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .from = SA("bar", "y") }));
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo", .from = SA("bar", "x") }));
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo" }));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(ip_blocks)
{
	struct nm_policy_set *ps = load_fix("ip-blocks.yaml");
	struct conn c = { .ns = "foo", .label = "app=httpbin" };

	c.src_ip = "1.2.3.4";
	ck_assert(allowed(ps, c));
	c.src_ip = "1.2.3.5";
	ck_assert(!allowed(ps, c));
	c.src_ip = "5.6.7.200";
	ck_assert(allowed(ps, c));
	c.src_ip = "5.6.7.8"; /* notIpBlocks */
	ck_assert(!allowed(ps, c));
	c.src_ip = "2001:db8:1::7";
	ck_assert(allowed(ps, c));
	c.src_ip = "2001:db9::1";
	ck_assert(!allowed(ps, c));
	/* an IPv4 range does not take in v6 addresses, mapped or not */
	c.src_ip = "::ffff:1.2.3.4";
	ck_assert(allowed(ps, c)); /* nm_addr keeps v4 as mapped: same address */
	nm_policy_set_free(ps);

	ps = load_text("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		       "metadata: {name: p, namespace: foo}\n"
		       "spec: {rules: [{from: [{source: {ipBlocks: ['::/0']}}]}]}\n", NAME);
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo", .src_ip = "1.2.3.4" }));
	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .src_ip = "fe80::1" }));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(ports_and_not_ports)
{
	struct nm_policy_set *ps = load_fix("tcp-ports.yaml");
	struct conn c = { .ns = "foo", .label = "app=tcp-echo" };

	c.port = 9000;
	ck_assert(allowed(ps, c));
	c.port = 9001;
	ck_assert(allowed(ps, c));
	c.port = 9002;
	ck_assert(!allowed(ps, c));
	nm_policy_set_free(ps);

	ps = load_fix("not-ports.yaml");
	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .port = 8080 }));
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo", .port = 8081 }));
	nm_policy_set_free(ps);
}
END_TEST

/* --- what ztunnel narrows ----------------------------------------------------- */

START_TEST(allow_rule_with_l7_never_matches)
{
	struct nm_policy_set *ps = load_fix("tcp-ports-l7.yaml");
	struct conn c = { .ns = "foo", .label = "app=tcp-echo", .port = 9000 };

	ck_assert(!allowed(ps, c));
	c.port = 9001;
	ck_assert_str_eq(decider(ps, eval(ps, c)), "foo/tcp-policy#1");
	ck_assert(has_warning(ps, "(methods)"));
	ck_assert(has_warning(ps, "never matches"));
	nm_policy_set_free(ps);

	ps = load_fix("when-l7.yaml");
	/* the ALLOW applies and cannot match: denied */
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo", .from = SA("a", "b") }));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(deny_rule_with_l7_is_broader_or_void)
{
	struct nm_policy_set *ps = load_fix("tcp-deny-l7.yaml");
	struct conn c = { .ns = "foo", .label = "app=tcp-echo", .port = 9000 };

	ck_assert(!allowed(ps, c));
	c.port = 9001;
	ck_assert(allowed(ps, c));
	ck_assert(has_warning(ps, "more restrictive than written"));
	nm_policy_set_free(ps);

	/*
	 * A `to` entry with only methods becomes an empty match, which
	 * ztunnel skips: that clause is never true, so the DENY is void.
	 */
	ps = load_fix("deny-methods-only.yaml");
	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .from = SA("dev", "x") }));
	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .from = SA("prod", "x") }));
	ck_assert(has_warning(ps, "deny-post-from-dev: spec.rules[0]: rule 0 names HTTP attributes (methods)"));
	ck_assert(has_warning(ps, "deny-paths-only: spec.rules[0]: rule 0 names HTTP attributes (paths)"));
	ck_assert(has_warning(ps, "this DENY rule has no effect"));
	ck_assert(!has_warning(ps, "more restrictive"));
	nm_policy_set_free(ps);

	/* a DENY with only an L7 when key: the condition's match is empty */
	ps = load_fix("when-l7.yaml");
	ck_assert(has_warning(ps, "deny-sni"));
	ck_assert(has_warning(ps, "(connection.sni)"));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(audit_custom_target_refs_dry_run)
{
	struct nm_policy_set *ps = load_fix("ignored.yaml");
	struct nm_policy_verdict v = eval(ps, (struct conn){ .ns = "foo", .from = SA("a", "b") });
	struct nm_policy_info info;
	unsigned int i, enforced = 0;

	/* AUDIT, CUSTOM and targetRefs never decide; dry-run does not either */
	ck_assert(v.allow);
	ck_assert_int_eq(v.policy, -1);
	/* ... but the dry-run DENY would have */
	ck_assert(v.dry_run);
	ck_assert(!v.dry_run_allow);
	ck_assert_int_ge(v.dry_run_policy, 0);
	ck_assert_int_eq(nm_policy_get(ps, (unsigned int)v.dry_run_policy, &info), 0);
	ck_assert_str_eq(info.name, "dry-deny");
	ck_assert(info.dry_run);
	for (i = 0; i < nm_policy_count(ps); i++) {
		ck_assert_int_eq(nm_policy_get(ps, i, &info), 0);
		enforced += info.enforced;
	}
	ck_assert_uint_eq(enforced, 1); /* only the dry-run one is evaluated */
	ck_assert(has_warning(ps, "AUDIT is not enforced at L4"));
	ck_assert(has_warning(ps, "CUSTOM is not enforced at L4"));
	ck_assert(has_warning(ps, "targetRef(s)"));
	ck_assert(has_warning(ps, "dry-run: evaluated and reported"));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(dry_run_values)
{
	static const struct { const char *v; bool dry; } cases[] = {
		{ "true", true }, { "True", true }, { "1", true }, { "t", true },
		{ "false", false }, { "0", false }, { "yes", false }, { "", false },
	};
	unsigned int i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char doc[512];
		struct nm_policy_set *ps;
		struct nm_policy_info info;

		snprintf(doc, sizeof(doc),
			 "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
			 "metadata: {name: p, namespace: foo, annotations: {istio.io/dry-run: '%s'}}\n"
			 "spec: {action: DENY, rules: [{}]}\n", cases[i].v);
		ps = load_text(doc, NAME);
		ck_assert_int_eq(nm_policy_get(ps, 0, &info), 0);
		ck_assert_msg(info.dry_run == cases[i].dry, "value %s", cases[i].v);
		/* not a boolean: enforced, with a warning (istiod's ParseBool) */
		ck_assert(allowed(ps, (struct conn){ .ns = "foo" }) == cases[i].dry);
		if (!strcmp(cases[i].v, "yes"))
			ck_assert(has_warning(ps, "is not a boolean: the policy is enforced"));
		nm_policy_set_free(ps);
	}
}
END_TEST

START_TEST(deny_without_rules_has_no_effect)
{
	struct nm_policy_set *ps = load_text(
		"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		"metadata: {name: p, namespace: foo}\nspec: {action: DENY}\n", NAME);

	ck_assert(allowed(ps, (struct conn){ .ns = "foo" }));
	ck_assert(has_warning(ps, "DENY without rules never matches"));
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(trust_domains_ignored)
{
	struct nm_policy_set *ps = load_text(
		"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		"metadata: {name: p, namespace: foo}\n"
		"spec: {rules: [{from: [{source: {trustDomains: [a.org], namespaces: [x]}}]}]}\n",
		NAME);

	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .from = "b.org/ns/x/sa/y" }));
	ck_assert(has_warning(ps, "trustDomains: ignored"));
	nm_policy_set_free(ps);
}
END_TEST

/* --- files -------------------------------------------------------------------- */

START_TEST(many_objects_per_file)
{
	struct nm_policy_set *ps;

	ps = load_text("[{\"apiVersion\":\"security.istio.io/v1\",\"kind\":\"AuthorizationPolicy\","
		       "\"metadata\":{\"name\":\"b\",\"namespace\":\"n\"}},"
		       "{\"apiVersion\":\"security.istio.io/v1\",\"kind\":\"AuthorizationPolicy\","
		       "\"metadata\":{\"name\":\"a\",\"namespace\":\"n\"}}]", "x.json");
	ck_assert_uint_eq(nm_policy_count(ps), 2);
	nm_policy_set_free(ps);
	ps = load_text("{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":["
		       "{\"apiVersion\":\"security.istio.io/v1\",\"kind\":\"AuthorizationPolicy\","
		       "\"metadata\":{\"name\":\"a\"}}]}", "x.json");
	ck_assert_uint_eq(nm_policy_count(ps), 1);
	nm_policy_set_free(ps);
	ps = load_text("---\n# nothing\n---\napiVersion: security.istio.io/v1\n"
		       "kind: AuthorizationPolicy\nmetadata: &m {name: a}\n---\n...\n", NAME);
	ck_assert_uint_eq(nm_policy_count(ps), 1);
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(default_namespace_and_order)
{
	struct nm_policy_set *ps = load_text(
		"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: z}\n---\n"
		"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		"metadata: {name: a, namespace: default}\n", NAME);
	struct nm_policy_info info;

	ck_assert_int_eq(nm_policy_get(ps, 0, &info), 0);
	ck_assert_str_eq(info.name, "a");
	ck_assert_int_eq(nm_policy_get(ps, 1, &info), 0);
	ck_assert_str_eq(info.ns, "default");
	ck_assert_str_eq(info.name, "z");
	ck_assert_str_eq(info.file, NAME);
	ck_assert_int_eq(nm_policy_get(ps, 2, &info), -ENOENT);
	nm_policy_set_free(ps);
}
END_TEST

START_TEST(load_dir_all_fixtures)
{
	struct nm_policy_set *ps = NULL;

	/* the fixtures define tcp-policy three times: refused, naming both */
	ck_assert_int_eq(nm_policy_load_dir("tests/fixtures/policy/ok", NULL, &ps, err,
					    sizeof(err)), -EINVAL);
	ck_assert_ptr_null(ps);
	ck_assert_msg(strstr(err, "policy foo/tcp-policy: metadata.name: already defined in "),
		      "%s", err);
	ck_assert_int_eq(nm_policy_load_dir("policies", NULL, &ps, err, sizeof(err)), 0);
	ck_assert_uint_gt(nm_policy_count(ps), 3);
	nm_policy_set_free(ps);
	ck_assert_int_eq(nm_policy_load_dir("/nonexistent-dir", NULL, &ps, err, sizeof(err)),
			 -ENOENT);
}
END_TEST

START_TEST(load_dir_refuses_whole_set)
{
	char dir[] = "/tmp/nm-policy-XXXXXX", path[512];
	struct nm_policy_set *ps = NULL;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.yaml", dir);
	f = fopen(path, "w");
	fputs("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/b.json", dir);
	f = fopen(path, "w");
	fputs("{\"apiVersion\":\"security.istio.io/v1\",\"kind\":\"AuthorizationPolicy\","
	      "\"metadata\":{\"name\":\"b\",\"namespace\":\"n\"},\"spec\":{\"rules\":"
	      "[{\"to\":[{\"operation\":{\"ports\":[80]}}]}]}}", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/ignored.txt", dir);
	f = fopen(path, "w");
	fputs("garbage", f);
	fclose(f);
	ck_assert_int_eq(nm_policy_load_dir(dir, NULL, &ps, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(ps);
	snprintf(path, sizeof(path), "%s/b.json: policy n/b: spec.rules[0].to[0].operation.ports[0]: "
		 "expected a string, got an integer (quote it: \"80\")", dir);
	ck_assert_str_eq(err, path);
	snprintf(path, sizeof(path), "%s/b.json", dir);
	unlink(path);
	ck_assert_int_eq(nm_policy_load_dir(dir, NULL, &ps, err, sizeof(err)), 0);
	ck_assert_uint_eq(nm_policy_count(ps), 1);
	nm_policy_set_free(ps);
	snprintf(path, sizeof(path), "%s/a.yaml", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/ignored.txt", dir);
	unlink(path);
	rmdir(dir);
}
END_TEST

/* --- refusals -------------------------------------------------------------------- */

START_TEST(refusals)
{
	static const struct { const char *doc, *name, *want; } cases[] = {
		{ "kind: AuthorizationPolicy\nmetadata: {name: p}\n", NAME,
		  NAME ": policy default/p: apiVersion: missing required field" },
		{ "apiVersion: security.istio.io/v1\nmetadata: {name: p}\n", NAME,
		  NAME ": policy default/p: kind: missing required field" },
		{ "apiVersion: security.istio.io/v2\nkind: AuthorizationPolicy\nmetadata: {name: p}\n",
		  NAME, NAME ": policy default/p: apiVersion: \"security.istio.io/v2\": expected" },
		{ AP "metadata: {namespace: foo}\n", NAME,
		  NAME ": object 1: metadata.name: missing required field" },
		{ AP "metadata: {name: Bad_Name}\n", NAME,
		  NAME ": policy default/Bad_Name: metadata.name: \"Bad_Name\" is not a DNS-1123" },
		{ AP MD "spec: {actoin: DENY}\n", NAME,
		  NAME ": policy foo/p: spec.actoin: unknown field (did you mean \"action\"?)" },
		{ AP MD "spec: {action: deny}\n", NAME,
		  NAME ": policy foo/p: spec.action: \"deny\" is not one of ALLOW, DENY, AUDIT, CUSTOM" },
		{ AP MD "spec: {rules: {}}\n", NAME,
		  NAME ": policy foo/p: spec.rules: expected an array, got an object" },
		{ AP MD "spec: {rules: [{to: [{operation: {ports: [8080]}}]}]}\n", NAME,
		  NAME ": policy foo/p: spec.rules[0].to[0].operation.ports[0]: expected a string, got an integer" },
		{ AP MD "spec: {rules: [{to: [{operation: {ports: ['65536']}}]}]}\n", NAME,
		  NAME ": policy foo/p: spec.rules[0].to[0].operation.ports[0]: \"65536\" is not a port" },
		{ AP MD "spec: {rules: [{from: [{source: {ipBlocks: ['10.0.0.0/33']}}]}]}\n", NAME,
		  NAME ": policy foo/p: spec.rules[0].from[0].source.ipBlocks[0]: \"10.0.0.0/33\" is not an IP" },
		{ AP MD "spec: {rules: [{from: [{source: {principals: [a], serviceAccounts: [b]}}]}]}\n",
		  NAME, NAME ": policy foo/p: spec.rules[0].from[0].source: cannot set serviceAccounts" },
		{ AP MD "spec: {rules: [{from: [{source: {}}]}]}\n", NAME,
		  NAME ": policy foo/p: spec.rules[0].from[0].source: must not be empty" },
		{ AP MD "spec: {rules: [{from: []}]}\n", NAME,
		  NAME ": policy foo/p: spec.rules[0].from: must not be empty" },
		{ AP MD "spec: {rules: [{when: [{key: source.ip}]}]}\n", NAME,
		  NAME ": policy foo/p: spec.rules[0].when[0]: at least one of values or notValues" },
		{ AP MD "spec: {rules: [{when: [{values: [a]}]}]}\n", NAME,
		  NAME ": policy foo/p: spec.rules[0].when[0].key: missing required field" },
		{ AP MD "spec: {rules: [{when: [{key: source.colour, values: [a]}]}]}\n", NAME,
		  NAME ": policy foo/p: spec.rules[0].when[0].key: unknown attribute \"source.colour\"" },
		{ AP MD "spec: {selector: {matchLabels: {app: x}}, targetRefs: [{kind: Service, name: s}]}\n",
		  NAME, NAME ": policy foo/p: spec: only one of targetRefs or selector can be set" },
		{ AP MD "spec: {selector: {matchLabels: {app: 'x*'}}}\n", NAME,
		  NAME ": policy foo/p: spec.selector.matchLabels.app: wildcard not allowed" },
		{ AP MD "spec: {provider: {name: x}}\n", NAME,
		  NAME ": policy foo/p: spec.provider: provider must not be set with action ALLOW" },
		{ AP "metadata: {name: p, annotations: {istio.io/dry-run: true}}\n", NAME,
		  NAME ": policy default/p: metadata.annotations[\"istio.io/dry-run\"]: expected a string, got a boolean" },
		{ AP MD "spec: {rules: [{from: [{source: {serviceAccounts: ['a/b/c']}}]}]}\n", NAME,
		  NAME ": policy foo/p: spec.rules[0].from[0].source.serviceAccounts[0]: \"a/b/c\" is not" },
		{ AP MD "spec: {rules: [{to: [{operation: {ports: ['']}}]}]}\n", NAME,
		  NAME ": policy foo/p: spec.rules[0].to[0].operation.ports[0]: empty value" },
		{ AP MD "spec: {rules: [{from: [{source: {namespaces: [yes]}}]}]}\n", NAME,
		  NAME ": policy foo/p: spec.rules[0].from[0].source.namespaces[0]: expected a string, got a boolean" },
		{ AP "kind: PeerAuthentication\n" MD, NAME, NAME ": line 3, column 7: duplicate key \"kind\"" },
		{ "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n" MD, NAME,
		  NAME ": policy foo/p: kind: \"PeerAuthentication\": only AuthorizationPolicy" },
		{ AP MD "spec: [1\n", NAME, NAME ": line " },
		{ "a: &x [*x]\n", NAME, NAME ": line 1, column 8: unknown anchor" },
		{ "- 1\n- 2\n", NAME, NAME ": object 1: expected an object, got an integer" },
		{ AP MD "---\n" AP MD, NAME,
		  NAME ": policy foo/p: metadata.name: already defined earlier in this file" },
		{ "{\"apiVersion\": 1}", "x.json",
		  "x.json: object 1: apiVersion: expected a string, got an integer" },
		{ "{\"a\":1,\"a\":2}", "x.json", "x.json: line 1" },
		{ "{\"apiVersion\":\"v1\",\"kind\":\"List\"}", "x.json", "x.json: items: missing required field" },
	};
	unsigned int i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		refused(cases[i].doc, cases[i].name, cases[i].want);
}
END_TEST

START_TEST(yaml_typing)
{
	/* quoted and !!str scalars are strings, plain numbers are not */
	struct nm_policy_set *ps = load_text(
		AP MD "spec: {rules: [{to: [{operation: {ports: [\"80\", '81', !!str 82]}}]}]}\n", NAME);

	ck_assert(allowed(ps, (struct conn){ .ns = "foo", .port = 82 }));
	ck_assert(!allowed(ps, (struct conn){ .ns = "foo", .port = 83 }));
	nm_policy_set_free(ps);
	/* aliases share nodes; a billion laughs is refused */
	refused("a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
		"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
		"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
		"g: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n", NAME, NAME ": line 6, column 32: more than 1048576 nodes");
}
END_TEST

static Suite *policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("policy");

	tcase_add_test(tc, no_policy_allows);
	tcase_add_test(tc, allow_nothing_denies_all_of_its_namespace);
	tcase_add_test(tc, deny_all_and_allow_all);
	tcase_add_test(tc, deny_wins_over_allow);
	tcase_add_test(tc, selector_scope);
	tcase_add_test(tc, root_namespace_mesh_wide_and_selector);
	tcase_add_test(tc, empty_selector_selects_nothing);
	tcase_add_test(tc, or_between_rules_and_inside_one);
	tcase_add_test(tc, or_inside_lists);
	tcase_add_test(tc, string_matches);
	tcase_add_test(tc, unauthenticated_sources);
	tcase_add_test(tc, service_accounts);
	tcase_add_test(tc, ip_blocks);
	tcase_add_test(tc, ports_and_not_ports);
	tcase_add_test(tc, allow_rule_with_l7_never_matches);
	tcase_add_test(tc, deny_rule_with_l7_is_broader_or_void);
	tcase_add_test(tc, audit_custom_target_refs_dry_run);
	tcase_add_test(tc, dry_run_values);
	tcase_add_test(tc, deny_without_rules_has_no_effect);
	tcase_add_test(tc, trust_domains_ignored);
	tcase_add_test(tc, many_objects_per_file);
	tcase_add_test(tc, default_namespace_and_order);
	tcase_add_test(tc, load_dir_all_fixtures);
	tcase_add_test(tc, load_dir_refuses_whole_set);
	tcase_add_test(tc, refusals);
	tcase_add_test(tc, yaml_typing);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(policy_suite)
