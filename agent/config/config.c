// SPDX-License-Identifier: Apache-2.0
/*
 * config.c - the standalone cluster file (DESIGN §8): load a file or a
 * buffer, run the section parsers (sections.h) over the JSON walker
 * (json.h), then the checks that span sections, and hand out the snapshot.
 *
 * Parsing is pure: the only system calls are nm_cluster_load_file() reading
 * the file, through lib/file.h so a FIFO, device or directory in place of
 * the file fails at once instead of blocking the event loop in open().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "config/fields.h"
#include "config/list.h"
#include "config/sections.h"
#include "lib/addr.h"
#include "lib/file.h"

#define CFG_MAX_FILE (16u << 20) /* a cluster file is never near this */

#define DEFAULT_OUTBOUND_PORT 15001
#define DEFAULT_INBOUND_PORT 15008
#define DEFAULT_ADMIN_PORT 15000

/* --- checks across sections ---------------------------------------------- */

/*
 * Every address in the file is one endpoint in the maps: a node, pod or VIP
 * address used twice would make lookups by address ambiguous.
 */
enum addr_kind { AK_NODE, AK_NODE6, AK_WL, AK_WL6, AK_SVC, AK_SVC6 };

/* Where an address came from, to name both fields in a message. */
static const char *const addr_section[] = {
	[AK_NODE] = "nodes", [AK_NODE6] = "nodes", [AK_WL] = "workloads",
	[AK_WL6] = "workloads", [AK_SVC] = "services", [AK_SVC6] = "services",
};
static const char *const addr_key[] = {
	[AK_NODE] = "address", [AK_NODE6] = "address6", [AK_WL] = "ip",
	[AK_WL6] = "ip6", [AK_SVC] = "vip", [AK_SVC6] = "vip6",
};

struct addr_ent {
	struct nm_addr ip;
	enum addr_kind kind;
	unsigned int idx;
};

static int addr_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct addr_ent *e = ctx;

	return memcmp(e[a].ip.a, e[b].ip.a, sizeof(e[a].ip.a));
}

static void addr_add(struct addr_ent *e, unsigned int *n,
		     const struct nm_addr *ip, enum addr_kind kind,
		     unsigned int idx)
{
	e[*n].ip = *ip;
	e[*n].kind = kind;
	e[*n].idx = idx;
	(*n)++;
}

static void addr_path(char *dst, const struct addr_ent *e)
{
	snprintf(dst, NM_JW_PATH_MAX, "%s[%u].%s", addr_section[e->kind], e->idx,
		 addr_key[e->kind]);
}

static int check_addresses(struct nm_cfg_parser *p)
{
	const struct nm_cluster *c = p->c;
	size_t max = 2 * ((size_t)c->n_nodes + c->n_workloads + c->n_services);
	struct addr_ent *e;
	unsigned int n = 0, i, dup, orig;
	int ret;

	if (max == 0)
		return 0;
	e = calloc(max, sizeof(*e));
	if (!e)
		return nm_jw_fail_nomem(&p->j);
	for (i = 0; i < c->n_nodes; i++) {
		addr_add(e, &n, &c->nodes[i].addr, AK_NODE, i);
		if (c->nodes[i].has_addr6)
			addr_add(e, &n, &c->nodes[i].addr6, AK_NODE6, i);
	}
	for (i = 0; i < c->n_workloads; i++) {
		addr_add(e, &n, &c->workloads[i].ip, AK_WL, i);
		if (c->workloads[i].has_ip6)
			addr_add(e, &n, &c->workloads[i].ip6, AK_WL6, i);
	}
	for (i = 0; i < c->n_services; i++) {
		addr_add(e, &n, &c->services[i].vip, AK_SVC, i);
		if (c->services[i].has_vip6)
			addr_add(e, &n, &c->services[i].vip6, AK_SVC6, i);
	}
	ret = nm_cfg_find_dup(n, addr_cmp, e, NULL, &dup, &orig);
	if (ret < 0) {
		ret = nm_jw_fail_nomem(&p->j);
	} else if (ret) {
		char path[NM_JW_PATH_MAX], other[NM_JW_PATH_MAX];
		char ip[INET6_ADDRSTRLEN];

		addr_path(path, &e[dup]);
		addr_path(other, &e[orig]);
		nm_addr_format(&e[dup].ip, ip, sizeof(ip));
		ret = nm_jw_fail(&p->j, path, "%s is already used by %s", ip,
				 other);
	}
	free(e);
	return ret;
}

/* A folder (certDir, policyDir) relative to the file's folder (as the file
 * was named) into out[NM_PATH_MAX]. */
