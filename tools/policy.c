// SPDX-License-Identifier: Apache-2.0
/*
 * policy.c - `nodemesh policy check` and `nodemesh policy list`: the
 * AuthorizationPolicy set evaluated offline with the agent's own pure
 * modules (config/ for the cluster file, state/cluster.h for its records,
 * policy/ for parsing and evaluating), so the CLI's verdict is the agent's
 * by construction. Nothing here opens a socket or a map.
 *
 * Where the policies come from: --config and --policies (CI, before
 * applying), or a running agent's instance: the agent copies the files in
 * force to <run-dir>/<instance>/policies/ and records its cluster file in
 * <run-dir>/<instance>/agent.json ("config").
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "lib/addr.h"
#include "lib/file.h"
#include "lib/json.h"
#include "lib/pins.h"
#include "lib/spiffe.h"
#include "config/config.h"
#include "state/cluster.h"
#include "policy/policy.h"
#include "commands.h"

#define AGENT_FILE_MAX (256u << 10)

static const char policy_usage[] =
	"Usage: nodemesh policy check --to NAMESPACE/WORKLOAD --port PORT [--from SPIFFE_ID]\n"
	"                             [--from-ip IP] [--to-ip IP] [SOURCE] [--json]\n"
	"       nodemesh policy list [SOURCE] [--json]\n"
	"SOURCE is --config CLUSTER.json [--policies DIR] [--root-namespace NS] (offline;\n"
	"  --policies defaults to the file's policyDir, the root namespace to its\n"
	"  mesh.rootNamespace),\n"
	"or [--instance NAME] [--run-dir DIR]: the policies in force of a running agent.\n"
	"  --from SPIFFE_ID  verified source identity, any trust domain; absent means an\n"
	"                    unauthenticated (plaintext) source\n"
	"  --from-ip IP      source address (default: the address of the cluster file's\n"
	"                    workload with that identity, if one, else 0.0.0.0)\n"
	"  --to-ip IP        destination address (default: the workload's)\n"
	"  --root-namespace  mesh.rootNamespace (default " NM_POLICY_ROOT_NS_DEFAULT ")\n"
	"Exit status: 0 whatever the verdict, 1 when a file is invalid, 2 usage.\n";

struct policy_opts {
	const char *config, *policies, *instance, *run_dir, *root_ns;
	const char *to, *port, *from, *from_ip, *to_ip;
};

static int parse_opts(const struct nm_cli *cli, int argc, char **argv,
		      struct policy_opts *o)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "policies", required_argument, NULL, 'P' },
		{ "instance", required_argument, NULL, 'i' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "root-namespace", required_argument, NULL, 'R' },
		{ "to", required_argument, NULL, 't' },
		{ "port", required_argument, NULL, 'o' },
		{ "from", required_argument, NULL, 'f' },
		{ "from-ip", required_argument, NULL, 'F' },
		{ "to-ip", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o->config = optarg; break;
		case 'P': o->policies = optarg; break;
		case 'i': o->instance = optarg; break;
		case 'r': o->run_dir = optarg; break;
		case 'R': o->root_ns = optarg; break;
		case 't': o->to = optarg; break;
		case 'o': o->port = optarg; break;
		case 'f': o->from = optarg; break;
		case 'F': o->from_ip = optarg; break;
		case 'T': o->to_ip = optarg; break;
		case 'h':
			fputs(policy_usage, stdout);
			return -1;
		default:
			return nm_cli_getopt_error(cli, policy_usage, c, argv);
		}
	}
	if (optind != argc)
		return nm_cli_usage_error(cli, policy_usage,
					  "policy %s: unexpected argument \"%s\"", argv[0],
					  argv[optind]);
	if ((o->config || o->policies) && (o->instance || o->run_dir))
		return nm_cli_usage_error(cli, policy_usage, "policy %s: --config/--policies "
					  "and --instance/--run-dir exclude each other", argv[0]);
	if (o->instance && !nm_instance_valid(o->instance))
		return nm_cli_usage_error(cli, policy_usage, "policy %s: bad instance name \"%s\"",
					  argv[0], o->instance);
	return 0;
}

/* The agent instance's cluster file and in-force policy directory. */
static int from_instance(const struct nm_cli *cli, struct policy_opts *o,
			 char *cfg, size_t cfglen, char *dir, size_t dirlen)
{
	char path[PATH_MAX], *buf = NULL;
	const char *why = NULL, *c;
	json_error_t jerr;
	json_t *doc;
	size_t len;
	int ret;

	if (nm_run_path(o->run_dir, o->instance, NM_RUN_AGENT_FILE, path, sizeof(path)) ||
	    nm_run_path(o->run_dir, o->instance, "policies", dir, dirlen))
		return nm_cli_fail(cli, NM_EXIT_FAIL, "policy: run directory path too long");
	ret = nm_file_read(path, AGENT_FILE_MAX, &buf, &len, &why);
	if (ret)
		return nm_cli_fail(cli, NM_EXIT_FAIL, "policy: %s: %s (is the agent running? "
				   "or give --config and --policies)", path,
				   why ? why : strerror(-ret));
	doc = json_loadb(buf, len, 0, &jerr);
	free(buf);
	c = json_string_value(json_object_get(doc, "config"));
	if (!c) {
		json_decref(doc);
		return nm_cli_fail(cli, NM_EXIT_FAIL, "policy: %s: no \"config\" recorded", path);
	}
	snprintf(cfg, cfglen, "%s", c);
	json_decref(doc);
	return 0;
}

