// SPDX-License-Identifier: Apache-2.0
/*
 * nodes.c - the "nodes" section and the by-name index workloads use to
 * resolve their "node".
 */
#include <errno.h>
#include <string.h>

#include "config/list.h"
#include "config/sections.h"

static int node_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct nm_node *n = ctx;

	return strcmp(n[a].name, n[b].name);
}

static int parse_node(struct nm_cfg_parser *p, const json_t *v,
		      const char *path, void *item)
{
	static const char *const keys[] = { "name", "address", "address6",
					    "cgroupRoot", "labels", NULL };
	struct nm_node *n = item;
	struct nm_jw_field f;
	char q[NM_JW_SHOW_BUF];
	int ret;

	ret = nm_jw_check_object(&p->j, v, path, keys);
	if (ret)
		return ret;
	ret = nm_jw_get_str(&p->j, v, path, "name", true, n->name,
			    sizeof(n->name), &f);
	if (ret < 0)
		return ret;
	/* Node names are DNS subdomains in Kubernetes (often FQDNs). */
	if (!nm_cfg_dns_subdomain_ok(n->name, strlen(n->name), NM_NAME_MAX - 1))
		return nm_jw_fail(&p->j, f.path,
				  "%s is not a valid node name (lowercase letters, digits, '-' and '.', parts starting and ending with a letter or digit, at most 63)",
				  nm_jw_show(n->name, q));
	if (nm_cfg_get_ip_pair(p, v, path, "address", &n->addr, &n->addr6,
			       &n->has_addr6))
		return -EINVAL;
	if (nm_cfg_get_cgroup(p, v, path, "cgroupRoot", n->cgroup_root) < 0)
		return -EINVAL;
	/* topology.kubernetes.io/zone places the node for locality (LB). */
	return nm_cfg_get_labels(p, v, path, "labels", false, n->labels,
				 &n->n_labels) < 0 ? -EINVAL : 0;
}

int nm_cfg_parse_nodes(struct nm_cfg_parser *p, const json_t *root)
{
	static const struct nm_cfg_list s = {
		.key = "nodes", .size = sizeof(struct nm_node),
		.parse = parse_node,
		.unique = { { "name", node_cmp, .quote = true } },
	};
	void *arr = NULL;
	/* Even without nodes: workloads look their node up in this index. */
	int ret = nm_cfg_parse_list(p, root, &s, &arr, &p->c->n_nodes,
				    &p->node_idx);

	p->c->nodes = arr;
	return ret;
}

int nm_cfg_lookup_node(const struct nm_cfg_parser *p, const char *name)
{
	const struct nm_cluster *c = p->c;
	unsigned int lo = 0, hi = c->n_nodes;

	if (!p->node_idx)
		return -ENOENT;
	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		int r = strcmp(name, c->nodes[p->node_idx[mid]].name);

		if (r == 0)
			return (int)p->node_idx[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -ENOENT;
}
