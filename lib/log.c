// SPDX-License-Identifier: Apache-2.0
/* log.c - the agent's one logger; the level is the only state it keeps. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"

/* Atomic: the admin API's thread changes it (POST /logging) while the
 * event loop logs. */
static _Atomic int log_level = NM_LOG_INFO;

void nm_log_set_level(enum nm_log_level level)
{
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

enum nm_log_level nm_log_get_level(void)
{
	return (enum nm_log_level)atomic_load_explicit(&log_level,
						       memory_order_relaxed);
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

/* One line: stamp, level, the caller's fields, then suffix (may be ""). */
static void log_line(enum nm_log_level level, const char *suffix,
		     const char *fmt, va_list ap)
{
	static const char *const names[] = { "warn", "info", "debug" };
	struct timespec ts;
	struct tm tm;
	char stamp[32];

	if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
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
	fprintf(stderr, "%s%s\n", line, suffix);
}

void nm_vlog(enum nm_log_level level, const char *fmt, va_list ap)
{
	log_line(level, "", fmt, ap);
}

int64_t nm_log_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool nm_ratelimit_check(struct nm_ratelimit *rs, int64_t now_ms,
			uint64_t *suppressed)
{
	int64_t interval = rs->interval_ms ? rs->interval_ms :
					     NM_RATELIMIT_INTERVAL_MS;
	uint32_t burst = rs->burst ? rs->burst : NM_RATELIMIT_BURST;

	if (!rs->begin_ms || now_ms - rs->begin_ms >= interval) {
		rs->begin_ms = now_ms ? now_ms : 1;
		rs->printed = 0;
	}
	if (rs->printed >= burst) {
		rs->suppressed++;
		return false;
	}
	rs->printed++;
	if (suppressed)
		*suppressed = rs->suppressed;
	rs->suppressed = 0;
	return true;
}

void nm_log_ratelimited(struct nm_ratelimit *rs, enum nm_log_level level,
			const char *fmt, ...)
{
	uint64_t dropped = 0;
	char suffix[40] = "";
	va_list ap;

	/* Lines below the level are neither printed nor counted. */
	if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed) || !nm_ratelimit_check(rs, nm_log_now_ms(), &dropped))
		return;
	if (dropped)
		snprintf(suffix, sizeof(suffix), " suppressed=%llu",
			 (unsigned long long)dropped);
	va_start(ap, fmt);
	log_line(level, suffix, fmt, ap);
	va_end(ap);
}

void nm_log(enum nm_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	nm_vlog(level, fmt, ap);
	va_end(ap);
}