struct loaded {
	struct nm_cluster *cluster; /* NULL: list without workloads */
	struct nm_policy_set *ps;
};

static int load_all(const struct nm_cli *cli, struct policy_opts *o, bool need_config,
		    struct loaded *l)
{
	char cfg[PATH_MAX], dir[PATH_MAX], err[1024];
	const char *cfg_path = o->config, *dir_path = o->policies;
	int ret;

	memset(l, 0, sizeof(*l));
	if (!o->config && !o->policies) {
		ret = from_instance(cli, o, cfg, sizeof(cfg), dir, sizeof(dir));
		if (ret)
			return ret;
		cfg_path = cfg;
		dir_path = dir;
	}
	if (need_config && !cfg_path)
		return nm_cli_usage_error(cli, policy_usage, "policy: --config CLUSTER.json is needed");
	if (cfg_path) {
		ret = nm_cluster_load_file(cfg_path, &l->cluster, err, sizeof(err));
		if (ret)
			return nm_cli_fail(cli, NM_EXIT_FAIL, "%s", err);
		/* The cluster file names its policy folder and root namespace;
		 * the options, when given, win. */
		if (!dir_path && l->cluster->policy_dir[0])
			dir_path = l->cluster->policy_dir;
		if (!o->root_ns)
			o->root_ns = l->cluster->mesh.root_ns;
	}
	if (!dir_path) {
		nm_cluster_free(l->cluster);
		l->cluster = NULL;
		return nm_cli_usage_error(cli, policy_usage,
					  "policy: --policies DIR is needed (the cluster file names no policyDir)");
	}
	ret = nm_policy_load_dir(dir_path, o->root_ns, &l->ps, err, sizeof(err));
	if (ret) {
		nm_cluster_free(l->cluster);
		l->cluster = NULL;
		return nm_cli_fail(cli, NM_EXIT_FAIL, "%s", err);
	}
	return 0;
}

static void free_all(struct loaded *l)
{
	nm_policy_set_free(l->ps);
	nm_cluster_free(l->cluster);
}

static json_t *warnings_json(const struct nm_policy_set *ps, bool print)
{
	unsigned int n, i;
	const char *const *w = nm_policy_set_warnings(ps, &n);
	json_t *arr = json_array();

	for (i = 0; i < n; i++) {
		json_array_append_new(arr, json_string(w[i]));
		if (print)
			fprintf(stderr, "warning: %s\n", w[i]);
	}
	return arr;
}

static json_t *policy_ref(const struct nm_policy_set *ps, int i)
{
	struct nm_policy_info info;
	char buf[512];

	if (i < 0 || nm_policy_get(ps, (unsigned int)i, &info))
		return json_null();
	snprintf(buf, sizeof(buf), "%s/%s", info.ns, info.name);
	return json_string(buf);
}

static const char *action_word(enum nm_policy_action a)
{
	switch (a) {
	case NM_POLICY_ALLOW: return "ALLOW";
	case NM_POLICY_DENY: return "DENY";
	case NM_POLICY_AUDIT: return "AUDIT";
	default: return "CUSTOM";
	}
}

/* --- check ------------------------------------------------------------------ */

