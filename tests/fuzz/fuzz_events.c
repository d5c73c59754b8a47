// SPDX-License-Identifier: Apache-2.0
// fuzz-sources: agent/datapath/events.c lib/log.c lib/addr.c
/*
 * fuzz_events.c - libFuzzer target for the BPF event reader's record check
 * (datapath/events.c, nm_events_feed()): any bytes a ring or perf buffer
 * could deliver are either one record of a known type and exact size,
 * handed out once, or counted as malformed/unknown; never read past the
 * buffer. The datapath the reader would be opened on is stubbed: only
 * nm_events_feed() runs here.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datapath/events.h"
#include "lib/log.h"

/* Stubs for the transport side (nm_events_open), never called here. */
enum nm_events_transport nm_datapath_events_transport(const struct nm_datapath *dp)
{
	abort();
}

int nm_datapath_events_fd(const struct nm_datapath *dp)
{
	abort();
}

const char *nm_events_transport_name(enum nm_events_transport t)
{
	return "fuzz";
}

static unsigned int flows, conns;

static void on_flow(void *ctx, const struct nm_flow_event *f)
{
	if (f->hdr.type != NM_EVT_FLOW_CLOSE || f->hdr.size != sizeof(*f))
		abort();
	flows++;
}

static void on_conn(void *ctx, const struct nm_connect_event *c)
{
	if (c->hdr.type != NM_EVT_CONNECT || c->hdr.size != sizeof(*c))
		abort();
	conns++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct nm_events *ev;
	struct nm_events_stats before, after;
	uint8_t *copy;

	if (!ev) {
		nm_log_set_level(NM_LOG_WARN);
		ev = nm_events_alloc();
		if (!ev)
			abort();
		nm_events_set_flow_handler(ev, on_flow, NULL);
		nm_events_set_connect_handler(ev, on_conn, NULL);
	}
	/* An exact-size heap copy, so ASan sees any read past the record. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	nm_events_get_stats(ev, &before);
	flows = conns = 0;
	nm_events_feed(ev, copy, size);
	nm_events_get_stats(ev, &after);
	/* Exactly one outcome per record. */
	if ((after.flows - before.flows) + (after.connects - before.connects) +
		    (after.malformed - before.malformed) +
		    (after.unknown - before.unknown) != 1 ||
	    after.flows - before.flows != flows ||
	    after.connects - before.connects != conns)
		abort();
	free(copy);
	return 0;
}
