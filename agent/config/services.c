// SPDX-License-Identifier: Apache-2.0
/*
 * services.c - the "services" section: VIPs, port maps, selectors, and the
 * load balancing of each service ("lb", "subsets"; docs/config.md).
 */
#include <errno.h>
#include <string.h>

#include "config/list.h"
#include "config/sections.h"
#include "nm_abi.h"

static int service_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct nm_service_cfg *s = ctx;
	int r = strcmp(s[a].ns, s[b].ns);

	return r ? r : strcmp(s[a].name, s[b].name);
}

static int parse_port_map(struct nm_cfg_parser *p, const json_t *v,
			  const char *path, struct nm_port_map *pm)
{
	static const char *const keys[] = { "port", "targetPort", NULL };
	int ret;

	ret = nm_jw_check_object(&p->j, v, path, keys);
	if (ret)
		return ret;
	if (nm_cfg_get_port(p, v, path, "port", true, &pm->port) < 0)
		return -EINVAL;
	ret = nm_cfg_get_port(p, v, path, "targetPort", false, &pm->target_port);
	if (ret < 0)
		return ret;
	if (ret == 0)
		pm->target_port = pm->port; /* Kubernetes' default */
	return 0;
}

static int parse_ports(struct nm_cfg_parser *p, const json_t *v,
		       const char *path, struct nm_service_cfg *s)
{
	struct nm_jw_field f;
	size_t i, k;
	int ret;

	ret = nm_jw_field(&p->j, v, path, "ports", JSON_ARRAY, true, &f);
	if (ret < 0)
		return ret;
	if (json_array_size(f.v) == 0)
		return nm_jw_fail(&p->j, f.path, "must list at least one port");
	if (json_array_size(f.v) > NM_MAX_PORTS)
		return nm_jw_fail(&p->j, f.path, "too many ports (%zu, at most %d)",
				  json_array_size(f.v), NM_MAX_PORTS);
	for (i = 0; i < json_array_size(f.v); i++) {
		char ppath[NM_JW_PATH_MAX];

		nm_jw_path_idx(ppath, f.path, i);
		ret = parse_port_map(p, json_array_get(f.v, i), ppath,
				     &s->ports[i]);
		if (ret)
			return ret;
		for (k = 0; k < i; k++) {
			if (s->ports[k].port == s->ports[i].port) {
				char fpath[NM_JW_PATH_MAX];

				nm_jw_path_key(fpath, ppath, "port");
				return nm_jw_fail(&p->j, fpath,
						  "%u is already used by ports[%zu]",
						  s->ports[i].port, k);
			}
		}
		s->n_ports++;
	}
	return 0;
}

static int parse_choice(struct nm_cfg_parser *p, const json_t *obj,
			const char *parent, const char *key,
			const char *const *words, unsigned int *out)
{
	char buf[NM_NAME_MAX], q[NM_JW_SHOW_BUF];
	struct nm_jw_field f;
	int ret;

	ret = nm_jw_get_str(&p->j, obj, parent, key, false, buf, sizeof(buf), &f);
	if (ret <= 0)
		return ret;
	for (unsigned int i = 0; words[i]; i++) {
		if (strcmp(buf, words[i]) == 0) {
			*out = i;
			return 1;
		}
	}
	if (key[0] == 'a')
		return nm_jw_fail(&p->j, f.path,
				  "unknown algorithm %s (random, round_robin, least_request or maglev)",
				  nm_jw_show(buf, q));
	return nm_jw_fail(&p->j, f.path,
			  "unknown locality %s (failover, strict or none)",
			  nm_jw_show(buf, q));
}

/* "lb": {"algorithm", "locality"}; defaults random and failover. */
static int parse_lb(struct nm_cfg_parser *p, const json_t *v,
		    const char *path, struct nm_lb_cfg *lb)
{
	/* In enum nm_lb_algo_cfg / nm_lb_locality_cfg order. */
	static const char *const algos[] = { "random", "round_robin",
					     "least_request", "maglev", NULL };
	static const char *const locs[] = { "failover", "strict", "none", NULL };
	static const char *const keys[] = { "algorithm", "locality", NULL };
	unsigned int a = NM_CFG_LB_RANDOM, l = NM_CFG_LOC_FAILOVER;
	struct nm_jw_field f;
	int ret;

	ret = nm_jw_field(&p->j, v, path, "lb", JSON_OBJECT, false, &f);
	if (ret <= 0)
		goto out;
	ret = nm_jw_check_keys(&p->j, f.v, f.path, keys);
	if (!ret)
		ret = parse_choice(p, f.v, f.path, "algorithm", algos, &a);
	if (ret >= 0)
		ret = parse_choice(p, f.v, f.path, "locality", locs, &l);
out:
	lb->algorithm = (enum nm_lb_algo_cfg)a;
	lb->locality = (enum nm_lb_locality_cfg)l;
	return ret < 0 ? ret : 0;
}

/* Does any workload of the file fall into this subset of the service? */
static bool subset_selects_any(const struct nm_cfg_parser *p,
			       const struct nm_service_cfg *s,
			       const struct nm_subset_cfg *sub)
{
	struct nm_service_cfg both = *s;

	/* The service's selector and the subset's together. */
	for (unsigned int i = 0; i < sub->n_selector &&
				 both.n_selector < NM_MAX_LABELS; i++)
		both.selector[both.n_selector++] = sub->selector[i];
	for (unsigned int i = 0; i < p->c->n_workloads; i++)
		if (nm_service_selects(&both, &p->c->workloads[i]))
			return true;
	return false;
}

