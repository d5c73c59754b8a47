/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.h - levelled, structured (key=value) logging to stderr.
 *
 * pr_warn/pr_info/pr_debug as in xdp-tools. Messages are single lines:
 *   2026-11-29T06:50:01.123Z level=info msg="..." key=value ...
 * Callers write the key=value part themselves in fmt.
 */
#ifndef NM_LOG_H
#define NM_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum nm_log_level {
	NM_LOG_WARN = 0,
	NM_LOG_INFO = 1,
	NM_LOG_DEBUG = 2,
};

void nm_log_set_level(enum nm_log_level level);
enum nm_log_level nm_log_get_level(void);
/* Parses "warn", "info", "debug"; returns -EINVAL otherwise. */
int nm_log_parse_level(const char *s, enum nm_log_level *out);
void nm_log(enum nm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void nm_vlog(enum nm_log_level level, const char *fmt, va_list ap);

#define pr_warn(fmt, ...) nm_log(NM_LOG_WARN, fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...) nm_log(NM_LOG_INFO, fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...) nm_log(NM_LOG_DEBUG, fmt, ##__VA_ARGS__)

/*
 * Rate limiting for data-path lines, one state per reason (as the kernel's
 * printk_ratelimited): at most burst lines per interval; the first line
 * after a suppressed stretch carries " suppressed=K". A zeroed state uses
 * NM_RATELIMIT_INTERVAL_MS and NM_RATELIMIT_BURST, so states embedded in
 * a calloc'ed struct need no set-up.
 */
#define NM_RATELIMIT_INTERVAL_MS 5000
#define NM_RATELIMIT_BURST 10

struct nm_ratelimit {
	int64_t interval_ms;  /* 0: NM_RATELIMIT_INTERVAL_MS */
	uint32_t burst;       /* 0: NM_RATELIMIT_BURST */
	uint32_t printed;     /* lines in the current interval */
	int64_t begin_ms;     /* start of the current interval */
	uint64_t suppressed;  /* lines dropped since the last one printed */
};

/* Pure: may a line go out at now_ms? On true, *suppressed (may be NULL)
 * gets the count dropped since the previous line and the state forgets it. */
bool nm_ratelimit_check(struct nm_ratelimit *rs, int64_t now_ms,
			uint64_t *suppressed);
/* Monotonic clock in ms, as the rate limiter uses it. */
int64_t nm_log_now_ms(void);
void nm_log_ratelimited(struct nm_ratelimit *rs, enum nm_log_level level,
			const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define pr_warn_ratelimited(rs, fmt, ...) \
	nm_log_ratelimited(rs, NM_LOG_WARN, fmt, ##__VA_ARGS__)
#define pr_info_ratelimited(rs, fmt, ...) \
	nm_log_ratelimited(rs, NM_LOG_INFO, fmt, ##__VA_ARGS__)

#endif
