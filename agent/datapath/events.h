/* SPDX-License-Identifier: Apache-2.0 */
/*
 * events.h - the agent's reader of nm_events (include/nm_events.h): the BPF
 * ring buffer, or the per-CPU perf buffer where the datapath fell back to
 * one (nm_datapath_events_transport()). Reading never blocks: the loop
 * watches nm_events_fd() and calls nm_events_poll() when it is readable,
 * which hands every record to the registered handlers.
 *
 * Until a consumer registers (the flow log, metrics), the default handlers
 * count records and log them at debug level, rate limited.
 */
#ifndef NM_DATAPATH_EVENTS_H
#define NM_DATAPATH_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "nm_events.h"
#include "datapath/datapath.h"

struct nm_events;

typedef void (*nm_flow_event_fn)(void *ctx, const struct nm_flow_event *ev);
typedef void (*nm_connect_event_fn)(void *ctx,
				    const struct nm_connect_event *ev);

struct nm_events_stats {
	uint64_t flows;     /* NM_EVT_FLOW_CLOSE records handed out */
	uint64_t connects;  /* NM_EVT_CONNECT records handed out */
	uint64_t malformed; /* too short, or a size that does not match */
	uint64_t unknown;   /* a type this agent does not know (skipped) */
	uint64_t lost;      /* perf buffer: records the kernel dropped */
};

/*
 * A reader with no transport: records come only through nm_events_feed()
 * (tests and the fuzz target). NULL when out of memory.
 */
struct nm_events *nm_events_alloc(void);
/* Hands one record, as a transport delivered it, to the handlers (checks
 * its header first: a short or inconsistent record is counted, not read). */
void nm_events_feed(struct nm_events *ev, const void *data, size_t size);

/* Opens the reader on dp's nm_events; 0 or -errno (logged). */
int nm_events_open(struct nm_datapath *dp, struct nm_events **out);
void nm_events_close(struct nm_events *ev);
/* An fd that polls readable when records wait (epoll fd of libbpf's). */
int nm_events_fd(const struct nm_events *ev);
/*
 * Hands every waiting record to the handlers, without blocking. Returns
 * how many records were read, or -errno.
 */
int nm_events_poll(struct nm_events *ev);
/* NULL fn restores the default (count and debug log). */
void nm_events_set_flow_handler(struct nm_events *ev, nm_flow_event_fn fn,
				void *ctx);
void nm_events_set_connect_handler(struct nm_events *ev,
				   nm_connect_event_fn fn, void *ctx);
void nm_events_get_stats(const struct nm_events *ev,
			 struct nm_events_stats *out);

/* Names for logs and the flow log. */
const char *nm_flow_path_name(uint8_t path);       /* "agent", "kernel", "inbound" */
const char *nm_connect_reason_name(uint8_t reason); /* "policy", ... */

#endif
