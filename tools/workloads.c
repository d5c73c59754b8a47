// SPDX-License-Identifier: Apache-2.0
/*
 * workloads.c - `nodemesh workloads` and `nodemesh services`: the names
 * come from the instance's run state (agent.json, rewritten at every
 * applied generation), what the kernel holds from the pinned maps
 * (nm_workloads, nm_services), joined by ID. With the run state gone (the
 * agent stopped) they print what the maps hold, IDs only, and say so.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <bpf/bpf.h>
#include <jansson.h>

#include "nm_abi.h"
#include "lib/abidecode.h"
#include "lib/addr.h"
#include "lib/spiffe.h"
#include "lib/table.h"
#include "common.h"
#include "commands.h"

#define NOTE_NO_NAMES \
	"no run state (agent.json) for this instance: the agent is not running; " \
	"showing what the pinned maps hold, IDs only"

/* Everything about one instance the two commands look at. */
struct view {
	struct nm_target t;
	json_t *agent;        /* agent.json or NULL */
	char agent_err[PATH_MAX + 256];
	bool has_pins;
};

static void view_open(struct view *v)
{
	char dir[PATH_MAX];

	v->agent = nm_state_load(v->t.run_dir, v->t.instance, NM_RUN_AGENT_FILE,
				 v->agent_err, sizeof(v->agent_err));
	v->has_pins = !nm_pin_path(v->t.pin_base, v->t.instance, NULL, dir, sizeof(dir)) &&
		      access(dir, F_OK) == 0;
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* cgroup id -> nm_workload of every pinned workload: {"<workload_id>": rec}. */
static json_t *pinned_workloads(const struct nm_target *t, char *err, size_t errlen)
{
	char path[PATH_MAX];
	__u64 key, next, *prev = NULL;
	struct nm_workload w;
	json_t *o;
	int fd = nm_pinned_map(t, "nm_workloads", path, sizeof(path));

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-fd));
		return NULL;
	}
	o = json_object();
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &w))
			continue;
		json_t *rec = nm_abi_value_json("nm_workloads", &w, sizeof(w), 1, false);
		char id[16];

		json_object_set_new(rec, "cgroup_id", json_integer((json_int_t)key));
		snprintf(id, sizeof(id), "%u", w.workload_id);
		json_object_set_new(o, id, rec);
	}
	close(fd);
	return o;
}

/* Sorts an array of objects by an integer field (map order means nothing). */
static void sort_by_id(json_t *arr, const char *key)
{
	size_t n = json_array_size(arr);

	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0; j--) {
			json_t *a = json_array_get(arr, j - 1), *b = json_array_get(arr, j);

			if (json_integer_value(json_object_get(a, key)) <=
			    json_integer_value(json_object_get(b, key)))
				break;
			json_incref(a);
			json_array_set(arr, j - 1, b);
			json_array_set_new(arr, j, a);
		}
}

/* The table's optional note line, then the table; frees it. */
static int finish_table(struct nm_table *tab, json_t *doc, int ret)
{
	if (!ret) {
		if (jstr(doc, "note"))
			printf("# %s\n", jstr(doc, "note"));
		ret = nm_table_print(tab, stdout);
	}
	nm_table_free(tab);
	return ret;
}

/*
 * `workloads` and `services` alike: the target from the command line, the
 * document from the pins and the run state, then JSON or a table.
 */
static int run_view(const struct nm_cli *cli, int argc, char **argv,
		    const char *usage, const char *what,
		    json_t *(*build)(struct view *, char *, size_t),
		    int (*print)(json_t *))
{
	struct view v = { 0 };
	char err[PATH_MAX * 2 + 512];
	json_t *doc;
	int ret;

	ret = nm_target_parse(cli, argc, argv, usage, &v.t, NULL, NULL, NULL,
			      NULL, NULL);
	if (ret)
		return ret < 0 ? NM_EXIT_OK : ret;
	view_open(&v);
	doc = build(&v, err, sizeof(err));
	json_decref(v.agent);
	if (!doc)
		return nm_cli_fail(cli, NM_EXIT_FAIL, "%s: %s", what, err);
	if (cli->json)
		return nm_cli_print_json(cli, doc);
	ret = print(doc);
	json_decref(doc);
	return ret ? NM_EXIT_FAIL : NM_EXIT_OK;
}

