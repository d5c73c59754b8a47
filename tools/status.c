// SPDX-License-Identifier: Apache-2.0
/*
 * status.c - `nodemesh status`: what each agent instance recorded and what
 * it left pinned. It only reads:
 *
 *   <run-dir>/<instance>/agent.json     core/runstate.c: pid, node, config,
 *                                       listeners (while the agent runs)
 *   <run-dir>/<instance>/features.json  what the agent probed at start and
 *                                       chose (the CLI never probes: probing
 *                                       loads programs, makes a cgroup and
 *                                       can load the tls module)
 *   <pin-dir>/<instance>/               pinned maps and links; the
 *                                       nm_agent_state map's one entry
 *   /proc/self/mountinfo, uname         bpffs and cgroup2 mounts, kernel
 *
 * An instance is listed when it has either a run directory or pins. It
 * counts as running while its recorded pid is alive and is a nodemeshd.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <jansson.h>

#include "nm_abi.h"
#include "lib/abidecode.h"
#include "lib/file.h"
#include "lib/json.h"
#include "lib/mountinfo.h"
#include "lib/pins.h"
#include "lib/table.h"
#include "common.h"
#include "commands.h"

struct status_opts {
	const char *instance;
	const char *run_dir;
	const char *pin_base;
};

static const char status_usage[] =
	"Usage: nodemesh status [--instance NAME] [--run-dir DIR] [--pin-dir DIR] [--json]\n"
	"Shows each agent instance: whether it runs (pid, version, generation,\n"
	"uptime), what it recorded (node, listeners, the kernel features it probed\n"
	"and what it chose, events transport, source-address mode) and what it\n"
	"pinned: the programs attached through its links, every map's fill, its\n"
	"state map. Reads only: it never probes the kernel, loads programs or\n"
	"modules, or creates anything.\n"
	"  --run-dir DIR  run state directory (default " NM_RUN_DIR ")\n"
	"  --pin-dir DIR  pin directory (default " NM_PIN_BASE ")\n";

static int cmp_strs(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The attached program's name, type and tag (bpftool prog show). */
static void prog_json(json_t *o, __u32 prog_id)
{
	struct bpf_prog_info info = { 0 };
	__u32 len = sizeof(info);
	const char *s;
	char tag[2 * BPF_TAG_SIZE + 1];
	int fd = bpf_prog_get_fd_by_id(prog_id);

	if (fd < 0)
		return;
	if (!bpf_obj_get_info_by_fd(fd, &info, &len)) {
		s = libbpf_bpf_prog_type_str(info.type);
		for (int i = 0; i < BPF_TAG_SIZE; i++)
			snprintf(tag + 2 * i, 3, "%02x", info.tag[i]);
		json_object_set_new(o, "prog_name", json_string(info.name));
		json_object_set_new(o, "prog_type", json_string(s ? s : "unknown"));
		json_object_set_new(o, "prog_tag", json_string(tag));
	}
	close(fd);
}

/*
 * The BPF programs' failed updates of map `name`, summed over the CPUs from
 * nm_map_errors (index enum nm_map_id); null without that map or an id.
 */
static json_t *update_errors(int err_fd, const char *name)
{
	int ncpus = libbpf_num_possible_cpus();
	__u64 *vals, sum = 0;
	__u32 id;

	if (err_fd < 0 || ncpus <= 0)
		return json_null();
	for (id = 0; nm_abi_map_name(id); id++)
		if (!strcmp(nm_abi_map_name(id), name))
			break;
	if (!nm_abi_map_name(id))
		return json_null();
	vals = calloc((size_t)ncpus, sizeof(*vals));
	if (!vals || bpf_map_lookup_elem(err_fd, &id, vals)) {
		free(vals);
		return json_null();
	}
	for (int c = 0; c < ncpus; c++)
		sum += vals[c];
	free(vals);
	return json_integer((json_int_t)sum);
}

