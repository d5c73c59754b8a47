// SPDX-License-Identifier: Apache-2.0
/*
 * telemetry.c - the "telemetry" section: where the metrics and admin HTTP
 * servers listen, BPF socket statistics, the label cardinality cap and the
 * flow log (docs/config.md, "telemetry"; docs/telemetry.md). Every field
 * is optional; defaults are set by nm_cfg_telemetry_defaults() before the
 * section is read.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "config/sections.h"

void nm_cfg_telemetry_defaults(struct nm_telemetry_cfg *t, uint16_t admin_port)
{
	bool v6;

	memset(t, 0, sizeof(*t));
	t->metrics_port = NM_TEL_METRICS_PORT;
	nm_addr_parse("0.0.0.0", &t->metrics_addr, &v6); /* as ztunnel */
	t->admin_port = admin_port;
	nm_addr_parse("127.0.0.1", &t->admin_addr, &v6);
	t->sock_stats = true;
	/* Istio's default cluster ID when none is configured. */
	snprintf(t->cluster_id, sizeof(t->cluster_id), "Kubernetes");
	t->max_series = NM_TEL_MAX_SERIES;
	t->flow_log.mode = NM_FLOWLOG_OFF;
	t->flow_log.sample_rate = NM_TEL_FLOWLOG_SAMPLE;
	t->flow_log.max_bytes = NM_TEL_FLOWLOG_MAX_BYTES;
	t->flow_log.keep = NM_TEL_FLOWLOG_KEEP;
}

/* A listen address: IPv4 or IPv6 text; the unspecified address is allowed
 * (listen on every address), multicast is not. */
static int get_listen_addr(struct nm_cfg_parser *p, const json_t *obj,
			   const char *key, struct nm_addr *out)
{
	struct nm_jw_field f;
	char q[NM_JW_SHOW_BUF];
	const char *s;
	bool v6;
	int ret = nm_jw_field(&p->j, obj, "telemetry", key, JSON_STRING, false, &f);

	if (ret <= 0)
		return ret;
	s = json_string_value(f.v);
	if (nm_addr_parse(s, out, &v6))
		return nm_jw_fail(&p->j, f.path, "%s is not an IPv4 or IPv6 address",
				  nm_jw_show(s, q));
	if ((nm_addr_is_v4(out) && (out->a[12] & 0xf0) == 0xe0) ||
	    (!nm_addr_is_v4(out) && out->a[0] == 0xff))
		return nm_jw_fail(&p->j, f.path, "%s is a multicast address",
				  nm_jw_show(s, q));
	return 1;
}

static int get_bool(struct nm_cfg_parser *p, const json_t *obj,
		    const char *parent, const char *key, bool *out)
{
	const json_t *v = json_object_get(obj, key);
	char path[NM_JW_PATH_MAX];

	if (!v)
		return 0;
	if (!json_is_boolean(v)) {
		nm_jw_path_key(path, parent, key);
		return nm_jw_fail(&p->j, path, "expected true or false, got %s",
				  nm_jw_type_name(v));
	}
	*out = json_is_true(v);
	return 1;
}

static int parse_flow_log(struct nm_cfg_parser *p, const json_t *tel,
			  struct nm_flowlog_cfg *fl)
{
	static const char *const keys[] = { "mode", "sampleRate", "file",
					    "maxBytes", "keep", NULL };
	const char *path = "telemetry.flowLog";
	struct nm_jw_field f, m;
	char q[NM_JW_SHOW_BUF];
	long long v;
	int ret;

	ret = nm_jw_field(&p->j, tel, "telemetry", "flowLog", JSON_OBJECT, false, &f);
	if (ret <= 0)
		return ret;
	ret = nm_jw_check_keys(&p->j, f.v, path, keys);
	if (ret)
		return ret;
	ret = nm_jw_field(&p->j, f.v, path, "mode", JSON_STRING, false, &m);
	if (ret < 0)
		return ret;
	if (ret) {
		const char *s = json_string_value(m.v);

		if (!strcmp(s, "off"))
			fl->mode = NM_FLOWLOG_OFF;
		else if (!strcmp(s, "sampled"))
			fl->mode = NM_FLOWLOG_SAMPLED;
		else if (!strcmp(s, "full"))
			fl->mode = NM_FLOWLOG_FULL;
		else
			return nm_jw_fail(&p->j, m.path,
					  "%s is not \"off\", \"sampled\" or \"full\"",
					  nm_jw_show(s, q));
	}
	m.v = json_object_get(f.v, "sampleRate");
	if (m.v) {
		double r;

		if (!json_is_number(m.v))
			return nm_jw_fail(&p->j, "telemetry.flowLog.sampleRate",
					  "expected a number from 0 to 1, got %s",
					  nm_jw_type_name(m.v));
		r = json_number_value(m.v);
		if (!isfinite(r) || r < 0 || r > 1)
			return nm_jw_fail(&p->j, "telemetry.flowLog.sampleRate",
					  "%g is not a rate from 0 to 1", r);
		fl->sample_rate = r;
	}
	ret = nm_jw_get_str(&p->j, f.v, path, "file", false, fl->file,
			    sizeof(fl->file), &m);
	if (ret < 0)
		return ret;
	if (ret) {
		for (const char *s = fl->file; *s; s++)
			if ((unsigned char)*s < 0x20 || *s == 0x7f)
				return nm_jw_fail(&p->j, m.path,
						  "%s contains a control character",
						  nm_jw_show(fl->file, q));
		if (!strcmp(fl->file, "-"))
			fl->file[0] = '\0'; /* stdout */
		else if (fl->file[0] && fl->file[strlen(fl->file) - 1] == '/')
			return nm_jw_fail(&p->j, m.path,
					  "%s names a folder, not a file",
					  nm_jw_show(fl->file, q));
	}
	/* At least 4 KiB: one record must fit with room for more. */
	ret = nm_jw_get_int(&p->j, f.v, path, "maxBytes", false, 4096,
			    1ll << 40, "a size in bytes (4096..2^40)", &v);
	if (ret < 0)
		return ret;
	if (ret)
		fl->max_bytes = (uint64_t)v;
	ret = nm_jw_get_int(&p->j, f.v, path, "keep", false, 0, 100,
			    "a count of rotated files (0..100)", &v);
	if (ret < 0)
		return ret;
	if (ret)
		fl->keep = (uint32_t)v;
	return 0;
}

