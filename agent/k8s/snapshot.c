// SPDX-License-Identifier: Apache-2.0
/*
 * snapshot.c - the store's objects as one snapshot (state/cluster.h), the
 * same records the cluster file gives, so everything past the source is
 * shared: nodes (InternalIP), meshed pods as workloads, ClusterIP services,
 * and the AuthorizationPolicies as one List for the policy loader.
 *
 * What is left out, and why (each counted in info->skipped, logged at
 * debug): pods not Running or without a podIP, hostNetwork pods (they
 * share the node's cgroup tree and address), pods of namespaces without
 * nodemesh.io/mesh=enabled and without the pod annotation, pods on nodes
 * without an IPv4 InternalIP, IPv6-only pods (workloads are keyed by an
 * IPv4 address today), headless/ExternalName services and services without
 * a selector (the model selects endpoints by labels), non-TCP ports, and
 * a named targetPort that neither an EndpointSlice nor a selected pod's
 * container ports resolve. Local meshed pods whose cgroup does not exist
 * yet are counted in info->waiting_cgroup: the source re-checks them.
 *
 * Arrays are sorted by name so that two builds of the same objects are
 * byte-equal (nm_k8s_cluster_equal) and an unchanged store is not applied
 * again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "k8s/k8s.h"
#include "lib/log.h"
#include "policy/policy.h"

#define GET(o, k) json_object_get((o), (k))
#define STR(o, k) json_string_value(json_object_get((o), (k)))

static const char *md_str(const json_t *obj, const char *k)
{
	return STR(GET(obj, "metadata"), k);
}

static bool fits(const char *s)
{
	return s && s[0] && strlen(s) < NM_NAME_MAX;
}

static bool str_is(const char *s, const char *v)
{
	return s && !strcmp(s, v);
}

static int node_cmp(const void *a, const void *b)
{
	return strcmp(((const struct nm_node *)a)->name,
		      ((const struct nm_node *)b)->name);
}

static int wl_cmp(const void *a, const void *b)
{
	const struct nm_workload_cfg *x = a, *y = b;
	int r = strcmp(x->ns, y->ns);

	return r ? r : strcmp(x->name, y->name);
}

static int svc_cmp(const void *a, const void *b)
{
	const struct nm_service_cfg *x = a, *y = b;
	int r = strcmp(x->ns, y->ns);

	return r ? r : strcmp(x->name, y->name);
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct nm_label *)a)->key,
		      ((const struct nm_label *)b)->key);
}

/* Labels (at most NM_MAX_LABELS that fit, sorted); false when one did not
 * fit (the object is then left out rather than matched on a subset). */
static bool labels_copy(const json_t *m, struct nm_label *out,
			unsigned int *n)
{
	const char *k;
	json_t *v;

	*n = 0;
	json_object_foreach((json_t *)m, k, v) {
		const char *s = json_string_value(v);

		if (!s || *n == NM_MAX_LABELS || strlen(k) >= NM_NAME_MAX ||
		    strlen(s) >= NM_NAME_MAX)
			return false;
		snprintf(out[*n].key, NM_NAME_MAX, "%s", k);
		snprintf(out[*n].value, NM_NAME_MAX, "%s", s);
		(*n)++;
	}
	qsort(out, *n, sizeof(*out), label_cmp);
	return true;
}

static void skip(struct nm_k8s_build_info *info, const char *kind,
		 const json_t *obj, const char *why)
{
	info->skipped++;
	pr_debug("msg=\"kubernetes object left out of the snapshot\" kind=%s namespace=%s name=%s reason=\"%s\"",
		 kind, md_str(obj, "namespace") ? md_str(obj, "namespace") : "-",
		 md_str(obj, "name") ? md_str(obj, "name") : "-", why);
}

/* --- nodes ---------------------------------------------------------------- */

/*
 * Of a Node's labels only the topology ones matter to the mesh (load
 * balancing's locality tiers); a real node carries far more than a
 * snapshot keeps, so the rest are not copied.
 */
