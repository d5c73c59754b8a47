// SPDX-License-Identifier: Apache-2.0
/*
 * check_policy_compile.c - the policy set compiled into nm_policy records
 * (agent/policy/compile.c) against the evaluator the destination agent
 * runs (nm_policy_evaluate()).
 *
 * The differential test generates random policy sets as JSON text, loads
 * them through nm_policy_load_buf() (the real parser), builds a random
 * small cluster state, compiles, and then for every connection a meshed
 * source of the node could make (every destination workload, ports 80, 443,
 * 8080, one no policy names and a random one, every source x destination
 * address pair) looks the record up the way connect4 does (port, then port
 * 0). Wherever a record exists its verdict and deciding policy must be the
 * evaluator's. It counts how many connections the kernel decides, which for
 * sets without address matches must be most of them (destinations under a
 * dry-run policy, and those matched by address, are left to the agent).
 *
 * NM_POLICY_SEED=<n> replays another seed; a failure prints the seed, the
 * case number and the policy JSON.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datapath/datapath.h"
#include "nm_check.h"
#include "policy/compile.h"
#include "policy/policy.h"
#include "state/state.h"

#define ROOT_NS "istio-system"
#define TD "cluster.local"

/* --- a seeded PRNG (xorshift64*) ------------------------------------------- */

static uint64_t g_rng;

static uint32_t rnd(void)
{
	g_rng ^= g_rng >> 12;
	g_rng ^= g_rng << 25;
	g_rng ^= g_rng >> 27;
	return (uint32_t)((g_rng * 0x2545F4914F6CDD1Dull) >> 32);
}

/* 0..n-1 */
static unsigned int pick(unsigned int n)
{
	return rnd() % n;
}

/* true with probability pct % */
static bool chance(unsigned int pct)
{
	return pick(100) < pct;
}

/* --- a growing string ------------------------------------------------------ */

struct sb {
	char *s;
	size_t len, cap;
};

static void sb_add(struct sb *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sb_add(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
		va_end(ap);
		ck_assert_int_ge(n, 0);
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		b->cap = b->cap ? b->cap * 2 + (size_t)n : 4096;
		b->s = realloc(b->s, b->cap);
		ck_assert_ptr_nonnull(b->s);
	}
}

/* --- the universe ------------------------------------------------------------ */

static const char *const NSS[] = { "default", "prod", ROOT_NS };
static const char *const SAS[] = { "web", "api", "db", "batch", "sleep" };
static const char *const APPS[] = { "web", "api", "db" };
static const char *const TIERS[] = { "front", "back" };
static const uint16_t PORTS[] = { 80, 443, 8080 };
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

#define N_WL 6

/* A principal value: exact, prefix, suffix, presence, another domain. */
static void gen_principal(struct sb *b)
{
	const char *ns = NSS[pick(N_OF(NSS))], *sa = SAS[pick(N_OF(SAS))];

	switch (pick(7)) {
	case 0:
	case 1:
		sb_add(b, "\"" TD "/ns/%s/sa/%s\"", ns, sa);
		break;
	case 2:
		sb_add(b, "\"" TD "/ns/%s/*\"", ns);
		break;
	case 3:
		sb_add(b, "\"*/sa/%s\"", sa);
		break;
	case 4:
		sb_add(b, "\"*\"");
		break;
	case 5:
		sb_add(b, "\"other.td/ns/%s/sa/%s\"", ns, sa);
		break;
	default:
		sb_add(b, "\"" TD "/ns/%s/sa/%.2s*\"", ns, sa);
		break;
	}
}

static void gen_namespace(struct sb *b)
{
	const char *ns = NSS[pick(N_OF(NSS))];

	switch (pick(6)) {
	case 0:
		sb_add(b, "\"%.3s*\"", ns);
		break;
	case 1:
		sb_add(b, "\"*%s\"", ns + strlen(ns) - 3);
		break;
	case 2:
		sb_add(b, "\"*\"");
		break;
	default:
		sb_add(b, "\"%s\"", ns);
		break;
	}
}

static void gen_sa(struct sb *b)
{
	if (chance(50))
		sb_add(b, "\"%s/%s\"", NSS[pick(N_OF(NSS))], SAS[pick(N_OF(SAS))]);
	else
		sb_add(b, "\"%s\"", SAS[pick(N_OF(SAS))]);
}

/* Addresses of the generated cluster are 198.18.<node>.<i> and fd00:18::. */
static void gen_cidr(struct sb *b)
{
	static const char *const c[] = {
		"198.18.0.0/16", "198.18.1.0/24", "198.18.2.0/24", "198.18.1.3",
		"198.18.1.2/31", "0.0.0.0/0", "fd00:18::/32", "fd00:18::1:0/112",
		"10.0.0.0/8", "::/0",
	};

	sb_add(b, "\"%s\"", c[pick(N_OF(c))]);
}

static void gen_port(struct sb *b)
{
	if (chance(85))
		sb_add(b, "\"%u\"", PORTS[pick(N_OF(PORTS))]);
	else
		sb_add(b, "\"%u\"", 1 + pick(3)); /* the "other" port's range */
}

static void gen_list(struct sb *b, const char *key, void (*gen)(struct sb *))
{
	unsigned int n = 1 + pick(2);

	sb_add(b, "\"%s\": [", key);
	for (unsigned int i = 0; i < n; i++) {
		if (i)
			sb_add(b, ", ");
		gen(b);
	}
	sb_add(b, "]");
}

