// SPDX-License-Identifier: Apache-2.0
/*
 * model.c - what one node's maps must hold, computed from the agent's state
 * (datapath.h, nm_model_build()). Pure: IDs and cgroup ids come from the
 * state, so tests need neither cgroups nor maps.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datapath/datapath.h"
#include "lib/errbuf.h"
#include "lib/log.h"
#include "datapath/model.h"
#include "lb/lb.h"
#include "policy/compile.h"
#include "state/state.h"

struct builder {
	const struct nm_state *s;
	struct nm_model *m;
	unsigned int cap_wl, cap_svc, cap_be, cap_ep, cap_lb, cap_mg;
	char *err;
	size_t errlen;
};

/* "FILE: <message>" into the caller's err; returns ret. */
static int fail(struct builder *b, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct builder *b, int ret, const char *fmt, ...)
{
	const char *src = b->s->cluster->path[0] ? b->s->cluster->path : "cluster";
	va_list ap;

	va_start(ap, fmt);
	nm_vset_err_in(b->err, b->errlen, src, fmt, ap);
	va_end(ap);
	return ret;
}

/* Appends a zeroed element; NULL when out of memory. */
static void *push(void *arrp, unsigned int *n, unsigned int *cap, size_t sz)
{
	void **arr = arrp;
	char *slot;

	if (*n == *cap) {
		unsigned int ncap = *cap ? *cap * 2 : 16;
		void *p = realloc(*arr, (size_t)ncap * sz);

		if (!p)
			return NULL;
		*arr = p;
		*cap = ncap;
	}
	slot = (char *)*arr + (size_t)*n * sz;
	memset(slot, 0, sz);
	(*n)++;
	return slot;
}

/* --- duplicate keys ------------------------------------------------------ */

struct dup_ctx {
	const char *base;
	size_t stride;
	size_t key_size;
};

static int cmp_key_idx(const void *a, const void *b, void *arg)
{
	const struct dup_ctx *ctx = arg;
	unsigned int ia = *(const unsigned int *)a, ib = *(const unsigned int *)b;
	int r = memcmp(ctx->base + ia * ctx->stride, ctx->base + ib * ctx->stride,
		       ctx->key_size);

	if (r)
		return r;
	return ia < ib ? -1 : ia > ib;
}

/*
 * Finds two entries with the same key (the key is at offset 0 of each
 * entry). Returns 1 and their positions (*a < *b), 0 when keys are unique,
 * -ENOMEM.
 */
static int find_dup(const void *base, unsigned int n, size_t stride,
		    size_t key_size, unsigned int *a, unsigned int *b)
{
	struct dup_ctx ctx = { base, stride, key_size };
	unsigned int *idx;
	int found = 0;

	if (n < 2)
		return 0;
	idx = calloc(n, sizeof(*idx));
	if (!idx)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++)
		idx[i] = i;
	qsort_r(idx, n, sizeof(*idx), cmp_key_idx, &ctx);
	for (unsigned int k = 1; k < n && !found; k++) {
		if (memcmp(ctx.base + idx[k - 1] * stride,
			   ctx.base + idx[k] * stride, key_size) == 0) {
			*a = idx[k - 1];
			*b = idx[k];
			found = 1;
		}
	}
	free(idx);
	return found;
}

/* --- the three parts ----------------------------------------------------- */

/* Local workloads with a cgroup: the ones connect4/6 steer. */
static int build_workloads(struct builder *b)
{
	const struct nm_state *s = b->s;

	for (unsigned int i = 0; i < s->n_workloads; i++) {
		const struct nm_st_workload *w = &s->workloads[i];
		struct nm_model_workload *mw;

		if (!w->local || !w->cgroup_id)
			continue;
		mw = push(&b->m->workloads, &b->m->n_workloads, &b->cap_wl,
			  sizeof(*mw));
		if (!mw)
			return -ENOMEM;
		mw->cgroup_id = w->cgroup_id;
		mw->val.workload_id = w->id;
		mw->val.identity_id = w->identity_id;
		mw->val.namespace_id = w->namespace_id;
		mw->val.flags = NM_WL_MESHED | (w->strict ? NM_WL_STRICT : 0);
		mw->val.addr = w->cfg->ip;
	}
	return 0;
}