static void node_topology(const json_t *node, struct nm_node *n)
{
	static const char *const keys[] = { "topology.kubernetes.io/zone",
					    "topology.kubernetes.io/region" };
	const json_t *labels = GET(GET(node, "metadata"), "labels");

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *v = STR(labels, keys[i]);

		if (!v || strlen(v) >= NM_NAME_MAX || n->n_labels == NM_MAX_LABELS)
			continue;
		snprintf(n->labels[n->n_labels].key, NM_NAME_MAX, "%s", keys[i]);
		snprintf(n->labels[n->n_labels].value, NM_NAME_MAX, "%s", v);
		n->n_labels++;
	}
}

static int build_nodes(const struct nm_k8s_store *st,
		       const struct nm_k8s_build_opts *o, struct nm_cluster *c,
		       struct nm_k8s_build_info *info)
{
	json_t *map = st->objs[NM_K8S_NODES], *obj;
	const char *key;

	c->nodes = calloc(json_object_size(map) + 1, sizeof(*c->nodes));
	if (!c->nodes)
		return -ENOMEM;
	json_object_foreach(map, key, obj) {
		struct nm_node *n = &c->nodes[c->n_nodes];
		const char *name = md_str(obj, "name");
		json_t *addrs = GET(GET(obj, "status"), "addresses"), *a;
		bool v4 = false;
		size_t i;

		if (!fits(name)) {
			skip(info, "Node", obj, "name too long");
			continue;
		}
		json_array_foreach(addrs, i, a) {
			struct nm_addr ip;
			bool is6;

			if (!str_is(STR(a, "type"), "InternalIP") || !STR(a, "address") ||
			    nm_addr_parse(STR(a, "address"), &ip, &is6))
				continue;
			if (!is6 && !v4) {
				n->addr = ip;
				v4 = true;
			} else if (is6 && !n->has_addr6) {
				n->addr6 = ip;
				n->has_addr6 = true;
			}
		}
		if (!v4) {
			memset(n, 0, sizeof(*n));
			skip(info, "Node", obj, "no IPv4 InternalIP");
			continue;
		}
		snprintf(n->name, sizeof(n->name), "%s", name);
		node_topology(obj, n);
		if (o->node && !strcmp(name, o->node) && o->cgroup_root)
			snprintf(n->cgroup_root, sizeof(n->cgroup_root), "%s",
				 o->cgroup_root);
		c->n_nodes++;
	}
	qsort(c->nodes, c->n_nodes, sizeof(*c->nodes), node_cmp);
	return 0;
}

/* --- pods ------------------------------------------------------------------- */

static bool ns_meshed(const struct nm_k8s_store *st, const char *ns)
{
	json_t *n = GET(st->objs[NM_K8S_NAMESPACES], ns);
	const json_t *labels = GET(GET(n, "metadata"), "labels");

	return str_is(STR(labels, NM_K8S_MESH_LABEL), "enabled");
}

static bool pod_meshed(const struct nm_k8s_store *st, const json_t *pod)
{
	const json_t *ann = GET(GET(pod, "metadata"), "annotations");
	const char *ns = md_str(pod, "namespace");

	if (json_is_true(GET(GET(pod, "spec"), "hostNetwork")))
		return false;
	return str_is(STR(ann, NM_K8S_MESH_LABEL), "enabled") ||
	       (ns && ns_meshed(st, ns));
}

/*
 * The pod's nodemesh.io/mode annotation: STRICT, PERMISSIVE, or absent
 * (mesh.defaultMode). Any other value counts as STRICT: an annotation
 * nobody validates should fail closed, not open (logged at debug).
 */
static enum nm_inbound_mode pod_mode(const json_t *pod)
{
	const char *v = STR(GET(GET(pod, "metadata"), "annotations"),
			    NM_K8S_MODE_ANNOTATION);

	if (!v)
		return NM_MODE_UNSET;
	if (!strcmp(v, "PERMISSIVE"))
		return NM_MODE_PERMISSIVE;
	if (strcmp(v, "STRICT"))
		pr_debug("msg=\"unknown inbound mode, STRICT applies\" namespace=%s name=%s annotation=%s",
			 md_str(pod, "namespace"), md_str(pod, "name"),
			 NM_K8S_MODE_ANNOTATION);
	return NM_MODE_STRICT;
}