/* Entries / capacity of every pinned map, as `nodemesh maps` shows them. */
static json_t *map_fill_json(const char *dir)
{
	json_t *arr = json_array();
	struct dirent *de;
	char *names[256];
	int n = 0;
	char epath[PATH_MAX + 32];
	int err_fd;
	DIR *d = opendir(dir);

	if (!d)
		return arr;
	snprintf(epath, sizeof(epath), "%s/nm_map_errors", dir);
	err_fd = bpf_obj_get(epath);
	while ((de = readdir(d)) && n < (int)(sizeof(names) / sizeof(names[0])))
		if (!strncmp(de->d_name, NM_PIN_MAP_PREFIX, strlen(NM_PIN_MAP_PREFIX)))
			names[n++] = strdup(de->d_name);
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_strs);
	for (int i = 0; i < n; i++) {
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);
		char path[PATH_MAX + 256];
		const char *type;
		long entries;
		int fd;

		if (!names[i])
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		fd = bpf_obj_get(path);
		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len)) {
			json_array_append_new(arr, json_pack("{s:s, s:s}", "name", names[i],
							     "error", strerror(errno)));
			if (fd >= 0)
				close(fd);
			free(names[i]);
			continue;
		}
		entries = nm_map_count(fd, info.type, info.key_size);
		close(fd);
		type = libbpf_bpf_map_type_str(info.type);
		json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:I, s:o}", "name", names[i],
			"type", type ? type : "unknown",
			"entries", entries < 0 ? json_null() : json_integer(entries),
			"max_entries", (json_int_t)info.max_entries,
			"update_errors", update_errors(err_fd, names[i])));
		free(names[i]);
	}
	if (err_fd >= 0)
		close(err_fd);
	return arr;
}

static json_t *link_json(const char *dir, const char *name)
{
	struct bpf_link_info info = { 0 };
	__u32 len = sizeof(info);
	char path[PATH_MAX + 256];
	const char *s;
	json_t *o;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	o = json_pack("{s:s}", "name", name);
	fd = bpf_obj_get(path);
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len)) {
		json_object_set_new(o, "error", json_string(strerror(errno)));
		if (fd >= 0)
			close(fd);
		return o;
	}
	close(fd);
	prog_json(o, info.prog_id);
	s = libbpf_bpf_link_type_str(info.type);
	json_object_set_new(o, "id", json_integer(info.id));
	json_object_set_new(o, "type", json_string(s ? s : "unknown"));
	json_object_set_new(o, "prog_id", json_integer(info.prog_id));
	if (info.type == BPF_LINK_TYPE_CGROUP) {
		s = libbpf_bpf_attach_type_str(info.cgroup.attach_type);
		json_object_set_new(o, "attach_type", json_string(s ? s : "unknown"));
		/* 0 once the link was detached (its cgroup went away). */
		json_object_set_new(o, "cgroup_id",
				    json_integer((json_int_t)info.cgroup.cgroup_id));
	}
	return o;
}

/* The agent's one nm_agent_state entry, or {"error": ...}. */
static json_t *agent_state_json(const char *dir)
{
	struct bpf_map_info info = { 0 };
	struct nm_agent_state st;
	__u32 len = sizeof(info), key = 0;
	char path[PATH_MAX + 64];
	struct timespec now;
	json_t *o = NULL;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, NM_PIN_AGENT_STATE);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return errno == ENOENT ? json_null() :
					 json_pack("{s:s}", "error", strerror(errno));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) ||
	    info.value_size != sizeof(st) || info.key_size != sizeof(key)) {
		o = json_pack("{s:s}", "error", "not an nm_agent_state map of this ABI");
		goto out;
	}
	if (bpf_map_lookup_elem(fd, &key, &st)) {
		o = json_pack("{s:s}", "error", strerror(errno));
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	o = json_pack("{s:i, s:I, s:s, s:i}",
		      "abi_version", (int)st.abi_version,
		      "config_generation", (json_int_t)st.config_generation,
		      "fail_mode", st.fail_mode == NM_FAIL_OPEN ? "open" : "closed",
		      "outbound_port", (int)ntohs(st.outbound_port));
	if (st.heartbeat_ns) {
		__u64 t = (__u64)now.tv_sec * 1000000000ull + (__u64)now.tv_nsec;

		json_object_set_new(o, "heartbeat_age_ms",
				    json_integer(t > st.heartbeat_ns ?
						 (json_int_t)((t - st.heartbeat_ns) / 1000000) : 0));
	} else {
		json_object_set_new(o, "heartbeat_age_ms", json_null());
	}
out:
	close(fd);
	return o;
}

