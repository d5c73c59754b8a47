// SPDX-License-Identifier: Apache-2.0
/*
 * workloads.c - the "workloads" section: pods with their identity (namespace
 * and service account), labels, addresses, node and optional cgroup.
 */
#include <errno.h>
#include <string.h>

#include "config/list.h"
#include "config/sections.h"
#include "nm_abi.h"

static int workload_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct nm_workload_cfg *w = ctx;
	int r = strcmp(w[a].ns, w[b].ns);

	return r ? r : strcmp(w[a].name, w[b].name);
}

static int parse_workload(struct nm_cfg_parser *p, const json_t *v,
			  const char *path, void *item)
{
	static const char *const keys[] = { "name", "namespace", "serviceAccount",
					    "labels", "ip", "ip6", "node",
					    "cgroup", "mode", NULL };
	struct nm_workload_cfg *w = item;
	char node[NM_NAME_MAX], q[NM_JW_SHOW_BUF];
	struct nm_jw_field f;
	int ret;

	ret = nm_jw_check_object(&p->j, v, path, keys);
	if (ret)
		return ret;
	if (nm_cfg_get_name(p, v, path, "name", w->name) ||
	    nm_cfg_get_name(p, v, path, "namespace", w->ns) ||
	    nm_cfg_get_name(p, v, path, "serviceAccount", w->sa))
		return -EINVAL;
	if (nm_cfg_get_labels(p, v, path, "labels", false, w->labels,
			      &w->n_labels) < 0)
		return -EINVAL;
	if (nm_cfg_get_ip_pair(p, v, path, "ip", &w->ip, &w->ip6, &w->has_ip6))
		return -EINVAL;
	ret = nm_jw_get_str(&p->j, v, path, "node", true, node, sizeof(node), &f);
	if (ret < 0)
		return ret;
	w->node = nm_cfg_lookup_node(p, node);
	if (w->node < 0)
		return nm_jw_fail(&p->j, f.path, "%s is not a node listed in nodes",
				  nm_jw_show(node, q));
	/* Optional: absent, mesh.defaultMode applies (docs/strict.md). */
	if (nm_cfg_get_mode(p, v, path, "mode", &w->mode) < 0)
		return -EINVAL;
	/*
	 * Optional: without it w->cgroup stays "" and the workload is only
	 * reachable through the mesh; its own connections are not intercepted.
	 */
	return nm_cfg_get_cgroup(p, v, path, "cgroup", w->cgroup) < 0 ? -EINVAL : 0;
}

int nm_cfg_parse_workloads(struct nm_cfg_parser *p, const json_t *root)
{
	static const struct nm_cfg_list s = {
		.key = "workloads", .max = NM_MAX_ENDPOINTS,
		.size = sizeof(struct nm_workload_cfg), .parse = parse_workload,
		.unique = { { "name", workload_cmp, .in_ns = true } },
	};
	void *arr = NULL;
	int ret = nm_cfg_parse_list(p, root, &s, &arr, &p->c->n_workloads, NULL);

	p->c->workloads = arr;
	return ret;
}