/* The pod's first IPv4 and IPv6 addresses (status.podIPs, else podIP). */
static bool pod_ips(const json_t *pod, struct nm_workload_cfg *w)
{
	const json_t *status = GET(pod, "status"), *ips = GET(status, "podIPs"), *e;
	bool v4 = false;
	size_t i;

	for (i = 0; i < json_array_size(ips) + 1; i++) {
		const char *s = i < json_array_size(ips) ?
					STR(json_array_get(ips, i), "ip") :
					STR(status, "podIP");
		struct nm_addr ip;
		bool is6;

		if (!s || nm_addr_parse(s, &ip, &is6))
			continue;
		if (!is6 && !v4) {
			w->ip = ip;
			v4 = true;
		} else if (is6 && !w->has_ip6) {
			w->ip6 = ip;
			w->has_ip6 = true;
		}
	}
	(void)e;
	return v4;
}

static bool addr_used(const struct nm_cluster *c, const struct nm_addr *a)
{
	for (unsigned int i = 0; i < c->n_nodes; i++)
		if (!memcmp(&c->nodes[i].addr, a, sizeof(*a)) ||
		    (c->nodes[i].has_addr6 && !memcmp(&c->nodes[i].addr6, a, sizeof(*a))))
			return true;
	for (unsigned int i = 0; i < c->n_workloads; i++)
		if (!memcmp(&c->workloads[i].ip, a, sizeof(*a)) ||
		    (c->workloads[i].has_ip6 &&
		     !memcmp(&c->workloads[i].ip6, a, sizeof(*a))))
			return true;
	for (unsigned int i = 0; i < c->n_services; i++)
		if (!memcmp(&c->services[i].vip, a, sizeof(*a)) ||
		    (c->services[i].has_vip6 &&
		     !memcmp(&c->services[i].vip6, a, sizeof(*a))))
			return true;
	return false;
}

static int build_workloads(const struct nm_k8s_store *st,
			   const struct nm_k8s_build_opts *o,
			   struct nm_cluster *c, struct nm_k8s_build_info *info)
{
	json_t *map = st->objs[NM_K8S_PODS], *pod;
	const char *key;
	unsigned int i;

