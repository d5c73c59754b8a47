// SPDX-License-Identifier: Apache-2.0
/*
 * events.c - reads nm_events through libbpf's ring_buffer or perf_buffer
 * and dispatches the records (events.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "datapath/events.h"
#include "lib/addr.h"
#include "lib/log.h"

/* Per CPU pages of the perf buffer fallback (a power of two). */
#define NM_PERFBUF_PAGES 64

struct nm_events {
	struct ring_buffer *rb;
	struct perf_buffer *pb;
	nm_flow_event_fn flow_fn;
	void *flow_ctx;
	nm_connect_event_fn conn_fn;
	void *conn_ctx;
	struct nm_events_stats stats;
	int records; /* read by the current nm_events_poll() */
	struct nm_ratelimit rl_flow, rl_conn, rl_bad;
};

const char *nm_flow_path_name(uint8_t path)
{
	switch (path) {
	case NM_FLOW_PATH_AGENT:
		return "agent";
	case NM_FLOW_PATH_KERNEL:
		return "kernel";
	case NM_FLOW_PATH_INBOUND:
		return "inbound";
	default:
		return "unknown";
	}
}

const char *nm_connect_reason_name(uint8_t reason)
{
	static const char *const names[] = {
		[NM_CR_POLICY] = "policy",
		[NM_CR_NO_ENDPOINTS] = "no_endpoints",
		[NM_CR_MISSING_SLOT] = "missing_slot",
		[NM_CR_NO_AGENT_STATE] = "no_agent_state",
		[NM_CR_NO_LISTENER] = "no_listener",
		[NM_CR_RECORD_WRITE] = "record_write",
	};

	if (reason < sizeof(names) / sizeof(names[0]) && names[reason])
		return names[reason];
	return "unknown";
}

static void default_flow(void *ctx, const struct nm_flow_event *f)
{
	struct nm_events *ev = ctx;
	char src[64], peer[64], dst[64];

	if (nm_log_get_level() < NM_LOG_DEBUG ||
	    !nm_ratelimit_check(&ev->rl_flow, nm_log_now_ms(), NULL))
		return;
	nm_addr_format(&f->src, src, sizeof(src));
	nm_addr_format(&f->peer, peer, sizeof(peer));
	nm_addr_format(&f->dst, dst, sizeof(dst));
	pr_debug("msg=\"bpf flow closed\" path=%s local=%s:%u peer=%s:%u src_wl=%u dst=%s dst_port=%u dst_wl=%u service=%u bytes_acked=%llu bytes_received=%llu srtt_us=%u retrans=%u established=%d",
		 nm_flow_path_name(f->path), src, ntohs(f->src_port), peer,
		 ntohs(f->peer_port), f->src_workload_id, dst,
		 ntohs(f->dst_port), f->dst_workload_id, f->service_id,
		 (unsigned long long)f->bytes_acked,
		 (unsigned long long)f->bytes_received, f->srtt_us,
		 f->total_retrans, !!(f->flags & NM_FLOW_ESTABLISHED));
}

static void default_connect(void *ctx, const struct nm_connect_event *c)
{
	struct nm_events *ev = ctx;
	char dst[64];

	if (nm_log_get_level() < NM_LOG_DEBUG ||
	    !nm_ratelimit_check(&ev->rl_conn, nm_log_now_ms(), NULL))
		return;
	nm_addr_format(&c->dst, dst, sizeof(dst));
	pr_debug("msg=\"bpf connect %s\" reason=%s src_wl=%u dst=%s dst_port=%u policy=%u",
		 c->verdict == NM_CV_REFUSED ? "refused" : "passed (fail-open)",
		 nm_connect_reason_name(c->reason), c->src_workload_id, dst,
		 ntohs(c->dst_port), c->policy_id);
}

