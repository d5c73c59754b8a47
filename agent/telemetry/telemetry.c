// SPDX-License-Identifier: Apache-2.0
/*
 * telemetry.c - the loop side of telemetry (telemetry.h): metric families,
 * the mesh hooks (hooks.h), flow records, and the snapshots the HTTP
 * threads serve.
 *
 * Istio's TCP metrics follow ztunnel (src/proxy/metrics.rs): the label set
 * of CommonTrafficLabels, "unknown" for anything not known, principals as
 * SPIFFE URIs, app/version from the canonical-name/revision labels, bytes
 * from the client (downstream) counted as received and bytes toward it as
 * sent, connections_opened with response_flags "-" and connections_closed
 * with the flow's final flag. A flow through one agent is reported by that
 * agent as the source (outbound), the destination (inbound), or both
 * (same node: it is both ends' agent).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "datapath/probe.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "mesh/flow.h"
#include "mesh/route.h"
#include "mesh/tls.h"
#include "mesh/vcache.h"
#include "telemetry/flowlog.h"
#include "telemetry/internal.h"
#include "telemetry/metrics.h"

#define UNKNOWN "unknown"

/* ztunnel's CommonTrafficLabels, in its order. */
enum {
	L_REPORTER,
	L_SRC_WORKLOAD, L_SRC_CANON_SVC, L_SRC_CANON_REV, L_SRC_NS,
	L_SRC_PRINCIPAL, L_SRC_APP, L_SRC_VERSION, L_SRC_CLUSTER,
	L_DST_SERVICE, L_DST_SVC_NS, L_DST_SVC_NAME,
	L_DST_WORKLOAD, L_DST_CANON_SVC, L_DST_CANON_REV, L_DST_NS,
	L_DST_PRINCIPAL, L_DST_APP, L_DST_VERSION, L_DST_CLUSTER,
	L_PROTOCOL, L_FLAGS, L_SECURITY,
	L__COUNT,
};

static const char *const tcp_labels[L__COUNT] = {
	"reporter",
	"source_workload", "source_canonical_service", "source_canonical_revision",
	"source_workload_namespace", "source_principal", "source_app",
	"source_version", "source_cluster",
	"destination_service", "destination_service_namespace",
	"destination_service_name",
	"destination_workload", "destination_canonical_service",
	"destination_canonical_revision", "destination_workload_namespace",
	"destination_principal", "destination_app", "destination_version",
	"destination_cluster",
	"request_protocol", "response_flags", "connection_security_policy",
};

static const char *const flag_names[NM_TEL_FLAG__COUNT] = {
	[NM_TEL_FLAG_NONE] = "-",
	[NM_TEL_FLAG_DENY] = "DENY",
	[NM_TEL_FLAG_CONNECT] = "CONNECT",
	[NM_TEL_FLAG_TLS] = "TLS_FAILURE",
	[NM_TEL_FLAG_IDENTITY] = "IDENTITY_ERROR",
};

static const char *const reporter_names[2] = { "source", "destination" };

struct nm_telemetry {
	struct nm_agent *a;
	struct nm_telemetry_cfg cfg;
	struct nm_metrics reg;
	struct nm_metric_family *tcp_opened, *tcp_closed, *tcp_sent, *tcp_recv;
	struct nm_metric_family *policy, *tls, *cert_expiry, *flows_active;
	struct nm_metric_family *tls_cpu;
	struct nm_metric_family *vcache;
	struct nm_metric_family *limit_refused, *limit_max, *limit_used;
	/* The tunnel pool (mesh/pool.h). */
	struct nm_metric_family *pool_hits, *pool_misses, *pool_discards,
		*pool_conns;
	struct nm_metric_family *connect_lat, *srtt, *flowlog, *overflow;
	struct nm_metric_family *agent_events, *kernel_flows, *scrapes;
	struct nm_metric_family *map_entries, *map_capacity, *map_errors;
	int64_t maps_at_ms;
	struct nm_flowlog *log;
	struct nm_tel_shared sh;
	struct nm_tel_http *http;
	uint64_t timer;
	uint32_t dump_generation;
	int64_t dump_at_ms;
	bool has_features;
	struct nm_features feat;
	struct nm_choices chosen;
};

/* ------------------------------------------------------------ helpers */

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000ll + ts.tv_nsec / 1000000;
}

static void json_str(struct nm_sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const char *run = s;

	nm_sbuf_puts(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[7];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		nm_sbuf_putn(b, run, (size_t)(s - run));
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			esc[2] = '\0';
		} else {
			snprintf(esc, sizeof(esc), "\\u00%c%c", hex[c >> 4], hex[c & 15]);
		}
		nm_sbuf_puts(b, esc);
		run = s + 1;
	}
	nm_sbuf_putn(b, run, (size_t)(s - run));
	nm_sbuf_puts(b, "\"");
}

static const char *label_of(const struct nm_workload_cfg *w, const char *k)
{
	for (unsigned int i = 0; i < w->n_labels; i++)
		if (!strcmp(w->labels[i].key, k))
			return w->labels[i].value;
	return NULL;
}

/* Istio's canonical service and revision of a workload: the labels
 * service.istio.io/canonical-{name,revision}, else app.kubernetes.io/
 * {name,version}, else app/version; else the workload name and "latest". */
static const char *canon_name(const struct nm_workload_cfg *w)
{
	const char *v = label_of(w, "service.istio.io/canonical-name");

	if (!v)
		v = label_of(w, "app.kubernetes.io/name");
	if (!v)
		v = label_of(w, "app");
	return v ? v : w->name;
}

static const char *canon_rev(const struct nm_workload_cfg *w)
{
	const char *v = label_of(w, "service.istio.io/canonical-revision");

	if (!v)
		v = label_of(w, "app.kubernetes.io/version");
	if (!v)
		v = label_of(w, "version");
	return v ? v : "latest";
}

/* ------------------------------------------------------- flow description */

/* Both ends of a flow as this agent knows them. */
struct tel_end {
	char workload[NM_NAME_MAX];
	char ns[NM_NAME_MAX];
	char principal[NM_SPIFFE_MAX];
	char app[NM_NAME_MAX];
	char version[NM_NAME_MAX];
};

struct tel_desc {
	struct tel_end src, dst;
	char svc_host[3 * NM_NAME_MAX + 16];
	char svc_ns[NM_NAME_MAX];
	char svc_name[NM_NAME_MAX];
	const char *path;       /* "mtls", "local" */
	const char *security;   /* "mutual_tls", "none" */
	uint8_t reporters;      /* bit 0 source, bit 1 destination */
};

static void end_unknown(struct tel_end *e)
{
	snprintf(e->workload, sizeof(e->workload), UNKNOWN);
	snprintf(e->ns, sizeof(e->ns), UNKNOWN);
	snprintf(e->principal, sizeof(e->principal), UNKNOWN);
	snprintf(e->app, sizeof(e->app), UNKNOWN);
	snprintf(e->version, sizeof(e->version), UNKNOWN);
}

static void end_workload(struct tel_end *e, const struct nm_st_workload *w)
{
	if (!w)
		return;
	snprintf(e->workload, sizeof(e->workload), "%s", w->cfg->name);
	snprintf(e->ns, sizeof(e->ns), "%s", w->cfg->ns);
	snprintf(e->app, sizeof(e->app), "%s", canon_name(w->cfg));
	snprintf(e->version, sizeof(e->version), "%s", canon_rev(w->cfg));
}