	c->workloads = calloc(json_object_size(map) + 1, sizeof(*c->workloads));
	if (!c->workloads)
		return -ENOMEM;
	json_object_foreach(map, key, pod) {
		struct nm_workload_cfg *w = &c->workloads[c->n_workloads];
		const json_t *spec = GET(pod, "spec");
		const char *name = md_str(pod, "name"), *ns = md_str(pod, "namespace");
		const char *node = STR(spec, "nodeName");
		const char *sa = STR(spec, "serviceAccountName");
		int ni = -1;

		if (!pod_meshed(st, pod))
			continue; /* the common case: not ours, not logged */
		if (!str_is(STR(GET(pod, "status"), "phase"), "Running")) {
			skip(info, "Pod", pod, "not Running");
			continue;
		}
		if (!fits(name) || !fits(ns) || (sa && sa[0] && !fits(sa)) || !fits(node)) {
			skip(info, "Pod", pod, "name, namespace, serviceAccountName or nodeName missing or too long");
			continue;
		}
		for (i = 0; i < c->n_nodes; i++)
			if (!strcmp(c->nodes[i].name, node))
				ni = (int)i;
		if (ni < 0) {
			skip(info, "Pod", pod, "its node is not known (yet)");
			continue;
		}
		if (!pod_ips(pod, w)) {
			memset(w, 0, sizeof(*w));
			skip(info, "Pod", pod, "no IPv4 podIP");
			continue;
		}
		if (!labels_copy(GET(GET(pod, "metadata"), "labels"), w->labels,
				 &w->n_labels)) {
			memset(w, 0, sizeof(*w));
			skip(info, "Pod", pod, "more than 16 labels or a label too long");
			continue;
		}
		w->mode = pod_mode(pod);
		snprintf(w->name, sizeof(w->name), "%s", name);
		snprintf(w->ns, sizeof(w->ns), "%s", ns);
		snprintf(w->sa, sizeof(w->sa), "%s", sa && sa[0] ? sa : "default");
		w->node = ni;
		if (o->node && !strcmp(node, o->node) && o->cgroup_root &&
		    o->cgroup_root[0]) {
			const char *uid = md_str(pod, "uid");
			int ret = uid ? nm_k8s_cgroup_pod(o->cgroup_root, uid,
							  STR(GET(pod, "status"), "qosClass"),
							  w->cgroup, sizeof(w->cgroup)) :
					-EINVAL;

			if (ret) {
				/* Not meshed without its cgroup: leave it out
				 * until the cgroup appears (re-checked). */
				memset(w, 0, sizeof(*w));
				info->waiting_cgroup++;
				pr_debug("msg=\"pod cgroup not there yet\" namespace=%s name=%s uid=%s",
					 ns, name, uid ? uid : "-");
				continue;
			}
		}
		c->n_workloads++;
	}
	qsort(c->workloads, c->n_workloads, sizeof(*c->workloads), wl_cmp);
	/* One owner per address: the first by name keeps it. */
	for (i = 0; i < c->n_workloads; i++) {
		struct nm_workload_cfg w = c->workloads[i];
		unsigned int n = c->n_workloads;

		c->n_workloads = i;
		if (addr_used(c, &w.ip) || (w.has_ip6 && addr_used(c, &w.ip6))) {
			info->skipped++;
			pr_warn("msg=\"pod address already in use, pod left out\" namespace=%s name=%s",
				w.ns, w.name);
			memmove(&c->workloads[i], &c->workloads[i + 1],
				(n - i - 1) * sizeof(w));
			memset(&c->workloads[n - 1], 0, sizeof(w));
			c->n_workloads = n - 1;
			i--;
			continue;
		}
		c->n_workloads = n;
	}
	return 0;
}

/* --- services ----------------------------------------------------------------- */

/* A named targetPort: the EndpointSlice of the service carries it resolved
 * under the service port's name; else a selected pod's container port. */
static int named_port(const struct nm_k8s_store *st, const struct nm_cluster *c,
		      const struct nm_service_cfg *s, const char *svc_port_name,
		      const char *target)
{
	json_t *obj, *p, *ctr, *cp;
	const char *key;
	size_t i, j, k;

	json_object_foreach(st->objs[NM_K8S_SLICES], key, obj) {
		const json_t *l = GET(GET(obj, "metadata"), "labels");

		if (!str_is(md_str(obj, "namespace"), s->ns) ||
		    !str_is(STR(l, "kubernetes.io/service-name"), s->name))
			continue;
		json_array_foreach(GET(obj, "ports"), i, p) {
			const char *n = STR(p, "name");
			json_int_t v = json_integer_value(GET(p, "port"));

			if (str_is(n ? n : "", svc_port_name ? svc_port_name : "") &&
			    v > 0 && v < 65536)
				return (int)v;
		}
	}
	for (i = 0; i < c->n_workloads; i++) {
		char pk[2 * NM_NAME_MAX + 2];
		json_t *pod;

		if (!nm_service_selects(s, &c->workloads[i]))
			continue;
		snprintf(pk, sizeof(pk), "%s/%s", c->workloads[i].ns,
			 c->workloads[i].name);
		pod = GET(st->objs[NM_K8S_PODS], pk);
		json_array_foreach(GET(GET(pod, "spec"), "containers"), j, ctr)
			json_array_foreach(GET(ctr, "ports"), k, cp) {
				json_int_t v = json_integer_value(GET(cp, "containerPort"));

				if (str_is(STR(cp, "name"), target) && v > 0 && v < 65536)
					return (int)v;
			}
	}
	return -ENOENT;
}

