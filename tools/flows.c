// SPDX-License-Identifier: Apache-2.0
/*
 * flows.c - `nodemesh flows [--follow] [--workload W]`: the agent's flow
 * records from its admin API (docs/telemetry.md): GET /flows answers the
 * recent closed flows, /flows?follow=1 streams one JSON object per line as
 * flows close, ?workload= keeps the flows of one workload (either side).
 * The address comes from the run state ("admin") unless --admin names it.
 * The answer is {"active", "active_total", "truncated", "recent"}; a bare
 * list of records (an array or JSON lines) is taken as closed flows.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <jansson.h>

#include "lib/json.h"
#include "lib/jsonlines.h"
#include "lib/table.h"
#include "common.h"
#include "commands.h"

#define FLOWS_BODY_MAX (64u << 20)

static const char flows_usage[] =
	"Usage: nodemesh flows [--follow|-f] [--workload|-w NAME] [--admin ADDR:PORT]\n"
	"                      [--instance NAME] [--run-dir DIR] [--json]\n"
	"The agent's live and recently closed flows from its admin API (GET\n"
	"/flows): source and destination workload and identity, service, path,\n"
	"bytes each way and verdict. --follow streams flows as they close (one JSON\n"
	"object per line with --json) until interrupted; --workload keeps the\n"
	"flows of one workload (NAME or NAMESPACE/NAME). The admin address is\n"
	"the one in the agent's run state unless --admin gives it.\n";

struct flows_opts {
	bool follow;
	const char *workload;
	const char *admin;
};

static int on_opt(int c, const char *arg, void *ctx)
{
	struct flows_opts *o = ctx;

	switch (c) {
	case 'f':
		o->follow = true;
		return 0;
	case 'w':
		if (!arg[0])
			return -EINVAL;
		o->workload = arg;
		return 0;
	case 'A':
		if (!arg[0])
			return -EINVAL;
		o->admin = arg;
		return 0;
	}
	return -EINVAL;
}

/* A field of a flow record by its dotted path ("src.workload") as text. */
static const char *field(json_t *f, const char *path, char *buf, size_t len)
{
	char key[64];
	const char *dot;
	json_t *v = f;

	while ((dot = strchr(path, '.'))) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		v = json_object_get(v, key);
		path = dot + 1;
	}
	v = json_object_get(v, path);
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
		return buf;
	}
	if (json_is_real(v)) {
		snprintf(buf, len, "%.3f", json_real_value(v));
		return buf;
	}
	return NULL;
}

/* One end: "namespace/workload" when known, else its address. */
static const char *end_name(json_t *f, const char *side, char *buf, size_t len)
{
	json_t *e = json_object_get(f, side);
	const char *w = json_string_value(json_object_get(e, "workload"));
	const char *ns = json_string_value(json_object_get(e, "namespace"));

	if (w && *w && strcmp(w, "unknown")) {
		if (ns && *ns && strcmp(ns, "unknown"))
			snprintf(buf, len, "%s/%s", ns, w);
		else
			snprintf(buf, len, "%s", w);
		return buf;
	}
	return json_string_value(json_object_get(e, "addr"));
}

#define NCOLS 10
static const char *const heads[NCOLS] = { "STATE", "SOURCE", "DESTINATION",
					  "SRC-IDENTITY", "DST-IDENTITY", "SERVICE",
					  "PATH", "UP", "DOWN", "VERDICT" };

/* The cells of a record (docs/telemetry.md); state: "closed" or the phase. */
static void row_cells(json_t *f, const char *state, char bufs[NCOLS][160],
		      const char *cells[NCOLS])
{
	cells[0] = state;
	cells[1] = end_name(f, "src", bufs[1], sizeof(bufs[1]));
	cells[2] = end_name(f, "dst", bufs[2], sizeof(bufs[2]));
	cells[3] = field(f, "src.principal", bufs[3], sizeof(bufs[3]));
	cells[4] = field(f, "dst.principal", bufs[4], sizeof(bufs[4]));
	cells[5] = field(f, "service", bufs[5], sizeof(bufs[5]));
	cells[6] = field(f, "path", bufs[6], sizeof(bufs[6]));
	cells[7] = field(f, "bytes_up", bufs[7], sizeof(bufs[7]));
	cells[8] = field(f, "bytes_down", bufs[8], sizeof(bufs[8]));
	cells[9] = field(f, "verdict", bufs[9], sizeof(bufs[9]));
}

/* --- streaming ----------------------------------------------------------- */

