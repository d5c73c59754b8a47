// SPDX-License-Identifier: Apache-2.0
/*
 * runstate.c - write and remove /run/nodemesh/<instance>/agent.json. It is
 * rewritten at every applied generation, so its name tables (nodes,
 * identities, workloads, services, certificates: docs/cli.md) always match
 * the IDs the pinned maps hold; the CLI joins the two.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <jansson.h>

#include "lib/abidecode.h" /* the enum names the CLI prints */
#include "lib/log.h"
#include "lib/version.h"
#include "core/runstate.h"
#include "mesh/tls.h"
#include "state/state.h"
#include "datapath/datapath.h"

int nm_runstate_path(const char *instance, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s/agent.json", NM_RUN_BASE, instance);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static json_t *listeners_json(const struct nm_agent *a)
{
	static const char *const kinds[] = { "outbound", "inbound",
					     "forward-outbound", "forward-inbound" };
	json_t *arr = json_array();

	for (const struct nm_listener *l = a->listeners; l; l = l->next) {
		struct nm_addr addr;
		struct nm_addr ip;
		__be16 port;
		char host[64];

		nm_addr_from_sockaddr(&l->addr, &addr, &port);
		memcpy(&ip, &addr, sizeof(ip));
		nm_addr_format(&ip, host, sizeof(host));
		json_array_append_new(arr, json_pack("{s:s, s:s, s:i, s:s?}",
			"role", kinds[l->kind], "address", host,
			"port", ntohs(port), "forward", l->fwd ? l->fwd->name : NULL));
	}
	return arr;
}

/* What the agent chose at start that `nodemesh status` reports. */
static json_t *features_json(const struct nm_agent *a)
{
	const struct nm_srcaddr *sa = &a->srcaddr;

	return json_pack("{s:s, s:s, s:{s:I, s:I, s:I, s:I, s:I}}",
			 "source_address", sa->active ? "preserved" : "agent",
			 "source_address_reason", sa->active ? "" : sa->reason,
			 "source_address_counts",
			 "preserved", (json_int_t)sa->preserved,
			 "onlink", (json_int_t)sa->onlink_pairs,
			 "bind_failed", (json_int_t)sa->bind_failed,
			 "local_dst", (json_int_t)sa->local_dst,
			 "forged_src", (json_int_t)sa->forged);
}

static json_t *path_json(const struct nm_path_state *p)
{
	return json_pack("{s:b, s:s, s:s, s:I}", "active", p->active,
			 "mode", p->mode, "reason", p->reason,
			 "flows", (json_int_t)p->flows);
}

/* The fast paths (mesh/fastpath.h), in the order `nodemesh status` prints. */
static json_t *paths_json(const struct nm_agent *a)
{
	const struct nm_fastpaths *fp = &a->paths;

	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
			 "kernel_path", path_json(&fp->kernel_path),
			 "ktls", path_json(&fp->ktls),
			 "agent_records", path_json(&fp->agent_records),
			 "ec_builtin", path_json(&fp->ec_builtin),
			 "relay", path_json(&fp->relay),
			 "tunnel_pool", path_json(&fp->tunnel_pool),
			 "busy_poll", path_json(&fp->busy_poll));
}

static json_t *addr_json(const struct nm_addr *ip)
{
	char buf[64];

	nm_addr_format(ip, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *spiffe_json(const char *td, const char *ns, const char *sa)
{
	struct nm_spiffe_id id = { 0 };
	char buf[NM_SPIFFE_MAX];

	snprintf(id.trust_domain, sizeof(id.trust_domain), "%s", td);
	snprintf(id.ns, sizeof(id.ns), "%s", ns);
	snprintf(id.sa, sizeof(id.sa), "%s", sa);
	return nm_spiffe_format(&id, buf, sizeof(buf)) ? json_null() : json_string(buf);
}

static json_t *nodes_json(const struct nm_state *s)
{
	json_t *arr = json_array();

	for (unsigned int i = 0; i < s->n_nodes; i++) {
		const struct nm_st_node *n = &s->nodes[i];

		json_array_append_new(arr, json_pack("{s:s, s:I, s:o, s:b}",
			"name", n->cfg->name, "node_id", (json_int_t)n->id,
			"address", addr_json(&n->cfg->addr), "self", n == s->self));
	}
	return arr;
}

static json_t *identities_json(const struct nm_state *s)
{
	json_t *arr = json_array();

	for (unsigned int i = 0; i < s->n_identities; i++) {
		const struct nm_st_identity *id = &s->identities[i];

		json_array_append_new(arr, json_pack("{s:I, s:s, s:s, s:o}",
			"identity_id", (json_int_t)id->id, "namespace", id->ns,
			"service_account", id->sa,
			"spiffe_id", spiffe_json(s->cluster->trust_domain, id->ns, id->sa)));
	}
	return arr;
}

/* The inbound mode in force: the workload's own, else mesh.defaultMode. */
static const char *workload_mode(const struct nm_st_workload *w)
{
	return w->strict ? "STRICT" : "PERMISSIVE";
}

static json_t *workloads_json(const struct nm_state *s)
{
	json_t *arr = json_array();

	for (unsigned int i = 0; i < s->n_workloads; i++) {
		const struct nm_st_workload *w = &s->workloads[i];
		const struct nm_workload_cfg *c = w->cfg;
		json_t *addrs = json_array(), *labels = json_object();

		json_array_append_new(addrs, addr_json(&c->ip));
		if (c->has_ip6)
			json_array_append_new(addrs, addr_json(&c->ip6));
		for (unsigned int l = 0; l < c->n_labels; l++)
			json_object_set_new(labels, c->labels[l].key,
					    json_string(c->labels[l].value));
		json_array_append_new(arr, json_pack(
			"{s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:o, s:s, s:b, s:I, s:s, s:o}",
			"name", c->name, "namespace", c->ns, "service_account", c->sa,
			"identity", spiffe_json(s->cluster->trust_domain, c->ns, c->sa),
			"workload_id", (json_int_t)w->id,
			"identity_id", (json_int_t)w->identity_id,
			"namespace_id", (json_int_t)w->namespace_id,
			"addresses", addrs,
			"node", w->node ? w->node->cfg->name : "",
			"local", w->local, "cgroup_id", (json_int_t)w->cgroup_id,
			"mode", workload_mode(w), "labels", labels));
	}
	return arr;
}

static json_t *services_json(const struct nm_state *s)
{
	json_t *arr = json_array();

	for (unsigned int i = 0; i < s->n_services; i++) {
		const struct nm_st_service *sv = &s->services[i];
		const struct nm_service_cfg *c = sv->cfg;
		json_t *ports = json_array();

		for (unsigned int p = 0; p < c->n_ports; p++)
			json_array_append_new(ports, json_pack("{s:i, s:i}",
				"port", c->ports[p].port,
				"target_port", c->ports[p].target_port));
		json_array_append_new(arr, json_pack(
			"{s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:s, s:s}",
			"name", c->name, "namespace", c->ns,
			"service_id", (json_int_t)sv->id,
			"namespace_id", (json_int_t)sv->namespace_id,
			"vip", addr_json(&c->vip),
			"vip6", c->has_vip6 ? addr_json(&c->vip6) : json_null(),
			"ports", ports, "lb", nm_abi_lb_algo_name(c->lb.algorithm),
			"locality", nm_abi_locality_name(c->lb.locality)));
	}
	return arr;
}

/* The loaded credentials: identity, serial, validity, file (tls.h). */
static json_t *certificates_json(const struct nm_agent *a)
{
	unsigned int n = a->tls ? nm_tls_identity_count(a->tls) : 0;
	json_t *arr = json_array();

	for (unsigned int i = 0; i < n; i++) {
		struct nm_tls_cert_info ci;

		if (nm_tls_cert_info(a->tls, i, &ci))
			continue;
		json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:s, s:I, s:I, s:s}",
			"namespace", ci.id.ns, "service_account", ci.id.sa,
			"identity", spiffe_json(ci.id.trust_domain, ci.id.ns, ci.id.sa),
			"serial", ci.serial,
			"not_before", (json_int_t)ci.not_before,
			"not_after", (json_int_t)ci.not_after,
			"file", ci.file));
	}
	return arr;
}

