// SPDX-License-Identifier: Apache-2.0
/*
 * query.c - the admin API's query parsing, pure (fuzzed by
 * tests/fuzz/fuzz_admin_query.c): the /logging level and the /flows
 * ?workload= filter.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "telemetry/internal.h"

int nm_tel_parse_log_level(const char *q, int *level)
{
	static const struct {
		const char *name;
		int level;
	} names[] = {
		{ "debug", NM_LOG_DEBUG }, { "trace", NM_LOG_DEBUG },
		{ "info", NM_LOG_INFO },   { "warn", NM_LOG_WARN },
		{ "warning", NM_LOG_WARN }, { "error", NM_LOG_WARN },
	};
	const char *p, *end;
	size_t n;

	if (!q || !*q || strlen(q) > 256)
		return -EINVAL;
	/* "module=level,module=level": ztunnel's form; one logger here, so
	 * the last level named wins. */
	p = strrchr(q, ',');
	p = p ? p + 1 : q;
	end = p + strlen(p);
	if (memchr(p, '=', (size_t)(end - p)))
		p = (const char *)memchr(p, '=', (size_t)(end - p)) + 1;
	n = (size_t)(end - p);
	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == n && !strncasecmp(p, names[i].name, n)) {
			*level = names[i].level;
			return 0;
		}
	return -EINVAL;
}

bool nm_tel_entry_match(const struct nm_tel_entry *e, const char *w)
{
	const char *s;

	if (!w || !*w)
		return true;
	if (strchr(w, '/'))
		return !strcmp(e->src, w) || !strcmp(e->dst, w);
	s = strchr(e->src, '/');
	if (s && !strcmp(s + 1, w))
		return true;
	s = strchr(e->dst, '/');
	return s && !strcmp(s + 1, w);
}