static void gen_source(struct sb *b, bool by_addr)
{
	/* serviceAccounts exclude principals and namespaces (the CRD). */
	bool sas = chance(20);
	unsigned int n = 0;

	sb_add(b, "{\"source\": {");
	while (n == 0) {
		if (sas) {
			if (chance(60)) {
				sb_add(b, "%s", n++ ? ", " : "");
				gen_list(b, "serviceAccounts", gen_sa);
			}
			if (chance(40)) {
				sb_add(b, "%s", n++ ? ", " : "");
				gen_list(b, "notServiceAccounts", gen_sa);
			}
		} else {
			if (chance(45)) {
				sb_add(b, "%s", n++ ? ", " : "");
				gen_list(b, "principals", gen_principal);
			}
			if (chance(25)) {
				sb_add(b, "%s", n++ ? ", " : "");
				gen_list(b, "notPrincipals", gen_principal);
			}
			if (chance(35)) {
				sb_add(b, "%s", n++ ? ", " : "");
				gen_list(b, "namespaces", gen_namespace);
			}
			if (chance(20)) {
				sb_add(b, "%s", n++ ? ", " : "");
				gen_list(b, "notNamespaces", gen_namespace);
			}
		}
		if (by_addr && chance(40)) {
			sb_add(b, "%s", n++ ? ", " : "");
			gen_list(b, "ipBlocks", gen_cidr);
		}
		if (by_addr && chance(25)) {
			sb_add(b, "%s", n++ ? ", " : "");
			gen_list(b, "notIpBlocks", gen_cidr);
		}
		if (chance(4)) {
			/* L7 to ztunnel (istiod drops it). */
			sb_add(b, "%s", n++ ? ", " : "");
			gen_list(b, "remoteIpBlocks", gen_cidr);
		}
	}
	sb_add(b, "}}");
}

static void gen_operation(struct sb *b)
{
	unsigned int n = 0;

	sb_add(b, "{\"operation\": {");
	while (n == 0) {
		if (chance(60)) {
			sb_add(b, "%s", n++ ? ", " : "");
			gen_list(b, "ports", gen_port);
		}
		if (chance(35)) {
			sb_add(b, "%s", n++ ? ", " : "");
			gen_list(b, "notPorts", gen_port);
		}
		if (chance(5)) {
			sb_add(b, "%s", n++ ? ", " : "");
			sb_add(b, "\"methods\": [\"GET\"]");
		}
	}
	sb_add(b, "}}");
}

static void gen_when(struct sb *b, bool by_addr)
{
	static const char *const keys[] = {
		"source.principal", "source.namespace", "destination.port",
		"source.ip", "destination.ip", "connection.sni",
	};
	unsigned int k;

	do
		k = pick(N_OF(keys));
	while (!by_addr && (k == 3 || k == 4));
	if (k == 5 && !chance(30))
		k = 0;
	sb_add(b, "{\"key\": \"%s\", ", keys[k]);
	switch (k) {
	case 0:
		gen_list(b, chance(70) ? "values" : "notValues", gen_principal);
		break;
	case 1:
		gen_list(b, chance(70) ? "values" : "notValues", gen_namespace);
		break;
	case 2:
		gen_list(b, chance(70) ? "values" : "notValues", gen_port);
		break;
	case 5:
		sb_add(b, "\"values\": [\"x.example\"]");
		break;
	default:
		gen_list(b, chance(70) ? "values" : "notValues", gen_cidr);
		break;
	}
	sb_add(b, "}");
}

static void gen_rule(struct sb *b, bool by_addr)
{
	unsigned int n = 0;

	sb_add(b, "{");
	if (chance(60)) {
		unsigned int k = 1 + pick(2);

		sb_add(b, "\"from\": [");
		for (unsigned int i = 0; i < k; i++) {
			sb_add(b, "%s", i ? ", " : "");
			gen_source(b, by_addr);
		}
		sb_add(b, "]");
		n++;
	}
	if (chance(50)) {
		unsigned int k = 1 + pick(2);

		sb_add(b, "%s\"to\": [", n++ ? ", " : "");
		for (unsigned int i = 0; i < k; i++) {
			sb_add(b, "%s", i ? ", " : "");
			gen_operation(b);
		}
		sb_add(b, "]");
	}
	if (chance(25)) {
		unsigned int k = 1 + pick(2);

		sb_add(b, "%s\"when\": [", n++ ? ", " : "");
		for (unsigned int i = 0; i < k; i++) {
			sb_add(b, "%s", i ? ", " : "");
			gen_when(b, by_addr);
		}
		sb_add(b, "]");
	}
	sb_add(b, "}");
}