static int resolve_dir(struct nm_cfg_parser *p, const char *path,
		       const char *dir, char *out)
{
	struct nm_cluster *c = p->c;
	const char *slash = strrchr(c->path, '/');
	size_t base;
	char q[NM_JW_SHOW_BUF];
	int n;

	if (!*dir)
		return nm_jw_fail(&p->j, path, "must not be empty");
	if (dir[0] == '/' || !slash)
		return nm_jw_copy_str(&p->j, path, dir, out, NM_PATH_MAX);
	base = slash == c->path ? 1 : (size_t)(slash - c->path); /* "/x.json" */
	n = snprintf(out, NM_PATH_MAX, "%.*s%s%s", (int)base,
		     c->path, base == 1 && c->path[0] == '/' ? "" : "/", dir);
	if (n < 0 || n >= NM_PATH_MAX)
		return nm_jw_fail(&p->j, path,
				  "%s resolved against the file's folder is too long (at most %d bytes)",
				  nm_jw_show(dir, q), NM_PATH_MAX - 1);
	return 0;
}

/* "policyDir" and "policy": {"applyToExisting"} (docs/policy.md). */
static int parse_policy(struct nm_cfg_parser *p, const json_t *root)
{
	static const char *const keys[] = { "applyToExisting", NULL };
	struct nm_cluster *c = p->c;
	struct nm_jw_field f;
	const json_t *v;
	int ret;

	ret = nm_jw_field(&p->j, root, "", "policyDir", JSON_STRING, false, &f);
	if (ret < 0)
		return ret;
	if (ret) {
		ret = resolve_dir(p, f.path, json_string_value(f.v), c->policy_dir);
		if (ret)
			return ret;
	}
	ret = nm_jw_field(&p->j, root, "", "policy", JSON_OBJECT, false, &f);
	if (ret <= 0)
		return ret;
	ret = nm_jw_check_keys(&p->j, f.v, "policy", keys);
	if (ret)
		return ret;
	v = json_object_get(f.v, "applyToExisting");
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return nm_jw_fail(&p->j, "policy.applyToExisting",
				  "expected true or false, got %s",
				  nm_jw_type_name(v));
	c->policy_apply_to_existing = json_is_true(v);
	return 0;
}

static int parse_root(struct nm_cfg_parser *p, const json_t *root)
{
	static const char *const keys[] = { "trustDomain", "certDir", "mesh",
					    "nodes", "workloads", "services",
					    "forwards", "policyDir", "policy",
					    "telemetry", NULL };
	struct nm_cluster *c = p->c;
	struct nm_jw_field f;
	char q[NM_JW_SHOW_BUF];
	int ret;

	if (!json_is_object(root))
		return nm_jw_fail(&p->j, NULL,
				  "expected a JSON object at the top level, got %s",
				  nm_jw_type_name(root));
	ret = nm_jw_check_keys(&p->j, root, "", keys);
	if (ret)
		return ret;
	ret = nm_jw_get_str(&p->j, root, "", "trustDomain", true,
			    c->trust_domain, sizeof(c->trust_domain), &f);
	if (ret < 0)
		return ret;
	if (!nm_cfg_trust_domain_ok(c->trust_domain))
		return nm_jw_fail(&p->j, f.path,
				  "%s is not a valid trust domain (lowercase letters, digits, '.', '-', '_', starting and ending with a letter or digit)",
				  nm_jw_show(c->trust_domain, q));
	ret = nm_jw_field(&p->j, root, "", "certDir", JSON_STRING, true, &f);
	if (ret < 0)
		return ret;
	ret = resolve_dir(p, f.path, json_string_value(f.v), c->cert_dir);
	if (ret)
		return ret;
	ret = parse_policy(p, root);
	if (ret)
		return ret;
	ret = nm_cfg_parse_mesh(p, root);
	if (ret)
		return ret;
	ret = nm_cfg_parse_telemetry(p, root);
	if (ret)
		return ret;
	ret = nm_cfg_parse_nodes(p, root);
	if (ret)
		return ret;
	ret = nm_cfg_parse_workloads(p, root);
	if (ret)
		return ret;
	ret = nm_cfg_parse_services(p, root);
	if (ret)
		return ret;
	ret = nm_cfg_parse_forwards(p, root);
	if (ret)
		return ret;
	return check_addresses(p);
}


/* --- API ----------------------------------------------------------------- */

