// SPDX-License-Identifier: Apache-2.0
// fuzz-sources: agent/telemetry/query.c agent/telemetry/metrics.c lib/log.c
/*
 * fuzz_admin_query.c - libFuzzer target for what the admin and metrics
 * servers take from a client or a name (telemetry/query.c, metrics.c):
 * the /logging level query, the /flows ?workload= filter, and label values
 * through the Prometheus exposition. Input: "query\0filter\0label value".
 * A level parses to a known level or -EINVAL; the filter never matches
 * outside "name" or "ns/name" of either end; an escaped label value leaves
 * exactly one sample line whose quotes all pair up.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "telemetry/internal.h"
#include "telemetry/metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *part(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *z = memchr(*p, 0, (size_t)(end - *p));
	size_t n = z ? (size_t)(z - *p) : (size_t)(end - *p);
	char *s = malloc(n + 1);

	if (!s)
		abort();
	memcpy(s, *p, n);
	s[n] = '\0';
	*p = z ? z + 1 : end;
	return s;
}

static void check_render(const char *value)
{
	struct nm_metrics m;
	struct nm_metric_family *f;
	const char *labels[] = { "workload" };
	const char *v[] = { value };
	struct nm_sbuf b = { 0 };
	size_t lines = 0;
	char *out, *line;
	bool in = false;

	nm_metrics_init(&m);
	f = nm_metrics_add(&m, "fuzz_total", "help\\with\nnewline", NM_METRIC_COUNTER,
			   labels, 1, NULL, 0, 4);
	if (!f)
		abort();
	nm_metric_add(nm_metric_get(f, v), 1);
	nm_metrics_render(&m, &b);
	out = nm_sbuf_take(&b, NULL);
	if (!out)
		abort();
	for (char *p = out; *p; p++)
		lines += *p == '\n';
	if (lines != 3) /* HELP, TYPE, one sample */
		abort();
	line = strstr(out, "\nfuzz_total{");
	if (!line)
		abort();
	/* Quotes pair up: inside a value only \" and \\ escapes appear. */
	for (char *p = strchr(line, '{'); *p && *p != '\n'; p++) {
		if (in && *p == '\\') {
			if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
				abort();
			p++;
			continue;
		}
		if (*p == '"')
			in = !in;
	}
	if (in)
		abort();
	free(out);
	nm_metrics_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	char *q = part(&p, end), *w = part(&p, end), *val = part(&p, end);
	struct nm_tel_entry e = { 0 };
	int level = -1, ret;

	ret = nm_tel_parse_log_level(q, &level);
	if (ret && ret != -EINVAL)
		abort();
	if (!ret && (level < NM_LOG_WARN || level > NM_LOG_DEBUG))
		abort();
	strcpy(e.src, "default/client");
	strcpy(e.dst, "prod/echo");
	if (nm_tel_entry_match(&e, w) &&
	    !(!*w || !strcmp(w, "client") || !strcmp(w, "echo") ||
	      !strcmp(w, e.src) || !strcmp(w, e.dst)))
		abort();
	check_render(val);
	free(q);
	free(w);
	free(val);
	return 0;
}