static int push_endpoint(struct builder *b, const struct nm_st_workload *w,
			 const struct nm_addr *ip)
{
	struct nm_model_endpoint *e;

	e = push(&b->m->endpoints, &b->m->n_endpoints, &b->cap_ep, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->key = *ip;
	e->val.workload_id = w->id;
	e->val.identity_id = w->identity_id;
	e->val.node_id = w->node->id;
	e->val.flags = (w->local ? NM_EP_LOCAL : 0) |
		       (w->local && w->strict ? NM_EP_STRICT : 0);
	return 0;
}

/* Every workload address (the state refused duplicates). */
static int build_endpoints(struct builder *b)
{
	const struct nm_state *s = b->s;
	int ret = 0;

	for (unsigned int i = 0; i < s->n_workloads && !ret; i++) {
		const struct nm_st_workload *w = &s->workloads[i];

		ret = push_endpoint(b, w, &w->cfg->ip);
		if (!ret && w->cfg->has_ip6)
			ret = push_endpoint(b, w, &w->cfg->ip6);
	}
	return ret;
}

/* The value of label key on a node; "" when it has none. */
static const char *node_label(const struct nm_node *n, const char *key)
{
	for (unsigned int i = 0; n && i < n->n_labels; i++)
		if (strcmp(n->labels[i].key, key) == 0)
			return n->labels[i].value;
	return "";
}

/* The workload carries every label of the subset's selector. */
static bool subset_has(const struct nm_subset_cfg *sub,
		       const struct nm_workload_cfg *w)
{
	for (unsigned int i = 0; i < sub->n_selector; i++) {
		bool found = false;

		for (unsigned int j = 0; j < w->n_labels && !found; j++)
			found = strcmp(sub->selector[i].key, w->labels[j].key) == 0 &&
				strcmp(sub->selector[i].value, w->labels[j].value) == 0;
		if (!found)
			return false;
	}
	return true;
}

static int build_maglev(struct builder *b, struct nm_model_lb_set *ls,
			unsigned int si)
{
	const struct nm_lb_subset *ss = &ls->val.subsets[si];
	uint32_t *table = NULL, m;
	uint64_t *keys = NULL;
	unsigned int off, n;
	int ret = -ENOMEM;

	ls->mg_first[si] = b->m->n_maglev;
	n = nm_lb_primary_range(ss, ls->val.locality, &off);
	m = nm_lb_maglev_size(n, 0);
	if (n == 0)
		return 0;
	keys = calloc(n, sizeof(*keys));
	table = calloc(m, sizeof(*table));
	if (!keys || !table)
		goto out;
	for (unsigned int j = 0; j < n; j++) {
		const struct nm_model_backend *mb =
			&b->m->backends[ls->be_first + ss->start + off + j];

		keys[j] = nm_lb_endpoint_key(&mb->val.addr, mb->val.port);
	}
	ret = nm_lb_maglev_fill(keys, n, m, table);
	if (ret)
		goto out;
	for (uint32_t idx = 0; idx < m; idx++) {
		struct nm_model_maglev *e;

		e = push(&b->m->maglev, &b->m->n_maglev, &b->cap_mg, sizeof(*e));
		if (!e) {
			ret = -ENOMEM;
			goto out;
		}
		e->key.service_id = ls->key.service_id;
		/* NM_BACKEND_SLOT(port, v6, si): the set's slot 0 plus si. */
		e->key.set = ls->key.slot | si;
		e->key.idx = idx;
		e->val = table[idx];
	}
	ls->val.subsets[si].maglev_size = m;
out:
	free(keys);
	free(table);
	return ret;
}

/*
 * One nm_services entry (VIP:port of one family), its backend set and its
 * nm_lb_sets layout: subset after subset, each in locality tiers (this
 * node, this node's zone, the rest), so connect4/6 chooses a subset by
 * weight, a tier by locality mode and a slot by algorithm (nm_lb.bpf.h).
 */
static int build_vip_port(struct builder *b, const struct nm_st_service *v,
			  const struct nm_addr *vip, bool v6,
			  const struct nm_port_map *pm)
{
	const struct nm_state *s = b->s;
	const struct nm_service_cfg *sc = v->cfg;
	uint16_t target = pm->target_port ? pm->target_port : pm->port;
	const char *self_zone = s->self ? node_label(s->self->cfg, NM_LB_ZONE_LABEL) : "";
	static const struct nm_subset_cfg all = { .name = "all", .weight = 1 };
	unsigned int n_sub = sc->n_subsets ? sc->n_subsets : 1;
	struct nm_model_service *ms;
	struct nm_model_lb_set *ls;
	uint32_t count = 0, wsum = 0;
	int ret;

	ls = push(&b->m->lb_sets, &b->m->n_lb_sets, &b->cap_lb, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	ls->key.service_id = v->id;
	ls->key.slot = NM_BACKEND_SLOT(pm->port, v6, 0);
	ls->lb_algo = (uint32_t)sc->lb.algorithm;
	ls->be_first = b->m->n_backends;
	ls->val.n_subsets = n_sub;
	ls->val.locality = sc->lb.locality == NM_CFG_LOC_STRICT ? NM_LB_LOC_STRICT :
			   sc->lb.locality == NM_CFG_LOC_NONE ? NM_LB_LOC_NONE :
								NM_LB_LOC_FAILOVER;
	for (unsigned int si = 0; si < n_sub; si++) {
		const struct nm_subset_cfg *sub = sc->n_subsets ? &sc->subsets[si] : &all;
		struct nm_lb_subset *ss = &ls->val.subsets[si];

		ss->start = (uint16_t)count;
		wsum += sub->weight;
		ss->weight_end = wsum;
		/* As in Kubernetes, a service without a selector gets no
		 * endpoints (nm_service_selects() alone would match them all). */
		for (unsigned int tier = 0; tier < NM_LB_TIERS; tier++) {
			for (unsigned int i = 0; sc->n_selector && i < s->n_workloads; i++) {
				const struct nm_st_workload *w = &s->workloads[i];
				struct nm_model_backend *mb;
				unsigned int t;

				if (!nm_service_selects(sc, w->cfg) || !subset_has(sub, w->cfg))
					continue;
				t = nm_lb_tier(w->local, self_zone,
					       node_label(w->node ? w->node->cfg : NULL,
							  NM_LB_ZONE_LABEL));
				if (t != tier)
					continue;
				if (count == NM_MAX_BACKENDS_PER_SVC)
					return fail(b, -E2BIG, "services[%u] (%s/%s): more than %u endpoints",
						    (unsigned int)(v - s->services), sc->ns,
						    sc->name, NM_MAX_BACKENDS_PER_SVC);
				mb = push(&b->m->backends, &b->m->n_backends, &b->cap_be,
					  sizeof(*mb));
				if (!mb)
					return -ENOMEM;
				mb->key.service_id = v->id;
				mb->key.slot = NM_BACKEND_SLOT(pm->port, v6, count);
				/* A v6 VIP prefers the endpoint's v6 address;
				 * endpoints with only v4 still serve it (the
				 * agent dials the backend). */
				mb->val.addr = v6 && w->cfg->has_ip6 ? w->cfg->ip6 : w->cfg->ip;
				mb->val.port = htons(target);
				mb->val.weight = 1;
				mb->val.flags = (w->local ? NM_EP_LOCAL : 0) |
						(w->local && w->strict ? NM_EP_STRICT : 0);
				mb->val.workload_id = w->id;
				mb->val.identity_id = w->identity_id;
				ss->n[tier]++;
				count++;
			}
		}
	}
	ls->val.total_weight = wsum;
	if (sc->lb.algorithm == NM_CFG_LB_MAGLEV) {
		for (unsigned int si = 0; si < n_sub; si++) {
			ret = build_maglev(b, ls, si);
			if (ret)
				return ret;
		}
	}
	ms = push(&b->m->services, &b->m->n_services, &b->cap_svc, sizeof(*ms));
	if (!ms)
		return -ENOMEM;
	ms->key.vip = *vip;
	ms->key.port = htons(pm->port);
	ms->key.proto = IPPROTO_TCP;
	ms->val.service_id = v->id;
	ms->val.backend_count = count;
	/* enum nm_lb_algo_cfg has the ABI's values. */
	ms->val.lb_algo = (uint32_t)sc->lb.algorithm;
	/* Retries, timeouts, breakers and outlier detection are the agent's:
	 * a service configured with them never takes the kernel path. */
	ms->val.flags = sc->resilience.present ? NM_SVC_AGENT_PATH : 0;
	return 0;
}

static const struct nm_st_service *service_by_id(const struct nm_state *s,
						 uint32_t id)
{
	for (unsigned int i = 0; i < s->n_services; i++)
		if (s->services[i].id == id)
			return &s->services[i];
	return NULL;
}

static int build_services(struct builder *b)
{
	const struct nm_state *s = b->s;
	struct nm_model *m = b->m;
	const struct nm_st_service *x, *y;
	unsigned int i, j;
	int ret;

	for (i = 0; i < s->n_services; i++) {
		const struct nm_st_service *v = &s->services[i];

		for (unsigned int p = 0; p < v->cfg->n_ports; p++) {
			ret = build_vip_port(b, v, &v->cfg->vip, false,
					     &v->cfg->ports[p]);
			if (!ret && v->cfg->has_vip6)
				ret = build_vip_port(b, v, &v->cfg->vip6, true,
						     &v->cfg->ports[p]);
			if (ret)
				return ret;
		}
	}
	ret = find_dup(m->services, m->n_services, sizeof(*m->services),
		       sizeof(m->services[0].key), &i, &j);
	if (ret <= 0)
		return ret;
	x = service_by_id(s, m->services[i].val.service_id);
	y = service_by_id(s, m->services[j].val.service_id);
	return fail(b, -EINVAL, "services[%u] (%s/%s) and services[%u] (%s/%s) use the same VIP and port %u",
		    (unsigned int)(x - s->services), x->cfg->ns, x->cfg->name,
		    (unsigned int)(y - s->services), y->cfg->ns, y->cfg->name,
		    ntohs(m->services[i].key.port));
}

/*
 * The policy records (policy/compile.h). More than nm_policy holds is not
 * an error of the state: no records at all, so every connection goes to
 * its destination agent, which decides anyway (a partial set could leave a
 * port-0 DENY answering for a port whose own record was dropped).
 */
static int build_policies(struct builder *b)
{
	struct nm_policy_rec *recs = NULL;
	size_t n = 0;
	int ret;

	ret = nm_policy_compile(b->s->policies, b->s, NM_MAX_POLICY_RECS, &recs,
				&n);
	if (ret == -E2BIG) {
		pr_warn("msg=\"policy records exceed nm_policy; the destination agents decide every connection\" max=%u",
			NM_MAX_POLICY_RECS);
		return 0;
	}
	if (ret)
		return ret;
	b->m->policies = recs;
	b->m->n_policies = (unsigned int)n;
	return 0;
}

/*
 * Strict inbound: mesh.probers, or by default this node's own addresses
 * (kubelet probes a pod from the node). Empty without a node.
 */
_Static_assert(NM_CFG_MAX_PROBERS <= NM_MAX_PROBERS, "probers fit nm_probers");

static int build_probers(struct builder *b)
{
	const struct nm_mesh_cfg *mc = &b->s->cluster->mesh;
	const struct nm_node *self = b->s->self ? b->s->self->cfg : NULL;
	struct nm_addr def[2];
	const struct nm_addr *src = mc->probers;
	unsigned int n = mc->n_probers;

	if (!mc->probers_set) {
		n = 0;
		if (self) {
			def[n++] = self->addr;
			if (self->has_addr6)
				def[n++] = self->addr6;
		}
		src = def;
	}
	if (!n)
		return 0;
	b->m->probers = calloc(n, sizeof(*b->m->probers));
	if (!b->m->probers)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		b->m->probers[i].key = src[i];
		b->m->probers[i].val = 1;
	}
	b->m->n_probers = n;
	return 0;
}

static int check_limit(struct builder *b, const char *what, unsigned int n,
		       unsigned int max)
{
	if (n <= max)
		return 0;
	return fail(b, -E2BIG, "%u %s entries exceed the map size %u", n, what,
		    max);
}

int nm_model_build(const struct nm_state *s, struct nm_model *out, char *err,
		   size_t errlen)
{
	struct builder b = { .s = s, .m = out, .err = err, .errlen = errlen };
	int ret;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';
	ret = build_workloads(&b);
	if (!ret)
		ret = build_endpoints(&b);
	if (!ret)
		ret = build_services(&b);
	if (!ret)
		ret = build_policies(&b);
	if (!ret)
		ret = build_probers(&b);
	if (!ret)
		ret = check_limit(&b, "workload", out->n_workloads, NM_MAX_WORKLOADS);
	if (!ret)
		ret = check_limit(&b, "service", out->n_services, NM_MAX_SERVICES);
	if (!ret)
		ret = check_limit(&b, "backend", out->n_backends, NM_MAX_BACKENDS);
	if (!ret)
		ret = check_limit(&b, "endpoint", out->n_endpoints, NM_MAX_ENDPOINTS);
	if (!ret)
		ret = check_limit(&b, "maglev", out->n_maglev, NM_MAX_MAGLEV_ENTRIES);
	if (ret == -ENOMEM && errlen && !err[0])
		fail(&b, ret, "out of memory building the map model");
	if (ret)
		nm_model_free(out);
	return ret;
}

void nm_model_free(struct nm_model *m)
{
	if (!m)
		return;
	free(m->workloads);
	free(m->services);
	free(m->backends);
	free(m->endpoints);
	free(m->policies);
	free(m->lb_sets);
	free(m->maglev);
	free(m->probers);
	memset(m, 0, sizeof(*m));
}

int nm_model_cgroup_id(const char *cgroup, uint64_t *id, void *arg)
{
	char path[NM_PATH_MAX];
	int ret;

	(void)arg;
	ret = nm_cgroup_resolve(cgroup, path, sizeof(path));
	if (ret)
		return ret;
	return nm_cgroup_id(path, id);
}

int nm_model_build_with(const struct nm_cluster *c, int node,
			nm_cgroup_id_fn cgroup_id, void *arg,
			struct nm_model *out, char *err, size_t errlen)
{
	struct nm_state_opts o = { .generation = 1, .cgroup_id = cgroup_id,
				   .cgroup_arg = arg };
	struct nm_state *s = NULL;
	struct nm_ids *ids = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	if (node < 0 || (unsigned int)node >= c->n_nodes) {
		snprintf(err, errlen, "%s: node index %d out of range (%u nodes)",
			 c->path[0] ? c->path : "cluster", node, c->n_nodes);
		return -EINVAL;
	}
	o.self_node = c->nodes[node].name;
	ret = nm_ids_create(&ids);
	if (ret)
		return ret;
	ret = nm_state_build(c, ids, &o, &s, err, errlen);
	if (!ret)
		ret = nm_model_build(s, out, err, errlen);
	nm_state_free(s);
	nm_ids_free(ids);
	return ret;
}
