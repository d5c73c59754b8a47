// SPDX-License-Identifier: Apache-2.0
/*
 * evaluate.c - one connection against the policy set, as ztunnel decides
 * it (src/state.rs assert_rbac, src/rbac.rs Authorization::matches):
 *
 *   1. the policies that apply: mesh-wide (root namespace, no selector),
 *      the destination's namespace (no selector), and selector policies of
 *      that namespace or of the root namespace whose matchLabels are all
 *      among the destination's labels;
 *   2. any DENY that matches: denied;
 *   3. no ALLOW applies: allowed;
 *   4. an ALLOW matches: allowed; else denied.
 *
 * Dry-run policies are left out of that, then evaluated again with them
 * in, for the "would have" half of the verdict. Policies are visited in
 * namespace/name order, so the one named as deciding is always the same.
 *
 * The source identity: Istio principals are SPIFFE IDs without
 * "spiffe://". An unauthenticated source has none; ztunnel then compares
 * against the empty string, so no positive principal, namespace or
 * serviceAccount value can match it ("*" means "present"), and every
 * negative one holds.
 */
#include <errno.h>
#include <string.h>

#include "policy/internal.h"

struct src_id {
	const char *principal; /* "" when unauthenticated */
	const char *ns;        /* into principal, ns_len bytes */
	size_t ns_len;
	const char *sa;
	size_t sa_len;
	bool authenticated;
};

/* "<td>/ns/<ns>/sa/<sa>", each part non-empty, nothing after. */
static void parse_principal(const char *p, struct src_id *id)
{
	const char *ns, *sa;

	memset(id, 0, sizeof(*id));
	id->principal = p ? p : "";
	id->ns = id->sa = "";
	if (!p)
		return;
	id->authenticated = true;
	ns = strstr(p, "/ns/");
	if (!ns || ns == p)
		return;
	ns += 4;
	sa = strstr(ns, "/sa/");
	if (!sa || sa == ns || !sa[4] || strchr(sa + 4, '/') ||
	    memchr(ns, '/', (size_t)(sa - ns)) || memchr(p, '/', (size_t)(ns - 4 - p)))
		return;
	id->ns = ns;
	id->ns_len = (size_t)(sa - ns);
	id->sa = sa + 4;
	id->sa_len = strlen(sa + 4);
}

static bool str_match(const struct nm_pol_str *m, const char *s, size_t n)
{
	size_t k = strlen(m->s);

	switch (m->kind) {
	case NM_PSTR_EXACT:
		return n == k && !memcmp(s, m->s, n);
	case NM_PSTR_PREFIX:
		return n >= k && !memcmp(s, m->s, k);
	case NM_PSTR_SUFFIX:
		return n >= k && !memcmp(s + n - k, m->s, k);
	default:
		return n > 0;
	}
}

static bool any_str(const struct nm_pol_str *v, unsigned int n, const char *s,
		    size_t len)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (str_match(&v[i], s, len))
			return true;
	return false;
}

static bool any_sa(const struct nm_pol_sa *v, unsigned int n,
		   const struct src_id *id)
{
	unsigned int i;

	if (!id->ns_len) /* no identity: ztunnel's ServiceAccountMatch is false */
		return false;
	for (i = 0; i < n; i++)
		if (strlen(v[i].ns) == id->ns_len && !memcmp(v[i].ns, id->ns, id->ns_len) &&
		    strlen(v[i].sa) == id->sa_len && !memcmp(v[i].sa, id->sa, id->sa_len))
			return true;
	return false;
}

static bool cidr_has(const struct nm_pol_cidr *c, const struct nm_addr *a)
{
	unsigned int off = c->v6 ? 0 : 96, i;

	if (c->v6 == nm_addr_is_v4(a))
		return false;
	for (i = 0; i < c->len; i++) {
		unsigned int pos = off + i;
		uint8_t bit = (uint8_t)(0x80u >> (pos % 8));

		if ((a->a[pos / 8] & bit) != (c->addr.a[pos / 8] & bit))
			return false;
	}
	return true;
}

static bool any_cidr(const struct nm_pol_cidr *v, unsigned int n,
		     const struct nm_addr *a)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (cidr_has(&v[i], a))
			return true;
	return false;
}

static bool any_port(const uint16_t *v, unsigned int n, uint16_t port)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (v[i] == port)
			return true;
	return false;
}

/* positive: empty or any; negative: empty or none (rbac.rs matches_internal) */
#define FIELD(pos, npos, neg, nneg, test)                              \
	(((npos) == 0 || test(pos, npos)) && ((nneg) == 0 || !test(neg, nneg)))

