// SPDX-License-Identifier: Apache-2.0
/*
 * model.c - what one node's maps must hold, computed from the cluster file
 * (datapath.h, nm_model_build()). Pure apart from the cgroup id lookup, which
 * is passed in (model.h) so tests need no cgroups.
 *
 * IDs are derived from the cluster file's order, identically on every node,
 * so a record written by one agent means the same workload, identity and
 * service to every other agent reading the same file.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "datapath/datapath.h"
#include "datapath/model.h"

struct builder {
	const struct nm_cluster *c;
	int node;
	struct nm_model *m;
	unsigned int cap_wl, cap_svc, cap_be, cap_ep;
	uint32_t *identity_ids;  /* per workload index */
	uint32_t *namespace_ids; /* per workload index */
	char *err;
	size_t errlen;
};

static const char *file_name(const struct nm_cluster *c)
{
	return c->path[0] ? c->path : "cluster";
}

/* "FILE: <message>" into the caller's err; returns ret. */
static int fail(struct builder *b, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct builder *b, int ret, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->errlen == 0)
		return ret;
	n = snprintf(b->err, b->errlen, "%s: ", file_name(b->c));
	if (n >= 0 && (size_t)n < b->errlen) {
		va_start(ap, fmt);
		vsnprintf(b->err + n, b->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return ret;
}

/* How messages name a cluster entry: "workloads[3] (ns/name)". */
#define REF_MAX (32 + 2 * NM_NAME_MAX)

static const char *wl_ref(const struct builder *b, unsigned int i, char *buf)
{
	const struct nm_workload_cfg *w = &b->c->workloads[i];

	snprintf(buf, REF_MAX, "workloads[%u] (%s/%s)", i, w->ns, w->name);
	return buf;
}

static const char *svc_ref(const struct builder *b, unsigned int i, char *buf)
{
	const struct nm_service_cfg *s = &b->c->services[i];

	snprintf(buf, REF_MAX, "services[%u] (%s/%s)", i, s->ns, s->name);
	return buf;
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

/* --- ids by first appearance --------------------------------------------- */

struct id_sort_ctx {
	const struct nm_cluster *c;
	bool with_sa;
};

static int cmp_wl_key(const struct nm_cluster *c, bool with_sa, unsigned int a,
		      unsigned int b)
{
	const struct nm_workload_cfg *wa = &c->workloads[a], *wb = &c->workloads[b];
	int r = strcmp(wa->ns, wb->ns);

	if (r || !with_sa)
		return r;
	return strcmp(wa->sa, wb->sa);
}

static int cmp_wl_idx(const void *a, const void *b, void *arg)
{
	const struct id_sort_ctx *ctx = arg;
	unsigned int ia = *(const unsigned int *)a, ib = *(const unsigned int *)b;
	int r = cmp_wl_key(ctx->c, ctx->with_sa, ia, ib);

	if (r)
		return r;
	return ia < ib ? -1 : ia > ib;
}

/*
 * ids[i] = 1-based rank, in order of first appearance, of workload i's
 * namespace (with_sa false) or (namespace, serviceAccount) pair. Sorting keeps
 * it O(n log n) for large clusters.
 */
static int assign_first_ids(const struct nm_cluster *c, bool with_sa,
			    uint32_t *ids)
{
	struct id_sort_ctx ctx = { .c = c, .with_sa = with_sa };
	unsigned int n = c->n_workloads, *idx = NULL, *rep = NULL;
	bool *first = NULL;
	uint32_t running = 0;
	int ret = -ENOMEM;

	if (n == 0)
		return 0;
	idx = calloc(n, sizeof(*idx));
	rep = calloc(n, sizeof(*rep));
	first = calloc(n, sizeof(*first));
	if (!idx || !rep || !first)
		goto out;
	for (unsigned int i = 0; i < n; i++)
		idx[i] = i;
	qsort_r(idx, n, sizeof(*idx), cmp_wl_idx, &ctx);
	unsigned int group = idx[0];

	for (unsigned int k = 0; k < n; k++) {
		/* Within a group indices ascend, so its first is its earliest. */
		if (k > 0 && cmp_wl_key(c, with_sa, idx[k - 1], idx[k]) != 0)
			group = idx[k];
		rep[idx[k]] = group;
		first[group] = true;
	}
	for (unsigned int i = 0; i < n; i++)
		ids[i] = first[i] ? ++running : ids[rep[i]];
	ret = 0;
out:
	free(idx);
	free(rep);
	free(first);
	return ret;
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

static void addr_from_ip(struct nm_addr *a, const struct nm_addr *ip)
{
	memcpy(a->a, ip->a, sizeof(a->a));
}

static const char *cgroup_strerror(int err)
{
	if (err == -EMEDIUMTYPE)
		return "not a cgroup v2 directory";
	return strerror(-err);
}

static int build_workloads(struct builder *b, nm_cgroup_id_fn cgroup_id,
			   void *arg)
{
	const struct nm_cluster *c = b->c;
	struct nm_model *m = b->m;
	char ra[REF_MAX], rb[REF_MAX];
	unsigned int i, j;
	int ret;

	for (i = 0; i < c->n_workloads; i++) {
		const struct nm_workload_cfg *w = &c->workloads[i];
		struct nm_model_workload *mw;
		uint64_t id;

		if (w->node != b->node)
			continue;
		ret = cgroup_id(w->cgroup, &id, arg);
		if (ret)
			return fail(b, ret, "%s: cgroup \"%s\": %s",
				    wl_ref(b, i, ra), w->cgroup,
				    cgroup_strerror(ret));
		mw = push(&m->workloads, &m->n_workloads, &b->cap_wl, sizeof(*mw));
		if (!mw)
			return -ENOMEM;
		mw->cgroup_id = id;
		mw->val.workload_id = i + 1;
		mw->val.identity_id = b->identity_ids[i];
		mw->val.namespace_id = b->namespace_ids[i];
		mw->val.flags = NM_WL_MESHED;
	}
	ret = find_dup(m->workloads, m->n_workloads, sizeof(*m->workloads),
		       sizeof(m->workloads[0].cgroup_id), &i, &j);
	if (ret <= 0)
		return ret;
	return fail(b, -EINVAL, "%s and %s are in the same cgroup",
		    wl_ref(b, m->workloads[i].val.workload_id - 1, ra),
		    wl_ref(b, m->workloads[j].val.workload_id - 1, rb));
}

static int push_endpoint(struct builder *b, unsigned int wl, const struct nm_addr *ip)
{
	const struct nm_workload_cfg *w = &b->c->workloads[wl];
	struct nm_model_endpoint *e;

	e = push(&b->m->endpoints, &b->m->n_endpoints, &b->cap_ep, sizeof(*e));
	if (!e)
		return -ENOMEM;
	addr_from_ip(&e->key, ip);
	e->val.workload_id = wl + 1;
	e->val.identity_id = b->identity_ids[wl];
	e->val.node_id = (uint32_t)w->node + 1;
	e->val.flags = w->node == b->node ? NM_EP_LOCAL : 0;
	return 0;
}

static int build_endpoints(struct builder *b)
{
	const struct nm_cluster *c = b->c;
	struct nm_model *m = b->m;
	char ra[REF_MAX], rb[REF_MAX], s[INET6_ADDRSTRLEN];
	unsigned int i, j;
	struct nm_addr ip;
	int ret;

	for (i = 0; i < c->n_workloads; i++) {
		ret = push_endpoint(b, i, &c->workloads[i].ip);
		if (!ret && c->workloads[i].has_ip6)
			ret = push_endpoint(b, i, &c->workloads[i].ip6);
		if (ret)
			return ret;
	}
	ret = find_dup(m->endpoints, m->n_endpoints, sizeof(*m->endpoints),
		       sizeof(m->endpoints[0].key), &i, &j);
	if (ret <= 0)
		return ret;
	memcpy(ip.a, m->endpoints[i].key.a, sizeof(ip.a));
	nm_addr_format(&ip, s, sizeof(s));
	return fail(b, -EINVAL, "%s and %s share the address %s",
		    wl_ref(b, m->endpoints[i].val.workload_id - 1, ra),
		    wl_ref(b, m->endpoints[j].val.workload_id - 1, rb), s);
}

/* One nm_services entry (VIP:port of one family) and its backend set. */
static int build_vip_port(struct builder *b, unsigned int si,
			  const struct nm_addr *vip, bool v6,
			  const struct nm_port_map *pm)
{
	const struct nm_cluster *c = b->c;
	const struct nm_service_cfg *s = &c->services[si];
	uint16_t target = pm->target_port ? pm->target_port : pm->port;
	struct nm_model_service *ms;
	uint32_t count = 0;

	/* As in Kubernetes, a service without a selector gets no endpoints
	 * from workloads (nm_service_selects() alone would match them all). */
	for (unsigned int w = 0; s->n_selector && w < c->n_workloads; w++) {
		const struct nm_workload_cfg *wl = &c->workloads[w];
		struct nm_model_backend *mb;

		if (!nm_service_selects(s, wl))
			continue;
		if (count == NM_MAX_BACKENDS_PER_SVC) {
			char ref[REF_MAX];

			return fail(b, -E2BIG, "%s: more than %u endpoints",
				    svc_ref(b, si, ref),
				    NM_MAX_BACKENDS_PER_SVC);
		}
		mb = push(&b->m->backends, &b->m->n_backends, &b->cap_be,
			  sizeof(*mb));
		if (!mb)
			return -ENOMEM;
		mb->key.service_id = si + 1;
		mb->key.slot = NM_BACKEND_SLOT(pm->port, v6, count);
		/* A v6 VIP prefers the endpoint's v6 address; endpoints with
		 * only v4 still serve it (the agent dials the backend). */
		addr_from_ip(&mb->val.addr, v6 && wl->has_ip6 ? &wl->ip6 : &wl->ip);
		mb->val.port = htons(target);
		mb->val.weight = 1;
		mb->val.flags = wl->node == b->node ? NM_EP_LOCAL : 0;
		mb->val.workload_id = w + 1;
		mb->val.identity_id = b->identity_ids[w];
		count++;
	}
	ms = push(&b->m->services, &b->m->n_services, &b->cap_svc, sizeof(*ms));
	if (!ms)
		return -ENOMEM;
	addr_from_ip(&ms->key.vip, vip);
	ms->key.port = htons(pm->port);
	ms->key.proto = IPPROTO_TCP;
	ms->val.service_id = si + 1;
	ms->val.backend_count = count;
	ms->val.lb_algo = NM_LB_RANDOM;
	return 0;
}

static int build_services(struct builder *b)
{
	const struct nm_cluster *c = b->c;
	struct nm_model *m = b->m;
	char ra[REF_MAX], rb[REF_MAX];
	unsigned int i, j;
	int ret;

	for (i = 0; i < c->n_services; i++) {
		const struct nm_service_cfg *s = &c->services[i];

		for (unsigned int p = 0; p < s->n_ports; p++) {
			ret = build_vip_port(b, i, &s->vip, false, &s->ports[p]);
			if (!ret && s->has_vip6)
				ret = build_vip_port(b, i, &s->vip6, true,
						     &s->ports[p]);
			if (ret)
				return ret;
		}
	}
	ret = find_dup(m->services, m->n_services, sizeof(*m->services),
		       sizeof(m->services[0].key), &i, &j);
	if (ret <= 0)
		return ret;
	return fail(b, -EINVAL, "%s and %s use the same VIP and port %u",
		    svc_ref(b, m->services[i].val.service_id - 1, ra),
		    svc_ref(b, m->services[j].val.service_id - 1, rb),
		    ntohs(m->services[i].key.port));
}

static int check_limit(struct builder *b, const char *what, unsigned int n,
		       unsigned int max)
{
	if (n <= max)
		return 0;
	return fail(b, -E2BIG, "%u %s entries exceed the map size %u", n, what,
		    max);
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
	struct builder b = {
		.c = c, .node = node, .m = out, .err = err, .errlen = errlen,
	};
	int ret;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';
	if (node < 0 || (unsigned int)node >= c->n_nodes)
		return fail(&b, -EINVAL, "node index %d out of range (%u nodes)",
			    node, c->n_nodes);
	ret = -ENOMEM;
	b.identity_ids = calloc(c->n_workloads ? c->n_workloads : 1,
				sizeof(uint32_t));
	b.namespace_ids = calloc(c->n_workloads ? c->n_workloads : 1,
				 sizeof(uint32_t));
	if (!b.identity_ids || !b.namespace_ids)
		goto out;
	ret = assign_first_ids(c, true, b.identity_ids);
	if (!ret)
		ret = assign_first_ids(c, false, b.namespace_ids);
	if (!ret)
		ret = build_workloads(&b, cgroup_id, arg);
	if (!ret)
		ret = build_endpoints(&b);
	if (!ret)
		ret = build_services(&b);
	if (!ret)
		ret = check_limit(&b, "workload", out->n_workloads, NM_MAX_WORKLOADS);
	if (!ret)
		ret = check_limit(&b, "service", out->n_services, NM_MAX_SERVICES);
	if (!ret)
		ret = check_limit(&b, "backend", out->n_backends, NM_MAX_BACKENDS);
	if (!ret)
		ret = check_limit(&b, "endpoint", out->n_endpoints, NM_MAX_ENDPOINTS);
out:
	if (ret == -ENOMEM && errlen && !err[0])
		fail(&b, ret, "out of memory building the map model");
	if (ret)
		nm_model_free(out);
	free(b.identity_ids);
	free(b.namespace_ids);
	return ret;
}

int nm_model_build(const struct nm_cluster *c, int node, struct nm_model *out,
		   char *err, size_t errlen)
{
	return nm_model_build_with(c, node, nm_model_cgroup_id, NULL, out, err,
				   errlen);
}

void nm_model_free(struct nm_model *m)
{
	if (!m)
		return;
	free(m->workloads);
	free(m->services);
	free(m->backends);
	free(m->endpoints);
	memset(m, 0, sizeof(*m));
}