static void gen_policy(struct sb *b, unsigned int idx, bool by_addr)
{
	static const char *const actions[] = { "ALLOW", "ALLOW", "ALLOW", "DENY",
					       "DENY", "DENY", "AUDIT", "CUSTOM" };
	const char *ns = NSS[pick(N_OF(NSS))];
	unsigned int n = 0, shape;

	sb_add(b, "{\"apiVersion\": \"security.istio.io/%s\", "
		  "\"kind\": \"AuthorizationPolicy\", "
		  "\"metadata\": {\"name\": \"p%u\", \"namespace\": \"%s\"",
	       chance(50) ? "v1" : "v1beta1", idx, ns);
	if (chance(8))
		sb_add(b, ", \"annotations\": {\"istio.io/dry-run\": \"%s\"}",
		       chance(70) ? "true" : "false");
	sb_add(b, "}, \"spec\": {");
	if (chance(8)) { /* spec: {} */
		sb_add(b, "}}");
		return;
	}
	if (chance(50)) {
		sb_add(b, "\"selector\": {\"matchLabels\": {\"app\": \"%s\"",
		       APPS[pick(N_OF(APPS))]);
		if (chance(25))
			sb_add(b, ", \"tier\": \"%s\"", TIERS[pick(N_OF(TIERS))]);
		sb_add(b, "}}");
		n++;
	}
	if (chance(85)) {
		const char *a = actions[pick(N_OF(actions))];

		sb_add(b, "%s\"action\": \"%s\"", n++ ? ", " : "", a);
		if (!strcmp(a, "CUSTOM"))
			sb_add(b, ", \"provider\": {\"name\": \"ext-authz\"}");
	}
	shape = pick(100);
	if (shape < 8) {
		/* no rules */
	} else if (shape < 13) {
		sb_add(b, "%s\"rules\": []", n++ ? ", " : "");
	} else if (shape < 23) {
		sb_add(b, "%s\"rules\": [{}]", n++ ? ", " : "");
	} else {
		unsigned int k = 1 + pick(3);

		sb_add(b, "%s\"rules\": [", n++ ? ", " : "");
		for (unsigned int i = 0; i < k; i++) {
			sb_add(b, "%s", i ? ", " : "");
			gen_rule(b, by_addr);
		}
		sb_add(b, "]");
	}
	sb_add(b, "}}");
}

/* A JSON array of 1..4 policies. */
static void gen_policies(struct sb *b, bool by_addr)
{
	unsigned int n = 1 + pick(4);

	b->len = 0;
	sb_add(b, "[");
	for (unsigned int i = 0; i < n; i++) {
		sb_add(b, "%s", i ? ",\n " : "");
		gen_policy(b, i, by_addr);
	}
	sb_add(b, "]\n");
}

/* --- a random cluster and its state ------------------------------------------------ */

static int cgroup_of(const char *cgroup, uint64_t *id, void *arg)
{
	(void)arg;
	/* "cg/<n>" -> 100 + n */
	*id = 100 + strtoull(cgroup + 3, NULL, 10);
	return 0;
}

static void set_addr(struct nm_addr *a, const char *s)
{
	ck_assert_int_eq(nm_addr_parse(s, a, NULL), 0);
}

/*
 * N_WL workloads on two nodes; the first two always on node-1 (this node)
 * with a cgroup, so there are meshed sources; some dual-stack.
 */
static void gen_cluster(struct nm_cluster *c)
{
	char ip[64];

	memset(c, 0, sizeof(*c));
	snprintf(c->path, sizeof(c->path), "gen-cluster");
	snprintf(c->trust_domain, sizeof(c->trust_domain), TD);
	c->n_nodes = 2;
	c->nodes = calloc(2, sizeof(*c->nodes));
	ck_assert_ptr_nonnull(c->nodes);
	snprintf(c->nodes[0].name, NM_NAME_MAX, "node-1");
	snprintf(c->nodes[1].name, NM_NAME_MAX, "node-2");
	set_addr(&c->nodes[0].addr, "198.18.0.1");
	set_addr(&c->nodes[1].addr, "198.18.0.2");
	c->n_workloads = N_WL;
	c->workloads = calloc(N_WL, sizeof(*c->workloads));
	ck_assert_ptr_nonnull(c->workloads);
	for (unsigned int i = 0; i < N_WL; i++) {
		struct nm_workload_cfg *w = &c->workloads[i];

		w->node = i < 2 ? 0 : (int)pick(2);
		snprintf(w->name, sizeof(w->name), "w%u", i);
		snprintf(w->ns, sizeof(w->ns), "%s", NSS[pick(N_OF(NSS))]);
		snprintf(w->sa, sizeof(w->sa), "%s", SAS[pick(N_OF(SAS))]);
		snprintf(w->labels[0].key, NM_NAME_MAX, "app");
		snprintf(w->labels[0].value, NM_NAME_MAX, "%s", APPS[pick(N_OF(APPS))]);
		w->n_labels = 1;
		if (chance(50)) {
			snprintf(w->labels[1].key, NM_NAME_MAX, "tier");
			snprintf(w->labels[1].value, NM_NAME_MAX, "%s",
				 TIERS[pick(N_OF(TIERS))]);
			w->n_labels = 2;
		}
		snprintf(ip, sizeof(ip), "198.18.%d.%u", w->node + 1, i + 2);
		set_addr(&w->ip, ip);
		if (chance(40)) {
			w->has_ip6 = true;
			snprintf(ip, sizeof(ip), "fd00:18::%d:%u", w->node + 1, i + 2);
			set_addr(&w->ip6, ip);
		}
		snprintf(w->cgroup, sizeof(w->cgroup), "cg/%u", i);
	}
}

static void free_cluster(struct nm_cluster *c)
{
	free(c->nodes);
	free(c->workloads);
}

static struct nm_state *state_of(const struct nm_cluster *c, struct nm_ids *ids)
{
	struct nm_state_opts o = { .self_node = "node-1", .generation = 1,
				   .cgroup_id = cgroup_of };
	struct nm_state *s = NULL;
	char err[256];