static bool holds(const struct nm_pol_match *m, const struct nm_policy_conn *c,
		  const struct src_id *id)
{
	size_t plen = strlen(id->principal);

#define T_DIP(v, n) any_cidr(v, n, &c->dst_ip)
#define T_SIP(v, n) any_cidr(v, n, &c->src_ip)
#define T_PORT(v, n) any_port(v, n, c->dst_port)
#define T_SA(v, n) any_sa(v, n, id)
	/* ztunnel's matches_principal wants "spiffe://": never for no identity */
#define T_PR(v, n) (id->authenticated && any_str(v, n, id->principal, plen))
#define T_NS(v, n) any_str(v, n, id->ns, id->ns_len)
	return FIELD(m->dst_ips, m->n_dst_ips, m->not_dst_ips, m->n_not_dst_ips, T_DIP) &&
	       FIELD(m->src_ips, m->n_src_ips, m->not_src_ips, m->n_not_src_ips, T_SIP) &&
	       FIELD(m->ports, m->n_ports, m->not_ports, m->n_not_ports, T_PORT) &&
	       FIELD(m->sas, m->n_sas, m->not_sas, m->n_not_sas, T_SA) &&
	       FIELD(m->principals, m->n_principals, m->not_principals,
		     m->n_not_principals, T_PR) &&
	       FIELD(m->namespaces, m->n_namespaces, m->not_namespaces,
		     m->n_not_namespaces, T_NS);
#undef T_DIP
#undef T_SIP
#undef T_PORT
#undef T_SA
#undef T_PR
#undef T_NS
}

static bool match_empty(const struct nm_pol_match *m)
{
	return !(m->n_namespaces || m->n_not_namespaces || m->n_sas ||
		 m->n_not_sas || m->n_principals || m->n_not_principals ||
		 m->n_src_ips || m->n_not_src_ips || m->n_dst_ips ||
		 m->n_not_dst_ips || m->n_ports || m->n_not_ports);
}

bool nm_pol_match_holds(const struct nm_pol_match *m,
			const struct nm_policy_conn *c)
{
	struct src_id id;

	parse_principal(c->src_principal, &id);
	/* an empty match is skipped by ztunnel: it never holds */
	return !match_empty(m) && holds(m, c, &id);
}

static bool rule_matches(const struct nm_pol_rule *r,
			 const struct nm_policy_conn *c, const struct src_id *id)
{
	unsigned int i, k;

	if (r->never)
		return false;
	for (i = 0; i < r->n_clauses; i++) {
		const struct nm_pol_clause *cl = &r->clauses[i];
		bool ok = cl->n_matches == 0;

		for (k = 0; k < cl->n_matches && !ok; k++)
			ok = !match_empty(&cl->matches[k]) &&
			     holds(&cl->matches[k], c, id);
		if (!ok)
			return false;
	}
	return true;
}

bool nm_pol_rule_matches(const struct nm_pol_rule *r,
			 const struct nm_policy_conn *c)
{
	struct src_id id;

	parse_principal(c->src_principal, &id);
	return rule_matches(r, c, &id);
}

/* The first rule of p that matches, or -1 (no rules: never). */
static int policy_match(const struct nm_pol *p, const struct nm_policy_conn *c,
			const struct src_id *id)
{
	unsigned int i;

	for (i = 0; i < p->n_rules; i++)
		if (rule_matches(&p->rules[i], c, id))
			return (int)i;
	return -1;
}

static bool labels_subset(const struct nm_pol *p, const struct nm_label *l,
			  unsigned int n)
{
	unsigned int i, k;

	if (!p->n_labels) /* istiod attaches no workload to an empty selector */
		return false;
	for (i = 0; i < p->n_labels; i++) {
		for (k = 0; k < n; k++)
			if (!strcmp(p->labels[i].key, l[k].key) &&
			    !strcmp(p->labels[i].value, l[k].value))
				break;
		if (k == n)
			return false;
	}
	return true;
}

static bool scope_has(const struct nm_policy_set *ps, const struct nm_pol *p,
		      const char *ns, const struct nm_label *l, unsigned int n)
{
	switch (p->scope) {
	case NM_PSCOPE_GLOBAL:
		return true;
	case NM_PSCOPE_NAMESPACE:
		return ns && !strcmp(p->ns, ns);
	default:
		return ns && (!strcmp(p->ns, ns) || !strcmp(p->ns, ps->root_ns)) &&
		       labels_subset(p, l, n);
	}
}