static int cmd_check(const struct nm_cli *cli, int argc, char **argv)
{
	struct policy_opts o = { 0 };
	struct nm_policy_conn conn = { 0 };
	struct nm_policy_verdict v;
	const struct nm_workload_cfg *wl;
	char principal[NM_SPIFFE_MAX], ns[NM_NAME_MAX], name[NM_NAME_MAX];
	char from_ip[64], to_ip[64];
	struct nm_spiffe_id id;
	const char *slash, *why = NULL;
	struct loaded l;
	unsigned long port;
	char *end;
	json_t *doc;
	int ret, wi;

	ret = parse_opts(cli, argc, argv, &o);
	if (ret)
		return ret < 0 ? NM_EXIT_OK : ret;
	if (!o.to || !o.port)
		return nm_cli_usage_error(cli, policy_usage, "policy check: --to and --port are needed");
	slash = strchr(o.to, '/');
	if (!slash || slash == o.to || !slash[1] || strchr(slash + 1, '/') ||
	    (size_t)(slash - o.to) >= sizeof(ns) || strlen(slash + 1) >= sizeof(name))
		return nm_cli_usage_error(cli, policy_usage,
					  "policy check: --to \"%s\" is not NAMESPACE/WORKLOAD", o.to);
	snprintf(ns, sizeof(ns), "%.*s", (int)(slash - o.to), o.to);
	snprintf(name, sizeof(name), "%s", slash + 1);
	errno = 0;
	port = strtoul(o.port, &end, 10);
	if (!*o.port || *end || errno || port < 1 || port > 65535)
		return nm_cli_usage_error(cli, policy_usage,
					  "policy check: --port \"%s\" is not 1-65535", o.port);
	if (o.from) {
		if (nm_spiffe_parse(o.from, &id, &why))
			return nm_cli_usage_error(cli, policy_usage,
						  "policy check: --from \"%s\": %s", o.from,
						  why ? why : "not a SPIFFE ID");
		snprintf(principal, sizeof(principal), "%s/ns/%s/sa/%s", id.trust_domain,
			 id.ns, id.sa);
		conn.src_principal = principal;
	}
	if (o.from_ip && nm_addr_parse(o.from_ip, &conn.src_ip, NULL))
		return nm_cli_usage_error(cli, policy_usage,
					  "policy check: --from-ip \"%s\" is not an address", o.from_ip);
	if (o.to_ip && nm_addr_parse(o.to_ip, &conn.dst_ip, NULL))
		return nm_cli_usage_error(cli, policy_usage,
					  "policy check: --to-ip \"%s\" is not an address", o.to_ip);

	ret = load_all(cli, &o, true, &l);
	if (ret)
		return ret;
	wi = nm_cluster_find_workload(l.cluster, ns, name);
	if (wi < 0) {
		ret = nm_cli_usage_error(cli, NULL, "policy check: --to %s: no such workload in %s",
					 o.to, l.cluster->path);
		free_all(&l);
		return ret;
	}
	wl = &l.cluster->workloads[wi];
	conn.dst_ns = wl->ns;
	conn.dst_labels = wl->labels;
	conn.n_dst_labels = wl->n_labels;
	conn.dst_port = (uint16_t)port;
	if (!o.to_ip)
		conn.dst_ip = wl->ip;
	if (!o.from_ip) {
		/* the source workload's address, when the file knows it */
		unsigned int i;

		nm_addr_parse("0.0.0.0", &conn.src_ip, NULL);
		for (i = 0; o.from && i < l.cluster->n_workloads; i++) {
			if (!strcmp(l.cluster->workloads[i].ns, id.ns) &&
			    !strcmp(l.cluster->workloads[i].sa, id.sa)) {
				conn.src_ip = l.cluster->workloads[i].ip;
				break;
			}
		}
	}
	nm_policy_evaluate(l.ps, &conn, &v);
	nm_addr_format(&conn.src_ip, from_ip, sizeof(from_ip));
	nm_addr_format(&conn.dst_ip, to_ip, sizeof(to_ip));

	doc = json_pack("{s:s, s:o, s:o, s:s, s:s, s:i, s:o, s:s, s:s, s:o}",
			"verdict", v.allow ? "allow" : "deny",
			"policy", policy_ref(l.ps, v.policy),
			"rule", v.rule >= 0 ? json_integer(v.rule) : json_null(),
			"reason", v.reason,
			"to", o.to, "port", (int)port,
			"from", nm_json_str_or_null(o.from),
			"from_ip", from_ip, "to_ip", to_ip,
			"warnings", warnings_json(l.ps, !cli->json));
	if (v.dry_run)
		json_object_set_new(doc, "dry_run", json_pack("{s:s, s:o, s:o, s:s}",
			"verdict", v.dry_run_allow ? "allow" : "deny",
			"policy", policy_ref(l.ps, v.dry_run_policy),
			"rule", v.dry_run_rule >= 0 ? json_integer(v.dry_run_rule) : json_null(),
			"reason", v.dry_run_reason));
	else
		json_object_set_new(doc, "dry_run", json_null());
	if (cli->json) {
		free_all(&l);
		return nm_cli_print_json(cli, doc);
	}
	printf("%s: %s", v.allow ? "allow" : "deny", v.reason);
	if (v.policy >= 0)
		printf(" %s (rule %d)", json_string_value(json_object_get(doc, "policy")), v.rule);
	printf("\n  %s %s:%lu <- %s %s\n", o.to, to_ip, port, o.from ? o.from : "(plaintext)",
	       from_ip);
	if (v.dry_run) {
		json_t *d = json_object_get(doc, "dry_run");

		printf("  dry-run: would %s: %s", v.dry_run_allow ? "allow" : "deny",
		       v.dry_run_reason);
		if (v.dry_run_policy >= 0)
			printf(" %s (rule %d)", json_string_value(json_object_get(d, "policy")),
			       v.dry_run_rule);
		printf("\n");
	}
	json_decref(doc);
	free_all(&l);
	return NM_EXIT_OK;
}