	ck_assert_msg(nm_state_build(c, ids, &o, &s, err, sizeof(err)) == 0,
		      "%s", err);
	return s;
}

/* --- the kernel's lookup ----------------------------------------------------------- */

static const struct nm_policy_rec *find_rec(const struct nm_policy_rec *r, size_t n,
					    uint32_t src, uint32_t dst,
					    uint16_t port)
{
	for (size_t i = 0; i < n; i++)
		if (r[i].key.src_workload_id == src &&
		    r[i].key.dst_workload_id == dst && r[i].key.port == port)
			return &r[i];
	return NULL;
}

/* What connect4/6 finds for this connection: the port, then port 0. */
static const struct nm_policy_rec *kernel_rec(const struct nm_policy_rec *r,
					      size_t n, uint32_t src,
					      uint32_t dst, uint16_t port)
{
	const struct nm_policy_rec *x = find_rec(r, n, src, dst, htons(port));

	return x ? x : find_rec(r, n, src, dst, 0);
}

/* --- the differential test ------------------------------------------------------- */

struct tally {
	unsigned long sets, cases, agent_denies;
	unsigned long kernel_denies; /* refused by a DENY record */
	/* With every destination on this node (ALLOW records everywhere):
	 * connections a record decides. */
	unsigned long local_cases, decided;
};

static uint64_t seed_of(void)
{
	const char *e = getenv("NM_POLICY_SEED");

	return e && *e ? strtoull(e, NULL, 0) : 0x6e6f64656d657368ull;
}

/*
 * Compiles s under ps and checks every connection the meshed sources of
 * this node could make against the record connect4/6 would find.
 * all_local: the pass where every destination counts as on this node.
 */
static void check_records(unsigned long set_no, const struct nm_state *s,
			  const struct nm_policy_set *ps, bool all_local,
			  struct tally *t, const struct sb *json)
{
	struct nm_policy_rec *recs = NULL;
	size_t n = 0;
	int ret;

	ret = nm_policy_compile(ps, s, 4096, &recs, &n);
	ck_assert_msg(ret == 0, "set %lu: compile: %s", set_no, strerror(-ret));
	for (unsigned int i = 0; i < s->n_workloads; i++) {
		const struct nm_st_workload *src = &s->workloads[i];
		char principal[3 * NM_NAME_MAX + 16];

		if (!src->local || !src->cgroup_id)
			continue;
		snprintf(principal, sizeof(principal), TD "/ns/%s/sa/%s",
			 src->cfg->ns, src->cfg->sa);
		for (unsigned int d = 0; d < s->n_workloads; d++) {
			const struct nm_st_workload *dst = &s->workloads[d];
			const uint16_t ports[] = { 80, 443, 8080, 9999,
						   (uint16_t)(1 + pick(65535)) };

			for (unsigned int p = 0; p < N_OF(ports); p++) {
				const struct nm_policy_rec *r =
					kernel_rec(recs, n, src->id, dst->id, ports[p]);

				for (unsigned int a = 0; a < 4; a++) {
					struct nm_policy_conn conn = {
						.dst_ns = dst->cfg->ns,
						.dst_labels = dst->cfg->labels,
						.n_dst_labels = dst->cfg->n_labels,
						.dst_ip = dst->cfg->ip,
						.dst_port = ports[p],
						.src_principal = principal,
						.src_ip = src->cfg->ip,
					};
					struct nm_policy_verdict v;

					if (a & 1) {
						if (!src->cfg->has_ip6)
							continue;
						conn.src_ip = src->cfg->ip6;
					}
					if (a & 2) {
						if (!dst->cfg->has_ip6)
							continue;
						conn.dst_ip = dst->cfg->ip6;
					}
					nm_policy_evaluate(ps, &conn, &v);
					if (all_local) {
						t->local_cases++;
						t->decided += r != NULL;
					} else {
						t->cases++;
						t->agent_denies += !v.allow;
						t->kernel_denies += r && r->val.verdict == NM_PV_DENY;
					}
					if (!r)
						continue;
					ck_assert_msg(r->val.verdict ==
							      (v.allow ? NM_PV_ALLOW : NM_PV_DENY) &&
						      r->val.policy_id ==
							      (uint32_t)(v.policy + 1),
						      "seed 0x%llx set %lu%s: %s -> %s/%s port %u (addresses %u): "
						      "record verdict %u policy %u, agent %s policy %d (%s)\n%s",
						      (unsigned long long)seed_of(), set_no,
						      all_local ? " (all local)" : "",
						      principal, dst->cfg->ns, dst->cfg->name,
						      ports[p], a, r->val.verdict,
						      r->val.policy_id,
						      v.allow ? "allow" : "deny", v.policy,
						      v.reason, json->s);
				}
			}
		}
	}
	free(recs);
}

/*
 * One generated (policy set, cluster): checked as it is, then again with
 * every workload counted as on this node, where every destination gets
 * ALLOW records too and the share the kernel decides is measured.
 */
static void check_one(unsigned long set_no, bool by_addr, struct tally *t,
		      struct sb *json)
{
	struct nm_policy_set *ps = NULL;
	struct nm_cluster c;
	struct nm_state *s;
	struct nm_ids *ids;
	char err[512];
	int ret;

