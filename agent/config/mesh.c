// SPDX-License-Identifier: Apache-2.0
/*
 * mesh.c - the "mesh" section: listener ports, fail mode and the overload
 * limits (docs/config.md, "mesh" and "Limits").
 */
#include <errno.h>
#include <string.h>

#include "config/sections.h"

/*
 * Far above what one agent can hold (two descriptors per flow) and still a
 * uint32_t; a larger value is a typo, not a plan.
 */
#define LIMIT_MAX 10000000LL

/* Each limit is optional; 0 or absent leaves the derived default. */
static int parse_limits(struct nm_cfg_parser *p, const json_t *mesh)
{
	static const char *const keys[] = { "maxFlows", "maxHandshakes",
					    "maxFlowsPerPod", "maxFlowsPerPeer",
					    NULL };
	struct nm_limits_cfg *l = &p->c->mesh.limits;
	uint32_t *dst[] = { &l->max_flows, &l->max_handshakes,
			    &l->max_flows_per_pod, &l->max_flows_per_peer };
	struct nm_jw_field f;
	unsigned int i;
	int ret;

	ret = nm_jw_field(&p->j, mesh, "mesh", "limits", JSON_OBJECT, false, &f);
	if (ret <= 0)
		return ret;
	ret = nm_jw_check_keys(&p->j, f.v, "mesh.limits", keys);
	if (ret)
		return ret;
	for (i = 0; keys[i]; i++) {
		long long v;

		ret = nm_jw_get_int(&p->j, f.v, "mesh.limits", keys[i], false, 0,
				    LIMIT_MAX,
				    "a limit (0..10000000; 0 = the default derived from RLIMIT_NOFILE)",
				    &v);
		if (ret < 0)
			return ret;
		if (ret)
			*dst[i] = (uint32_t)v;
	}
	return 0;
}

/* "healthPort": a port, or 0 to serve no readiness endpoint. */
static int get_health_port(struct nm_cfg_parser *p, const json_t *mesh,
			   uint16_t *out)
{
	long long v;
	int ret;

	ret = nm_jw_get_int(&p->j, mesh, "mesh", "healthPort", false, 0, 65535,
			    "a port (1-65535) or 0 (no readiness endpoint)", &v);
	if (ret > 0)
		*out = (uint16_t)v;
	return ret;
}

/* "certExpiryWarning": seconds before notAfter to warn, 0 = never. */
static int get_expiry_warning(struct nm_cfg_parser *p, const json_t *mesh,
			      int64_t *out)
{
	long long v;
	int ret;

	ret = nm_jw_get_int(&p->j, mesh, "mesh", "certExpiryWarning", false, 0,
			    10LL * 366 * 86400,
			    "seconds (0..316224000; 0 = no expiry warning)", &v);
	if (ret > 0)
		*out = v;
	return ret;
}

int nm_cfg_parse_mesh(struct nm_cfg_parser *p, const json_t *root)
{
	static const char *const keys[] = { "outboundPort", "inboundPort",
					    "adminPort", "failMode", "limits",
					    "rootNamespace", "healthPort",
					    "preserveSourceAddress",
					    "certExpiryWarning", NULL };
	struct nm_mesh_cfg *m = &p->c->mesh;
	struct nm_jw_field f, mode;
	char q[NM_JW_SHOW_BUF];
	int ret;

	ret = nm_jw_field(&p->j, root, "", "mesh", JSON_OBJECT, false, &f);
	if (ret <= 0)
		return ret;
	ret = nm_jw_check_keys(&p->j, f.v, "mesh", keys);
	if (ret)
		return ret;
	if (nm_cfg_get_port(p, f.v, "mesh", "outboundPort", false, &m->outbound_port) < 0 ||
	    nm_cfg_get_port(p, f.v, "mesh", "inboundPort", false, &m->inbound_port) < 0 ||
	    nm_cfg_get_port(p, f.v, "mesh", "adminPort", false, &m->admin_port) < 0 ||
	    get_health_port(p, f.v, &m->health_port) < 0)
		return -EINVAL;
	/* Istio's root namespace: policies there without a selector apply
	 * mesh-wide. A Kubernetes namespace name. */
	ret = nm_jw_get_str(&p->j, f.v, "mesh", "rootNamespace", false,
			    m->root_ns, sizeof(m->root_ns), &mode);
	if (ret < 0)
		return ret;
	if (ret && !nm_cfg_dns_label_ok(m->root_ns, strlen(m->root_ns)))
		return nm_jw_fail(&p->j, mode.path,
				  "%s is not a Kubernetes namespace name",
				  nm_jw_show(m->root_ns, q));
	ret = nm_jw_field(&p->j, f.v, "mesh", "failMode", JSON_STRING, false, &mode);
	if (ret < 0)
		return ret;
	if (ret) {
		const char *s = json_string_value(mode.v);

		if (strcmp(s, "closed") == 0)
			m->fail_mode = NM_CFG_FAIL_CLOSED;
		else if (strcmp(s, "open") == 0)
			m->fail_mode = NM_CFG_FAIL_OPEN;
		else
			return nm_jw_fail(&p->j, mode.path,
					  "%s is not \"closed\" or \"open\"",
					  nm_jw_show(s, q));
	}
	/* Source preservation (mesh/srcaddr.h); read at agent start. */
	{
		const json_t *v = json_object_get(f.v, "preserveSourceAddress");

		if (v && !json_is_boolean(v))
			return nm_jw_fail(&p->j, "mesh.preserveSourceAddress",
					  "expected true or false, got %s",
					  nm_jw_type_name(v));
		if (v)
			m->preserve_src = json_is_true(v);
	}
	ret = parse_limits(p, f.v);
	if (ret)
		return ret;
	ret = get_expiry_warning(p, f.v, &m->cert_expiry_warning);
	if (ret < 0)
		return ret;
	/* The three listeners share the node address. */
	if (m->inbound_port == m->outbound_port)
		return nm_jw_fail(&p->j, "mesh.inboundPort",
				  "%u is already used by mesh.outboundPort",
				  m->inbound_port);
	if (m->admin_port == m->outbound_port)
		return nm_jw_fail(&p->j, "mesh.adminPort",
				  "%u is already used by mesh.outboundPort",
				  m->admin_port);
	if (m->admin_port == m->inbound_port)
		return nm_jw_fail(&p->j, "mesh.adminPort",
				  "%u is already used by mesh.inboundPort",
				  m->admin_port);
	return 0;
}