int nm_cluster_load_buf(const char *buf, size_t len, const char *name,
			struct nm_cluster **out, char *err, size_t errlen)
{
	struct nm_cfg_parser p = {
		.j = { .name = name ? name : "<buffer>", .err = err, .errlen = errlen },
	};
	struct nm_cluster *c = NULL;
	json_t *root = NULL;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	if (!out || (!buf && len))
		return nm_jw_fail(&p.j, NULL, "invalid arguments");
	*out = NULL;
	if (strlen(p.j.name) >= sizeof(c->path))
		return nm_jw_fail(&p.j, NULL, "file name is too long (at most %d bytes)",
				  NM_PATH_MAX - 1);
	c = calloc(1, sizeof(*c));
	if (!c)
		return nm_jw_fail_nomem(&p.j);
	memcpy(c->path, p.j.name, strlen(p.j.name) + 1);
	c->mesh.outbound_port = DEFAULT_OUTBOUND_PORT;
	c->mesh.inbound_port = DEFAULT_INBOUND_PORT;
	c->mesh.admin_port = DEFAULT_ADMIN_PORT;
	c->mesh.health_port = 15021; /* as ztunnel's readiness port */
	c->mesh.preserve_src = true;
	c->mesh.kernel_path = true;
	c->mesh.cert_expiry_warning = -1; /* a day, at most 1/5 of the lifetime */
	c->mesh.fail_mode = NM_CFG_FAIL_CLOSED;
	snprintf(c->mesh.root_ns, sizeof(c->mesh.root_ns), "istio-system");
	/* As Istio: plaintext still reaches pods until a mesh turns STRICT. */
	c->mesh.default_mode = NM_MODE_PERMISSIVE;
	/* Two per key: enough for sequential connects (one in use while the
	 * next is handshaken), and bench/mesh.sh measured no gain from more. */
	c->mesh.tunnel_pool.size = 2;
	c->mesh.tunnel_pool.idle_ms = 8000;
	c->mesh.tunnel_pool.max_total = 256;
	nm_cfg_telemetry_defaults(&c->telemetry, DEFAULT_ADMIN_PORT);
	/* c->mesh.limits stay 0: derived from RLIMIT_NOFILE by the agent. */
	p.c = c;

	root = nm_jw_load(&p.j, buf, len, CFG_MAX_FILE);
	if (!root) {
		ret = -EINVAL;
		goto cleanup;
	}
	ret = parse_root(&p, root);
	if (ret)
		goto cleanup;
	*out = c;
	c = NULL;
cleanup:
	free(p.node_idx);
	json_decref(root);
	nm_cluster_free(c);
	return ret;
}

int nm_cluster_load_file(const char *path, struct nm_cluster **out, char *err,
			 size_t errlen)
{
	struct nm_jw j = { .name = path ? path : "<null>", .err = err,
			   .errlen = errlen };
	const char *why = NULL;
	char *buf = NULL;
	size_t len = 0;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	if (!path || !out)
		return nm_jw_fail(&j, NULL, "invalid arguments");
	*out = NULL;
	/* One byte over the cap still reads as "too large", not truncated. */
	ret = nm_file_read(path, CFG_MAX_FILE, &buf, &len, &why);
	switch (ret) {
	case 0:
		break;
	case -ENOMEM:
		return nm_jw_fail_nomem(&j);
	case -EINVAL: /* FIFO, socket, device or directory */
		return nm_jw_fail(&j, NULL, "%s", why ? why : "not a regular file");
	case -EFBIG:
		return nm_jw_fail(&j, NULL, "file is too large (at most %u MiB)",
				  CFG_MAX_FILE >> 20);
	default:
		nm_jw_fail(&j, NULL, "%s: %s", why ? why : "cannot read",
			   strerror(-ret));
		return ret;
	}
	ret = nm_cluster_load_buf(buf, len, path, out, err, errlen);
	free(buf);
	return ret;
}

void nm_cluster_free(struct nm_cluster *c)
{
	if (!c)
		return;
	free(c->nodes);
	free(c->workloads);
	free(c->services);
	free(c->forwards);
	free(c);
}

int nm_cluster_find_node(const struct nm_cluster *c, const char *name)
{
	unsigned int i;

	if (!c || !name)
		return -ENOENT;
	for (i = 0; i < c->n_nodes; i++)
		if (strcmp(c->nodes[i].name, name) == 0)
			return (int)i;
	return -ENOENT;
}

int nm_cluster_find_workload_by_ip(const struct nm_cluster *c,
				   const struct nm_addr *addr)
{
	unsigned int i;

	if (!c || !addr)
		return -ENOENT;
	for (i = 0; i < c->n_workloads; i++) {
		const struct nm_workload_cfg *w = &c->workloads[i];

		if (memcmp(&w->ip, addr, sizeof(*addr)) == 0 ||
		    (w->has_ip6 && memcmp(&w->ip6, addr, sizeof(*addr)) == 0))
			return (int)i;
	}
	return -ENOENT;
}

int nm_cluster_find_workload(const struct nm_cluster *c, const char *ns,
			     const char *name)
{
	unsigned int i;

	if (!c || !ns || !name)
		return -ENOENT;
	for (i = 0; i < c->n_workloads; i++)
		if (strcmp(c->workloads[i].ns, ns) == 0 &&
		    strcmp(c->workloads[i].name, name) == 0)
			return (int)i;
	return -ENOENT;
}