static void end_principal(struct tel_end *e, const struct nm_spiffe_id *id)
{
	if (id->trust_domain[0] && !nm_spiffe_format(id, e->principal,
						      sizeof(e->principal)))
		return;
	snprintf(e->principal, sizeof(e->principal), UNKNOWN);
}

static const struct nm_st_workload *wl_at(const struct nm_state *s,
					  const struct sockaddr_storage *ss)
{
	struct nm_addr ip;

	if (!s || !ss->ss_family)
		return NULL;
	nm_addr_from_sockaddr(ss, &ip, NULL);
	return nm_state_workload_by_addr(s, &ip);
}

static void describe(const struct nm_flow *f, struct tel_desc *d)
{
	const struct nm_state *s = f->agent->state;
	const struct nm_st_workload *src = NULL, *dst = NULL;
	const struct nm_st_service *svc = NULL;

	memset(d, 0, sizeof(*d));
	end_unknown(&d->src);
	end_unknown(&d->dst);
	snprintf(d->svc_host, sizeof(d->svc_host), UNKNOWN);
	snprintf(d->svc_ns, sizeof(d->svc_ns), UNKNOWN);
	snprintf(d->svc_name, sizeof(d->svc_name), UNKNOWN);
	/* A same-node flow between meshed workloads is attested at both
	 * ends (their cgroups, the identities the agent holds for them) and
	 * never leaves the node: reported as mutual_tls, as ztunnel reports
	 * its own same-node traffic; the flow log's path says "local". */
	d->security = f->tunnel >= 0 || f->src_workload ? "mutual_tls" : "none";
	d->path = f->tunnel >= 0 ? "mtls" : "local";
	if (f->dir == NM_DIR_OUTBOUND) {
		d->reporters = f->remote ? 1 : 3;
		if (s && !f->lst->fwd) {
			src = f->src_workload ? nm_state_workload_by_id(s, f->src_workload) :
						NULL;
			if (!src)
				src = wl_at(s, &f->src);
		}
		dst = wl_at(s, &f->backend);
		end_principal(&d->src, &f->local_id);
		if (f->remote) {
			end_principal(&d->dst, &f->peer_id);
		} else if (dst) {
			struct nm_spiffe_id id;

			nm_route_identity(s, dst->cfg->ns, dst->cfg->sa, &id);
			end_principal(&d->dst, &id);
		}
	} else {
		d->reporters = 2;
		if (s && !f->lst->fwd)
			src = wl_at(s, &f->src);
		dst = wl_at(s, &f->connect_to);
		end_principal(&d->src, &f->peer_id);
		end_principal(&d->dst, &f->local_id);
	}
	end_workload(&d->src, src);
	end_workload(&d->dst, dst);
	if (s && f->res.service_id)
		svc = nm_route_service(s, f->res.service_id);
	if (svc) {
		snprintf(d->svc_host, sizeof(d->svc_host), "%s.%s.svc.%s",
			 svc->cfg->name, svc->cfg->ns, nm_state_trust_domain(s));
		snprintf(d->svc_ns, sizeof(d->svc_ns), "%s", svc->cfg->ns);
		snprintf(d->svc_name, sizeof(d->svc_name), "%s", svc->cfg->name);
	}
}

static void desc_values(const struct nm_telemetry *t, const struct tel_desc *d,
			int reporter, const char *flag, const char **v)
{
	v[L_REPORTER] = reporter_names[reporter];
	v[L_SRC_WORKLOAD] = d->src.workload;
	v[L_SRC_CANON_SVC] = d->src.app;
	v[L_SRC_CANON_REV] = d->src.version;
	v[L_SRC_NS] = d->src.ns;
	v[L_SRC_PRINCIPAL] = d->src.principal;
	v[L_SRC_APP] = d->src.app;
	v[L_SRC_VERSION] = d->src.version;
	v[L_SRC_CLUSTER] = strcmp(d->src.workload, UNKNOWN) ? t->cfg.cluster_id : UNKNOWN;
	v[L_DST_SERVICE] = d->svc_host;
	v[L_DST_SVC_NS] = d->svc_ns;
	v[L_DST_SVC_NAME] = d->svc_name;
	v[L_DST_WORKLOAD] = d->dst.workload;
	v[L_DST_CANON_SVC] = d->dst.app;
	v[L_DST_CANON_REV] = d->dst.version;
	v[L_DST_NS] = d->dst.ns;
	v[L_DST_PRINCIPAL] = d->dst.principal;
	v[L_DST_APP] = d->dst.app;
	v[L_DST_VERSION] = d->dst.version;
	v[L_DST_CLUSTER] = strcmp(d->dst.workload, UNKNOWN) ? t->cfg.cluster_id : UNKNOWN;
	v[L_PROTOCOL] = "tcp";
	v[L_FLAGS] = flag;
	v[L_SECURITY] = d->security;
}

/* -------------------------------------------------------------- hooks */

void nm_tel_flow_start(struct nm_tel_flow *tf)
{
	tf->start_ns = mono_ns();
	tf->start_wall_ms = wall_ms();
}

static void tel_count_open(struct nm_telemetry *t, struct nm_flow *f)
{
	struct nm_tel_flow *tf = &f->tel;
	const char *v[L__COUNT];
	struct tel_desc d;

	if (tf->counted)
		return;
	tf->counted = true;
	describe(f, &d);
	tf->reporters = d.reporters;
	for (int r = 0; r < 2; r++) {
		uint32_t h;

		if (!(d.reporters & (1u << r)))
			continue;
		desc_values(t, &d, r, flag_names[NM_TEL_FLAG_NONE], v);
		h = nm_metric_hash(v, L__COUNT);
		tf->opened[r] = nm_metric_get_hashed(t->tcp_opened, v, h);
		tf->sent[r] = nm_metric_get_hashed(t->tcp_sent, v, h);
		tf->recv[r] = nm_metric_get_hashed(t->tcp_recv, v, h);
		nm_metric_add(tf->opened[r], 1);
	}
}

void nm_tel_flow_open(struct nm_telemetry *t, struct nm_flow *f)
{
	const char *dir;

	if (!t || f->tel.open_ns)
		return;
	f->tel.open_ns = mono_ns();
	/* An attempt failed to connect and a retry got through. */
	if (f->tel.flag == NM_TEL_FLAG_CONNECT) {
		f->tel.flag = NM_TEL_FLAG_NONE;
		f->tel.reason = NULL;
	}
	tel_count_open(t, f);
	dir = f->dir == NM_DIR_OUTBOUND ? "outbound" : "inbound";
	nm_metric_observe(t->connect_lat, nm_metric_getv(t->connect_lat, dir),
			  (double)(f->tel.open_ns - f->tel.start_ns) / 1e9);
}

void nm_tel_flow_fail(struct nm_telemetry *t, struct nm_flow *f,
		      enum nm_tel_flag flag, const char *reason,
		      const char *policy)
{
	if (!t)
		return;
	tel_count_open(t, f);
	if (flag < NM_TEL_FLAG__COUNT && !f->tel.flag)
		f->tel.flag = (uint8_t)flag;
	if (!f->tel.reason)
		f->tel.reason = reason;
	if (policy)
		snprintf(f->tel.policy, sizeof(f->tel.policy), "%s", policy);
}