int nm_runstate_write(const struct nm_agent *a)
{
	char path[512], tmp[520], dir[512];
	json_t *root;
	int err = 0;

	snprintf(dir, sizeof(dir), "%s/%s", NM_RUN_BASE, a->instance);
	if ((mkdir(NM_RUN_BASE, 0755) && errno != EEXIST) ||
	    (mkdir(dir, 0755) && errno != EEXIST))
		return -errno;
	nm_runstate_path(a->instance, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	root = json_pack("{s:i, s:s, s:s, s:s, s:s, s:b, s:s, s:i, s:I, s:o, s:o}",
			 "pid", (int)getpid(),
			 "instance", a->instance,
			 "config", a->cluster->path,
			 "node", a->state->self ? a->state->self->cfg->name : "",
			 "trust_domain", a->cluster->trust_domain,
			 "datapath", a->dp != NULL,
			 "pin_dir", NM_PIN_BASE,
			 "identities", (int)nm_tls_identity_count(a->tls),
			 "generation", (json_int_t)a->state->generation,
			 "listeners", listeners_json(a),
			 "features", features_json(a));
	if (!root)
		return -ENOMEM;
	/* What the CLI needs beyond the above: the admin API (nodemesh flows,
	 * version) and the name tables of this generation (docs/cli.md). */
	json_object_set_new(root, "version", json_string(NM_VERSION));
	json_object_set_new(root, "paths", paths_json(a));
	json_object_set_new(root, "written_at", json_integer((json_int_t)time(NULL)));
	/* telemetry.adminPort 0 turns the admin API off: null. */
	json_object_set_new(root, "admin", a->cluster->telemetry.admin_port ?
			    json_pack("{s:o, s:i}",
				      "address", addr_json(&a->cluster->telemetry.admin_addr),
				      "port", a->cluster->telemetry.admin_port) : json_null());
	json_object_set_new(root, "nodes", nodes_json(a->state));
	json_object_set_new(root, "identity_table", identities_json(a->state));
	json_object_set_new(root, "workloads", workloads_json(a->state));
	json_object_set_new(root, "services", services_json(a->state));
	json_object_set_new(root, "certificates", certificates_json(a));
	/* BPF telemetry: how nm_events reaches the agent, and whether
	 * sockops keeps per-socket statistics (datapath/datapath.h). */
	json_object_set_new(root, "events",
			    a->dp ? json_string(nm_events_transport_name(
					    nm_datapath_events_transport(a->dp))) :
				    json_null());
	json_object_set_new(root, "sock_stats",
			    json_boolean(a->dp && nm_datapath_sock_stats_on(a->dp)));
	if (json_dump_file(root, tmp, JSON_INDENT(2)) || rename(tmp, path))
		err = -EIO;
	json_decref(root);
	if (err)
		pr_warn("msg=\"cannot write run state\" file=%s", path);
	return err;
}

void nm_runstate_remove(const struct nm_agent *a)
{
	char path[512], dir[512];

	if (nm_runstate_path(a->instance, path, sizeof(path)))
		return;
	unlink(path);
	snprintf(dir, sizeof(dir), "%s/%s", NM_RUN_BASE, a->instance);
	rmdir(dir);
}
