// SPDX-License-Identifier: Apache-2.0
/*
 * status.c - `nodemesh status`: kernel features, fallbacks, agent choices.
 *
 * The kernel part is probed afresh (it needs root, like the agent). Agents
 * are found in the run directory: <run-dir>/<instance>/agent.json (runstate.h:
 * pid, node) and features.json (probe.h: what the agent probed and chose at
 * start-up). An instance counts as running while its recorded pid is alive.
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
#include <unistd.h>

#include <jansson.h>

#include "datapath/datapath.h"
#include "datapath/probe.h"
#include "status.h"

struct status_instance {
	char name[NAME_MAX + 1];
	char node[64];
	struct nm_features feat;
	struct nm_choices choice;
	bool has_choices; /* features.json present */
	pid_t pid;
	bool running;
	bool pinned;
};

static void status_usage(FILE *out)
{
	fprintf(out, "usage: nodemesh status [--json] [--instance NAME] [--run-dir DIR]\n");
}

static bool pid_alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

static bool instance_pinned(const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", NM_PIN_BASE, name);
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* pid and node from the agent's runstate file; 0 or -errno. */
static int load_runstate(const char *run_dir, const char *name,
			 struct status_instance *si)
{
	char path[PATH_MAX];
	json_t *root, *pid;
	const char *node;

	if (snprintf(path, sizeof(path), "%s/%s/agent.json", run_dir, name) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	root = json_load_file(path, 0, NULL);
	if (!root)
		return -ENOENT;
	pid = json_object_get(root, "pid");
	node = json_string_value(json_object_get(root, "node"));
	if (json_is_integer(pid))
		si->pid = (pid_t)json_integer_value(pid);
	snprintf(si->node, sizeof(si->node), "%s", node ? node : "");
	json_decref(root);
	return 0;
}

/* An instance is listed when either of its state files exists. */
static int load_instance(const char *run_dir, const char *name,
			 struct status_instance *si)
{
	char path[PATH_MAX];
	pid_t fpid = 0;
	int err, rs;

	memset(si, 0, sizeof(*si));
	snprintf(si->name, sizeof(si->name), "%s", name);
	rs = load_runstate(run_dir, name, si);
	err = nm_probe_state_path(run_dir, name, path, sizeof(path));
	if (err)
		return err;
	err = nm_probe_load(path, &si->feat, &si->choice, &fpid);
	si->has_choices = err == 0;
	if (rs && err)
		return -ENOENT;
	if (!si->pid)
		si->pid = fpid;
	si->running = pid_alive(si->pid);
	si->pinned = instance_pinned(name);
	return 0;
}

/* Every instance with a state file, or only `only`; returns the count. */
static int load_instances(const char *run_dir, const char *only,
			  struct status_instance **out)
{
	struct status_instance *v = NULL, *nv;
	struct dirent *de;
	DIR *d;
	int n = 0;

	*out = NULL;
	if (only) {
		v = calloc(1, sizeof(*v));
		if (!v)
			return -ENOMEM;
		if (load_instance(run_dir, only, v) == 0) {
			*out = v;
			return 1;
		}
		free(v);
		return 0;
	}
	d = opendir(run_dir);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv) {
			free(v);
			closedir(d);
			return -ENOMEM;
		}
		v = nv;
		if (load_instance(run_dir, de->d_name, &v[n]) == 0)
			n++;
	}
	closedir(d);
	*out = v;
	return n;
}

static json_t *features_json(const struct nm_features *f)
{
	const struct nm_feature_info *info;
	json_t *o = json_object();
	size_t n;

	info = nm_probe_info(&n);
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, info[i].name, json_boolean(nm_probe_get(f, info[i].name)));
	return o;
}

static json_t *choices_json(const struct nm_choices *c)
{
	return json_pack("{s:s, s:s, s:s, s:s}",
			 "flow_events", c->flow_events ? "ringbuf" : "off",
			 "sock_stats", c->sock_stats ? "sk_storage" : "off",
			 "tls", c->ktls ? "ktls" : "userspace",
			 "relay", c->sockmap ? "sockmap" : "userspace");
}