/* Pinned maps (count) and links (each) of an instance; null without pins. */
static json_t *pins_json(const char *pin_base, const char *instance)
{
	char dir[PATH_MAX], *links[16];
	struct dirent *de;
	json_t *o, *arr;
	int maps = 0, nl = 0;
	DIR *d;

	if (nm_pin_path(pin_base, instance, NULL, dir, sizeof(dir)))
		return json_null();
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? json_null() :
					 json_pack("{s:s, s:s}", "dir", dir, "error", strerror(errno));
	while ((de = readdir(d))) {
		if (!strncmp(de->d_name, NM_PIN_MAP_PREFIX, strlen(NM_PIN_MAP_PREFIX)))
			maps++;
		else if (!strncmp(de->d_name, NM_PIN_LINK_PREFIX,
				  strlen(NM_PIN_LINK_PREFIX)) &&
			 nl < (int)(sizeof(links) / sizeof(links[0])))
			links[nl++] = strdup(de->d_name);
	}
	closedir(d);
	arr = json_array();
	qsort(links, nl, sizeof(links[0]), cmp_strs);
	for (int i = 0; i < nl; i++) {
		if (links[i])
			json_array_append_new(arr, link_json(dir, links[i]));
		free(links[i]);
	}
	o = json_pack("{s:s, s:i, s:o, s:o, s:o}", "dir", dir, "maps", maps,
		      "links", arr, "agent_state", agent_state_json(dir),
		      "map_fill", map_fill_json(dir));
	return o;
}

/* The first of obj[k1][k2] and obj[k3] that is a string, or NULL. */
static json_t *reported(json_t *a, json_t *b, const char *k1, const char *k2,
			const char *k3)
{
	json_t *objs[2] = { a, b };

	for (int i = 0; i < 2; i++) {
		json_t *v = json_object_get(json_object_get(objs[i], k1), k2);

		if (json_is_string(v))
			return json_incref(v);
		v = json_object_get(objs[i], k3);
		if (json_is_string(v))
			return json_incref(v);
	}
	return json_null();
}

/*
 * The agent at a glance: version, generation, uptime (while it runs), and
 * the events transport and source-address mode when the agent or its
 * probe reported them (null otherwise).
 */
static void instance_summary(json_t *doc, json_t *agent, json_t *feat,
			     const char *state, pid_t p)
{
	long long up = strcmp(state, "running") ? -1 : nm_process_uptime(p);

	json_object_set_new(doc, "version", json_incref(json_object_get(agent, "version")) ?:
			    json_null());
	json_object_set_new(doc, "generation",
			    json_incref(json_object_get(agent, "generation")) ?: json_null());
	json_object_set_new(doc, "uptime_s", up >= 0 ? json_integer(up) : json_null());
	json_object_set_new(doc, "events_transport",
			    reported(agent, feat, "choices", "events", "events"));
	json_object_set_new(doc, "source_address_mode",
			    reported(agent, feat, "features", "source_address",
				     "source_address_mode"));
}

/* One instance's document, or NULL when it has neither state nor pins. */
static json_t *instance_json(const struct status_opts *o, const char *name)
{
	char err_agent[PATH_MAX + 256] = "", err_feat[PATH_MAX + 256] = "";
	char comm[32];
	json_t *agent, *feat, *pins, *doc, *pid;
	const char *state;
	pid_t p = 0;

	agent = nm_state_load(o->run_dir, name, NM_RUN_AGENT_FILE, err_agent,
			      sizeof(err_agent));
	feat = nm_state_load(o->run_dir, name, NM_RUN_FEATURES_FILE, err_feat,
			     sizeof(err_feat));
	pins = pins_json(o->pin_base, name);
	if (!agent && !feat && json_is_null(pins) && !err_agent[0] && !err_feat[0]) {
		json_decref(pins);
		return NULL;
	}
	pid = json_object_get(agent, "pid");
	if (!json_is_integer(pid))
		pid = json_object_get(feat, "pid");
	if (json_is_integer(pid))
		p = (pid_t)json_integer_value(pid);
	state = nm_process_state(p, comm, sizeof(comm));
	doc = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o}",
			"instance", name, "state", state,
			"pid", p > 0 ? json_integer(p) : json_null(),
			"agent", agent ? agent : json_null(),
			"kernel", feat ? feat : json_null(),
			"pins", pins);
	if (!strcmp(state, "stale"))
		json_object_set_new(doc, "pid_now", json_string(comm));
	instance_summary(doc, agent, feat, state, p);
	if (err_agent[0] || err_feat[0]) {
		json_t *errs = json_array();

		if (err_agent[0])
			json_array_append_new(errs, json_string(err_agent));
		if (err_feat[0])
			json_array_append_new(errs, json_string(err_feat));
		json_object_set_new(doc, "errors", errs);
	}
	return doc;
}

/* Adds the valid instance names found in dir to names (a JSON object). */
static void collect_names(const char *dir, json_t *names)
{
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d)))
		if (nm_instance_valid(de->d_name))
			json_object_set_new(names, de->d_name, json_true());
	closedir(d);
}