	gen_policies(json, by_addr);
	ret = nm_policy_load_buf(json->s, json->len, "gen.json", ROOT_NS, &ps,
				 err, sizeof(err));
	ck_assert_msg(ret == 0, "set %lu: generated policies refused: %s\n%s",
		      set_no, err, json->s);
	gen_cluster(&c);
	ck_assert_int_eq(nm_ids_create(&ids), 0);
	s = state_of(&c, ids);
	s->policies = ps;
	t->sets++;
	check_records(set_no, s, ps, false, t, json);
	/* No policy set at all (no policyDir) is compiled too, as allowing
	 * everything: its records must agree with the evaluator's NULL set.
	 * Tallied apart, so the shares above stay those of real sets. */
	if (set_no % 50 == 0) {
		struct tally none = { 0 };
		struct sb nojson = { .s = (char *)"(no policy set)" };
		uint64_t rng = g_rng; /* keep the generated sequence */

		check_records(set_no, s, NULL, false, &none, &nojson);
		g_rng = rng;
	}
	/* Remote workloads have no cgroup here, so they stay no sources. */
	for (unsigned int i = 0; i < s->n_workloads; i++)
		s->workloads[i].local = true;
	check_records(set_no, s, ps, true, t, json);
	if (set_no % 50 == 0) {
		struct tally none = { 0 };
		struct sb nojson = { .s = (char *)"(no policy set)" };

		uint64_t rng = g_rng;

		check_records(set_no, s, NULL, true, &none, &nojson);
		g_rng = rng;
		/* Every local pair is decided, and allowed. */
		ck_assert_uint_eq(none.decided, none.local_cases);
	}
	nm_state_free(s);
	nm_ids_free(ids);
	free_cluster(&c);
	nm_policy_set_free(ps);
}

START_TEST(test_differential)
{
	struct tally plain = { 0 }, addr = { 0 };
	struct sb json = { 0 };

	g_rng = seed_of();
	for (unsigned long i = 0; i < 3000; i++) {
		/* One set in four may match by address. */
		bool by_addr = (i % 4) == 3;

		check_one(i, by_addr, by_addr ? &addr : &plain, &json);
	}
	for (int k = 0; k < 2; k++) {
		const struct tally *t = k ? &addr : &plain;

		printf("check_policy_compile: seed 0x%llx, %s: %lu sets, %lu (policy set, connection) cases, "
		       "%lu denied by the agent, %lu of them refused by a kernel record (%.1f%%); "
		       "all destinations local: %lu cases, %lu decided by a record (%.1f%%)\n",
		       (unsigned long long)seed_of(),
		       k ? "sets that may match by address" : "sets without address matches",
		       t->sets, t->cases, t->agent_denies, t->kernel_denies,
		       100.0 * t->kernel_denies / (t->agent_denies ? t->agent_denies : 1),
		       t->local_cases, t->decided,
		       100.0 * t->decided / (t->local_cases ? t->local_cases : 1));
	}
	fflush(stdout);
	ck_assert_uint_ge(plain.cases + addr.cases, 10000);
	/* The kernel must decide most plain connections and refuse most of
	 * the denied ones, and the sets must exercise both verdicts, or the
	 * test proves little. */
	ck_assert_uint_gt(plain.decided * 2, plain.local_cases);
	ck_assert_uint_gt(plain.kernel_denies * 2, plain.agent_denies);
	ck_assert_uint_gt(plain.agent_denies * 10, plain.cases);
	ck_assert_uint_gt(plain.cases - plain.agent_denies, plain.cases / 10);
	ck_assert_uint_gt(addr.decided, 0);
	free(json.s);
}
END_TEST

/* --- compile's own rules, on a fixed cluster ------------------------------------------- */

/*
 * node-1: w0 default/web app=web, w1 prod/api app=api (both meshed here)
 * node-2: w2 default/db app=db, w3 prod/db app=db (dual-stack)
 */
static void fixed_cluster(struct nm_cluster *c)
{
	static const struct { const char *ns, *sa, *app, *ip; int node; } w[] = {
		{ "default", "web", "web", "198.18.1.2", 0 },
		{ "prod", "api", "api", "198.18.1.3", 0 },
		{ "default", "db", "db", "198.18.2.2", 1 },
		{ "prod", "db", "db", "198.18.2.3", 1 },
	};

	memset(c, 0, sizeof(*c));
	snprintf(c->path, sizeof(c->path), "fixed-cluster");
	snprintf(c->trust_domain, sizeof(c->trust_domain), TD);
	c->n_nodes = 2;
	c->nodes = calloc(2, sizeof(*c->nodes));
	ck_assert_ptr_nonnull(c->nodes);
	snprintf(c->nodes[0].name, NM_NAME_MAX, "node-1");
	snprintf(c->nodes[1].name, NM_NAME_MAX, "node-2");
	c->n_workloads = N_OF(w);
	c->workloads = calloc(N_OF(w), sizeof(*c->workloads));
	ck_assert_ptr_nonnull(c->workloads);
	for (unsigned int i = 0; i < N_OF(w); i++) {
		struct nm_workload_cfg *x = &c->workloads[i];

		snprintf(x->name, sizeof(x->name), "w%u", i);
		snprintf(x->ns, sizeof(x->ns), "%s", w[i].ns);
		snprintf(x->sa, sizeof(x->sa), "%s", w[i].sa);
		snprintf(x->labels[0].key, NM_NAME_MAX, "app");
		snprintf(x->labels[0].value, NM_NAME_MAX, "%s", w[i].app);
		x->n_labels = 1;
		set_addr(&x->ip, w[i].ip);
		x->node = w[i].node;
		snprintf(x->cgroup, sizeof(x->cgroup), "cg/%u", i);
	}
	c->workloads[3].has_ip6 = true;
	set_addr(&c->workloads[3].ip6, "fd00:18::2:3");
}