static void print_json(const struct nm_features *f, int probe_err,
		       const struct status_instance *si, int n)
{
	const char *missing = nm_probe_required_missing(f);
	struct nm_choices best;
	json_t *root, *arr;

	nm_probe_choose(f, NULL, &best);
	arr = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(arr, json_pack(
			"{s:s, s:s, s:i, s:b, s:b, s:o, s:o}",
			"instance", si[i].name, "node", si[i].node,
			"pid", (json_int_t)si[i].pid,
			"running", si[i].running, "pinned", si[i].pinned,
			"features", si[i].has_choices ? features_json(&si[i].feat) : json_null(),
			"choices", si[i].has_choices ? choices_json(&si[i].choice) : json_null()));
	root = json_pack("{s:s, s:b, s:b, s:o, s:o, s:o, s:o}",
			 "kernel_release", f->kernel_release,
			 "probe_complete", probe_err == 0,
			 "attach_tested", f->attach_tested,
			 "required_missing", missing ? json_string(missing) : json_null(),
			 "features", features_json(f),
			 "best_choices", choices_json(&best),
			 "instances", arr);
	json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(root);
}

static void print_text(const struct nm_features *f, int probe_err,
		       const struct status_instance *si, int n)
{
	const struct nm_feature_info *info;
	const char *missing = nm_probe_required_missing(f);
	size_t ni;

	printf("kernel %s\n", f->kernel_release);
	if (probe_err)
		printf("warning: BPF probes failed (%s); run as root\n", strerror(-probe_err));
	printf("%-14s %-4s %-6s %s\n", "FEATURE", "OK", "SINCE", "WITHOUT IT");
	info = nm_probe_info(&ni);
	for (size_t i = 0; i < ni; i++)
		printf("%-14s %-4s %-6s %s\n", info[i].name,
		       nm_probe_get(f, info[i].name) ? "yes" : "no", info[i].min_kernel,
		       info[i].required ? "required: the agent does not start" : info[i].fallback);
	printf("required: %s\n", missing ? missing : "all present");

	if (n == 0)
		printf("agents: none recorded\n");
	for (int i = 0; i < n; i++) {
		const struct nm_choices *c = &si[i].choice;

		printf("agent %s: node %s, pid %d %s, pins %s\n", si[i].name,
		       si[i].node[0] ? si[i].node : "-", (int)si[i].pid,
		       si[i].running ? "running" : "not running",
		       si[i].pinned ? "present" : "absent");
		if (!si[i].has_choices) {
			printf("  choices not recorded\n");
			continue;
		}
		printf("  flow events %s, socket stats %s, TLS %s, relay %s\n",
		       c->flow_events ? "ringbuf" : "off",
		       c->sock_stats ? "sk_storage" : "off",
		       c->ktls ? "kTLS" : "user space",
		       c->sockmap ? "sockmap" : "user space");
	}
}

int nm_cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "instance", required_argument, NULL, 'i' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *instance = NULL, *run_dir = NM_RUN_DIR;
	struct status_instance *si = NULL;
	struct nm_features f;
	bool json = false;
	int c, n, probe_err;

	optind = 1;
	while ((c = getopt_long(argc, argv, "ji:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'i': instance = optarg; break;
		case 'r': run_dir = optarg; break;
		case 'h': status_usage(stdout); return 0;
		default: status_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		status_usage(stderr);
		return 2;
	}

	probe_err = nm_probe_features(&f);
	n = load_instances(run_dir, instance, &si);
	if (n < 0) {
		fprintf(stderr, "nodemesh status: %s\n", strerror(-n));
		return 1;
	}
	if (json)
		print_json(&f, probe_err, si, n);
	else
		print_text(&f, probe_err, si, n);
	free(si);
	return nm_probe_required_missing(&f) ? 1 : 0;
}
