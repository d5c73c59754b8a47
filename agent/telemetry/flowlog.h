/* SPDX-License-Identifier: Apache-2.0 */
/*
 * flowlog.h - the flow log: JSON lines, one per closed flow, to a file
 * rotated by size or to standard output; off, sampled or full
 * (telemetry.flowLog, docs/telemetry.md). Records are appended to a memory
 * buffer on the event loop and written by nm_flowlog_flush() from a timer;
 * a full disk or a stalled stdout reader never blocks the loop: the file
 * is written with O_NONBLOCK where that applies (pipes, stdout reopened
 * through /proc/self/fd/1), a failed write drops what it could not write
 * (counted), and past NM_FLOWLOG_BUF_MAX pending bytes records are dropped
 * (counted) until a flush makes room.
 */
#ifndef NM_TELEMETRY_FLOWLOG_H
#define NM_TELEMETRY_FLOWLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state/cluster.h"

#define NM_FLOWLOG_BUF_MAX (4u << 20)

struct nm_flowlog_stats {
	uint64_t records;    /* lines written */
	uint64_t dropped;    /* lines dropped: buffer full or write failed */
	uint64_t sampled_out;
	uint64_t rotations;
	uint64_t write_errors;
	uint64_t bytes;      /* written to the current file */
};

struct nm_flowlog;

/* Opens the file (appending) or stdout; *out is NULL when mode is off.
 * 0 or -errno. */
int nm_flowlog_open(const struct nm_flowlog_cfg *cfg, struct nm_flowlog **out);
void nm_flowlog_close(struct nm_flowlog *l);
/* Should the next closed flow be logged (mode, sampleRate)? NULL: false. */
bool nm_flowlog_wants(struct nm_flowlog *l);
/* Queues one line (without its newline). */
void nm_flowlog_append(struct nm_flowlog *l, const char *line, size_t len);
/* Writes what is queued, rotating by size; 0 or -errno of the last failure. */
int nm_flowlog_flush(struct nm_flowlog *l);
void nm_flowlog_get_stats(const struct nm_flowlog *l, struct nm_flowlog_stats *s);

#endif