static struct nm_policy_set *load(const char *json)
{
	struct nm_policy_set *ps = NULL;
	char err[512];

	ck_assert_msg(nm_policy_load_buf(json, strlen(json), "fixed.json", ROOT_NS,
					 &ps, err, sizeof(err)) == 0,
		      "%s", err);
	return ps;
}

struct fixed {
	struct nm_cluster c;
	struct nm_ids *ids;
	struct nm_state *s;
	struct nm_policy_set *ps;
	struct nm_policy_rec *recs;
	size_t n;
};

static void fixed_compile(struct fixed *f, const char *json)
{
	memset(f, 0, sizeof(*f));
	fixed_cluster(&f->c);
	ck_assert_int_eq(nm_ids_create(&f->ids), 0);
	f->s = state_of(&f->c, f->ids);
	f->ps = json ? load(json) : NULL;
	f->s->policies = f->ps;
	ck_assert_int_eq(nm_policy_compile(f->ps, f->s, 4096, &f->recs, &f->n), 0);
}

static void fixed_free(struct fixed *f)
{
	free(f->recs);
	nm_state_free(f->s);
	nm_ids_free(f->ids);
	nm_policy_set_free(f->ps);
	free_cluster(&f->c);
}

static uint32_t wl_id(const struct fixed *f, unsigned int i)
{
	return f->s->workloads[i].id;
}

/* The record for workload index src -> dst on port (host order, 0 = any). */
static const struct nm_policy_rec *rec_of(const struct fixed *f, unsigned int src,
					  unsigned int dst, uint16_t port)
{
	return find_rec(f->recs, f->n, wl_id(f, src), wl_id(f, dst), htons(port));
}

/* No policy set at all allows everything, as the evaluator answers for a
 * NULL set: the records of the empty set (ALLOW port 0 to each local
 * destination), which the same-node kernel path needs. */
START_TEST(test_no_policies_allow_local)
{
	struct fixed f;

	fixed_compile(&f, NULL);
	ck_assert_uint_eq(f.n, 2 * 2);
	for (unsigned int s = 0; s < 2; s++) {
		ck_assert_ptr_null(rec_of(&f, s, 2, 0));
		ck_assert_ptr_null(rec_of(&f, s, 3, 0));
		for (unsigned int d = 0; d < 2; d++) {
			const struct nm_policy_rec *r = rec_of(&f, s, d, 0);

			ck_assert_ptr_nonnull(r);
			ck_assert_uint_eq(r->val.verdict, NM_PV_ALLOW);
			ck_assert_uint_eq(r->val.policy_id, 0);
		}
	}
	fixed_free(&f);
}
END_TEST

/* Sources are this node's meshed workloads only; an empty set allows
 * everything: one ALLOW port-0 record to each destination on this node,
 * none to the others (ALLOW there means what no record means). */
START_TEST(test_sources_and_destinations)
{
	struct fixed f;

	fixed_compile(&f, "[]");
	ck_assert_uint_eq(f.n, 2 * 2);
	for (unsigned int s = 0; s < 2; s++) {
		ck_assert_ptr_null(rec_of(&f, s, 2, 0));
		ck_assert_ptr_null(rec_of(&f, s, 3, 0));
		for (unsigned int d = 0; d < 2; d++) {
			const struct nm_policy_rec *r = rec_of(&f, s, d, 0);

			ck_assert_ptr_nonnull(r);
			ck_assert_uint_eq(r->val.verdict, NM_PV_ALLOW);
			ck_assert_uint_eq(r->val.policy_id, 0);
			ck_assert_uint_eq(r->key.pad0, 0);
			ck_assert_uint_eq(r->key.pad1, 0);
		}
	}
	ck_assert_ptr_null(rec_of(&f, 2, 0, 0)); /* remote: no source here */
	fixed_free(&f);
}
END_TEST

/* A DENY on one port: that port's record; port 0 allows, which to
 * another node needs no record. */
START_TEST(test_port_record)
{
	struct fixed f;
	const struct nm_policy_rec *r;

	fixed_compile(&f, "{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"AuthorizationPolicy\","
			  " \"metadata\": {\"name\": \"no-8080\", \"namespace\": \"default\"},"
			  " \"spec\": {\"action\": \"DENY\", \"selector\": {\"matchLabels\": {\"app\": \"db\"}},"
			  " \"rules\": [{\"to\": [{\"operation\": {\"ports\": [\"8080\"]}}]}]}}");
	r = rec_of(&f, 0, 2, 8080);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->val.verdict, NM_PV_DENY);
	ck_assert_uint_eq(r->val.policy_id, 1);
	ck_assert_ptr_null(rec_of(&f, 0, 2, 0));
	/* prod/db is not selected (the policy is in default): nothing. */
	ck_assert_ptr_null(rec_of(&f, 0, 3, 8080));
	ck_assert_ptr_null(rec_of(&f, 0, 3, 0));
	ck_assert_uint_eq(f.n, 2 * 2 + 2);
	fixed_free(&f);
}
END_TEST

/* To another node, a port ALLOW is written where it shadows a port-0
 * DENY, and not where both allow. */
