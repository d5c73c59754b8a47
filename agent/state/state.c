// SPDX-License-Identifier: Apache-2.0
/*
 * state.c - builds the agent's model (state.h) from a source's snapshot:
 * stable IDs from the registry, the node this agent runs on, cgroup ids of
 * its local workloads, and the hash indexes every per-flow lookup uses.
 * Pure apart from the cgroup lookup, which is passed in.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/errbuf.h"
#include "state/index.h"
#include "state/state.h"

struct build {
	struct nm_state *s;
	struct nm_ids *ids;
	const struct nm_state_opts *o;
	char *err;
	size_t errlen;
};

static int fail(struct build *b, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct build *b, int ret, const char *fmt, ...)
{
	const char *src = b->s->cluster->path[0] ? b->s->cluster->path : "cluster";
	va_list ap;

	va_start(ap, fmt);
	nm_vset_err_in(b->err, b->errlen, src, fmt, ap);
	va_end(ap);
	return ret;
}

/* How messages name a workload: "workloads[3] (ns/name)", its JSON path. */
#define REF_MAX (32 + 2 * NM_NAME_MAX)

static const char *wl_ref(const struct build *b, const struct nm_st_workload *w,
			  char *buf)
{
	snprintf(buf, REF_MAX, "workloads[%u] (%s/%s)",
		 (unsigned int)(w->cfg - b->s->cluster->workloads), w->cfg->ns,
		 w->cfg->name);
	return buf;
}

static const char *cgroup_strerror(int err)
{
	if (err == -EMEDIUMTYPE)
		return "not a cgroup v2 directory";
	return strerror(-err);
}

static int build_nodes(struct build *b)
{
	struct nm_state *s = b->s;
	const struct nm_cluster *c = s->cluster;
	int ret;

	s->nodes = calloc(c->n_nodes ? c->n_nodes : 1, sizeof(*s->nodes));
	if (!s->nodes)
		return -ENOMEM;
	for (unsigned int i = 0; i < c->n_nodes; i++) {
		struct nm_st_node *n = &s->nodes[i];

		n->cfg = &c->nodes[i];
		ret = nm_ids_get(b->ids, NM_KIND_NODE, "", n->cfg->name, &n->id);
		if (ret)
			return ret;
		if (b->o->self_node && !strcmp(b->o->self_node, n->cfg->name))
			s->self = n;
	}
	s->n_nodes = c->n_nodes;
	if (b->o->self_node && !s->self)
		return fail(b, -ENOENT, "nodes: no node named \"%s\"",
			    b->o->self_node);
	return 0;
}

/* The identity of (ns, sa), added to the state's list on first sight. */
static int add_identity(struct build *b, const char *ns, const char *sa,
			uint32_t *id)
{
	struct nm_state *s = b->s;
	struct nm_st_key k;
	struct nm_st_identity *ident;
	int ret;

	ret = nm_ids_get(b->ids, NM_KIND_IDENTITY, ns, sa, id);
	if (ret)
		return ret;
	k = nm_st_key_u64(*id);
	if (nm_st_index_get(s->id_by_id, &k))
		return 0;
	ident = &s->identities[s->n_identities++];
	ident->id = *id;
	snprintf(ident->ns, sizeof(ident->ns), "%s", ns);
	snprintf(ident->sa, sizeof(ident->sa), "%s", sa);
	return nm_st_index_add(s->id_by_id, &k, ident, NULL);
}

static int index_addr(struct build *b, const struct nm_addr *a,
		      const struct nm_st_workload *w)
{
	const struct nm_st_workload *other = NULL;
	char s[INET6_ADDRSTRLEN], ra[REF_MAX], rb[REF_MAX];
	struct nm_st_key k;
	int ret;

	memcpy(k.b, a->a, sizeof(k.b));
	ret = nm_st_index_add(b->s->by_addr, &k, w, (const void **)&other);
	if (ret != -EEXIST)
		return ret;
	nm_addr_format(a, s, sizeof(s));
	return fail(b, -EINVAL, "%s and %s share the address %s",
		    wl_ref(b, other, ra), wl_ref(b, w, rb), s);
}