static int build_services(const struct nm_k8s_store *st, struct nm_cluster *c,
			  struct nm_k8s_build_info *info)
{
	json_t *map = st->objs[NM_K8S_SERVICES], *obj, *p;
	const char *key;
	size_t i;

	c->services = calloc(json_object_size(map) + 1, sizeof(*c->services));
	if (!c->services)
		return -ENOMEM;
	json_object_foreach(map, key, obj) {
		struct nm_service_cfg *s = &c->services[c->n_services];
		const json_t *spec = GET(obj, "spec"), *ips = GET(spec, "clusterIPs");
		const char *name = md_str(obj, "name"), *ns = md_str(obj, "namespace");
		bool v4 = false;

		if (!fits(name) || !fits(ns)) {
			skip(info, "Service", obj, "name or namespace too long");
			continue;
		}
		if (str_is(STR(spec, "type"), "ExternalName")) {
			skip(info, "Service", obj, "ExternalName");
			continue;
		}
		for (i = 0; i < json_array_size(ips) + 1; i++) {
			const char *a = i < json_array_size(ips) ?
						json_string_value(json_array_get(ips, i)) :
						STR(spec, "clusterIP");
			struct nm_addr ip;
			bool is6;

			if (!a || nm_addr_parse(a, &ip, &is6))
				continue; /* "None" included */
			if (!is6 && !v4) {
				s->vip = ip;
				v4 = true;
			} else if (is6 && !s->has_vip6) {
				s->vip6 = ip;
				s->has_vip6 = true;
			}
		}
		if (!v4) {
			memset(s, 0, sizeof(*s));
			skip(info, "Service", obj, "headless or no IPv4 clusterIP");
			continue;
		}
		if (!labels_copy(GET(spec, "selector"), s->selector, &s->n_selector) ||
		    !s->n_selector) {
			memset(s, 0, sizeof(*s));
			skip(info, "Service", obj, "no selector, or one the model cannot hold");
			continue;
		}
		snprintf(s->name, sizeof(s->name), "%s", name);
		snprintf(s->ns, sizeof(s->ns), "%s", ns);
		json_array_foreach(GET(spec, "ports"), i, p) {
			const char *proto = STR(p, "protocol");
			json_int_t port = json_integer_value(GET(p, "port"));
			const json_t *tp = GET(p, "targetPort");
			json_int_t target = port;

			if ((proto && strcmp(proto, "TCP")) || port <= 0 || port > 65535 ||
			    s->n_ports == NM_MAX_PORTS)
				continue;
			if (json_is_integer(tp)) {
				target = json_integer_value(tp);
			} else if (json_is_string(tp)) {
				const char *t = json_string_value(tp);
				char *end;
				long v = strtol(t, &end, 10);

				/* IntOrString: "8080" is a number too */
				if (*t && !*end)
					target = v;
				else
					target = named_port(st, c, s, STR(p, "name"), t);
			}
			if (target <= 0 || target > 65535) {
				skip(info, "Service", obj, "a targetPort could not be resolved");
				continue;
			}
			s->ports[s->n_ports].port = (uint16_t)port;
			s->ports[s->n_ports].target_port = (uint16_t)target;
			s->n_ports++;
		}
		if (!s->n_ports) {
			memset(s, 0, sizeof(*s));
			skip(info, "Service", obj, "no TCP port");
			continue;
		}
		if (addr_used(c, &s->vip) || (s->has_vip6 && addr_used(c, &s->vip6))) {
			memset(s, 0, sizeof(*s));
			skip(info, "Service", obj, "clusterIP already in use");
			continue;
		}
		c->n_services++;
	}
	qsort(c->services, c->n_services, sizeof(*c->services), svc_cmp);
	return 0;
}

/* --- policies --------------------------------------------------------------- */

/* Each policy is checked alone, so one the loader refuses is left out
 * (logged) instead of refusing every other policy and the whole snapshot. */
static int build_policies(const struct nm_k8s_store *st, const struct nm_cluster *c,
			  struct nm_k8s_build_info *info)
{
	json_t *list, *items, *obj;
	const char *key;