/* --- list --------------------------------------------------------------------- */

static int cmd_list(const struct nm_cli *cli, int argc, char **argv)
{
	struct policy_opts o = { 0 };
	struct loaded l;
	json_t *arr, *doc;
	unsigned int i, k, n;
	int ret;

	ret = parse_opts(cli, argc, argv, &o);
	if (ret)
		return ret < 0 ? NM_EXIT_OK : ret;
	if (o.to || o.port || o.from || o.from_ip || o.to_ip)
		return nm_cli_usage_error(cli, policy_usage,
					  "policy list: --to, --port, --from... are for check");
	ret = load_all(cli, &o, false, &l);
	if (ret)
		return ret;
	arr = json_array();
	n = nm_policy_count(l.ps);
	for (i = 0; i < n; i++) {
		struct nm_policy_info info;
		json_t *p, *labels = json_object(), *wls;

		nm_policy_get(l.ps, i, &info);
		for (k = 0; k < info.n_match_labels; k++)
			json_object_set_new(labels, info.match_labels[k].key,
					    json_string(info.match_labels[k].value));
		if (l.cluster) {
			wls = json_array();
			for (k = 0; k < l.cluster->n_workloads; k++) {
				const struct nm_workload_cfg *w = &l.cluster->workloads[k];
				char buf[2 * NM_NAME_MAX + 2];

				if (!info.enforced ||
				    !nm_policy_selects(l.ps, i, w->ns, w->labels, w->n_labels))
					continue;
				snprintf(buf, sizeof(buf), "%s/%s", w->ns, w->name);
				json_array_append_new(wls, json_string(buf));
			}
		} else {
			wls = json_null();
		}
		p = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:s, s:o, s:i, s:o}",
			      "namespace", info.ns, "name", info.name, "file", info.file,
			      "action", action_word(info.action), "enforced", info.enforced,
			      "dry_run", info.dry_run,
			      "scope", info.mesh_wide ? "mesh" :
				       info.has_selector ? "selector" : "namespace",
			      "selector", info.has_selector ? labels : (json_decref(labels), json_null()),
			      "rules", (int)info.n_rules, "workloads", wls);
		json_array_append_new(arr, p);
	}
	doc = json_pack("{s:o, s:o}", "policies", arr, "warnings",
			warnings_json(l.ps, !cli->json));
	free_all(&l);
	if (cli->json)
		return nm_cli_print_json(cli, doc);
	if (!n)
		printf("no policies\n");
	for (i = 0; i < json_array_size(arr); i++) {
		json_t *p = json_array_get(arr, i), *w = json_object_get(p, "workloads");
		size_t j;

		printf("%s/%s  %s%s%s  %s  %s\n",
		       json_string_value(json_object_get(p, "namespace")),
		       json_string_value(json_object_get(p, "name")),
		       json_string_value(json_object_get(p, "action")),
		       json_is_true(json_object_get(p, "dry_run")) ? " (dry-run)" : "",
		       json_is_true(json_object_get(p, "enforced")) ? "" : " (not enforced)",
		       json_string_value(json_object_get(p, "scope")),
		       json_string_value(json_object_get(p, "file")));
		if (json_is_array(w)) {
			printf("  workloads:");
			if (!json_array_size(w))
				printf(" none");
			for (j = 0; j < json_array_size(w); j++)
				printf(" %s", json_string_value(json_array_get(w, j)));
			printf("\n");
		}
	}
	json_decref(doc);
	return NM_EXIT_OK;
}

int nm_cmd_policy(const struct nm_cli *cli, int argc, char **argv)
{
	if (argc < 2) {
		fputs(policy_usage, stderr);
		return NM_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(policy_usage, stdout);
		return NM_EXIT_OK;
	}
	if (!strcmp(argv[1], "check"))
		return cmd_check(cli, argc - 1, argv + 1);
	if (!strcmp(argv[1], "list"))
		return cmd_list(cli, argc - 1, argv + 1);
	return nm_cli_usage_error(cli, policy_usage, "policy: unknown subcommand \"%s\"", argv[1]);
}