START_TEST(test_remote_allow_shadows_deny)
{
	struct fixed f;
	const struct nm_policy_rec *r;

	fixed_compile(&f, "[{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"AuthorizationPolicy\","
			  " \"metadata\": {\"name\": \"db-443\", \"namespace\": \"default\"},"
			  " \"spec\": {\"selector\": {\"matchLabels\": {\"app\": \"db\"}},"
			  " \"rules\": [{\"to\": [{\"operation\": {\"ports\": [\"443\"]}}]}]}},"
			  " {\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"AuthorizationPolicy\","
			  " \"metadata\": {\"name\": \"db-80\", \"namespace\": \"default\"},"
			  " \"spec\": {\"selector\": {\"matchLabels\": {\"app\": \"db\"}},"
			  " \"rules\": [{\"to\": [{\"operation\": {\"ports\": [\"80\"]}}]}]}}]");
	r = rec_of(&f, 0, 2, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->val.verdict, NM_PV_DENY);
	for (uint16_t p = 80; p; p = p == 80 ? 443 : 0) {
		r = rec_of(&f, 0, 2, p);
		ck_assert_ptr_nonnull(r);
		ck_assert_uint_eq(r->val.verdict, NM_PV_ALLOW);
	}
	/* policy_id follows the sorted set: db-443 is 1, db-80 is 2. */
	ck_assert_uint_ne(rec_of(&f, 0, 2, 80)->val.policy_id,
			  rec_of(&f, 0, 2, 443)->val.policy_id);
	fixed_free(&f);
}
END_TEST

/* ALLOW on port 1 only: the "other" port stands in from 2, so port 0 is the
 * not-allowed verdict and port 1 its own record. */
START_TEST(test_other_port_skips_named)
{
	struct fixed f;
	const struct nm_policy_rec *r;

	fixed_compile(&f, "{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"AuthorizationPolicy\","
			  " \"metadata\": {\"name\": \"one\", \"namespace\": \"" ROOT_NS "\"},"
			  " \"spec\": {\"rules\": [{\"to\": [{\"operation\": {\"ports\": [\"1\", \"2\"]}}]}]}}");
	r = rec_of(&f, 1, 0, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->val.verdict, NM_PV_DENY);
	ck_assert_uint_eq(r->val.policy_id, 0); /* no ALLOW matched */
	for (uint16_t p = 1; p <= 2; p++) {
		r = rec_of(&f, 1, 0, p);
		ck_assert_ptr_nonnull(r);
		ck_assert_uint_eq(r->val.verdict, NM_PV_ALLOW);
		ck_assert_uint_eq(r->val.policy_id, 1);
	}
	ck_assert_ptr_null(rec_of(&f, 1, 0, 3));
	fixed_free(&f);
}
END_TEST

/* A policy that matches addresses leaves its destinations to the agent,
 * all ports; destinations it does not select keep their records. */
START_TEST(test_address_match_defers)
{
	static const char *const shapes[] = {
		"\"rules\": [{\"from\": [{\"source\": {\"ipBlocks\": [\"198.18.1.0/24\"]}}]}]",
		"\"rules\": [{\"from\": [{\"source\": {\"notIpBlocks\": [\"fd00::/8\"]}}]}]",
		"\"rules\": [{\"when\": [{\"key\": \"source.ip\", \"values\": [\"198.18.1.2\"]}]}]",
		"\"rules\": [{\"when\": [{\"key\": \"destination.ip\", \"notValues\": [\"fd00:18::2:3\"]}]}]",
	};
	char json[1024];

	for (unsigned int i = 0; i < N_OF(shapes); i++) {
		struct fixed f;

		snprintf(json, sizeof(json),
			 "{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"AuthorizationPolicy\","
			 " \"metadata\": {\"name\": \"by-ip\", \"namespace\": \"prod\"},"
			 " \"spec\": {\"action\": \"DENY\", \"selector\": {\"matchLabels\": {\"app\": \"db\"}}, %s}}",
			 shapes[i]);
		fixed_compile(&f, json);
		/* Each shape denies some source's connects to w3 (prod/db, on
		 * the other node): deferred, no DENY records. */
		for (unsigned int s = 0; s < 2; s++) {
			for (uint16_t p = 0; p <= 1; p++)
				ck_assert_msg(!rec_of(&f, s, 3, p), "shape %u", i);
			ck_assert_ptr_nonnull(rec_of(&f, s, 0, 0)); /* not selected */
		}
		ck_assert_uint_eq(f.n, 2 * 2);
		fixed_free(&f);
	}
}
END_TEST

/* A dry-run policy never changes the verdict, but the destination agent
 * must see every connection to report what it would have done. */
START_TEST(test_dry_run_defers)
{
	struct fixed f;

	fixed_compile(&f, "{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"AuthorizationPolicy\","
			  " \"metadata\": {\"name\": \"try\", \"namespace\": \"default\","
			  " \"annotations\": {\"istio.io/dry-run\": \"true\"}},"
			  " \"spec\": {\"action\": \"DENY\", \"rules\": [{}]}}");
	for (unsigned int s = 0; s < 2; s++) {
		ck_assert_ptr_null(rec_of(&f, s, 0, 0)); /* default/web */
		ck_assert_ptr_null(rec_of(&f, s, 2, 0)); /* default/db */
		ck_assert_ptr_nonnull(rec_of(&f, s, 1, 0)); /* prod: not selected */
		ck_assert_uint_eq(rec_of(&f, s, 1, 0)->val.verdict, NM_PV_ALLOW);
	}
	fixed_free(&f);
}
END_TEST