/*
 * "subsets": [{"name", "selector", "weight"}]: the endpoints the service
 * selects that also carry the subset's labels, chosen by integer weight.
 * Refused: a subset selecting no workload of the file, a zero total weight,
 * a name used twice, more selector labels than a service can hold.
 */
static int parse_subsets(struct nm_cfg_parser *p, const json_t *v,
			 const char *path, struct nm_service_cfg *s)
{
	static const char *const keys[] = { "name", "selector", "weight", NULL };
	struct nm_jw_field f;
	uint64_t total = 0;
	size_t i, n;
	int ret;

	s->n_subsets = 0;
	ret = nm_jw_field(&p->j, v, path, "subsets", JSON_ARRAY, false, &f);
	if (ret <= 0)
		return ret;
	n = json_array_size(f.v);
	if (n == 0)
		return nm_jw_fail(&p->j, f.path, "must list at least one subset (or leave subsets out)");
	if (n > NM_MAX_SUBSETS)
		return nm_jw_fail(&p->j, f.path, "too many subsets (%zu, at most %d)",
				  n, NM_MAX_SUBSETS);
	for (i = 0; i < n; i++) {
		struct nm_subset_cfg *sub = &s->subsets[i];
		const json_t *e = json_array_get(f.v, i);
		char epath[NM_JW_PATH_MAX], fpath[NM_JW_PATH_MAX];
		long long w = 0;

		nm_jw_path_idx(epath, f.path, i);
		ret = nm_jw_check_object(&p->j, e, epath, keys);
		if (ret)
			return ret;
		if (nm_cfg_get_name(p, e, epath, "name", sub->name))
			return -EINVAL;
		for (size_t k = 0; k < i; k++) {
			if (strcmp(s->subsets[k].name, sub->name) == 0) {
				nm_jw_path_key(fpath, epath, "name");
				return nm_jw_fail(&p->j, fpath,
						  "%s is already used by subsets[%zu]",
						  sub->name, k);
			}
		}
		ret = nm_cfg_get_labels(p, e, epath, "selector", true,
					sub->selector, &sub->n_selector);
		if (ret < 0)
			return ret;
		if (sub->n_selector + s->n_selector > NM_MAX_LABELS) {
			nm_jw_path_key(fpath, epath, "selector");
			return nm_jw_fail(&p->j, fpath,
					  "with the service's selector more than %d labels",
					  NM_MAX_LABELS);
		}
		ret = nm_jw_get_int(&p->j, e, epath, "weight", true, 0, 10000,
				    "a weight (0..10000)", &w);
		if (ret < 0)
			return ret;
		sub->weight = (uint32_t)w;
		total += sub->weight;
		s->n_subsets++;
		if (!subset_selects_any(p, s, sub)) {
			nm_jw_path_key(fpath, epath, "selector");
			return nm_jw_fail(&p->j, fpath,
					  "subset %s selects no workload of service %s/%s",
					  sub->name, s->ns, s->name);
		}
	}
	if (total == 0)
		return nm_jw_fail(&p->j, f.path, "the weights add up to 0");
	return 0;
}

static int parse_service(struct nm_cfg_parser *p, const json_t *v,
			 const char *path, void *item)
{
	static const char *const keys[] = { "name", "namespace", "vip", "vip6",
					    "ports", "selector", "resilience",
					    "lb", "subsets", NULL };
	struct nm_service_cfg *s = item;
	int ret;

	ret = nm_jw_check_object(&p->j, v, path, keys);
	if (ret)
		return ret;
	if (nm_cfg_get_name(p, v, path, "name", s->name) ||
	    nm_cfg_get_name(p, v, path, "namespace", s->ns))
		return -EINVAL;
	if (nm_cfg_get_ip_pair(p, v, path, "vip", &s->vip, &s->vip6, &s->has_vip6))
		return -EINVAL;
	ret = parse_ports(p, v, path, s);
	if (ret)
		return ret;
	/* A selector-less service would have no endpoints: nothing to mesh. */
	ret = nm_cfg_get_labels(p, v, path, "selector", true, s->selector,
				&s->n_selector);
	if (ret >= 0)
		ret = parse_lb(p, v, path, &s->lb);
	if (ret >= 0)
		ret = parse_subsets(p, v, path, s);
	if (ret >= 0)
		ret = nm_cfg_parse_resilience(p, v, path, &s->resilience);
	return ret < 0 ? ret : 0;
}

int nm_cfg_parse_services(struct nm_cfg_parser *p, const json_t *root)
{
	static const struct nm_cfg_list s = {
		.key = "services", .max = NM_MAX_SERVICES,
		.size = sizeof(struct nm_service_cfg), .parse = parse_service,
		.unique = { { "name", service_cmp, .in_ns = true } },
	};
	void *arr = NULL;
	int ret = nm_cfg_parse_list(p, root, &s, &arr, &p->c->n_services, NULL);

	p->c->services = arr;
	return ret;
}