static const char workloads_usage[] =
	"Usage: nodemesh workloads [--instance NAME] [--run-dir DIR] [--pin-dir DIR] [--json]\n"
	"Every workload the instance knows (from its run state), with its\n"
	"identity, addresses, node and inbound mode, and whether this node's\n"
	"nm_workloads map meshes it. With the agent down (no run state) it lists\n"
	"what the pinned map holds: IDs, addresses and flags, no names.\n";

static json_t *workloads_doc(struct view *v, char *err, size_t errlen)
{
	json_t *pinned = NULL, *arr = json_array(), *doc, *w;
	char perr[PATH_MAX + 64] = "";
	size_t i;

	if (v->has_pins)
		pinned = pinned_workloads(&v->t, perr, sizeof(perr));
	if (!v->agent && !pinned) {
		snprintf(err, errlen, "instance \"%s\": no run state in %s%s%s and no pins (%s)",
			 v->t.instance, v->t.run_dir, v->agent_err[0] ? ": " : "",
			 v->agent_err, perr[0] ? perr : "no pin directory");
		json_decref(arr);
		return NULL;
	}
	doc = json_pack("{s:s, s:s}", "instance", v->t.instance,
			"source", v->agent ? "runstate" : "pins");
	if (v->agent) {
		json_object_set(doc, "generation", json_object_get(v->agent, "generation"));
		json_array_foreach(json_object_get(v->agent, "workloads"), i, w) {
			json_t *o = json_deep_copy(w), *p = NULL;
			char id[16];

			snprintf(id, sizeof(id), "%lld",
				 (long long)json_integer_value(json_object_get(w, "workload_id")));
			if (pinned)
				p = json_object_get(pinned, id);
			json_object_set_new(o, "meshed", json_boolean(p != NULL));
			if (p) {
				/* What the kernel enforces wins over the run state. */
				const char *f = jstr(p, "flags");

				json_object_set_new(o, "mode", json_string(
					f && strstr(f, "STRICT") ? "STRICT" : "PERMISSIVE"));
				json_object_set_new(o, "flags", json_string(f ? f : "-"));
			}
			json_array_append_new(arr, o);
		}
	} else {
		const char *key;

		json_object_set_new(doc, "note", json_string(NOTE_NO_NAMES));
		json_object_foreach(pinned, key, w) {
			const char *f = jstr(w, "flags");

			json_array_append_new(arr, json_pack(
				"{s:n, s:n, s:n, s:O, s:O, s:O, s:[O], s:n, s:s, s:b, s:O, s:s, s:b}",
				"name", "namespace", "identity",
				"workload_id", json_object_get(w, "workload_id"),
				"identity_id", json_object_get(w, "identity_id"),
				"namespace_id", json_object_get(w, "namespace_id"),
				"addresses", json_object_get(w, "address"),
				"node",
				"mode", f && strstr(f, "STRICT") ? "STRICT" : "PERMISSIVE",
				"local", true, "cgroup_id", json_object_get(w, "cgroup_id"),
				"flags", f ? f : "-", "meshed", true));
		}
	}
	if (perr[0])
		json_object_set_new(doc, "pins_error", json_string(perr));
	if (!v->agent)
		sort_by_id(arr, "workload_id");
	json_object_set_new(doc, "workloads", arr);
	json_decref(pinned);
	return doc;
}