static int resolve_cgroup(struct build *b, struct nm_st_workload *w)
{
	const struct nm_st_workload *other = NULL;
	char ra[REF_MAX], rb[REF_MAX];
	struct nm_st_key k;
	int ret;

	/* A workload without a cgroup is known by address and identity but
	 * not meshed here (docs/config.md: "cgroup" is optional). */
	if (!w->local || !w->cfg->cgroup[0] || !b->o->cgroup_id)
		return 0;
	ret = b->o->cgroup_id(w->cfg->cgroup, &w->cgroup_id, b->o->cgroup_arg);
	if (ret)
		return fail(b, ret, "%s: cgroup \"%s\": %s", wl_ref(b, w, ra),
			    w->cfg->cgroup, cgroup_strerror(ret));
	if (b->o->agent_cgroup_id && w->cgroup_id == b->o->agent_cgroup_id)
		return fail(b, -EINVAL, "%s: cgroup \"%s\" is the agent's own cgroup",
			    wl_ref(b, w, ra), w->cfg->cgroup);
	k = nm_st_key_u64(w->cgroup_id);
	ret = nm_st_index_add(b->s->by_cgroup, &k, w, (const void **)&other);
	if (ret != -EEXIST)
		return ret;
	return fail(b, -EINVAL, "%s and %s are in the same cgroup",
		    wl_ref(b, other, ra), wl_ref(b, w, rb));
}

static int build_workloads(struct build *b)
{
	struct nm_state *s = b->s;
	const struct nm_cluster *c = s->cluster;
	unsigned int n = c->n_workloads ? c->n_workloads : 1;
	char ra[REF_MAX];
	int ret;

	s->workloads = calloc(n, sizeof(*s->workloads));
	s->identities = calloc(n, sizeof(*s->identities));
	s->by_addr = nm_st_index_create(2 * n);
	s->by_cgroup = nm_st_index_create(n);
	s->wl_by_id = nm_st_index_create(n);
	s->id_by_id = nm_st_index_create(n);
	if (!s->workloads || !s->identities || !s->by_addr || !s->by_cgroup ||
	    !s->wl_by_id || !s->id_by_id)
		return -ENOMEM;
	for (unsigned int i = 0; i < c->n_workloads; i++) {
		struct nm_st_workload *w = &s->workloads[i];
		struct nm_st_key k;

		w->cfg = &c->workloads[i];
		if (w->cfg->node < 0 || (unsigned int)w->cfg->node >= s->n_nodes)
			return fail(b, -EINVAL, "%s: no such node",
				    wl_ref(b, w, ra));
		w->node = &s->nodes[w->cfg->node];
		w->local = w->node == s->self;
		w->strict = (w->cfg->mode == NM_MODE_UNSET ?
				     c->mesh.default_mode : w->cfg->mode) == NM_MODE_STRICT;
		ret = nm_ids_get(b->ids, NM_KIND_WORKLOAD, w->cfg->ns,
				 w->cfg->name, &w->id);
		if (!ret)
			ret = nm_ids_get(b->ids, NM_KIND_NAMESPACE, "",
					 w->cfg->ns, &w->namespace_id);
		if (!ret)
			ret = add_identity(b, w->cfg->ns, w->cfg->sa,
					   &w->identity_id);
		if (ret)
			return ret;
		k = nm_st_key_u64(w->id);
		if (nm_st_index_add(s->wl_by_id, &k, w, NULL))
			return fail(b, -EINVAL, "%s appears twice",
				    wl_ref(b, w, ra));
		ret = index_addr(b, &w->cfg->ip, w);
		if (!ret && w->cfg->has_ip6)
			ret = index_addr(b, &w->cfg->ip6, w);
		if (!ret)
			ret = resolve_cgroup(b, w);
		if (ret)
			return ret;
	}
	s->n_workloads = c->n_workloads;
	return 0;
}