/* The documents of the instances named by names' keys, sorted by name. */
static json_t *instances_json(const struct status_opts *o, json_t *names)
{
	size_t n = 0, total = json_object_size(names);
	json_t *arr = json_array(), *v;
	const char **keys, *name;

	/* Every name: a host with many stale run directories must not
	 * hide a live instance behind a fixed-size list. */
	keys = calloc(total ? total : 1, sizeof(*keys));
	if (!keys)
		return arr;
	json_object_foreach(names, name, v)
		keys[n++] = name;
	qsort(keys, n, sizeof(keys[0]), cmp_strs);
	for (size_t i = 0; i < n; i++) {
		json_t *in = instance_json(o, keys[i]);

		if (in)
			json_array_append_new(arr, in);
	}
	free(keys);
	return arr;
}

static json_t *host_json(void)
{
	char bpffs[PATH_MAX], cg2[PATH_MAX];
	struct utsname u;
	bool has_bpffs = nm_mountinfo_find(NULL, "bpf", bpffs, sizeof(bpffs)) == 0;
	bool has_cg2 = nm_mountinfo_find(NULL, "cgroup2", cg2, sizeof(cg2)) == 0;

	return json_pack("{s:s, s:o, s:o}",
			 "kernel_release", uname(&u) == 0 ? u.release : "",
			 "bpffs", nm_json_str_or_null(has_bpffs ? bpffs : NULL),
			 "cgroup2", nm_json_str_or_null(has_cg2 ? cg2 : NULL));
}

/* --- text output ------------------------------------------------------- */

static const char *str_of(json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s && *s ? s : dflt;
}

static void fmt_duration(long long s, char *buf, size_t len)
{
	if (s >= 86400)
		snprintf(buf, len, "%lldd%lldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, len, "%lldh%lldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, len, "%lldm%llds", s / 60, s % 60);
	else
		snprintf(buf, len, "%llds", s);
}

static void print_links(json_t *links)
{
	static const char *const heads[] = { "LINK", "PROGRAM", "PROG-TYPE", "ATTACH",
					     "PROG-ID", "CGROUP-ID" };
	struct nm_table *tab;
	size_t i;
	json_t *l;

	if (nm_table_new(&tab, 6, heads))
		return;
	json_array_foreach(links, i, l) {
		char pid[24], cg[24];
		const char *err = str_of(l, "error", NULL);

		snprintf(pid, sizeof(pid), "%lld",
			 (long long)json_integer_value(json_object_get(l, "prog_id")));
		snprintf(cg, sizeof(cg), "%lld",
			 (long long)json_integer_value(json_object_get(l, "cgroup_id")));
		nm_table_row(tab, (const char *const[]){
			str_of(l, "name", "?"), err ? err : str_of(l, "prog_name", "-"),
			str_of(l, "prog_type", "-"),
			str_of(l, "attach_type", str_of(l, "type", "-")),
			err ? "-" : pid, err ? "-" : cg });
	}
	nm_table_print_indent(tab, stdout, 4);
	nm_table_free(tab);
}

static void print_map_fill(json_t *maps)
{
	static const char *const heads[] = { "MAP", "TYPE", "ENTRIES", "MAX", "FILL",
					     "UPDATE-ERRORS" };
	struct nm_table *tab;
	size_t i;
	json_t *m;

	if (nm_table_new(&tab, 6, heads))
		return;
	json_array_foreach(maps, i, m) {
		json_t *e = json_object_get(m, "entries");
		long long max = json_integer_value(json_object_get(m, "max_entries"));
		char ent[24] = "", mx[24], fill[24] = "", errs[24];

		if (json_is_integer(e)) {
			snprintf(ent, sizeof(ent), "%lld", (long long)json_integer_value(e));
			double pct = max > 0 ? 100.0 * (double)json_integer_value(e) / (double)max : 0;

			/* A few entries in a big map must not read as empty. */
			if (max > 0)
				snprintf(fill, sizeof(fill), pct > 0 && pct < 0.1 ? "<0.1%%" : "%.1f%%",
					 pct);
		}
		snprintf(mx, sizeof(mx), "%lld", max);
		if (json_is_integer(json_object_get(m, "update_errors")))
			snprintf(errs, sizeof(errs), "%lld",
				 (long long)json_integer_value(json_object_get(m, "update_errors")));
		else
			errs[0] = '\0';
		nm_table_row(tab, (const char *const[]){ str_of(m, "name", "?"),
			str_of(m, "error", str_of(m, "type", "-")), ent, mx, fill, errs });
	}
	nm_table_print_indent(tab, stdout, 4);
	nm_table_free(tab);
}