/* One record of either transport. */
static void dispatch(struct nm_events *ev, const void *data, size_t size)
{
	struct nm_event_hdr hb = { 0 };
	const struct nm_event_hdr *h = &hb;

	ev->records++;
	if (size >= sizeof(hb))
		memcpy(&hb, data, sizeof(hb));
	/* A perf sample may carry padding past the record: size >= hdr.size. */
	if (size < sizeof(*h) || h->size > size) {
		ev->stats.malformed++;
		goto bad;
	}
	switch (h->type) {
	case NM_EVT_FLOW_CLOSE: {
		struct nm_flow_event f;

		if (h->size != sizeof(f)) {
			ev->stats.malformed++;
			goto bad;
		}
		/* Copied out: a perf sample is only 4-byte aligned. */
		memcpy(&f, data, sizeof(f));
		ev->stats.flows++;
		ev->flow_fn(ev->flow_ctx, &f);
		return;
	}
	case NM_EVT_CONNECT: {
		struct nm_connect_event c;

		if (h->size != sizeof(c)) {
			ev->stats.malformed++;
			goto bad;
		}
		memcpy(&c, data, sizeof(c));
		ev->stats.connects++;
		ev->conn_fn(ev->conn_ctx, &c);
		return;
	}
	default:
		/* A newer datapath's record: skipped, as NMTP skips TLVs. */
		ev->stats.unknown++;
		return;
	}
bad:
	pr_warn_ratelimited(&ev->rl_bad,
			    "msg=\"malformed BPF event\" size=%zu type=%u record_size=%u",
			    size, size >= sizeof(*h) ? h->type : 0,
			    size >= sizeof(*h) ? h->size : 0);
}

static int on_ring(void *ctx, void *data, size_t size)
{
	dispatch(ctx, data, size);
	return 0;
}

static void on_perf(void *ctx, int cpu, void *data, __u32 size)
{
	dispatch(ctx, data, size);
}

static void on_perf_lost(void *ctx, int cpu, __u64 cnt)
{
	struct nm_events *ev = ctx;

	ev->stats.lost += cnt;
	pr_warn_ratelimited(&ev->rl_bad, "msg=\"BPF events lost\" cpu=%d count=%llu",
			    cpu, (unsigned long long)cnt);
}

struct nm_events *nm_events_alloc(void)
{
	struct nm_events *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return NULL;
	ev->flow_fn = default_flow;
	ev->flow_ctx = ev;
	ev->conn_fn = default_connect;
	ev->conn_ctx = ev;
	return ev;
}

void nm_events_feed(struct nm_events *ev, const void *data, size_t size)
{
	dispatch(ev, data, size);
}

int nm_events_open(struct nm_datapath *dp, struct nm_events **out)
{
	int fd = nm_datapath_events_fd(dp), ret;
	struct nm_events *ev;

	*out = NULL;
	ev = nm_events_alloc();
	if (!ev)
		return -ENOMEM;
	if (nm_datapath_events_transport(dp) == NM_EVENTS_PERFBUF) {
		ev->pb = perf_buffer__new(fd, NM_PERFBUF_PAGES, on_perf,
					  on_perf_lost, ev, NULL);
		ret = ev->pb ? 0 : -errno;
	} else {
		ev->rb = ring_buffer__new(fd, on_ring, ev, NULL);
		ret = ev->rb ? 0 : -errno;
	}
	if (ret) {
		pr_warn("msg=\"cannot read BPF events\" transport=%s err=\"%s\"",
			nm_events_transport_name(nm_datapath_events_transport(dp)),
			strerror(-ret));
		free(ev);
		return ret;
	}
	*out = ev;
	return 0;
}

void nm_events_close(struct nm_events *ev)
{
	if (!ev)
		return;
	ring_buffer__free(ev->rb);
	perf_buffer__free(ev->pb);
	free(ev);
}

int nm_events_fd(const struct nm_events *ev)
{
	return ev->rb ? ring_buffer__epoll_fd(ev->rb) :
			perf_buffer__epoll_fd(ev->pb);
}

int nm_events_poll(struct nm_events *ev)
{
	int ret;

	ev->records = 0;
	ret = ev->rb ? ring_buffer__consume(ev->rb) :
		       perf_buffer__consume(ev->pb);
	if (ret < 0 && ret != -EINTR)
		return ret;
	return ev->records;
}

void nm_events_set_flow_handler(struct nm_events *ev, nm_flow_event_fn fn,
				void *ctx)
{
	ev->flow_fn = fn ? fn : default_flow;
	ev->flow_ctx = fn ? ctx : ev;
}

void nm_events_set_connect_handler(struct nm_events *ev,
				   nm_connect_event_fn fn, void *ctx)
{
	ev->conn_fn = fn ? fn : default_connect;
	ev->conn_ctx = fn ? ctx : ev;
}

void nm_events_get_stats(const struct nm_events *ev, struct nm_events_stats *out)
{
	*out = ev->stats;
}
