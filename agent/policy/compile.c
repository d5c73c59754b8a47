// SPDX-License-Identifier: Apache-2.0
/*
 * compile.c - the policy set as nm_policy records for one node
 * (compile.h, docs/policy-maps.md).
 *
 * The records are not a second implementation of the semantics: each one
 * is what nm_policy_evaluate() answers for a connection connect4/6 would
 * apply it to, so the kernel and the destination agent cannot disagree
 * (tests/unit/check_policy_compile.c checks it over generated sets).
 *
 * What connect4/6 knows exactly: the source workload (its cgroup), hence
 * its principal, since a meshed pod's connect always reaches the
 * destination over mTLS with the workload's own certificate; the
 * destination workload (endpoint or chosen backend), hence its namespace
 * and labels; the backend port. What it does not know exactly: which of
 * the source's and destination's addresses the connection uses (a
 * dual-stack pod may connect from either family). So a destination that
 * any selecting policy matches by address (ipBlocks, notIpBlocks, when
 * source.ip / destination.ip) gets no records, and the destination agent
 * decides alone. So does a destination under a dry-run policy: dry-run
 * never changes the verdict, but its point is the destination agent's
 * "would have" line for every connection, which a connection the kernel
 * refused never gets.
 *
 * Ports: the verdict depends on the port only through the ports the
 * selecting policies name (ports, notPorts, when destination.port), all
 * exact values. Each named port is evaluated, and one port none of them
 * names stands for all the others (the port-0 record). A named port gets
 * its own record only where it differs from port 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/compile.h"
#include "policy/internal.h"

/* Istio principals are SPIFFE IDs without the scheme. */
#define PRINCIPAL_MAX (3 * NM_NAME_MAX + 16)

struct out {
	struct nm_policy_rec *recs;
	size_t n, cap, max;
};

/* A port list, sorted and without duplicates once finished. */
struct ports {
	uint16_t *v;
	unsigned int n, cap;
};

/* What the policies selecting one destination workload look at. */
struct dst_view {
	bool defer;          /* some selecting policy matches addresses, or
			      * is dry-run: no records, the agent decides */
	struct ports named;  /* every port they name */
	uint16_t other;      /* a port none of them names */
};

