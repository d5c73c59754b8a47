// SPDX-License-Identifier: Apache-2.0
/* log.c - the agent's one logger; the level is the only state it keeps. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"

static enum nm_log_level log_level = NM_LOG_INFO;

void nm_log_set_level(enum nm_log_level level)
{
	log_level = level;
}

enum nm_log_level nm_log_get_level(void)
{
	return log_level;
}

int nm_log_parse_level(const char *s, enum nm_log_level *out)
{
	static const char *const names[] = { "warn", "info", "debug" };

	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum nm_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void nm_vlog(enum nm_log_level level, const char *fmt, va_list ap)
{
	static const char *const names[] = { "warn", "info", "debug" };
	struct timespec ts;
	struct tm tm;
	char stamp[32];

	if (level > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf per line keeps lines whole when several agents share a
	 * terminal; stderr is unbuffered. */
	char line[1024];
	int n = snprintf(line, sizeof(line), "%s.%03ldZ level=%s ", stamp,
			 ts.tv_nsec / 1000000, names[level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	fprintf(stderr, "%s\n", line);
}

void nm_log(enum nm_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	nm_vlog(level, fmt, ap);
	va_end(ap);
}