	info->policies_json = NULL;
	if (!st->policies_present)
		return 0;
	items = json_array();
	list = json_pack("{s:s,s:s,s:o}", "apiVersion", "v1", "kind", "List",
			 "items", items);
	if (!list)
		return -ENOMEM;
	json_object_foreach(st->objs[NM_K8S_POLICIES], key, obj) {
		char name[2 * NM_NAME_MAX + 16], err[1024];
		struct nm_policy_set *ps = NULL;
		char *one = json_dumps(obj, JSON_COMPACT);
		int ret;

		if (!one)
			continue;
		snprintf(name, sizeof(name), "k8s:%s", key);
		ret = nm_policy_load_buf(one, strlen(one), name, c->mesh.root_ns,
					 &ps, err, sizeof(err));
		free(one);
		nm_policy_set_free(ps);
		if (ret) {
			info->skipped++;
			pr_warn("msg=\"AuthorizationPolicy refused, left out\" policy=%s err=\"%s\"",
				key, err);
			continue;
		}
		json_array_append(items, obj);
		info->policies++;
	}
	info->policies_json = json_dumps(list, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(list);
	return info->policies_json ? 0 : -ENOMEM;
}

/* --- API ----------------------------------------------------------------------- */

int nm_k8s_build(const struct nm_k8s_store *st,
		 const struct nm_k8s_build_opts *o, struct nm_cluster **out,
		 struct nm_k8s_build_info *info)
{
	struct nm_cluster *c = calloc(1, sizeof(*c));
	bool self = !o->node;
	int ret = -ENOMEM;

	memset(info, 0, sizeof(*info));
	*out = NULL;
	if (!c)
		return -ENOMEM;
	snprintf(c->path, sizeof(c->path), "kubernetes");
	snprintf(c->trust_domain, sizeof(c->trust_domain), "%s", o->base->trust_domain);
	snprintf(c->cert_dir, sizeof(c->cert_dir), "%s", o->base->cert_dir);
	snprintf(c->policy_dir, sizeof(c->policy_dir), "%s", o->base->policy_dir);
	c->policy_apply_to_existing = o->base->policy_apply_to_existing;
	c->mesh = o->base->mesh;
	ret = build_nodes(st, o, c, info);
	if (ret)
		goto fail;
	for (unsigned int i = 0; i < c->n_nodes && !self; i++)
		self = !strcmp(c->nodes[i].name, o->node);
	if (!self) {
		ret = -ENOENT;
		goto fail;
	}
	ret = build_workloads(st, o, c, info);
	if (!ret)
		ret = build_services(st, c, info);
	if (!ret)
		ret = build_policies(st, c, info);
	if (ret)
		goto fail;
	if (st->policies_present && o->policy_dir && o->policy_dir[0])
		snprintf(c->policy_dir, sizeof(c->policy_dir), "%s", o->policy_dir);
	*out = c;
	return 0;
fail:
	free(info->policies_json);
	info->policies_json = NULL;
	nm_cluster_free(c);
	return ret;
}

bool nm_k8s_cluster_equal(const struct nm_cluster *a, const struct nm_cluster *b)
{
	if (!a || !b)
		return a == b;
	/* Records are calloc'ed and filled field by field: padding is zero. */
	return !strcmp(a->trust_domain, b->trust_domain) &&
	       !strcmp(a->cert_dir, b->cert_dir) &&
	       !strcmp(a->policy_dir, b->policy_dir) &&
	       a->policy_apply_to_existing == b->policy_apply_to_existing &&
	       !memcmp(&a->mesh, &b->mesh, sizeof(a->mesh)) &&
	       a->n_nodes == b->n_nodes && a->n_workloads == b->n_workloads &&
	       a->n_services == b->n_services &&
	       !memcmp(a->nodes, b->nodes, a->n_nodes * sizeof(*a->nodes)) &&
	       !memcmp(a->workloads, b->workloads,
		       a->n_workloads * sizeof(*a->workloads)) &&
	       !memcmp(a->services, b->services,
		       a->n_services * sizeof(*a->services));
}
