// SPDX-License-Identifier: Apache-2.0
/*
 * nodemesh - the command-line tool. Reads what agents leave behind (run
 * state files, pinned maps and links) through lib/, never agent internals,
 * so it works while the agent is down. Shaped like bpftool: a command table,
 * one function per command, global options anywhere on the line, JSON
 * through jansson with --json.
 */
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nm_abi.h"
#include "lib/json.h"
#include "common.h"
#include "commands.h"

static const struct nm_cmd commands[] = {
	{ "status",    nm_cmd_status,    "agent instances: run state, kernel features, programs, map fill" },
	{ "workloads", nm_cmd_workloads, "workloads: names, identities, addresses, node, mode" },
	{ "services",  nm_cmd_services,  "services: VIP:port, backends, load balancing" },
	{ "flows",     nm_cmd_flows,     "flow records from the agent's admin API (--follow)" },
	{ "maps",      nm_cmd_maps,      "pinned maps and their fill; maps dump NAME decodes one" },
	{ "certs",     nm_cmd_certs,     "the agent's certificates: serial, validity, expiry" },
	{ "ca",        nm_cmd_ca,        "development CA: ca init | ca issue (writes files)" },
	{ "policy",    nm_cmd_policy,    "AuthorizationPolicy: policy check | policy list (offline or from an agent)" },
	{ "cleanup",   nm_cmd_cleanup,   "detach and remove an instance's pinned links and maps" },
	{ "version",   nm_cmd_version,   "versions: this CLI, the map ABI, running agents" },
	{ 0 },
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: nodemesh [--json|-j] [--pretty|-p] COMMAND [ARGS]\n\nCommands:\n");
	for (const struct nm_cmd *c = commands; c->name; c++)
		fprintf(out, "  %-10s %s\n", c->name, c->help);
	fprintf(out,
		"\n--json and --pretty may appear anywhere on the command line (before\n"
		"\"--\"). Exit status: 0 success, 1 failure, 2 usage error.\n"
		"Run 'nodemesh COMMAND --help' for a command's options.\n");
}

int nm_cli_fail(const struct nm_cli *cli, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (cli->json)
		nm_json_print(stdout, json_pack("{s:s}", "error", msg), cli->pretty);
	else
		fprintf(stderr, "nodemesh: %s\n", msg);
	return status;
}

int nm_cli_usage_error(const struct nm_cli *cli, const char *usage_text,
		       const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	nm_cli_fail(cli, NM_EXIT_USAGE, "%s", msg);
	if (usage_text)
		fputs(usage_text, stderr);
	return NM_EXIT_USAGE;
}

int nm_cli_getopt_error(const struct nm_cli *cli, const char *usage_text,
			int c, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "?";

	if (c == ':')
		return nm_cli_usage_error(cli, usage_text, "%s: %s needs a value",
					  argv[0], arg);
	if (optopt) /* an unknown short option; 0 for an unknown long one */
		return nm_cli_usage_error(cli, usage_text, "%s: unknown option -%c",
					  argv[0], optopt);
	return nm_cli_usage_error(cli, usage_text, "%s: unknown option %s",
				  argv[0], arg);
}

int nm_cli_print_json(const struct nm_cli *cli, json_t *doc)
{
	int ret = nm_json_print(stdout, doc, cli->pretty);

	if (ret) {
		fprintf(stderr, "nodemesh: cannot write output: %s\n", strerror(-ret));
		return NM_EXIT_FAIL;
	}
	return NM_EXIT_OK;
}

/* The version of every running agent that left a run state. */
static json_t *agents_versions(const char *run_dir)
{
	json_t *arr = json_array();
	struct dirent **names = NULL;
	int n = scandir(run_dir, &names, NULL, alphasort);

	for (int i = 0; i < n; i++) {
		char err[PATH_MAX + 256], comm[32];
		json_t *agent;
		pid_t pid;

		if (nm_instance_valid(names[i]->d_name) &&
		    (agent = nm_state_load(run_dir, names[i]->d_name, NM_RUN_AGENT_FILE,
					   err, sizeof(err)))) {
			pid = (pid_t)json_integer_value(json_object_get(agent, "pid"));
			if (!strcmp(nm_process_state(pid, comm, sizeof(comm)), "running"))
				json_array_append_new(arr, json_pack("{s:s, s:i, s:O}",
					"instance", names[i]->d_name, "pid", (int)pid,
					"version", json_object_get(agent, "version") ?:
						   json_null()));
			json_decref(agent);
		}
		free(names[i]);
	}
	free(names);
	return arr;
}

int nm_cmd_version(const struct nm_cli *cli, int argc, char **argv)
{
	static const char usage_text[] =
		"Usage: nodemesh version [--run-dir DIR] [--json]\n"
		"This CLI's version, the map ABI it reads and the version of every\n"
		"running agent (from its run state).\n";
	struct nm_target t = { 0 };
	json_t *agents, *a;
	size_t i;
	int ret;

	ret = nm_target_parse(cli, argc, argv, usage_text, &t, NULL, NULL, NULL, NULL,
			      NULL);
	if (ret)
		return ret < 0 ? NM_EXIT_OK : ret;
	agents = agents_versions(t.run_dir);
	if (cli->json)
		return nm_cli_print_json(cli, json_pack("{s:s, s:i, s:o}", "version", NM_VERSION,
						       "abi", NM_ABI_VERSION, "agents", agents));
	printf("nodemesh %s (map ABI %d)\n", NM_VERSION, NM_ABI_VERSION);
	json_array_foreach(agents, i, a)
		printf("agent %s: nodemeshd %s (pid %lld)\n",
		       json_string_value(json_object_get(a, "instance")),
		       json_string_value(json_object_get(a, "version")) ?: "unknown",
		       (long long)json_integer_value(json_object_get(a, "pid")));
	json_decref(agents);
	return NM_EXIT_OK;
}

/*
 * Takes the global options out of argv wherever they are, up to a "--"
 * (which stays: after it everything is an argument). Returns the new argc.
 */
static int take_global_options(int argc, char **argv, struct nm_cli *cli)
{
	int i, n = 1;
	bool rest = false;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!rest && !strcmp(a, "--"))
			rest = true;
		if (!rest && (!strcmp(a, "--json") || !strcmp(a, "-j"))) {
			cli->json = true;
			continue;
		}
		if (!rest && (!strcmp(a, "--pretty") || !strcmp(a, "-p"))) {
			cli->json = cli->pretty = true;
			continue;
		}
		argv[n++] = argv[i];
	}
	argv[n] = NULL;
	return n;
}

int main(int argc, char **argv)
{
	struct nm_cli cli = { 0 };

	argc = take_global_options(argc, argv, &cli);
	if (argc < 2) {
		usage(stderr);
		return NM_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "-h")) {
		usage(stdout);
		return NM_EXIT_OK;
	}
	for (const struct nm_cmd *c = commands; c->name; c++)
		if (!strcmp(argv[1], c->name))
			return c->fn(&cli, argc - 1, argv + 1);
	nm_cli_fail(&cli, NM_EXIT_USAGE, "unknown command \"%s\"", argv[1]);
	usage(stderr);
	return NM_EXIT_USAGE;
}
