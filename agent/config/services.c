// SPDX-License-Identifier: Apache-2.0
/*
 * services.c - the "services" section: VIPs, port maps and selectors.
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

static int parse_service(struct nm_cfg_parser *p, const json_t *v,
			 const char *path, void *item)
{
	static const char *const keys[] = { "name", "namespace", "vip", "vip6",
					    "ports", "selector", NULL };
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