static int build_services(struct build *b)
{
	struct nm_state *s = b->s;
	const struct nm_cluster *c = s->cluster;
	int ret;

	s->services = calloc(c->n_services ? c->n_services : 1,
			     sizeof(*s->services));
	if (!s->services)
		return -ENOMEM;
	for (unsigned int i = 0; i < c->n_services; i++) {
		struct nm_st_service *v = &s->services[i];

		v->cfg = &c->services[i];
		ret = nm_ids_get(b->ids, NM_KIND_SERVICE, v->cfg->ns,
				 v->cfg->name, &v->id);
		if (!ret)
			ret = nm_ids_get(b->ids, NM_KIND_NAMESPACE, "",
					 v->cfg->ns, &v->namespace_id);
		if (ret)
			return ret;
	}
	s->n_services = c->n_services;
	return 0;
}

int nm_state_build(const struct nm_cluster *c, struct nm_ids *ids,
		   const struct nm_state_opts *opts, struct nm_state **out,
		   char *err, size_t errlen)
{
	struct build b = { .ids = ids, .o = opts, .err = err, .errlen = errlen };
	int ret;

	*out = NULL;
	if (errlen)
		err[0] = '\0';
	b.s = calloc(1, sizeof(*b.s));
	if (!b.s)
		return -ENOMEM;
	b.s->cluster = c;
	b.s->generation = opts->generation;
	ret = build_nodes(&b);
	if (!ret)
		ret = build_workloads(&b);
	if (!ret)
		ret = build_services(&b);
	if (ret) {
		if (ret == -ENOMEM && errlen && !err[0])
			fail(&b, ret, "out of memory building the state");
		else if (errlen && !err[0])
			fail(&b, ret, "cannot build the state: %s", strerror(-ret));
		nm_state_free(b.s);
		return ret;
	}
	*out = b.s;
	return 0;
}

void nm_state_free(struct nm_state *s)
{
	if (!s)
		return;
	nm_st_index_free(s->by_addr);
	nm_st_index_free(s->by_cgroup);
	nm_st_index_free(s->wl_by_id);
	nm_st_index_free(s->id_by_id);
	free(s->nodes);
	free(s->workloads);
	free(s->services);
	free(s->identities);
	free(s);
}

const struct nm_st_workload *nm_state_workload_by_addr(const struct nm_state *s,
						       const struct nm_addr *a)
{
	struct nm_st_key k;

	memcpy(k.b, a->a, sizeof(k.b));
	return nm_st_index_get(s->by_addr, &k);
}

const struct nm_st_workload *nm_state_workload_by_cgroup(const struct nm_state *s,
							 uint64_t cgroup_id)
{
	struct nm_st_key k = nm_st_key_u64(cgroup_id);

	return nm_st_index_get(s->by_cgroup, &k);
}

const struct nm_st_workload *nm_state_workload_by_id(const struct nm_state *s,
						     uint32_t id)
{
	struct nm_st_key k = nm_st_key_u64(id);

	return nm_st_index_get(s->wl_by_id, &k);
}

const struct nm_st_identity *nm_state_identity_by_id(const struct nm_state *s,
						     uint32_t id)
{
	struct nm_st_key k = nm_st_key_u64(id);

	return nm_st_index_get(s->id_by_id, &k);
}

const struct nm_st_node *nm_state_node_by_name(const struct nm_state *s,
					       const char *name)
{
	/* Nodes are few and this is not on a per-flow path. */
	for (unsigned int i = 0; i < s->n_nodes; i++)
		if (!strcmp(s->nodes[i].cfg->name, name))
			return &s->nodes[i];
	return NULL;
}