/* The fast paths the agent runs (agent.json "paths", mesh/fastpath.h). */
static void print_paths(json_t *paths)
{
	const char *key;
	json_t *v;

	if (!json_is_object(paths))
		return;
	printf("  paths:\n");
	printf("    %-14s %-8s %-10s %-8s %s\n", "PATH", "ACTIVE", "MODE", "FLOWS",
	       "REASON");
	json_object_foreach(paths, key, v)
		printf("    %-14s %-8s %-10s %-8lld %s\n", key,
		       json_is_true(json_object_get(v, "active")) ? "yes" : "no",
		       str_of(v, "mode", "-")[0] ? str_of(v, "mode", "-") : "-",
		       (long long)json_integer_value(json_object_get(v, "flows")),
		       str_of(v, "reason", ""));
}

static void print_instance(json_t *in)
{
	json_t *agent = json_object_get(in, "agent");
	json_t *kernel = json_object_get(in, "kernel");
	json_t *pins = json_object_get(in, "pins");
	json_t *errs = json_object_get(in, "errors");
	json_t *v, *st;
	const char *key;
	size_t i;

	printf("instance %s: %s", str_of(in, "instance", "?"), str_of(in, "state", "?"));
	if (json_is_integer(json_object_get(in, "pid")))
		printf(" (pid %lld%s%s)", (long long)json_integer_value(json_object_get(in, "pid")),
		       json_object_get(in, "pid_now") ? ", now " : "",
		       str_of(in, "pid_now", ""));
	putchar('\n');
	json_array_foreach(errs, i, v)
		printf("  error: %s\n", json_string_value(v));
	if (json_is_object(agent)) {
		json_t *up = json_object_get(in, "uptime_s");
		char ups[32] = "-";

		if (json_is_integer(up))
			fmt_duration(json_integer_value(up), ups, sizeof(ups));
		printf("  agent %s, generation %lld, uptime %s, admin %s:%lld\n",
		       str_of(in, "version", "?"),
		       (long long)json_integer_value(json_object_get(in, "generation")), ups,
		       str_of(json_object_get(agent, "admin"), "address", "-"),
		       (long long)json_integer_value(json_object_get(
			       json_object_get(agent, "admin"), "port")));
	}
	if (str_of(in, "events_transport", NULL))
		printf("  events transport %s\n", str_of(in, "events_transport", ""));
	if (json_is_object(agent)) {
		printf("  node %s, config %s, trust domain %s, datapath %s, identities %lld\n",
		       str_of(agent, "node", "-"), str_of(agent, "config", "-"),
		       str_of(agent, "trust_domain", "-"),
		       json_is_true(json_object_get(agent, "datapath")) ? "attached" : "off",
		       (long long)json_integer_value(json_object_get(agent, "identities")));
		json_array_foreach(json_object_get(agent, "listeners"), i, v)
			printf("  listener %-16s %s:%lld%s%s\n", str_of(v, "role", "?"),
			       str_of(v, "address", "?"),
			       (long long)json_integer_value(json_object_get(v, "port")),
			       str_of(v, "forward", NULL) ? " forward " : "",
			       str_of(v, "forward", ""));
		v = json_object_get(agent, "features");
		if (json_is_object(v))
			printf("  source address seen by pods: %s%s%s%s\n",
			       str_of(v, "source_address", "?"),
			       str_of(v, "source_address_reason", NULL) ? " (" : "",
			       str_of(v, "source_address_reason", ""),
			       str_of(v, "source_address_reason", NULL) ? ")" : "");
		print_paths(json_object_get(agent, "paths"));
	} else {
		printf("  no run state (agent not running, or it did not start)\n");
	}
	if (json_is_object(kernel)) {
		printf("  kernel features probed at start (%s%s):\n   ",
		       str_of(kernel, "kernel_release", "?"),
		       json_is_true(json_object_get(kernel, "attach_tested")) ?
			       ", cgroup attach tried" : "");
		json_object_foreach(json_object_get(kernel, "features"), key, v)
			printf(" %s=%s", key, json_is_true(v) ? "yes" : "no");
		printf("\n  choices:");
		json_object_foreach(json_object_get(kernel, "choices"), key, v)
			printf(" %s=%s", key, json_is_string(v) ? json_string_value(v) :
			       json_is_true(v) ? "on" : "off");
		putchar('\n');
	} else {
		printf("  kernel features not recorded (the agent records them when it\n"
		       "  starts with a datapath)\n");
	}
	if (!json_is_object(pins)) {
		printf("  pins: none\n");
		return;
	}
	if (str_of(pins, "error", NULL)) {
		printf("  pins %s: %s\n", str_of(pins, "dir", "?"), str_of(pins, "error", ""));
		return;
	}
	printf("  pins %s: %lld maps, %zu links\n", str_of(pins, "dir", "?"),
	       (long long)json_integer_value(json_object_get(pins, "maps")),
	       json_array_size(json_object_get(pins, "links")));
	printf("  programs attached:\n");
	print_links(json_object_get(pins, "links"));
	printf("  map fill:\n");
	print_map_fill(json_object_get(pins, "map_fill"));
	st = json_object_get(pins, "agent_state");
	if (str_of(st, "error", NULL)) {
		printf("  agent state map: %s\n", str_of(st, "error", ""));
	} else if (json_is_object(st)) {
		json_t *age = json_object_get(st, "heartbeat_age_ms");

		printf("  agent state: generation %lld, fail %s, outbound port %lld, abi %lld, ",
		       (long long)json_integer_value(json_object_get(st, "config_generation")),
		       str_of(st, "fail_mode", "?"),
		       (long long)json_integer_value(json_object_get(st, "outbound_port")),
		       (long long)json_integer_value(json_object_get(st, "abi_version")));
		if (json_is_integer(age))
			printf("heartbeat %lld ms ago\n", (long long)json_integer_value(age));
		else
			printf("no heartbeat\n");
	}
}