START_TEST(test_too_many_records)
{
	struct fixed f;
	struct nm_policy_rec *recs = (struct nm_policy_rec *)&f;
	size_t n = 99;

	fixed_compile(&f, "[]");
	ck_assert_int_eq(nm_policy_compile(f.ps, f.s, f.n - 1, &recs, &n), -E2BIG);
	ck_assert_ptr_null(recs);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(nm_policy_compile(f.ps, f.s, f.n, &recs, &n), 0);
	ck_assert_uint_eq(n, f.n);
	free(recs);
	fixed_free(&f);
}
END_TEST

/* nm_model_build() carries the records of s->policies. */
START_TEST(test_model_carries_records)
{
	char err[256];
	struct nm_model m;
	struct fixed f;

	fixed_compile(&f, "{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"AuthorizationPolicy\","
			  " \"metadata\": {\"name\": \"deny-prod\", \"namespace\": \"" ROOT_NS "\"},"
			  " \"spec\": {\"action\": \"DENY\", \"rules\": [{\"from\": [{\"source\": {\"namespaces\": [\"prod\"]}}]}]}}");
	ck_assert_int_eq(nm_model_build(f.s, &m, err, sizeof(err)), 0);
	ck_assert_uint_eq(m.n_policies, f.n);
	ck_assert_mem_eq(m.policies, f.recs, f.n * sizeof(*f.recs));
	/* w1 is prod/api: denied everywhere; w0 allowed. */
	ck_assert_uint_eq(rec_of(&f, 1, 2, 0)->val.verdict, NM_PV_DENY);
	ck_assert_uint_eq(rec_of(&f, 1, 0, 0)->val.verdict, NM_PV_DENY);
	ck_assert_uint_eq(rec_of(&f, 0, 0, 0)->val.verdict, NM_PV_ALLOW);
	nm_model_free(&m);
	/* No set: allowed everywhere, ALLOW records to local destinations
	 * (2 local sources x 2 local destinations), no DENY left. */
	f.s->policies = NULL;
	ck_assert_int_eq(nm_model_build(f.s, &m, err, sizeof(err)), 0);
	ck_assert_uint_eq(m.n_policies, 4);
	for (unsigned int i = 0; i < m.n_policies; i++)
		ck_assert_uint_eq(m.policies[i].val.verdict, NM_PV_ALLOW);
	nm_model_free(&m);
	fixed_free(&f);
}
END_TEST

/* More records than nm_policy holds: none at all, and the model still
 * builds (the destination agents decide). */
START_TEST(test_model_too_many_records)
{
	enum { N = 300 }; /* 300 x 300 pairs > NM_MAX_POLICY_RECS */
	struct nm_policy_set *ps = load("[]");
	char err[256], ip[32];
	struct nm_cluster c;
	struct nm_state *s;
	struct nm_ids *ids;
	struct nm_model m;

	fixed_cluster(&c);
	free(c.workloads);
	c.n_workloads = N;
	c.workloads = calloc(N, sizeof(*c.workloads));
	ck_assert_ptr_nonnull(c.workloads);
	for (unsigned int i = 0; i < N; i++) {
		struct nm_workload_cfg *w = &c.workloads[i];

		snprintf(w->name, sizeof(w->name), "w%u", i);
		snprintf(w->ns, sizeof(w->ns), "default");
		snprintf(w->sa, sizeof(w->sa), "web");
		snprintf(ip, sizeof(ip), "198.18.%u.%u", 1 + i / 200, 2 + i % 200);
		set_addr(&w->ip, ip);
		snprintf(w->cgroup, sizeof(w->cgroup), "cg/%u", i);
	}
	ck_assert_int_eq(nm_ids_create(&ids), 0);
	s = state_of(&c, ids);
	s->policies = ps;
	ck_assert_int_eq(nm_model_build(s, &m, err, sizeof(err)), 0);
	ck_assert_uint_eq(m.n_workloads, N);
	ck_assert_uint_eq(m.n_policies, 0);
	nm_model_free(&m);
	nm_state_free(s);
	nm_ids_free(ids);
	free_cluster(&c);
	nm_policy_set_free(ps);
}
END_TEST

static Suite *policy_compile_suite(void)
{
	Suite *s = suite_create("policy_compile");
	TCase *tc = tcase_create("compile");
	TCase *td = tcase_create("differential");

	tcase_add_test(tc, test_no_policies_allow_local);
	tcase_add_test(tc, test_sources_and_destinations);
	tcase_add_test(tc, test_port_record);
	tcase_add_test(tc, test_remote_allow_shadows_deny);
	tcase_add_test(tc, test_other_port_skips_named);
	tcase_add_test(tc, test_address_match_defers);
	tcase_add_test(tc, test_dry_run_defers);
	tcase_add_test(tc, test_too_many_records);
	tcase_add_test(tc, test_model_carries_records);
	tcase_add_test(tc, test_model_too_many_records);
	suite_add_tcase(s, tc);
	/* ASan builds run it too: room for their slower pace. */
	tcase_set_timeout(td, 300);
	tcase_add_test(td, test_differential);
	suite_add_tcase(s, td);
	return s;
}

NM_CHECK_MAIN(policy_compile_suite)