static void join_addresses(json_t *arr, char *buf, size_t len)
{
	size_t i, off = 0;
	json_t *a;

	buf[0] = '\0';
	json_array_foreach(arr, i, a)
		off += snprintf(buf + off, off < len ? len - off : 0, "%s%s",
				i ? "," : "", json_string_value(a));
}

static int print_workloads(json_t *doc)
{
	static const char *const heads[] = { "NAME", "NAMESPACE", "IDENTITY", "ADDRESSES",
					     "NODE", "MODE", "MESHED", "ID" };
	struct nm_table *tab;
	size_t i;
	json_t *w;
	int ret;

	ret = nm_table_new(&tab, 8, heads);
	if (ret)
		return ret;
	json_array_foreach(json_object_get(doc, "workloads"), i, w) {
		char addrs[256], id[32], ident[NM_SPIFFE_MAX + 16];
		const char *cells[8];

		join_addresses(json_object_get(w, "addresses"), addrs, sizeof(addrs));
		snprintf(id, sizeof(id), "%lld",
			 (long long)json_integer_value(json_object_get(w, "workload_id")));
		if (jstr(w, "identity"))
			snprintf(ident, sizeof(ident), "%s", jstr(w, "identity"));
		else
			snprintf(ident, sizeof(ident), "id:%lld",
				 (long long)json_integer_value(json_object_get(w, "identity_id")));
		cells[0] = jstr(w, "name");
		cells[1] = jstr(w, "namespace");
		cells[2] = ident;
		cells[3] = addrs;
		cells[4] = jstr(w, "node");
		cells[5] = jstr(w, "mode");
		cells[6] = json_is_true(json_object_get(w, "meshed")) ? "yes" : "no";
		cells[7] = id;
		ret = nm_table_row(tab, cells);
		if (ret)
			break;
	}
	return finish_table(tab, doc, ret);
}

int nm_cmd_workloads(const struct nm_cli *cli, int argc, char **argv)
{
	return run_view(cli, argc, argv, workloads_usage, "workloads", workloads_doc, print_workloads);
}

/* --- services ------------------------------------------------------------ */

static const char services_usage[] =
	"Usage: nodemesh services [--instance NAME] [--run-dir DIR] [--pin-dir DIR] [--json]\n"
	"Every service port the instance knows (from its run state) with its VIP,\n"
	"target port, load-balancing algorithm and locality, and the backends\n"
	"this node's nm_services map holds for it. With the agent down it lists\n"
	"what the pinned map holds: service IDs, VIPs and backend counts.\n";

/* The pinned nm_services entry of vip:port (host order); -errno. */
static int lookup_service(int fd, const char *vip, int port, struct nm_service *out)
{
	struct nm_svc_key k = { .proto = IPPROTO_TCP };
	bool v6;

	if (nm_addr_parse(vip, &k.vip, &v6))
		return -EINVAL;
	k.port = htons((uint16_t)port);
	return bpf_map_lookup_elem(fd, &k, out) ? -errno : 0;
}