static void print_text(json_t *doc)
{
	json_t *host = json_object_get(doc, "host");
	json_t *arr = json_object_get(doc, "instances");
	json_t *in;
	size_t i;

	printf("kernel %s, bpffs %s, cgroup2 %s\n", str_of(host, "kernel_release", "?"),
	       str_of(host, "bpffs", "not mounted"), str_of(host, "cgroup2", "not mounted"));
	if (!json_array_size(arr))
		printf("no agent instances (nothing in %s or %s)\n",
		       str_of(doc, "run_dir", "?"), str_of(doc, "pin_dir", "?"));
	json_array_foreach(arr, i, in)
		print_instance(in);
}

/* --- command ----------------------------------------------------------- */

static int parse_opts(const struct nm_cli *cli, int argc, char **argv,
		      struct status_opts *o)
{
	static const struct option opts[] = {
		{ "instance", required_argument, NULL, 'i' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "pin-dir", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":i:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			o->instance = optarg;
			break;
		case 'r':
			o->run_dir = optarg;
			break;
		case 'P':
			o->pin_base = optarg;
			break;
		case 'h':
			fputs(status_usage, stdout);
			return -1;
		default:
			return nm_cli_getopt_error(cli, status_usage, c, argv);
		}
	}
	if (optind != argc)
		return nm_cli_usage_error(cli, status_usage,
					  "status: unexpected argument \"%s\"", argv[optind]);
	if (o->instance && !nm_instance_valid(o->instance))
		return nm_cli_usage_error(cli, status_usage,
					  "status: bad instance name \"%s\"", o->instance);
	return 0;
}

int nm_cmd_status(const struct nm_cli *cli, int argc, char **argv)
{
	struct status_opts o = { .run_dir = NM_RUN_DIR, .pin_base = NM_PIN_BASE };
	json_t *names, *arr, *doc;
	int ret;

	ret = parse_opts(cli, argc, argv, &o);
	if (ret)
		return ret < 0 ? NM_EXIT_OK : ret;
	names = json_object();
	if (o.instance) {
		json_object_set_new(names, o.instance, json_true());
	} else {
		collect_names(o.run_dir, names);
		collect_names(o.pin_base, names);
	}
	arr = instances_json(&o, names);
	json_decref(names);
	if (o.instance && !json_array_size(arr)) {
		json_decref(arr);
		return nm_cli_fail(cli, NM_EXIT_FAIL,
				   "status: instance \"%s\": no run state in %s and no pins in %s",
				   o.instance, o.run_dir, o.pin_base);
	}
	doc = json_pack("{s:o, s:s, s:s, s:o}", "host", host_json(),
			"run_dir", o.run_dir, "pin_dir", o.pin_base, "instances", arr);
	if (cli->json)
		return nm_cli_print_json(cli, doc);
	print_text(doc);
	json_decref(doc);
	return NM_EXIT_OK;
}