static void flow_bytes(const struct nm_flow *f, uint64_t *up, uint64_t *down)
{
	*up = f->written[0] > f->overhead[0] ? f->written[0] - f->overhead[0] : 0;
	*down = f->written[1] > f->overhead[1] ? f->written[1] - f->overhead[1] : 0;
}

/* Adds the bytes moved since the last call to the flow's series. */
static void account_bytes(struct nm_flow *f)
{
	struct nm_tel_flow *tf = &f->tel;
	uint64_t up, down;

	if (!tf->counted)
		return;
	flow_bytes(f, &up, &down);
	for (int r = 0; r < 2; r++) {
		/* From the client: received; toward it: sent (ztunnel's copy). */
		if (up > tf->acct[0])
			nm_metric_add(tf->recv[r], (double)(up - tf->acct[0]));
		if (down > tf->acct[1])
			nm_metric_add(tf->sent[r], (double)(down - tf->acct[1]));
	}
	if (up > tf->acct[0])
		tf->acct[0] = up;
	if (down > tf->acct[1])
		tf->acct[1] = down;
}

/* The socket facing the network: the tunnel, else the upstream. */
static int net_fd(const struct nm_flow *f)
{
	if (f->tunnel >= 0 && f->side[f->tunnel].fd >= 0)
		return f->side[f->tunnel].fd;
	return f->side[1].fd;
}

static void put_end(struct nm_sbuf *b, const char *key, const struct tel_end *e,
		    const struct sockaddr_storage *addr)
{
	char s1[64];

	nm_sbuf_printf(b, ",\"%s\":{\"addr\":", key);
	json_str(b, addr->ss_family ? nm_sockaddr_format(addr, s1, sizeof(s1)) : "");
	nm_sbuf_puts(b, ",\"workload\":");
	json_str(b, e->workload);
	nm_sbuf_puts(b, ",\"namespace\":");
	json_str(b, e->ns);
	nm_sbuf_puts(b, ",\"principal\":");
	json_str(b, e->principal);
	nm_sbuf_puts(b, "}");
}

static void put_time(struct nm_sbuf *b, const char *key, int64_t ms)
{
	time_t sec = (time_t)(ms / 1000);
	struct tm tm;
	char buf[32];

	gmtime_r(&sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	nm_sbuf_printf(b, "\"%s\":\"%s.%03dZ\"", key, buf, (int)(ms % 1000));
}

static void put_reporters(struct nm_sbuf *b, uint8_t rep)
{
	nm_sbuf_puts(b, ",\"reporters\":[");
	if (rep & 1)
		nm_sbuf_puts(b, "\"source\"");
	if (rep & 2)
		nm_sbuf_puts(b, rep & 1 ? ",\"destination\"" : "\"destination\"");
	nm_sbuf_puts(b, "]");
}

static void entry_names(struct nm_tel_entry *e, const struct tel_desc *d)
{
	snprintf(e->src, sizeof(e->src), "%s/%s", d->src.ns, d->src.workload);
	snprintf(e->dst, sizeof(e->dst), "%s/%s", d->dst.ns, d->dst.workload);
}

/* Adds a closed-flow record to the ring the admin API streams. */
static void ring_push(struct nm_telemetry *t, char *json, const struct tel_desc *d,
		      const char *src, const char *dst)
{
	struct nm_tel_shared *sh = &t->sh;
	struct nm_tel_entry *e;
	char *old;

	pthread_mutex_lock(&sh->mu);
	e = &sh->ring[sh->next_seq % NM_TEL_RING];
	old = e->json;
	e->json = json;
	e->seq = sh->next_seq++;
	if (d) {
		entry_names(e, d);
	} else {
		snprintf(e->src, sizeof(e->src), "%s", src ? src : "");
		snprintf(e->dst, sizeof(e->dst), "%s", dst ? dst : "");
	}
	pthread_cond_broadcast(&sh->cv);
	pthread_mutex_unlock(&sh->mu);
	free(old);
}

void nm_tel_flow_close(struct nm_telemetry *t, struct nm_flow *f, const char *how)
{
	struct nm_tel_flow *tf = &f->tel;
	const char *v[L__COUNT], *verdict, *dir;
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	bool have_ti = false;
	struct tel_desc d;
	struct nm_sbuf b = { 0 };
	uint64_t up, down;
	int64_t now = mono_ns();
	char s1[64], *json;
	size_t len;
	int fd;

	if (!t || !tf->counted)
		return; /* refused before any label was known: counters only */
	account_bytes(f);
	dir = f->dir == NM_DIR_OUTBOUND ? "outbound" : "inbound";
	for (int r = 0; r < 2; r++) {
		if (!tf->opened[r])
			continue;
		/* The opened series holds the label set; only the flag moves. */
		memcpy(v, tf->opened[r]->values, sizeof(v));
		v[L_FLAGS] = flag_names[tf->flag];
		nm_metric_add(nm_metric_get(t->tcp_closed, v), 1);
	}
	fd = net_fd(f);
	if (fd >= 0 && !getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) &&
	    tf->open_ns) {
		have_ti = true;
		nm_metric_observe(t->srtt, nm_metric_getv(t->srtt, dir,
							  f->tunnel >= 0 ? "mtls" : "local"),
				  (double)ti.tcpi_rtt / 1e6);
	}
	describe(f, &d);
	flow_bytes(f, &up, &down);
	verdict = tf->flag == NM_TEL_FLAG_DENY ? "deny" : tf->flag ? "error" : "allow";
	nm_sbuf_puts(&b, "{");
	put_time(&b, "time", wall_ms());
	nm_sbuf_puts(&b, ",");
	put_time(&b, "start", tf->start_wall_ms);
	nm_sbuf_printf(&b, ",\"flow\":\"%016llx\",\"direction\":\"%s\"",
		       (unsigned long long)f->id, dir);
	put_reporters(&b, tf->reporters);
	nm_sbuf_printf(&b, ",\"path\":\"%s\",\"security\":\"%s\"", d.path, d.security);
	put_end(&b, "src", &d.src, &f->src);
	put_end(&b, "dst", &d.dst, f->dir == NM_DIR_OUTBOUND ? &f->dst : &f->connect_to);
	nm_sbuf_puts(&b, ",\"backend\":");
	json_str(&b, f->dir == NM_DIR_OUTBOUND && f->backend.ss_family ?
			     nm_sockaddr_format(&f->backend, s1, sizeof(s1)) : "");
	nm_sbuf_puts(&b, ",\"service\":");
	json_str(&b, d.svc_host);
	nm_sbuf_printf(&b, ",\"bytes_up\":%llu,\"bytes_down\":%llu,\"duration_ms\":%.3f",
		       (unsigned long long)up, (unsigned long long)down,
		       (double)(now - tf->start_ns) / 1e6);
	if (tf->open_ns)
		nm_sbuf_printf(&b, ",\"connect_ms\":%.3f",
			       (double)(tf->open_ns - tf->start_ns) / 1e6);
	else
		nm_sbuf_puts(&b, ",\"connect_ms\":null");
	if (have_ti)
		nm_sbuf_printf(&b, ",\"srtt_us\":%u,\"retransmits\":%u",
			       ti.tcpi_rtt, ti.tcpi_total_retrans);
	else
		nm_sbuf_puts(&b, ",\"srtt_us\":null,\"retransmits\":null");
	nm_sbuf_printf(&b, ",\"tls\":\"%s\"",
		       f->tunnel < 0 ? "none" :
		       f->side[f->tunnel].ssl && SSL_session_reused(f->side[f->tunnel].ssl) ?
		       "resumed" : "full");
	nm_sbuf_printf(&b, ",\"verdict\":\"%s\",\"response_flags\":\"%s\",\"reason\":",
		       verdict, flag_names[tf->flag]);
	json_str(&b, tf->reason ? tf->reason : how ? how : "");
	nm_sbuf_puts(&b, ",\"policy\":");
	json_str(&b, tf->policy[0] ? tf->policy : "-");
	nm_sbuf_puts(&b, ",\"end\":");
	json_str(&b, how ? how : "");
	nm_sbuf_puts(&b, "}");
	json = nm_sbuf_take(&b, &len);
	if (!json)
		return;
	if (nm_flowlog_wants(t->log))
		nm_flowlog_append(t->log, json, len);
	ring_push(t, json, &d, NULL, NULL);
}