struct stream {
	const struct nm_cli *cli;
	char *buf;
	size_t len, cap;
	bool follow;
	bool header;
	unsigned long flows;
	bool too_big;
};

/* --follow: one line is one closed flow; printed as it arrives. */
static void emit_line(struct stream *s, const char *line, size_t len)
{
	char bufs[NCOLS][160];
	const char *c[NCOLS];
	json_error_t jerr;
	json_t *f;

	if (!len)
		return;
	f = json_loadb(line, len, 0, &jerr);
	if (!json_is_object(f)) {
		json_decref(f);
		return;
	}
	s->flows++;
	if (s->cli->json) {
		json_dumpf(f, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		/* A stream cannot be measured first: fixed widths. */
		if (!s->header) {
			printf("%-28s %-28s %-36s %-6s %10s %10s %s\n", "SOURCE",
			       "DESTINATION", "SERVICE", "PATH", "UP", "DOWN", "VERDICT");
			s->header = true;
		}
		row_cells(f, "closed", bufs, c);
		printf("%-28s %-28s %-36s %-6s %10s %10s %s\n", c[1] ? c[1] : "-",
		       c[2] ? c[2] : "-", c[5] ? c[5] : "-", c[6] ? c[6] : "-",
		       c[7] ? c[7] : "-", c[8] ? c[8] : "-", c[9] ? c[9] : "-");
	}
	fflush(stdout);
	json_decref(f);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct stream *s = arg;
	size_t n = size * nmemb;

	if (s->len + n + 1 > s->cap) {
		size_t ncap = (s->len + n + 1) * 2;
		char *p;

		if (ncap > FLOWS_BODY_MAX) {
			s->too_big = true;
			return 0;
		}
		p = realloc(s->buf, ncap);
		if (!p)
			return 0;
		s->buf = p;
		s->cap = ncap;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	s->buf[s->len] = '\0';
	if (s->follow) {
		char *nl;

		while ((nl = memchr(s->buf, '\n', s->len))) {
			size_t l = (size_t)(nl - s->buf);

			emit_line(s, s->buf, l);
			memmove(s->buf, nl + 1, s->len - l - 1);
			s->len -= l + 1;
			s->buf[s->len] = '\0';
		}
	}
	return n;
}

static int print_table(json_t *doc)
{
	static const char *const lists[2] = { "active", "recent" };
	struct nm_table *tab;
	json_t *f;
	size_t i;
	int ret = nm_table_new(&tab, NCOLS, heads);

	if (ret)
		return ret;
	for (int l = 0; l < 2 && !ret; l++) {
		json_array_foreach(json_object_get(doc, lists[l]), i, f) {
			char bufs[NCOLS][160];
			const char *cells[NCOLS];
			const char *phase = json_string_value(json_object_get(f, "phase"));

			row_cells(f, l ? "closed" : phase ? phase : "active", bufs, cells);
			ret = nm_table_row(tab, cells);
			if (ret)
				break;
		}
	}
	if (!ret && json_is_true(json_object_get(doc, "truncated")))
		printf("# %lld active flows, the first %zu shown\n",
		       (long long)json_integer_value(json_object_get(doc, "active_total")),
		       json_array_size(json_object_get(doc, "active")));
	if (!ret)
		ret = nm_table_print(tab, stdout);
	nm_table_free(tab);
	return ret;
}

/*
 * The answer as {"active", "active_total", "truncated", "recent"}: the
 * admin API's document (docs/telemetry.md), or a bare list of records
 * (JSON lines or an array) taken as closed flows. NULL when neither.
 */
static json_t *flows_doc(const char *body, size_t len)
{
	json_error_t jerr;
	json_t *doc = json_loadb(body, len, 0, &jerr), *list;

	if (json_is_object(doc) && (json_is_array(json_object_get(doc, "recent")) ||
				    json_is_array(json_object_get(doc, "active")))) {
		if (!json_is_array(json_object_get(doc, "active")))
			json_object_set_new(doc, "active", json_array());
		if (!json_is_array(json_object_get(doc, "recent")))
			json_object_set_new(doc, "recent", json_array());
		return doc;
	}
	json_decref(doc);
	list = nm_json_list_parse(body, len, "flows");
	if (!list)
		return NULL;
	return json_pack("{s:[], s:i, s:b, s:o}", "active", "active_total", 0,
			 "truncated", false, "recent", list);
}

/* "http://host:port" from --admin or the run state's admin address. */
static int admin_base(const struct nm_target *t, const char *admin, char *buf,
		      size_t len, char *err, size_t errlen)
{
	json_t *agent, *a;
	const char *host;

	if (admin) {
		snprintf(buf, len, "http://%s", admin);
		return 0;
	}
	agent = nm_state_load(t->run_dir, t->instance, NM_RUN_AGENT_FILE, err, errlen);
	if (!agent) {
		if (!err[0])
			snprintf(err, errlen,
				 "instance \"%s\": no run state in %s (agent not running; --admin ADDR:PORT names the API)",
				 t->instance, t->run_dir);
		return -ENOENT;
	}
	a = json_object_get(agent, "admin");
	host = json_string_value(json_object_get(a, "address"));
	if (!host || !json_integer_value(json_object_get(a, "port"))) {
		snprintf(err, errlen, "instance \"%s\": the run state names no admin API",
			 t->instance);
		json_decref(agent);
		return -ENOENT;
	}
	snprintf(buf, len, strchr(host, ':') ? "http://[%s]:%lld" : "http://%s:%lld", host,
		 (long long)json_integer_value(json_object_get(a, "port")));
	json_decref(agent);
	return 0;
}

int nm_cmd_flows(const struct nm_cli *cli, int argc, char **argv)
{
	static const struct option extra[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "workload", required_argument, NULL, 'w' },
		{ "admin", required_argument, NULL, 'A' },
		{ 0 },
	};
	struct flows_opts o = { 0 };
	struct nm_target t = { 0 };
	struct stream s = { .cli = cli };
	char base[512], url[1024], err[PATH_MAX + 256] = "", cerr[CURL_ERROR_SIZE] = "";
	long code = 0;
	json_t *flows;
	CURLcode cr;
	CURL *c;
	int ret;

	ret = nm_target_parse(cli, argc, argv, flows_usage, &t, extra, "fw:", on_opt, &o,
			      NULL);
	if (ret)
		return ret < 0 ? NM_EXIT_OK : ret;
	if (admin_base(&t, o.admin, base, sizeof(base), err, sizeof(err)))
		return nm_cli_fail(cli, NM_EXIT_FAIL, "flows: %s", err);
	if (curl_global_init(CURL_GLOBAL_DEFAULT))
		return nm_cli_fail(cli, NM_EXIT_FAIL, "flows: cannot initialise libcurl");
	c = curl_easy_init();
	if (!c) {
		curl_global_cleanup();
		return nm_cli_fail(cli, NM_EXIT_FAIL, "flows: cannot initialise libcurl");
	}
	{
		char *w = o.workload ? curl_easy_escape(c, o.workload, 0) : NULL;

		snprintf(url, sizeof(url), "%s/flows%s%s%s%s", base,
			 o.follow || w ? "?" : "", o.follow ? "follow=1" : "",
			 o.follow && w ? "&" : "", w ? "workload=" : "");
		if (w)
			snprintf(url + strlen(url), sizeof(url) - strlen(url), "%s", w);
		curl_free(w);
	}
	s.follow = o.follow;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (!o.follow)
		curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	cr = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	curl_global_cleanup();
	if (cr != CURLE_OK && !(o.follow && cr == CURLE_PARTIAL_FILE)) {
		ret = nm_cli_fail(cli, NM_EXIT_FAIL, "flows: %s: %s", url,
				  s.too_big ? "answer too large" : cerr[0] ? cerr :
				  curl_easy_strerror(cr));
		goto out;
	}
	if (code != 200) {
		ret = nm_cli_fail(cli, NM_EXIT_FAIL, "flows: %s: HTTP %ld%s%.200s", url, code,
				  s.len ? ": " : "", s.buf ? s.buf : "");
		goto out;
	}
	if (o.follow) {
		if (s.len)
			emit_line(&s, s.buf, s.len);
		ret = NM_EXIT_OK;
		goto out;
	}
	flows = flows_doc(s.buf ? s.buf : "", s.len);
	if (!flows) {
		ret = nm_cli_fail(cli, NM_EXIT_FAIL, "flows: %s: answer is neither JSON nor JSON lines",
				  url);
		goto out;
	}
	if (cli->json) {
		json_object_set_new(flows, "source", json_string(url));
		json_object_set_new(flows, "workload", nm_json_str_or_null(o.workload));
		ret = nm_cli_print_json(cli, flows);
		goto out;
	}
	ret = print_table(flows) ? NM_EXIT_FAIL : NM_EXIT_OK;
	json_decref(flows);
out:
	free(s.buf);
	return ret;
}