static int ports_add(struct ports *p, const uint16_t *v, unsigned int n)
{
	if (n == 0)
		return 0;
	if (p->n + n > p->cap) {
		unsigned int ncap = p->cap ? p->cap : 16;
		uint16_t *nv;

		while (ncap < p->n + n)
			ncap *= 2;
		nv = realloc(p->v, ncap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		p->v = nv;
		p->cap = ncap;
	}
	memcpy(p->v + p->n, v, n * sizeof(*v));
	p->n += n;
	return 0;
}

static int cmp_u16(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static void ports_finish(struct ports *p)
{
	unsigned int k = 0;

	if (p->n < 2)
		return;
	qsort(p->v, p->n, sizeof(*p->v), cmp_u16);
	for (unsigned int i = 0; i < p->n; i++)
		if (k == 0 || p->v[k - 1] != p->v[i])
			p->v[k++] = p->v[i];
	p->n = k;
}

static bool match_by_address(const struct nm_pol_match *m)
{
	return m->n_src_ips || m->n_not_src_ips || m->n_dst_ips ||
	       m->n_not_dst_ips;
}

/*
 * Looks at every policy that selects destination d. Policies that never
 * decide (AUDIT, CUSTOM) are looked at too: counting them costs at most a
 * few records or a deferral, and keeps this file free of any reading of
 * which policies the evaluator enforces.
 */
static int view_of(const struct nm_policy_set *ps, const struct nm_st_workload *d,
		   struct dst_view *view)
{
	const struct nm_workload_cfg *cfg = d->cfg;
	unsigned int n = nm_policy_count(ps);
	int ret;

	view->defer = false;
	view->named.n = 0;
	for (unsigned int i = 0; i < n; i++) {
		const struct nm_pol *p;

		if (!nm_policy_selects(ps, i, cfg->ns, cfg->labels, cfg->n_labels))
			continue;
		p = nm_policy_at(ps, i);
		if (p->dry_run)
			view->defer = true;
		for (unsigned int r = 0; r < p->n_rules; r++) {
			const struct nm_pol_rule *rule = &p->rules[r];

			for (unsigned int c = 0; c < rule->n_clauses; c++) {
				const struct nm_pol_clause *cl = &rule->clauses[c];

				for (unsigned int k = 0; k < cl->n_matches; k++) {
					const struct nm_pol_match *m = &cl->matches[k];

					if (match_by_address(m))
						view->defer = true;
					ret = ports_add(&view->named, m->ports,
							m->n_ports);
					if (!ret)
						ret = ports_add(&view->named,
								m->not_ports,
								m->n_not_ports);
					if (ret)
						return ret;
				}
			}
		}
	}
	ports_finish(&view->named);
	/* The smallest port not named: the list is sorted. */
	view->other = 1;
	for (unsigned int i = 0; i < view->named.n; i++) {
		if (view->named.v[i] == view->other)
			view->other++;
		else if (view->named.v[i] > view->other)
			break;
	}
	return 0;
}

static int emit(struct out *o, uint32_t src, uint32_t dst, uint16_t port,
		const struct nm_policy_verdict *v)
{
	struct nm_policy_rec *r;

	if (o->n == o->max)
		return -E2BIG;
	if (o->n == o->cap) {
		size_t ncap = o->cap ? o->cap * 2 : 64;

		if (ncap > o->max)
			ncap = o->max;
		r = realloc(o->recs, ncap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		o->recs = r;
		o->cap = ncap;
	}
	r = &o->recs[o->n++];
	memset(r, 0, sizeof(*r));
	r->key.src_workload_id = src;
	r->key.dst_workload_id = dst;
	r->key.port = htons(port);
	r->val.verdict = v->allow ? NM_PV_ALLOW : NM_PV_DENY;
	r->val.policy_id = v->policy >= 0 ? (uint32_t)v->policy + 1 : 0;
	return 0;
}

static bool same_verdict(const struct nm_policy_verdict *a,
			 const struct nm_policy_verdict *b)
{
	return a->allow == b->allow && a->policy == b->policy;
}

/*
 * The verdict for src -> dst on port, or false when it differs between
 * the address pairs the connection may use (v4 to v4, v6 to v6 where both
 * have one). With address matches deferred this never happens; it is the
 * second guard, at the price of one more evaluation.
 */
static bool decide(const struct nm_policy_set *ps, const struct nm_st_workload *src,
		   const char *principal, const struct nm_st_workload *dst,
		   uint16_t port, struct nm_policy_verdict *v)
{
	const struct nm_workload_cfg *sc = src->cfg, *dc = dst->cfg;
	struct nm_policy_conn c = {
		.dst_ns = dc->ns,
		.dst_labels = dc->labels,
		.n_dst_labels = dc->n_labels,
		.dst_ip = dc->ip,
		.dst_port = port,
		.src_principal = principal,
		.src_ip = sc->ip,
	};
	struct nm_policy_verdict v6;

	nm_policy_evaluate(ps, &c, v);
	if (!sc->has_ip6 && !dc->has_ip6)
		return true;
	if (sc->has_ip6)
		c.src_ip = sc->ip6;
	if (dc->has_ip6)
		c.dst_ip = dc->ip6;
	nm_policy_evaluate(ps, &c, &v6);
	return same_verdict(v, &v6);
}

/* The records of one (source, destination) pair; none when undecidable. */
static int compile_pair(const struct nm_policy_set *ps,
			const struct nm_st_workload *src, const char *principal,
			const struct nm_st_workload *dst,
			const struct dst_view *view, struct nm_policy_verdict *pv,
			struct out *o)
{
	struct nm_policy_verdict v0;
	int ret;

	if (view->defer)
		return 0;
	if (!decide(ps, src, principal, dst, view->other, &v0))
		return 0;
	/* All or nothing: a port-0 record would also answer for a named
	 * port that could not be decided. */
	for (unsigned int i = 0; i < view->named.n; i++)
		if (!decide(ps, src, principal, dst, view->named.v[i], &pv[i]))
			return 0;
	ret = emit(o, src->id, dst->id, 0, &v0);
	for (unsigned int i = 0; i < view->named.n && !ret; i++)
		if (!same_verdict(&pv[i], &v0))
			ret = emit(o, src->id, dst->id, view->named.v[i], &pv[i]);
	return ret;
}

int nm_policy_compile(const struct nm_policy_set *ps, const struct nm_state *s,
		      size_t max, struct nm_policy_rec **out, size_t *n)
{
	struct out o = { .max = max };
	struct dst_view view = { 0 };
	struct nm_policy_verdict *pv = NULL;
	unsigned int pv_cap = 0;
	char principal[PRINCIPAL_MAX];
	int ret = 0;

	*out = NULL;
	*n = 0;
	if (!ps)
		return 0;
	for (unsigned int d = 0; d < s->n_workloads && !ret; d++) {
		const struct nm_st_workload *dst = &s->workloads[d];

		ret = view_of(ps, dst, &view);
		if (ret)
			break;
		if (view.named.n > pv_cap) {
			struct nm_policy_verdict *p;

			p = realloc(pv, view.named.n * sizeof(*p));
			if (!p) {
				ret = -ENOMEM;
				break;
			}
			pv = p;
			pv_cap = view.named.n;
		}
		for (unsigned int i = 0; i < s->n_workloads && !ret; i++) {
			const struct nm_st_workload *src = &s->workloads[i];

			/* The sources whose connect4/6 runs on this node. */
			if (!src->local || !src->cgroup_id)
				continue;
			snprintf(principal, sizeof(principal), "%s/ns/%s/sa/%s",
				 nm_state_trust_domain(s), src->cfg->ns,
				 src->cfg->sa);
			ret = compile_pair(ps, src, principal, dst, &view, pv, &o);
		}
	}
	free(view.named.v);
	free(pv);
	if (ret) {
		free(o.recs);
		return ret;
	}
	*out = o.recs;
	*n = o.n;
	return 0;
}