void nm_tel_kernel_flow(struct nm_telemetry *t, const struct nm_tel_kernel_flow *k)
{
	const struct nm_state *s;
	const struct nm_st_workload *sw, *dw;
	struct nm_sbuf b = { 0 };
	char src[2 * NM_NAME_MAX + 2] = "", dst[2 * NM_NAME_MAX + 2] = "";
	char *json;
	size_t len;

	if (!t)
		return;
	s = t->a->state;
	sw = s && k->src_workload_id ? nm_state_workload_by_id(s, k->src_workload_id) : NULL;
	dw = s && k->dst_workload_id ? nm_state_workload_by_id(s, k->dst_workload_id) : NULL;
	nm_metric_add(nm_metric_getv(t->kernel_flows, k->verdict ? k->verdict : "allow"), 1);
	if (sw)
		snprintf(src, sizeof(src), "%s/%s", sw->cfg->ns, sw->cfg->name);
	if (dw)
		snprintf(dst, sizeof(dst), "%s/%s", dw->cfg->ns, dw->cfg->name);
	nm_sbuf_puts(&b, "{");
	put_time(&b, "time", wall_ms());
	nm_sbuf_puts(&b, ",\"direction\":\"outbound\",\"reporters\":[\"source\"],"
			 "\"path\":\"kernel\",\"security\":\"none\",\"src\":{\"addr\":");
	json_str(&b, k->src_addr ? k->src_addr : "");
	nm_sbuf_puts(&b, ",\"workload\":");
	json_str(&b, sw ? sw->cfg->name : UNKNOWN);
	nm_sbuf_puts(&b, ",\"namespace\":");
	json_str(&b, sw ? sw->cfg->ns : UNKNOWN);
	nm_sbuf_puts(&b, "},\"dst\":{\"addr\":");
	json_str(&b, k->dst_addr ? k->dst_addr : "");
	nm_sbuf_puts(&b, ",\"workload\":");
	json_str(&b, dw ? dw->cfg->name : UNKNOWN);
	nm_sbuf_puts(&b, ",\"namespace\":");
	json_str(&b, dw ? dw->cfg->ns : UNKNOWN);
	nm_sbuf_printf(&b, "},\"bytes_up\":%llu,\"bytes_down\":%llu,\"duration_ms\":%.3f,"
		       "\"srtt_us\":%u,\"retransmits\":%u,\"verdict\":",
		       (unsigned long long)k->bytes_up, (unsigned long long)k->bytes_down,
		       (double)k->duration_ns / 1e6, k->srtt_us, k->retransmits);
	json_str(&b, k->verdict ? k->verdict : "allow");
	nm_sbuf_puts(&b, ",\"reason\":");
	json_str(&b, k->reason ? k->reason : "");
	nm_sbuf_puts(&b, "}");
	if (k->srtt_us)
		nm_metric_observe(t->srtt, nm_metric_getv(t->srtt, "outbound", "kernel"),
				  (double)k->srtt_us / 1e6);
	json = nm_sbuf_take(&b, &len);
	if (!json)
		return;
	if (nm_flowlog_wants(t->log))
		nm_flowlog_append(t->log, json, len);
	ring_push(t, json, NULL, src, dst);
}

void nm_tel_tls_handshake(struct nm_telemetry *t, bool outbound, bool ok,
			  bool resumed)
{
	if (!t)
		return;
	nm_metric_add(nm_metric_getv(t->tls, outbound ? "outbound" : "inbound",
				     ok ? "success" : "failure",
				     resumed ? "true" : "false"), 1);
}

void nm_tel_tls_handshake_cpu(struct nm_telemetry *t, bool outbound,
			      uint64_t cpu_ns)
{
	if (!t || !cpu_ns)
		return;
	nm_metric_add(nm_metric_getv(t->tls_cpu, outbound ? "outbound" : "inbound"),
		      (double)cpu_ns / 1e9);
}

void nm_tel_policy_decision(struct nm_telemetry *t, const char *policy,
			    bool allow)
{
	if (!t)
		return;
	nm_metric_add(nm_metric_getv(t->policy, policy && *policy ? policy : "-",
				     allow ? "allow" : "deny"), 1);
}

/* ---------------------------------------------------------- publishing */

static void set_counter(struct nm_metric_family *f, const char *label, double v)
{
	nm_metric_set(nm_metric_getv(f, label), v);
}

/* Fill and failed updates of every pinned map (bpftel's
 * nm_datapath_map_info walks the hash maps' keys). */
static void update_maps(struct nm_telemetry *t)
{
	struct nm_map_info mi[NM_MAP__COUNT] = { 0 };

	if (nm_datapath_map_info(t->a->dp, mi) < 0 && !mi[0].name)
		return;
	for (int i = 0; i < NM_MAP__COUNT; i++) {
		if (!mi[i].present || !mi[i].name)
			continue;
		set_counter(t->map_capacity, mi[i].name, (double)mi[i].max_entries);
		if (mi[i].entries >= 0)
			set_counter(t->map_entries, mi[i].name, (double)mi[i].entries);
		nm_metric_set(nm_metric_getv(t->map_errors, mi[i].name, "bpf"),
			      (double)mi[i].kernel_errors);
		nm_metric_set(nm_metric_getv(t->map_errors, mi[i].name, "agent"),
			      (double)mi[i].agent_errors);
	}
}

