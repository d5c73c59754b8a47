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

/*
 * "tunnelPool" (mesh/pool.h): established tunnels kept per (source
 * identity, peer node, destination identity). The peer agent waits 10 s
 * from accept for the preamble, so idleTimeoutMs stays below 9 s.
 */
static int parse_tunnel_pool(struct nm_cfg_parser *p, const json_t *mesh)
{
	static const char *const keys[] = { "size", "idleTimeoutMs",
					    "maxConnections", NULL };
	struct nm_pool_cfg *tp = &p->c->mesh.tunnel_pool;
	static const struct {
		long long min, max;
		const char *what;
	} r[] = {
		{ 0, 64, "a pool size (0..64 per key; 0 = no pool)" },
		{ 100, 9000, "a timeout in ms (100..9000, below the peer agent's 10 s preamble wait)" },
		{ 1, 100000, "a connection count (1..100000)" },
	};
	uint32_t *dst[] = { &tp->size, &tp->idle_ms, &tp->max_total };
	struct nm_jw_field f;
	int ret;

	ret = nm_jw_field(&p->j, mesh, "mesh", "tunnelPool", JSON_OBJECT, false, &f);
	if (ret <= 0)
		return ret;
	ret = nm_jw_check_keys(&p->j, f.v, "mesh.tunnelPool", keys);
	if (ret)
		return ret;
	for (unsigned int i = 0; keys[i]; i++) {
		long long v;

		ret = nm_jw_get_int(&p->j, f.v, "mesh.tunnelPool", keys[i], false,
				    r[i].min, r[i].max, r[i].what, &v);
		if (ret < 0)
			return ret;
		if (ret)
			*dst[i] = (uint32_t)v;
	}
	return 0;
}

int nm_cfg_get_mode(struct nm_cfg_parser *p, const json_t *obj,
		    const char *parent, const char *key,
		    enum nm_inbound_mode *out)
{
	struct nm_jw_field f;
	char q[NM_JW_SHOW_BUF];
	const char *s;
	int ret;

	ret = nm_jw_field(&p->j, obj, parent, key, JSON_STRING, false, &f);
	if (ret <= 0)
		return ret;
	s = json_string_value(f.v);
	/* Istio's spellings, upper case only, as PeerAuthentication has. */
	if (strcmp(s, "STRICT") == 0)
		*out = NM_MODE_STRICT;
	else if (strcmp(s, "PERMISSIVE") == 0)
		*out = NM_MODE_PERMISSIVE;
	else
		return nm_jw_fail(&p->j, f.path,
				  "%s is not \"STRICT\" or \"PERMISSIVE\"",
				  nm_jw_show(s, q));
	return 1;
}

static bool addr_is_unspecified(const struct nm_addr *a)
{
	static const struct nm_addr any4 = { .a = { [10] = 0xff, [11] = 0xff } };
	static const struct nm_addr any6;

	return !memcmp(a, &any4, sizeof(*a)) || !memcmp(a, &any6, sizeof(*a));
}

/*
 * "probers": node-local addresses (IPv4 or IPv6 text) whose SYNs a STRICT
 * workload admits. Present, it replaces the default (the node's own
 * addresses), so [] admits no prober at all.
 */
static int parse_probers(struct nm_cfg_parser *p, const json_t *mesh)
{
	struct nm_mesh_cfg *m = &p->c->mesh;
	char path[NM_JW_PATH_MAX], q[NM_JW_SHOW_BUF];
	struct nm_jw_field f;
	size_t i;
	int ret;

	ret = nm_jw_field(&p->j, mesh, "mesh", "probers", JSON_ARRAY, false, &f);
	if (ret <= 0)
		return ret;
	if (json_array_size(f.v) > NM_CFG_MAX_PROBERS)
		return nm_jw_fail(&p->j, f.path, "%zu addresses, at most %d",
				  json_array_size(f.v), NM_CFG_MAX_PROBERS);
	m->probers_set = true;
	for (i = 0; i < json_array_size(f.v); i++) {
		const json_t *e = json_array_get(f.v, i);
		const char *s = json_string_value(e);
		struct nm_addr a;
		bool v6;

		nm_jw_path_idx(path, "mesh.probers", i);
		if (!s)
			return nm_jw_fail(&p->j, path, "expected an address string, got %s",
					  nm_jw_type_name(e));
		if (nm_addr_parse(s, &a, &v6) || addr_is_unspecified(&a))
			return nm_jw_fail(&p->j, path, "%s is not an IPv4 or IPv6 address",
					  nm_jw_show(s, q));
		for (unsigned int k = 0; k < m->n_probers; k++)
			if (!memcmp(&m->probers[k], &a, sizeof(a)))
				return nm_jw_fail(&p->j, path, "%s is listed twice",
						  nm_jw_show(s, q));
		m->probers[m->n_probers++] = a;
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

/* "relay": auto, sockmap, splice or copy (mesh/zerocopy.h). */
static int get_relay(struct nm_cfg_parser *p, const json_t *mesh,
		     enum nm_relay_mode *out)
{
	static const char *const names[] = { "auto", "sockmap", "splice", "copy" };
	struct nm_jw_field f;
	char q[NM_JW_SHOW_BUF];
	const char *s;
	int ret;

	ret = nm_jw_field(&p->j, mesh, "mesh", "relay", JSON_STRING, false, &f);
	if (ret <= 0)
		return ret;
	s = json_string_value(f.v);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum nm_relay_mode)i;
			return 0;
		}
	return nm_jw_fail(&p->j, f.path,
			  "%s is not \"auto\", \"sockmap\", \"splice\" or \"copy\"",
			  nm_jw_show(s, q));
}

