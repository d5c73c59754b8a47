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
 *
 * ALLOW records are written for destinations on this node only (the
 * same-node kernel path uses them, docs/kernel-path.md); elsewhere only
 * what refuses, see emit_pair(). No policy set (NULL) is compiled as the
 * empty one: everything is allowed.
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
 * second guard, at the price of one more evaluation (with the addresses of
 * the first source of an identity, which speaks for all of them).
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

/*
 * The verdicts of one source identity to dst: v[0] for every port not
 * named, v[1 + i] for named port i. False when some port is undecidable:
 * then no records at all, since a port-0 record would also answer for it.
 */
static bool decide_all(const struct nm_policy_set *ps,
		       const struct nm_st_workload *src, const char *principal,
		       const struct nm_st_workload *dst,
		       const struct dst_view *view, struct nm_policy_verdict *v)
{
	if (view->defer)
		return false;
	if (!decide(ps, src, principal, dst, view->other, &v[0]))
		return false;
	for (unsigned int i = 0; i < view->named.n; i++)
		if (!decide(ps, src, principal, dst, view->named.v[i], &v[1 + i]))
			return false;
	return true;
}

/*
 * The records of one (source, destination) pair from decide_all()'s v.
 * ALLOW records are kept for destinations on this node, for the same-node
 * kernel path; to other nodes an ALLOW record means what no record means
 * (the mesh path, the destination agent decides), so there only the DENY
 * records are written, plus the port ALLOWs that must shadow a port-0
 * DENY. That keeps the map within reach of big clusters: local sources x
 * local destinations, plus the denied pairs.
 */
static int emit_pair(struct out *o, uint32_t src_id, const struct nm_st_workload *dst,
		     const struct dst_view *view, const struct nm_policy_verdict *v)
{
	const struct nm_policy_verdict *v0 = &v[0];
	bool keep_allow = dst->local;
	int ret = 0;

	if (keep_allow || !v0->allow)
		ret = emit(o, src_id, dst->id, 0, v0);
	for (unsigned int i = 0; i < view->named.n && !ret; i++) {
		const struct nm_policy_verdict *p = &v[1 + i];

		if (same_verdict(p, v0) || (!keep_allow && p->allow && v0->allow))
			continue;
		ret = emit(o, src_id, dst->id, view->named.v[i], p);
	}
	return ret;
}

/*
 * The sources whose connect4/6 runs on this node: local workloads with a
 * cgroup. Those of one identity share a principal, hence their verdicts
 * (addresses are out of play, see decide()): leader[i] is the first
 * source of i's identity, the one evaluated.
 */
struct sources {
	const struct nm_st_workload **w;
	unsigned int *leader;
	char (*principal)[PRINCIPAL_MAX];
	unsigned int n;
};

static int sources_of(const struct nm_state *s, struct sources *src)
{
	src->n = 0;
	src->w = calloc(s->n_workloads ? s->n_workloads : 1, sizeof(*src->w));
	src->leader = calloc(s->n_workloads ? s->n_workloads : 1,
			     sizeof(*src->leader));
	src->principal = calloc(s->n_workloads ? s->n_workloads : 1,
				sizeof(*src->principal));
	if (!src->w || !src->leader || !src->principal)
		return -ENOMEM;
	for (unsigned int i = 0; i < s->n_workloads; i++) {
		const struct nm_st_workload *w = &s->workloads[i];
		unsigned int k = src->n, l;

		if (!w->local || !w->cgroup_id)
			continue;
		for (l = 0; l < k; l++)
			if (src->w[l]->identity_id == w->identity_id)
				break;
		src->w[k] = w;
		src->leader[k] = l;
		if (l == k)
			snprintf(src->principal[k], PRINCIPAL_MAX, "%s/ns/%s/sa/%s",
				 nm_state_trust_domain(s), w->cfg->ns, w->cfg->sa);
		src->n++;
	}
	return 0;
}

static void sources_free(struct sources *src)
{
	free(src->w);
	free(src->leader);
	free(src->principal);
}

int nm_policy_compile(const struct nm_policy_set *ps, const struct nm_state *s,
		      size_t max, struct nm_policy_rec **out, size_t *n)
{
	struct out o = { .max = max };
	struct dst_view view = { 0 };
	struct sources src = { 0 };
	struct nm_policy_verdict *v = NULL;
	bool *ok = NULL;
	size_t v_cap = 0;
	int ret;

	*out = NULL;
	*n = 0;
	/* No policy set at all admits every pair, as nm_policy_evaluate()
	 * answers for a NULL set: compiled like the empty set, so the
	 * same-node kernel path finds its ALLOW records either way. */
	ret = sources_of(s, &src);
	ok = calloc(src.n ? src.n : 1, sizeof(*ok));
	if (!ret && !ok)
		ret = -ENOMEM;
	for (unsigned int d = 0; d < s->n_workloads && !ret && src.n; d++) {
		const struct nm_st_workload *dst = &s->workloads[d];
		size_t stride;

		ret = view_of(ps, dst, &view);
		if (ret)
			break;
		stride = 1 + (size_t)view.named.n;
		if (stride * src.n > v_cap) {
			struct nm_policy_verdict *p;

			p = realloc(v, stride * src.n * sizeof(*p));
			if (!p) {
				ret = -ENOMEM;
				break;
			}
			v = p;
			v_cap = stride * src.n;
		}
		for (unsigned int i = 0; i < src.n; i++) {
			unsigned int l = src.leader[i];

			if (l == i)
				ok[i] = decide_all(ps, src.w[i], src.principal[i],
						   dst, &view, &v[i * stride]);
			if (ok[l])
				ret = emit_pair(&o, src.w[i]->id, dst, &view,
						&v[l * stride]);
			if (ret)
				break;
		}
	}
	free(view.named.v);
	free(v);
	free(ok);
	sources_free(&src);
	if (ret) {
		free(o.recs);
		return ret;
	}
	*out = o.recs;
	*n = o.n;
	return 0;
}