static void update_gauges(struct nm_telemetry *t)
{
	static const char *const limit_names[NM_LIMIT__COUNT] = {
		[NM_LIMIT_FLOWS] = "maxFlows",
		[NM_LIMIT_HANDSHAKES] = "maxHandshakes",
		[NM_LIMIT_POD] = "maxFlowsPerPod",
		[NM_LIMIT_PEER] = "maxFlowsPerPeer",
	};
	struct nm_agent *a = t->a;
	const struct nm_limits *l = &a->limits;
	const uint32_t maxes[NM_LIMIT__COUNT] = {
		l->max.max_flows, l->max.max_handshakes, l->max.max_flows_per_pod,
		l->max.max_flows_per_peer,
	};
	const struct nm_agent_stats *st = &a->stats;
	const struct {
		const char *name;
		uint64_t v;
	} events[] = {
		{ "no_record", st->no_record }, { "bad_record", st->bad_record },
		{ "policy_denied", st->policy_denied },
		{ "tls_failure", st->tls_failures },
		{ "preamble_error", st->preamble_errors },
		{ "upstream_failure", st->upstream_failures },
		{ "accept_error", st->accept_errors }, { "accept_shed", st->accept_shed },
		{ "refused_limit", st->refused_limit },
		{ "status_overloaded", st->status_overloaded },
		{ "retry", st->retries }, { "refused_breaker", st->refused_breaker },
		{ "ejection", st->ejections }, { "idle_timeout", st->idle_timeouts },
	};
	struct nm_flowlog_stats fs;
	uint64_t n_dir[2] = { 0, 0 };
	struct nm_spiffe_id id;
	int64_t nb, na, now = wall_ms() / 1000;
	char idbuf[NM_SPIFFE_MAX];

	for (struct nm_flow *f = a->flows; f; f = f->next) {
		n_dir[f->dir == NM_DIR_OUTBOUND ? 0 : 1]++;
		account_bytes(f);
	}
	set_counter(t->flows_active, "outbound", (double)n_dir[0]);
	set_counter(t->flows_active, "inbound", (double)n_dir[1]);
	for (int k = 0; k < NM_LIMIT__COUNT; k++) {
		set_counter(t->limit_refused, limit_names[k], (double)l->refused[k]);
		set_counter(t->limit_max, limit_names[k], (double)maxes[k]);
	}
	set_counter(t->limit_used, "maxFlows", (double)l->flows);
	set_counter(t->limit_used, "maxHandshakes", (double)l->handshakes);
	{
		const struct nm_pool *tp = &t->a->tpool;

		nm_metric_set(nm_metric_get(t->pool_hits, NULL), (double)tp->stats.hits);
		nm_metric_set(nm_metric_get(t->pool_misses, NULL), (double)tp->stats.misses);
		nm_metric_set(nm_metric_get(t->pool_discards, NULL), (double)tp->stats.discards);
		set_counter(t->pool_conns, "idle", (double)tp->idle);
		set_counter(t->pool_conns, "connecting", (double)(tp->total - tp->idle));
	}
	for (int server = 0; a->tls && server <= 1; server++) {
		const char *d = server ? "inbound" : "outbound";
		struct nm_vcache_stats vs;

		nm_tls_verify_cache_stats(a->tls, server, &vs);
		nm_metric_set(nm_metric_getv(t->vcache, d, "hit"), (double)vs.hits);
		nm_metric_set(nm_metric_getv(t->vcache, d, "miss"), (double)vs.misses);
	}
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		set_counter(t->agent_events, events[i].name, (double)events[i].v);
	for (unsigned int i = 0; !nm_tls_cred_info(a->tls, i, &id, &nb, &na); i++)
		if (!nm_spiffe_format(&id, idbuf, sizeof(idbuf)))
			set_counter(t->cert_expiry, idbuf, (double)(na - now));
	/* Counting walks every key of the hash maps: every 5 s at most. */
	if (t->a->dp && (!t->maps_at_ms || nm_loop_now_ms() - t->maps_at_ms >= 5000)) {
		t->maps_at_ms = nm_loop_now_ms();
		update_maps(t);
	}
	nm_flowlog_get_stats(t->log, &fs);
	set_counter(t->flowlog, "written", (double)fs.records);
	set_counter(t->flowlog, "dropped", (double)fs.dropped);
	set_counter(t->flowlog, "sampled_out", (double)fs.sampled_out);
	for (struct nm_metric_family *f = t->reg.head; f; f = f->next)
		if (f->dropped && f != t->overflow)
			set_counter(t->overflow, f->name, (double)f->dropped);
	pthread_mutex_lock(&t->sh.mu);
	na = (int64_t)t->sh.scrapes;
	pthread_mutex_unlock(&t->sh.mu);
	nm_metric_set(nm_metric_get(t->scrapes, NULL), (double)na);
}

/* /stats?format=json: {"stats":[{"name": "...", "value": N}, ...]} from
 * the text form's lines. */
static char *stats_json(const char *text)
{
	struct nm_sbuf b = { 0 };
	bool first = true;

	nm_sbuf_puts(&b, "{\"stats\":[");
	for (const char *p = text; *p;) {
		const char *eol = strchr(p, '\n'), *sep;
		char name[2048];
		size_t n;

		if (!eol)
			eol = p + strlen(p);
		sep = eol;
		while (sep > p && !(sep[0] == ':' && sep[1] == ' '))
			sep--;
		if (sep > p) {
			n = (size_t)(sep - p) < sizeof(name) - 1 ? (size_t)(sep - p) :
								   sizeof(name) - 1;
			memcpy(name, p, n);
			name[n] = '\0';
			nm_sbuf_puts(&b, first ? "{\"name\":" : ",{\"name\":");
			json_str(&b, name);
			nm_sbuf_puts(&b, ",\"value\":");
			nm_sbuf_putn(&b, sep + 2, (size_t)(eol - sep - 2));
			nm_sbuf_puts(&b, "}");
			first = false;
		}
		p = *eol ? eol + 1 : eol;
	}
	nm_sbuf_puts(&b, "]}");
	return nm_sbuf_take(&b, NULL);
}

static const char *phase_name(enum nm_flow_phase ph)
{
	static const char *const names[] = {
		[NM_PH_CONNECTING] = "connecting", [NM_PH_HANDSHAKE] = "handshake",
		[NM_PH_PREAMBLE] = "preamble", [NM_PH_AWAIT_STATUS] = "await_status",
		[NM_PH_RELAY] = "relay", [NM_PH_DRAIN] = "drain",
		[NM_PH_CLOSED] = "closed",
	};

	return ph <= NM_PH_CLOSED ? names[ph] : "unknown";
}

static char *active_json(const struct nm_flow *f, struct tel_desc *d)
{
	struct nm_sbuf b = { 0 };
	uint64_t up, down;
	char s1[64];

	describe(f, d);
	flow_bytes(f, &up, &down);
	nm_sbuf_printf(&b, "{\"flow\":\"%016llx\",\"direction\":\"%s\",\"phase\":\"%s\"",
		       (unsigned long long)f->id,
		       f->dir == NM_DIR_OUTBOUND ? "outbound" : "inbound",
		       phase_name(f->phase));
	put_reporters(&b, d->reporters);
	nm_sbuf_printf(&b, ",\"path\":\"%s\",\"security\":\"%s\"", d->path, d->security);
	put_end(&b, "src", &d->src, &f->src);
	put_end(&b, "dst", &d->dst, f->dir == NM_DIR_OUTBOUND ? &f->dst : &f->connect_to);
	nm_sbuf_puts(&b, ",\"backend\":");
	json_str(&b, f->dir == NM_DIR_OUTBOUND && f->backend.ss_family ?
			     nm_sockaddr_format(&f->backend, s1, sizeof(s1)) : "");
	nm_sbuf_puts(&b, ",\"service\":");
	json_str(&b, d->svc_host);
	nm_sbuf_printf(&b, ",\"bytes_up\":%llu,\"bytes_down\":%llu,\"age_ms\":%.3f}",
		       (unsigned long long)up, (unsigned long long)down,
		       (double)(mono_ns() - f->tel.start_ns) / 1e6);
	return nm_sbuf_take(&b, NULL);
}