/* mesh.KEY: "auto" or OTHER; *is_other set only when present. 0 or -errno. */
static int parse_auto_or(struct nm_cfg_parser *p, const json_t *mesh,
			 const char *key, const char *other, bool *is_other)
{
	char q[NM_JW_SHOW_BUF];
	struct nm_jw_field f;
	const char *s;
	int ret;

	ret = nm_jw_field(&p->j, mesh, "mesh", key, JSON_STRING, false, &f);
	if (ret <= 0)
		return ret;
	s = json_string_value(f.v);
	if (strcmp(s, "auto") && strcmp(s, other))
		return nm_jw_fail(&p->j, f.path, "%s is not \"auto\" or \"%s\"",
				  nm_jw_show(s, q), other);
	*is_other = strcmp(s, other) == 0;
	return 0;
}

/*
 * "ktls": "auto" (the kernel's record layer where the probe finds it,
 * mesh/ktls.h) or "off"; "tlsRecords": "auto" (without kTLS the agent
 * seals and opens the records itself after the handshake, mesh/tlsrec.h)
 * or "openssl" (OpenSSL's records throughout); "tlsEcMethods": "auto"
 * (OpenSSL 3.0's built-in EC code for certificate keys, mesh/ecmeth.h) or
 * "provider" (OpenSSL's default); "busyPoll": microseconds
 * the event loop polls before it sleeps, and of SO_BUSY_POLL on the
 * relay's sockets, 0 = off. All read at agent start.
 */
static int parse_fastpath(struct nm_cfg_parser *p, const json_t *mesh,
			  struct nm_mesh_cfg *m)
{
	long long v;
	int ret;

	ret = parse_auto_or(p, mesh, "ktls", "off", &m->ktls_off);
	if (!ret)
		ret = parse_auto_or(p, mesh, "tlsRecords", "openssl",
				    &m->tls_records_openssl);
	if (!ret)
		ret = parse_auto_or(p, mesh, "tlsEcMethods", "provider",
				    &m->tls_ec_provider);
	if (ret)
		return ret;
	ret = nm_jw_get_int(&p->j, mesh, "mesh", "busyPoll", false, 0, 1000000,
			    "microseconds (0..1000000; 0 = no busy polling)", &v);
	if (ret < 0)
		return ret;
	if (ret)
		m->busy_poll_us = (uint32_t)v;
	return 0;
}

int nm_cfg_parse_mesh(struct nm_cfg_parser *p, const json_t *root)
{
	static const char *const keys[] = { "outboundPort", "inboundPort",
					    "adminPort", "failMode", "limits",
					    "rootNamespace", "healthPort",
					    "preserveSourceAddress",
					    "kernelPath",
					    "certExpiryWarning",
					    "defaultMode", "probers",
					    "tunnelPool", "relay", "ktls",
					    "tlsRecords", "tlsEcMethods",
					    "busyPoll", NULL };
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
	/* The same-node kernel path (docs/kernel-path.md); applied on reload. */
	{
		const json_t *v = json_object_get(f.v, "kernelPath");

		if (v && !json_is_boolean(v))
			return nm_jw_fail(&p->j, "mesh.kernelPath",
					  "expected true or false, got %s",
					  nm_jw_type_name(v));
		if (v)
			m->kernel_path = json_is_true(v);
	}
	ret = parse_fastpath(p, f.v, m);
	if (ret)
		return ret;
	ret = parse_limits(p, f.v);
	if (ret)
		return ret;
	ret = parse_tunnel_pool(p, f.v);
	if (ret)
		return ret;
	ret = get_relay(p, f.v, &m->relay);
	if (ret)
		return ret;
	ret = get_expiry_warning(p, f.v, &m->cert_expiry_warning);
	if (ret < 0)
		return ret;
	if (nm_cfg_get_mode(p, f.v, "mesh", "defaultMode", &m->default_mode) < 0 ||
	    parse_probers(p, f.v) < 0)
		return -EINVAL;
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