/* Two listeners of the agent on one port would fail the second bind. */
static int check_ports(struct nm_cfg_parser *p, const struct nm_telemetry_cfg *t)
{
	const struct nm_mesh_cfg *m = &p->c->mesh;
	const struct {
		const char *name;
		uint16_t port;
	} used[] = {
		{ "mesh.outboundPort", m->outbound_port },
		{ "mesh.inboundPort", m->inbound_port },
		{ "mesh.healthPort", m->health_port },
		{ "telemetry.adminPort", t->admin_port },
	};
	const struct {
		const char *name;
		uint16_t port;
	} mine[] = {
		{ "telemetry.metricsPort", t->metrics_port },
		{ "telemetry.adminPort", t->admin_port },
	};

	for (unsigned int i = 0; i < 2; i++) {
		if (!mine[i].port)
			continue;
		for (unsigned int k = 0; k < sizeof(used) / sizeof(used[0]); k++)
			if (strcmp(used[k].name, mine[i].name) &&
			    used[k].port == mine[i].port)
				return nm_jw_fail(&p->j, mine[i].name,
						  "%u is already used by %s",
						  mine[i].port, used[k].name);
	}
	return 0;
}

int nm_cfg_parse_telemetry(struct nm_cfg_parser *p, const json_t *root)
{
	static const char *const keys[] = { "metricsPort", "metricsAddress",
					    "adminPort", "adminAddress",
					    "sockStats", "clusterId",
					    "maxSeriesPerMetric", "flowLog",
					    NULL };
	struct nm_telemetry_cfg *t = &p->c->telemetry;
	struct nm_jw_field f, s;
	char q[NM_JW_SHOW_BUF];
	long long v;
	int ret;

	nm_cfg_telemetry_defaults(t, p->c->mesh.admin_port);
	ret = nm_jw_field(&p->j, root, "", "telemetry", JSON_OBJECT, false, &f);
	if (ret < 0)
		return ret;
	if (!ret)
		return check_ports(p, t);
	ret = nm_jw_check_keys(&p->j, f.v, "telemetry", keys);
	if (ret)
		return ret;
	ret = nm_jw_get_int(&p->j, f.v, "telemetry", "metricsPort", false, 0,
			    65535, "a port (1-65535) or 0 (no metrics server)", &v);
	if (ret < 0)
		return ret;
	if (ret)
		t->metrics_port = (uint16_t)v;
	ret = nm_jw_get_int(&p->j, f.v, "telemetry", "adminPort", false, 0,
			    65535, "a port (1-65535) or 0 (no admin server)", &v);
	if (ret < 0)
		return ret;
	if (ret)
		t->admin_port = (uint16_t)v;
	if (get_listen_addr(p, f.v, "metricsAddress", &t->metrics_addr) < 0 ||
	    get_listen_addr(p, f.v, "adminAddress", &t->admin_addr) < 0 ||
	    get_bool(p, f.v, "telemetry", "sockStats", &t->sock_stats) < 0)
		return -EINVAL;
	ret = nm_jw_get_str(&p->j, f.v, "telemetry", "clusterId", false,
			    t->cluster_id, sizeof(t->cluster_id), &s);
	if (ret < 0)
		return ret;
	if (ret && !nm_cfg_dns_subdomain_ok(t->cluster_id, strlen(t->cluster_id),
					    NM_NAME_MAX - 1) &&
	    strcmp(t->cluster_id, "Kubernetes"))
		return nm_jw_fail(&p->j, s.path,
				  "%s is not a cluster ID (a DNS name, or \"Kubernetes\")",
				  nm_jw_show(t->cluster_id, q));
	ret = nm_jw_get_int(&p->j, f.v, "telemetry", "maxSeriesPerMetric", false,
			    16, 1000000, "a series count (16..1000000)", &v);
	if (ret < 0)
		return ret;
	if (ret)
		t->max_series = (uint32_t)v;
	ret = parse_flow_log(p, f.v, &t->flow_log);
	if (ret)
		return ret;
	return check_ports(p, t);
}