static json_t *addr_json(const struct nm_addr *ip)
{
	char buf[64];

	nm_addr_format(ip, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *labels_json(const struct nm_label *l, unsigned int n)
{
	json_t *o = json_object();

	for (unsigned int i = 0; i < n; i++)
		json_object_set_new(o, l[i].key, json_string(l[i].value));
	return o;
}

/* /config_dump, documented in docs/telemetry.md. */
static char *config_dump(struct nm_telemetry *t)
{
	struct nm_agent *a = t->a;
	const struct nm_state *s = a->state;
	json_t *root = json_object(), *arr, *o;
	struct nm_spiffe_id id;
	int64_t nb, na, now = wall_ms() / 1000;
	char buf[NM_SPIFFE_MAX];
	char *out;

	json_object_set_new(root, "instance", json_string(a->instance ? a->instance : ""));
	json_object_set_new(root, "generation", json_integer(s ? s->generation : 0));
	json_object_set_new(root, "trustDomain",
			    json_string(a->cluster ? a->cluster->trust_domain : ""));
	o = json_object();
	if (s && s->self) {
		json_object_set_new(o, "name", json_string(s->self->cfg->name));
		json_object_set_new(o, "id", json_integer(s->self->id));
		json_object_set_new(o, "address", addr_json(&s->self->cfg->addr));
	}
	json_object_set_new(root, "node", o);
	arr = json_array();
	for (unsigned int i = 0; s && i < s->n_nodes; i++) {
		o = json_object();
		json_object_set_new(o, "id", json_integer(s->nodes[i].id));
		json_object_set_new(o, "name", json_string(s->nodes[i].cfg->name));
		json_object_set_new(o, "address", addr_json(&s->nodes[i].cfg->addr));
		json_array_append_new(arr, o);
	}
	json_object_set_new(root, "nodes", arr);
	arr = json_array();
	for (unsigned int i = 0; s && i < s->n_workloads; i++) {
		const struct nm_st_workload *w = &s->workloads[i];

		o = json_object();
		json_object_set_new(o, "id", json_integer(w->id));
		json_object_set_new(o, "name", json_string(w->cfg->name));
		json_object_set_new(o, "namespace", json_string(w->cfg->ns));
		json_object_set_new(o, "serviceAccount", json_string(w->cfg->sa));
		nm_route_identity(s, w->cfg->ns, w->cfg->sa, &id);
		json_object_set_new(o, "identity",
				    json_string(nm_spiffe_format(&id, buf, sizeof(buf)) ? "" : buf));
		json_object_set_new(o, "ip", addr_json(&w->cfg->ip));
		json_object_set_new(o, "ip6", w->cfg->has_ip6 ? addr_json(&w->cfg->ip6) : json_null());
		json_object_set_new(o, "node", json_string(w->node ? w->node->cfg->name : ""));
		json_object_set_new(o, "local", json_boolean(w->local));
		json_object_set_new(o, "meshed", json_boolean(w->cgroup_id != 0));
		json_object_set_new(o, "app", json_string(canon_name(w->cfg)));
		json_object_set_new(o, "version", json_string(canon_rev(w->cfg)));
		json_object_set_new(o, "labels", labels_json(w->cfg->labels, w->cfg->n_labels));
		json_array_append_new(arr, o);
	}
	json_object_set_new(root, "workloads", arr);
	arr = json_array();
	for (unsigned int i = 0; s && i < s->n_services; i++) {
		const struct nm_st_service *v = &s->services[i];
		json_t *ports = json_array();

		o = json_object();
		json_object_set_new(o, "id", json_integer(v->id));
		json_object_set_new(o, "name", json_string(v->cfg->name));
		json_object_set_new(o, "namespace", json_string(v->cfg->ns));
		snprintf(buf, sizeof(buf), "%s.%s.svc.%s", v->cfg->name, v->cfg->ns,
			 nm_state_trust_domain(s));
		json_object_set_new(o, "hostname", json_string(buf));
		json_object_set_new(o, "vip", addr_json(&v->cfg->vip));
		for (unsigned int k = 0; k < v->cfg->n_ports; k++) {
			json_t *p = json_object();

			json_object_set_new(p, "port", json_integer(v->cfg->ports[k].port));
			json_object_set_new(p, "targetPort",
					    json_integer(v->cfg->ports[k].target_port));
			json_array_append_new(ports, p);
		}
		json_object_set_new(o, "ports", ports);
		json_object_set_new(o, "selector", labels_json(v->cfg->selector, v->cfg->n_selector));
		json_array_append_new(arr, o);
	}
	json_object_set_new(root, "services", arr);
	arr = json_array();
	for (unsigned int i = 0; a->authz.policies && i < a->authz.n_policies; i++) {
		struct nm_policy_info info;
		static const char *const actions[] = { "ALLOW", "DENY", "AUDIT", "CUSTOM" };

		if (nm_policy_get(a->authz.policies, i, &info))
			continue;
		o = json_object();
		json_object_set_new(o, "namespace", json_string(info.ns));
		json_object_set_new(o, "name", json_string(info.name));
		json_object_set_new(o, "action", json_string(info.action <= NM_POLICY_CUSTOM ?
							     actions[info.action] : "?"));
		json_object_set_new(o, "file", json_string(info.file ? info.file : ""));
		json_object_set_new(o, "decisions", json_integer((json_int_t)a->authz.by_policy[i]));
		json_array_append_new(arr, o);
	}
	o = json_object();
	json_object_set_new(o, "allowed", json_integer((json_int_t)a->authz.allowed));
	json_object_set_new(o, "denied", json_integer((json_int_t)a->authz.denied));
	json_object_set_new(o, "items", arr);
	json_object_set_new(root, "policies", o);
	arr = json_array();
	for (unsigned int i = 0; !nm_tls_cred_info(a->tls, i, &id, &nb, &na); i++) {
		o = json_object();
		json_object_set_new(o, "identity",
				    json_string(nm_spiffe_format(&id, buf, sizeof(buf)) ? "" : buf));
		json_object_set_new(o, "namespace", json_string(id.ns));
		json_object_set_new(o, "serviceAccount", json_string(id.sa));
		json_object_set_new(o, "notBefore", json_integer(nb));
		json_object_set_new(o, "notAfter", json_integer(na));
		json_object_set_new(o, "secondsToExpiry", json_integer(na - now));
		json_array_append_new(arr, o);
	}
	json_object_set_new(root, "certificates", arr);
	o = json_object();
	if (t->has_features) {
		size_t n;
		const struct nm_feature_info *fi = nm_probe_info(&n);

		for (size_t i = 0; i < n; i++)
			json_object_set_new(o, fi[i].name,
					    json_boolean(nm_probe_get(&t->feat, fi[i].name)));
		json_object_set_new(o, "kernelRelease", json_string(t->feat.kernel_release));
	}
	json_object_set_new(root, "features", o);
	o = json_object();
	json_object_set_new(o, "maxFlows", json_integer(a->limits.max.max_flows));
	json_object_set_new(o, "maxHandshakes", json_integer(a->limits.max.max_handshakes));
	json_object_set_new(o, "maxFlowsPerPod", json_integer(a->limits.max.max_flows_per_pod));
	json_object_set_new(o, "maxFlowsPerPeer", json_integer(a->limits.max.max_flows_per_peer));
	json_object_set_new(o, "flows", json_integer(a->limits.flows));
	json_object_set_new(o, "handshakes", json_integer(a->limits.handshakes));
	json_object_set_new(root, "limits", o);
	o = json_object();
	json_object_set_new(o, "metricsPort", json_integer(t->cfg.metrics_port));
	json_object_set_new(o, "adminPort", json_integer(t->cfg.admin_port));
	json_object_set_new(o, "sockStats", json_boolean(t->cfg.sock_stats));
	json_object_set_new(o, "flowLog", json_string(t->cfg.flow_log.mode == NM_FLOWLOG_FULL ? "full" :
						       t->cfg.flow_log.mode == NM_FLOWLOG_SAMPLED ?
						       "sampled" : "off"));
	json_object_set_new(root, "telemetry", o);
	out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	return out;
}

void nm_tel_publish(struct nm_telemetry *t)
{
	struct nm_sbuf b = { 0 };
	char *metrics, *stats, *sjson, *dump = NULL;
	struct nm_tel_entry *act, *old_act;
	unsigned int n = 0, old_n;
	uint64_t total = 0;
	size_t mlen = 0;
	int64_t now = nm_loop_now_ms();
	char *old[4];

	if (!t)
		return;
	update_gauges(t);
	nm_metrics_render(&t->reg, &b);
	metrics = nm_sbuf_take(&b, &mlen);
	nm_metrics_render_stats(&t->reg, &b);
	stats = nm_sbuf_take(&b, NULL);
	sjson = stats ? stats_json(stats) : NULL;
	if (!t->dump_at_ms || now - t->dump_at_ms >= 1000 ||
	    (t->a->state && t->a->state->generation != t->dump_generation)) {
		dump = config_dump(t);
		t->dump_at_ms = now;
		t->dump_generation = t->a->state ? t->a->state->generation : 0;
	}
	for (struct nm_flow *f = t->a->flows; f; f = f->next)
		total++;
	act = calloc(total < NM_TEL_MAX_ACTIVE ? total + 1 : NM_TEL_MAX_ACTIVE, sizeof(*act));
	for (struct nm_flow *f = t->a->flows; act && f && n < NM_TEL_MAX_ACTIVE; f = f->next) {
		struct tel_desc d;

		act[n].json = active_json(f, &d);
		if (!act[n].json)
			continue;
		entry_names(&act[n], &d);
		n++;
	}
	pthread_mutex_lock(&t->sh.mu);
	old[0] = t->sh.metrics;
	old[1] = t->sh.stats;
	old[2] = t->sh.stats_json;
	old[3] = NULL;
	t->sh.metrics = metrics;
	t->sh.metrics_len = mlen;
	t->sh.stats = stats;
	t->sh.stats_json = sjson;
	if (dump) {
		old[3] = t->sh.config_dump;
		t->sh.config_dump = dump;
	}
	old_act = t->sh.active;
	old_n = t->sh.n_active;
	t->sh.active = act;
	t->sh.n_active = act ? n : 0;
	t->sh.active_total = total;
	t->sh.active_truncated = total > n;
	pthread_mutex_unlock(&t->sh.mu);
	for (int i = 0; i < 4; i++)
		free(old[i]);
	for (unsigned int i = 0; i < old_n; i++)
		free(old_act[i].json);
	free(old_act);
	nm_flowlog_flush(t->log);
}

static int64_t on_publish(struct nm_loop *loop, uint64_t id, void *data)
{
	nm_tel_publish(data);
	return NM_TEL_PUBLISH_MS;
}

/* ------------------------------------------------------------ lifecycle */

static const double lat_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
				     0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
static const double rtt_bounds[] = { 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
				     0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
				     0.5, 1 };

#define NB(a) ((unsigned int)(sizeof(a) / sizeof((a)[0])))

static int add_families(struct nm_telemetry *t)
{
	struct nm_metrics *m = &t->reg;
	uint32_t cap = t->cfg.max_series ? t->cfg.max_series : NM_TEL_MAX_SERIES;
	const char *pol[] = { "policy", "result" };
	const char *tls[] = { "direction", "result", "resumed" };
	const char *dir[] = { "direction" };
	const char *dirpath[] = { "direction", "path" };
	const char *lim[] = { "limit" };
	const char *ident[] = { "identity" };
	const char *res[] = { "result" };
	const char *met[] = { "metric" };
	const char *ev[] = { "event" };
	const char *verdict[] = { "verdict" };

	t->tcp_opened = nm_metrics_add(m, "istio_tcp_connections_opened_total",
				       "The total number of TCP connections opened",
				       NM_METRIC_COUNTER, tcp_labels, L__COUNT, NULL, 0, cap);
	t->tcp_closed = nm_metrics_add(m, "istio_tcp_connections_closed_total",
				       "The total number of TCP connections closed",
				       NM_METRIC_COUNTER, tcp_labels, L__COUNT, NULL, 0, cap);
	t->tcp_recv = nm_metrics_add(m, "istio_tcp_received_bytes_total",
				     "The size of total bytes received during request in case of a TCP connection",
				     NM_METRIC_COUNTER, tcp_labels, L__COUNT, NULL, 0, cap);
	t->tcp_sent = nm_metrics_add(m, "istio_tcp_sent_bytes_total",
				     "The size of total bytes sent during response in case of a TCP connection",
				     NM_METRIC_COUNTER, tcp_labels, L__COUNT, NULL, 0, cap);
	t->policy = nm_metrics_add(m, "nodemesh_policy_decisions_total",
				   "Authorization decisions by deciding policy (\"-\": none matched) and result",
				   NM_METRIC_COUNTER, pol, 2, NULL, 0, cap);
	t->tls = nm_metrics_add(m, "nodemesh_tls_handshakes_total",
				"TLS handshakes by direction, result and session resumption",
				NM_METRIC_COUNTER, tls, 3, NULL, 0, 16);
	t->tls_cpu = nm_metrics_add(m, "nodemesh_tls_handshake_cpu_seconds_total",
				    "CPU time the agent spent inside TLS handshake steps, by direction",
				    NM_METRIC_COUNTER, dir, 1, NULL, 0, 4);
	t->vcache = nm_metrics_add(m, "nodemesh_tls_verify_cache_lookups_total",
				   "Peer certificate chains looked up in the verified-chain cache, by direction (inbound: clients' chains) and result (hit: the stored verdict was used)",
				   NM_METRIC_COUNTER, (const char *[]){ "direction", "result" },
				   2, NULL, 0, 4);
	t->cert_expiry = nm_metrics_add(m, "nodemesh_certificate_expiry_seconds",
					"Seconds until the certificate of the identity expires (negative: expired)",
					NM_METRIC_GAUGE, ident, 1, NULL, 0, cap);
	t->flows_active = nm_metrics_add(m, "nodemesh_flows_active",
					 "Flows open on the agent path", NM_METRIC_GAUGE,
					 dir, 1, NULL, 0, 4);
	t->limit_refused = nm_metrics_add(m, "nodemesh_limit_refused_total",
					  "Connections refused because a limit was reached",
					  NM_METRIC_COUNTER, lim, 1, NULL, 0, 8);
	t->limit_max = nm_metrics_add(m, "nodemesh_limit",
				      "Effective overload limits", NM_METRIC_GAUGE,
				      lim, 1, NULL, 0, 8);
	t->limit_used = nm_metrics_add(m, "nodemesh_limit_in_use",
				       "Slots of a limit in use", NM_METRIC_GAUGE,
				       lim, 1, NULL, 0, 8);
	t->connect_lat = nm_metrics_add(m, "nodemesh_connect_duration_seconds",
					"From accepting a connection to the flow being established (upstream connected, tunnel up)",
					NM_METRIC_HISTOGRAM, dir, 1, lat_bounds,
					NB(lat_bounds), 4);
	t->srtt = nm_metrics_add(m, "nodemesh_tcp_srtt_seconds",
				 "Smoothed TCP round-trip time of a flow's network-facing socket at close",
				 NM_METRIC_HISTOGRAM, dirpath, 2, rtt_bounds,
				 NB(rtt_bounds), 8);
	t->agent_events = nm_metrics_add(m, "nodemesh_agent_events_total",
					 "Agent-path events by kind (refusals, failures, retries)",
					 NM_METRIC_COUNTER, ev, 1, NULL, 0, 32);
	t->kernel_flows = nm_metrics_add(m, "nodemesh_kernel_flows_total",
					 "Flows the kernel decided, reported through nm_events",
					 NM_METRIC_COUNTER, verdict, 1, NULL, 0, 4);
	t->flowlog = nm_metrics_add(m, "nodemesh_flow_log_records_total",
				    "Flow log records written, dropped (buffer full or write failed) or sampled out",
				    NM_METRIC_COUNTER, res, 1, NULL, 0, 4);
	t->overflow = nm_metrics_add(m, "nodemesh_metric_series_overflow_total",
				     "Label sets counted into a metric's overflow series (all labels \"other\") because the metric reached maxSeriesPerMetric",
				     NM_METRIC_COUNTER, met, 1, NULL, 0, 64);
	t->pool_hits = nm_metrics_add(m, "nodemesh_tunnel_pool_hits_total",
				      "Outbound flows that took an established tunnel from the pool",
				      NM_METRIC_COUNTER, NULL, 0, NULL, 0, 1);
	t->pool_misses = nm_metrics_add(m, "nodemesh_tunnel_pool_misses_total",
					"Outbound flows that found no pooled tunnel and made their own",
					NM_METRIC_COUNTER, NULL, 0, NULL, 0, 1);
	t->pool_discards = nm_metrics_add(m, "nodemesh_tunnel_pool_discards_total",
					  "Pooled tunnels found dead (peer closed or reset) and dropped",
					  NM_METRIC_COUNTER, NULL, 0, NULL, 0, 1);
	t->pool_conns = nm_metrics_add(m, "nodemesh_tunnel_pool_connections",
				       "Tunnels in the pool: idle (ready) or connecting (TCP or TLS under way)",
				       NM_METRIC_GAUGE, (const char *[]){ "state" }, 1, NULL, 0, 2);
	if (!t->pool_hits || !t->pool_misses || !t->pool_discards || !t->pool_conns)
		return -ENOMEM;
	t->scrapes = nm_metrics_add(m, "nodemesh_metrics_scrapes_total",
				    "Metrics requests answered", NM_METRIC_COUNTER,
				    NULL, 0, NULL, 0, 1);
	t->map_entries = nm_metrics_add(m, "nodemesh_map_entries",
					"Entries in a BPF map (keys walked every 5 s; arrays count max_entries)",
					NM_METRIC_GAUGE, (const char *[]){ "map" }, 1, NULL, 0, 64);
	t->map_capacity = nm_metrics_add(m, "nodemesh_map_capacity",
					 "max_entries of a BPF map", NM_METRIC_GAUGE,
					 (const char *[]){ "map" }, 1, NULL, 0, 64);
	t->map_errors = nm_metrics_add(m, "nodemesh_map_update_errors_total",
				       "Failed updates of a BPF map by writer (bpf: the programs, nm_map_errors; agent: this agent's writes)",
				       NM_METRIC_COUNTER, (const char *[]){ "map", "writer" }, 2,
				       NULL, 0, 128);
	if (!t->map_entries || !t->map_capacity || !t->map_errors)
		return -ENOMEM;
	if (!t->tcp_opened || !t->tcp_closed || !t->tcp_recv || !t->tcp_sent ||
	    !t->policy || !t->tls || !t->tls_cpu || !t->vcache ||
	    !t->cert_expiry || !t->flows_active ||
	    !t->limit_refused || !t->limit_max || !t->limit_used ||
	    !t->connect_lat || !t->srtt || !t->agent_events || !t->kernel_flows ||
	    !t->flowlog || !t->overflow || !t->scrapes)
		return -ENOMEM;
	return 0;
}

int nm_tel_create(struct nm_agent *a, struct nm_telemetry **out)
{
	struct nm_telemetry *t = calloc(1, sizeof(*t));
	int ret;

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->a = a;
	t->cfg = a->cluster->telemetry;
	nm_metrics_init(&t->reg);
	pthread_mutex_init(&t->sh.mu, NULL);
	pthread_cond_init(&t->sh.cv, NULL);
	ret = add_families(t);
	if (ret)
		goto err;
	/* Not fatal: the mesh works without its flow log (counted as off). */
	ret = nm_flowlog_open(&t->cfg.flow_log, &t->log);
	if (ret)
		pr_warn("msg=\"cannot open the flow log, running without it\" file=%s err=\"%s\"",
			t->cfg.flow_log.file[0] ? t->cfg.flow_log.file : "-", strerror(-ret));
	*out = t;
	return 0;
err:
	nm_tel_free(t);
	return ret;
}

void nm_tel_set_features(struct nm_telemetry *t, const struct nm_features *f,
			 const struct nm_choices *chosen)
{
	if (!t || !f)
		return;
	t->feat = *f;
	if (chosen)
		t->chosen = *chosen;
	t->has_features = true;
}

int nm_tel_start(struct nm_telemetry *t)
{
	int ret;

	if (!t)
		return 0;
	nm_tel_publish(t);
	ret = nm_tel_http_start(&t->sh, &t->cfg, &t->http);
	if (ret)
		return ret;
	t->timer = nm_loop_add_timer(t->a->loop, NM_TEL_PUBLISH_MS, on_publish, t);
	return t->timer ? 0 : -ENOMEM;
}

void nm_tel_free(struct nm_telemetry *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->sh.mu);
	t->sh.stopping = true;
	pthread_cond_broadcast(&t->sh.cv);
	pthread_mutex_unlock(&t->sh.mu);
	nm_tel_http_stop(t->http);
	if (t->timer && t->a->loop)
		nm_loop_del_timer(t->a->loop, t->timer);
	nm_flowlog_close(t->log);
	free(t->sh.metrics);
	free(t->sh.stats);
	free(t->sh.stats_json);
	free(t->sh.config_dump);
	for (unsigned int i = 0; i < t->sh.n_active; i++)
		free(t->sh.active[i].json);
	free(t->sh.active);
	for (unsigned int i = 0; i < NM_TEL_RING; i++)
		free(t->sh.ring[i].json);
	nm_metrics_free(&t->reg);
	pthread_mutex_destroy(&t->sh.mu);
	pthread_cond_destroy(&t->sh.cv);
	free(t);
}