static json_t *services_doc(struct view *v, char *err, size_t errlen)
{
	char path[PATH_MAX];
	json_t *arr = json_array(), *doc, *s, *p;
	size_t i, j;
	int fd = v->has_pins ? nm_pinned_map(&v->t, "nm_services", path, sizeof(path)) : -ENOENT;

	if (!v->agent && fd < 0) {
		snprintf(err, errlen, "instance \"%s\": no run state in %s%s%s and no pinned nm_services",
			 v->t.instance, v->t.run_dir, v->agent_err[0] ? ": " : "", v->agent_err);
		json_decref(arr);
		return NULL;
	}
	doc = json_pack("{s:s, s:s}", "instance", v->t.instance,
			"source", v->agent ? "runstate" : "pins");
	if (v->agent) {
		json_object_set(doc, "generation", json_object_get(v->agent, "generation"));
		json_array_foreach(json_object_get(v->agent, "services"), i, s) {
			const char *vips[2] = { jstr(s, "vip"), jstr(s, "vip6") };

			json_array_foreach(json_object_get(s, "ports"), j, p) {
				for (int f = 0; f < 2; f++) {
					int port = (int)json_integer_value(json_object_get(p, "port"));
					struct nm_service sv;
					char vp[96];

					if (!vips[f])
						continue;
					nm_abi_hostport(vips[f], port, vp, sizeof(vp));
					json_array_append_new(arr, json_pack(
						"{s:O, s:O, s:O, s:s, s:s, s:i, s:O, s:o, s:O, s:O}",
						"name", json_object_get(s, "name"),
						"namespace", json_object_get(s, "namespace"),
						"service_id", json_object_get(s, "service_id"),
						"vip", vips[f], "vip_port", vp, "port", port,
						"target_port", json_object_get(p, "target_port"),
						"backends", fd >= 0 && !lookup_service(fd, vips[f], port, &sv) ?
							json_integer(sv.backend_count) : json_null(),
						"lb", json_object_get(s, "lb"),
						"locality", json_object_get(s, "locality")));
				}
			}
		}
	} else {
		struct nm_svc_key key, next, *prev = NULL;
		struct nm_service sv;

		json_object_set_new(doc, "note", json_string(NOTE_NO_NAMES));
		while (!bpf_map_get_next_key(fd, prev, &next)) {
			json_t *k;

			key = next;
			prev = &key;
			if (bpf_map_lookup_elem(fd, &key, &sv))
				continue;
			k = nm_abi_key_json("nm_services", &key, sizeof(key));
			json_array_append_new(arr, json_pack(
				"{s:n, s:n, s:I, s:O, s:O, s:O, s:n, s:I, s:s, s:n}",
				"name", "namespace", "service_id", (json_int_t)sv.service_id,
				"vip", json_object_get(k, "vip"),
				"vip_port", json_object_get(k, "vip_port"),
				"port", json_object_get(k, "port"), "target_port",
				"backends", (json_int_t)sv.backend_count,
				"lb", nm_abi_lb_algo_name(sv.lb_algo), "locality"));
			json_decref(k);
		}
	}
	if (fd >= 0)
		close(fd);
	if (!v->agent)
		sort_by_id(arr, "service_id");
	json_object_set_new(doc, "services", arr);
	return doc;
}

static int print_services(json_t *doc)
{
	static const char *const heads[] = { "NAME", "NAMESPACE", "VIP:PORT", "TARGET",
					     "BACKENDS", "LB", "LOCALITY", "ID" };
	struct nm_table *tab;
	size_t i;
	json_t *s;
	int ret;

	ret = nm_table_new(&tab, 8, heads);
	if (ret)
		return ret;
	json_array_foreach(json_object_get(doc, "services"), i, s) {
		char target[16] = "", be[16] = "", id[16];
		const char *cells[8];

		if (json_is_integer(json_object_get(s, "target_port")))
			snprintf(target, sizeof(target), "%lld",
				 (long long)json_integer_value(json_object_get(s, "target_port")));
		if (json_is_integer(json_object_get(s, "backends")))
			snprintf(be, sizeof(be), "%lld",
				 (long long)json_integer_value(json_object_get(s, "backends")));
		snprintf(id, sizeof(id), "%lld",
			 (long long)json_integer_value(json_object_get(s, "service_id")));
		cells[0] = jstr(s, "name");
		cells[1] = jstr(s, "namespace");
		cells[2] = jstr(s, "vip_port");
		cells[3] = target;
		cells[4] = be;
		cells[5] = jstr(s, "lb");
		cells[6] = jstr(s, "locality");
		cells[7] = id;
		ret = nm_table_row(tab, cells);
		if (ret)
			break;
	}
	return finish_table(tab, doc, ret);
}

int nm_cmd_services(const struct nm_cli *cli, int argc, char **argv)
{
	return run_view(cli, argc, argv, services_usage, "services", services_doc, print_services);
}
