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

#endif