bool nm_policy_selects(const struct nm_policy_set *ps, unsigned int i,
		       const char *ns, const struct nm_label *labels,
		       unsigned int n_labels)
{
	if (!ps || i >= ps->n_pols)
		return false;
	return scope_has(ps, &ps->pols[i], ns, labels, n_labels);
}

int nm_policy_get(const struct nm_policy_set *ps, unsigned int i,
		  struct nm_policy_info *out)
{
	const struct nm_pol *p;

	if (!ps || i >= ps->n_pols)
		return -ENOENT;
	p = &ps->pols[i];
	memset(out, 0, sizeof(*out));
	out->ns = p->ns;
	out->name = p->name;
	out->file = p->file;
	out->action = p->action;
	out->dry_run = p->dry_run;
	out->mesh_wide = p->scope == NM_PSCOPE_GLOBAL;
	out->has_selector = p->scope == NM_PSCOPE_SELECTOR;
	out->match_labels = p->labels;
	out->n_match_labels = p->n_labels;
	out->enforced = p->enforced;
	out->n_rules = p->n_rules;
	return 0;
}

struct pass {
	bool allow;
	int policy, rule;
	const char *reason;
};

static void decide(const struct nm_policy_set *ps, const struct nm_policy_conn *c,
		   const struct src_id *id, bool with_dry_run, struct pass *out)
{
	bool any_allow = false;
	unsigned int i;
	int r;

	/* DENY first */
	for (i = 0; i < ps->n_pols; i++) {
		const struct nm_pol *p = &ps->pols[i];

		if (p->action != NM_POLICY_DENY || !p->enforced ||
		    (p->dry_run && !with_dry_run) ||
		    !scope_has(ps, p, c->dst_ns, c->dst_labels, c->n_dst_labels))
			continue;
		r = policy_match(p, c, id);
		if (r >= 0) {
			*out = (struct pass){ false, (int)i, r, "denied by DENY policy" };
			return;
		}
	}
	for (i = 0; i < ps->n_pols; i++) {
		const struct nm_pol *p = &ps->pols[i];

		if (p->action != NM_POLICY_ALLOW || !p->enforced ||
		    (p->dry_run && !with_dry_run) ||
		    !scope_has(ps, p, c->dst_ns, c->dst_labels, c->n_dst_labels))
			continue;
		any_allow = true;
		r = policy_match(p, c, id);
		if (r >= 0) {
			*out = (struct pass){ true, (int)i, r, "allowed by ALLOW policy" };
			return;
		}
	}
	if (!any_allow)
		*out = (struct pass){ true, -1, -1, "no ALLOW policy applies" };
	else
		*out = (struct pass){ false, -1, -1, "no ALLOW policy matched" };
}

void nm_policy_evaluate(const struct nm_policy_set *ps,
			const struct nm_policy_conn *c,
			struct nm_policy_verdict *v)
{
	struct pass real, dry;
	struct src_id id;
	unsigned int i;

	memset(v, 0, sizeof(*v));
	v->dry_run_policy = v->dry_run_rule = -1;
	if (!ps) {
		*v = (struct nm_policy_verdict){
			.allow = true, .policy = -1, .rule = -1,
			.reason = "no policies", .dry_run_allow = true,
			.dry_run_policy = -1, .dry_run_rule = -1,
		};
		return;
	}
	parse_principal(c->src_principal, &id);
	decide(ps, c, &id, false, &real);
	v->allow = real.allow;
	v->policy = real.policy;
	v->rule = real.rule;
	v->reason = real.reason;
	for (i = 0; i < ps->n_pols; i++) {
		const struct nm_pol *p = &ps->pols[i];

		if (p->dry_run && p->enforced &&
		    (p->action == NM_POLICY_ALLOW || p->action == NM_POLICY_DENY) &&
		    scope_has(ps, p, c->dst_ns, c->dst_labels, c->n_dst_labels)) {
			v->dry_run = true;
			break;
		}
	}
	if (!v->dry_run) {
		v->dry_run_allow = real.allow;
		v->dry_run_policy = real.policy;
		v->dry_run_rule = real.rule;
		v->dry_run_reason = real.reason;
		return;
	}
	decide(ps, c, &id, true, &dry);
	v->dry_run_allow = dry.allow;
	v->dry_run_policy = dry.policy;
	v->dry_run_rule = dry.rule;
	v->dry_run_reason = dry.reason;
}
