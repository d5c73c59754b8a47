// SPDX-License-Identifier: Apache-2.0
/*
 * certs.c - `nodemesh certs`: the certificates the running agent loaded
 * (its run state's certificates table, written at every applied
 * generation): identity, serial, validity and the seconds left, computed
 * now from notAfter.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <jansson.h>

#include "lib/table.h"
#include "common.h"
#include "commands.h"

static const char certs_usage[] =
	"Usage: nodemesh certs [--instance NAME] [--run-dir DIR] [--json]\n"
	"The workload certificates the agent loaded: identity, serial number,\n"
	"not-before, not-after, seconds until expiry (negative: expired) and the\n"
	"file. Read from the agent's run state: needs the agent running.\n";

static void fmt_time(json_t *v, char *buf, size_t len)
{
	time_t t = (time_t)json_integer_value(v);
	struct tm tm;

	if (!json_is_integer(v) || json_integer_value(v) < 0 || !gmtime_r(&t, &tm))
		snprintf(buf, len, "-");
	else
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int nm_cmd_certs(const struct nm_cli *cli, int argc, char **argv)
{
	static const char *const heads[] = { "IDENTITY", "SERIAL", "NOT-BEFORE",
					     "NOT-AFTER", "EXPIRES-IN", "FILE" };
	struct nm_target t = { 0 };
	char err[PATH_MAX + 256];
	struct nm_table *tab = NULL;
	json_t *agent, *arr, *c, *out;
	time_t now = time(NULL);
	size_t i;
	int ret;

	ret = nm_target_parse(cli, argc, argv, certs_usage, &t, NULL, NULL, NULL,
			      NULL, NULL);
	if (ret)
		return ret < 0 ? NM_EXIT_OK : ret;
	agent = nm_state_load(t.run_dir, t.instance, NM_RUN_AGENT_FILE, err, sizeof(err));
	if (!agent)
		return nm_cli_fail(cli, NM_EXIT_FAIL,
				   "certs: instance \"%s\": %s", t.instance,
				   err[0] ? err : "no run state (the agent is not running)");
	arr = json_object_get(agent, "certificates");
	out = json_array();
	json_array_foreach(arr, i, c) {
		json_t *o = json_deep_copy(c);
		json_t *na = json_object_get(c, "not_after");

		json_object_set_new(o, "seconds_to_expiry", json_is_integer(na) ?
				    json_integer(json_integer_value(na) - (json_int_t)now) :
				    json_null());
		json_array_append_new(out, o);
	}
	if (cli->json) {
		ret = nm_cli_print_json(cli, json_pack("{s:s, s:o}", "instance", t.instance,
						       "certificates", out));
		json_decref(agent);
		return ret;
	}
	ret = nm_table_new(&tab, 6, heads);
	json_array_foreach(out, i, c) {
		char nb[32], na[32], left[32];
		const char *cells[6];

		if (ret)
			break;
		fmt_time(json_object_get(c, "not_before"), nb, sizeof(nb));
		fmt_time(json_object_get(c, "not_after"), na, sizeof(na));
		snprintf(left, sizeof(left), "%llds",
			 (long long)json_integer_value(json_object_get(c, "seconds_to_expiry")));
		cells[0] = json_string_value(json_object_get(c, "identity"));
		cells[1] = json_string_value(json_object_get(c, "serial"));
		cells[2] = nb;
		cells[3] = na;
		cells[4] = left;
		cells[5] = json_string_value(json_object_get(c, "file"));
		ret = nm_table_row(tab, cells);
	}
	if (!ret)
		ret = nm_table_print(tab, stdout);
	nm_table_free(tab);
	json_decref(out);
	json_decref(agent);
	return ret ? NM_EXIT_FAIL : NM_EXIT_OK;
}
