// SPDX-License-Identifier: Apache-2.0
/*
 * flow.c - the flow state machine: everything that moves a connection's bytes
 * once a listener has accepted it (listener.c).
 *
 * A flow joins two sides. Outbound (pod -> agent): side 0 is the redirected
 * pod connection, side 1 the upstream (an NMTP tunnel to the destination
 * node's agent, or plain TCP to a pod on this node). Inbound (agent -> pod):
 * side 0 is the NMTP tunnel, side 1 the destination pod. buf[i] carries the
 * bytes read from side i on their way to the other side.
 *
 * Phases: CONNECTING (side 1 TCP connect) -> HANDSHAKE (TLS on the tunnel)
 * -> PREAMBLE (inbound: read the client's) or AWAIT_STATUS (outbound
 * tunnel: the preamble and the pod's first bytes go up at once, nothing
 * comes down until the peer agent answered NMT1 + OK) -> RELAY; DRAIN
 * flushes a failure status.
 * Everything is non-blocking and driven by the event loop; a flow never
 * blocks another.
 *
 * Resilience (issue 12, the "resilience" section below): a flow of a
 * service holds that service's circuit-breaker slots; an outbound flow to a
 * service VIP whose upstream attempt fails before RELAY (nothing has gone
 * down to the pod yet) moves to another endpoint, replaying the pod's early
 * bytes kept in buf[0]; every attempt's outcome feeds outlier detection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>

#include "mesh/ecmeth.h"
#include "mesh/proxy.h"
#include "mesh/flow.h"
#include "mesh/route.h"
#include "mesh/srcaddr.h"
#include "lib/log.h"
#include "mesh/tunnel.h"

static void flow_on_event(struct nm_loop *loop, int fd, unsigned int events,
			  void *data);
static int flow_res_attempt_failed(struct nm_flow *f, int err, bool timeout);
static int flow_connect(struct nm_flow *f);
static void flow_pool_key(const struct nm_flow *f, struct nm_pool_key *k);
static void flow_res_keepalive(struct nm_flow *f, int fd);
static void flow_res_attempt_started(struct nm_flow *f);

/* ------------------------------------------------------------------ utils */


static const char *fmt_id(const struct nm_spiffe_id *id, char *buf, size_t len)
{
	if (!id->trust_domain[0] || nm_spiffe_format(id, buf, len))
		snprintf(buf, len, "-");
	return buf;
}

static bool sa_equal(const struct sockaddr_storage *a,
		     const struct sockaddr_storage *b)
{
	struct nm_addr aa, bb;
	__be16 pa, pb;

	nm_addr_from_sockaddr(a, &aa, &pa);
	nm_addr_from_sockaddr(b, &bb, &pb);
	return pa == pb && memcmp(&aa, &bb, sizeof(aa)) == 0;
}

static void set_nodelay(struct nm_agent *a, int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	nm_side_busy_poll(&a->paths, fd); /* mesh.busyPoll, when on */
}

static void id_from_cfg(struct nm_agent *a, const char *ns, const char *sa,
			struct nm_spiffe_id *id)
{
	nm_route_identity(a->state, ns, sa, id);
}

/* ------------------------------------------------------------ lifecycle */

static struct nm_flow *flow_new(struct nm_agent *a, struct nm_listener *lst,
				enum nm_flow_dir dir, int fd)
{
	struct nm_flow *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->agent = a;
	f->lst = lst;
	f->dir = dir;
	f->id = a->flow_base + ++a->flow_seq;
	f->start_ms = nm_loop_now_ms();
	nm_tel_flow_start(&f->tel);
	f->side[0].fd = fd;
	f->side[0].writable = true;
	f->side[1].fd = -1;
	f->tunnel = -1;
	f->next = a->flows;
	if (a->flows)
		a->flows->prev = f;
	a->flows = f;
	a->stats.flows_active++;
	return f;
}

static void flow_log_close(struct nm_flow *f, const char *how)
{
	/* A preamble or status may not have gone out in full. */
	uint64_t up = f->written[0] > f->overhead[0] ?
			      f->written[0] - f->overhead[0] : 0;
	uint64_t down = f->written[1] > f->overhead[1] ?
				f->written[1] - f->overhead[1] : 0;

	/* written[0] is what side 0 sent toward side 1: for an outbound flow
	 * that is the client's upload, for an inbound flow the same upload
	 * arriving from the tunnel. */
	if (nm_log_get_level() >= NM_LOG_DEBUG)
		pr_debug("msg=\"flow close\" dir=%s flow=%llu bytes_up=%llu bytes_down=%llu duration_ms=%lld end=%s relay=%s",
		f->dir == NM_DIR_OUTBOUND ? "outbound" : "inbound",
		(unsigned long long)f->id, (unsigned long long)up,
		(unsigned long long)down,
		(long long)(nm_loop_now_ms() - f->start_ms), how,
		f->relayed ? f->relayed : "copy");
	f->agent->stats.bytes_up += up;
	f->agent->stats.bytes_down += down;
}

/* Gives back every limit slot the flow holds. */
static void flow_release_limits(struct nm_flow *f)
{
	struct nm_limits *l = &f->agent->limits;

	if (f->held_handshake)
		nm_limits_put_handshake(l);
	if (f->held_pod)
		nm_limits_put_pod(l, f->src_workload);
	if (f->held_peer)
		nm_limits_put_peer(l, &f->peer_ip);
	if (f->held_flow)
		nm_limits_put_flow(l);
	f->held_handshake = f->held_pod = f->held_peer = f->held_flow = false;
	if (f->res.held_conn || f->res.held_pending) {
		struct nm_breaker_svc *b = nm_breaker_find(&f->agent->breakers,
							   f->res.service_id);

		if (b && f->res.held_conn)
			nm_breaker_put_conn(b);
		if (b && f->res.held_pending)
			nm_breaker_put_pending(b);
		f->res.held_conn = f->res.held_pending = false;
	}
}

static void flow_free(struct nm_flow *f, bool reset, const char *how)
{
	struct nm_agent *a = f->agent;

	nm_zc_end(f); /* counts synced, map entries gone, before the close */
	nm_tel_flow_close(a->tel, f, how); /* sockets still open: TCP_INFO */
	if (f->phase == NM_PH_AWAIT_STATUS || f->phase == NM_PH_RELAY ||
	    f->phase == NM_PH_DRAIN)
		flow_log_close(f, how);
	flow_release_limits(f);
	for (int i = 0; i < 2; i++) {
		if (f->side[i].fd >= 0)
			nm_loop_del(a->loop, f->side[i].fd);
		nm_side_close(&f->side[i], reset);
		nm_buf_put(&a->pool, &f->buf[i]);
	}
	nm_meshconn_unregister(a, &f->meshconn);
	if (f->prev)
		f->prev->next = f->next;
	else
		a->flows = f->next;
	if (f->next)
		f->next->prev = f->prev;
	a->stats.flows_active--;
	a->stats.flows_closed++;
	free(f);
	if (a->listeners_paused)
		nm_proxy_fds_freed(a);
}


/* ----------------------------------------------------------- resilience */

/*
 * An ejected endpoint carries NM_EP_EJECTED in nm_backends: connect4/6
 * skip it (nm_lb.bpf.h) and nm_datapath_sync() keeps the bit across
 * reloads. A record written before the flag may still name it: the agent
 * then chooses again (flow_res_start).
 */
#define RES_EP_EJECTED NM_EP_EJECTED

/* The service's settings; a record built without the parser has none. */
static const struct nm_resilience_cfg *res_cfg(const struct nm_st_service *svc,
					       struct nm_resilience_cfg *tmp)
{
	if (svc && svc->cfg->resilience.connect_timeout_ms)
		return &svc->cfg->resilience;
	nm_resilience_defaults(tmp);
	return tmp;
}

static const char *svc_name(const struct nm_st_service *svc, char *buf,
			    size_t len)
{
	if (svc)
		snprintf(buf, len, "%s/%s", svc->cfg->ns, svc->cfg->name);
	else
		snprintf(buf, len, "-");
	return buf;
}

static void flow_res_keepalive(struct nm_flow *f, int fd)
{
	struct nm_resilience_cfg tmp;
	const struct nm_resilience_cfg *r;
	int on = 1, idle, intvl, cnt;

	if (!f->res.service_id || fd < 0)
		return;
	r = res_cfg(nm_route_service(f->agent->state, f->res.service_id), &tmp);
	if (!r->keepalive_time_s)
		return;
	idle = (int)r->keepalive_time_s;
	intvl = (int)r->keepalive_interval_s;
	cnt = (int)r->keepalive_count;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static int flow_breaker_refused(struct nm_flow *f,
				const struct nm_st_service *svc,
				const char *limit, uint32_t max,
				uint64_t refused)
{
	struct nm_agent *a = f->agent;
	char s1[64], n1[2 * NM_NAME_MAX + 2];

	a->stats.refused_breaker++;
	pr_warn_ratelimited(&a->rl.breaker,
			    "msg=\"refused: circuit breaker\" service=%s limit=%s max=%u dir=%s src=%s refused=%llu",
			    svc_name(svc, n1, sizeof(n1)), limit, max,
			    f->dir == NM_DIR_OUTBOUND ? "outbound" : "inbound",
			    nm_sockaddr_format(&f->src, s1, sizeof(s1)),
			    (unsigned long long)refused);
	return -EBUSY;
}

/*
 * The flow belongs to svc (vip: the client asked for its VIP): it takes
 * a maxConnections slot and the service's timeouts. 0, -EBUSY beyond the
 * breaker (logged, counted), -ENOMEM.
 */
static int flow_res_bind(struct nm_flow *f, const struct nm_st_service *svc,
			 bool vip)
{
	struct nm_agent *a = f->agent;
	struct nm_resilience_cfg tmp;
	const struct nm_resilience_cfg *r = res_cfg(svc, &tmp);
	struct nm_breaker_svc *b = nm_breaker_get(&a->breakers, svc->id);

	if (!b)
		return -ENOMEM;
	if (nm_breaker_take_conn(b, r->max_connections))
		return flow_breaker_refused(f, svc, "maxConnections",
					    r->max_connections,
					    b->refused_connections);
	f->res.service_id = svc->id;
	f->res.held_conn = true;
	f->res.vip = vip;
	f->res.retries_left = vip ? r->retries : 0;
	f->res.connect_timeout_ms = r->connect_timeout_ms;
	f->res.idle_timeout_ms = r->idle_timeout_ms;
	f->res.last_io_ms = nm_loop_now_ms();
	flow_res_keepalive(f, f->side[0].fd);
	return 0;
}

/* An upstream connect starts: a maxPendingConnects slot. */
static int flow_res_take_pending(struct nm_flow *f)
{
	const struct nm_st_service *svc;
	struct nm_resilience_cfg tmp;
	struct nm_breaker_svc *b;
	uint32_t max;

	if (!f->res.service_id || f->res.held_pending)
		return 0;
	b = nm_breaker_find(&f->agent->breakers, f->res.service_id);
	if (!b)
		return 0;
	svc = nm_route_service(f->agent->state, f->res.service_id);
	max = res_cfg(svc, &tmp)->max_pending;
	if (nm_breaker_take_pending(b, max))
		return flow_breaker_refused(f, svc, "maxPendingConnects", max,
					    b->refused_pending);
	f->res.held_pending = true;
	return 0;
}

static void res_outlier_key(const struct nm_flow *f, struct nm_outlier_key *k)
{
	struct nm_addr a;
	__be16 port;

	nm_addr_from_sockaddr(&f->backend, &a, &port);
	nm_outlier_key_make(k, f->res.service_id, &a, port);
}

static void flow_res_attempt_started(struct nm_flow *f)
{
	struct nm_breaker_svc *b;
	struct nm_outlier_key k;
	struct nm_outlier_ep *e;

	f->res.attempts++;
	b = nm_breaker_find(&f->agent->breakers, f->res.service_id);
	if (b)
		b->attempts++;
	if (!f->res.vip)
		return;
	res_outlier_key(f, &k);
	e = nm_outlier_get(&f->agent->outlier, &k);
	if (e)
		e->attempts++;
}

/* Writes the ejection into the maps the kernel chooses from; returns how
 * many backend slots carry the endpoint. */
static unsigned int res_map_ejected(struct nm_agent *a,
				    const struct nm_outlier_key *k, bool ejected)
{
	unsigned int n = 0;
	int err;

	if (!a->dp)
		return 0;
	err = nm_datapath_set_backend_flags(a->dp, k->service_id, &k->addr,
					    k->port, ejected ? RES_EP_EJECTED : 0,
					    ejected ? 0 : RES_EP_EJECTED, &n);
	if (err)
		pr_warn("msg=\"cannot write endpoint ejection to nm_backends\" service_id=%u err=\"%s\"",
			k->service_id, strerror(-err));
	return n;
}

static const char *fmt_key(const struct nm_outlier_key *k, char *buf,
			   size_t len)
{
	struct sockaddr_storage ss;

	nm_addr_to_sockaddr(&k->addr, k->port, &ss);
	return nm_sockaddr_format(&ss, buf, len);
}

/*
 * The attempt on f->backend ended: give back its pending slot and count
 * it for the service and, for VIP flows (where the agent chooses among
 * endpoints), for the endpoint's outlier state.
 */
static void flow_res_attempt_done(struct nm_flow *f, bool ok, bool timeout)
{
	struct nm_agent *a = f->agent;
	const struct nm_st_service *svc;
	const struct nm_resilience_cfg *r;
	struct nm_resilience_cfg tmp;
	enum nm_outlier_verdict v;
	struct nm_breaker_svc *b;
	struct nm_outlier_key k;
	struct nm_outlier_ep *e;
	char s1[64], n1[2 * NM_NAME_MAX + 2];
	int64_t now = nm_loop_now_ms();

	b = nm_breaker_find(&a->breakers, f->res.service_id);
	if (f->res.held_pending && b)
		nm_breaker_put_pending(b);
	f->res.held_pending = false;
	if (!b)
		return;
	if (!ok) {
		b->connect_failures++;
		b->connect_timeouts += timeout;
	}
	if (!f->res.vip)
		return;
	res_outlier_key(f, &k);
	e = nm_outlier_get(&a->outlier, &k);
	if (!e)
		return;
	if (ok) {
		nm_outlier_success(e);
		return;
	}
	e->timeouts += timeout;
	svc = nm_route_service(a->state, f->res.service_id);
	r = res_cfg(svc, &tmp);
	v = nm_outlier_failure(&a->outlier, e, r,
			       svc ? nm_route_endpoints(a->state, svc, &f->dst,
							NULL, NULL, NULL) : 0,
			       now);
	if (v == NM_OUTLIER_CAPPED) {
		b->ejections_capped++;
		pr_info_ratelimited(&a->rl.retry,
				    "msg=\"endpoint not ejected: maxEjectionPercent reached\" service=%s endpoint=%s max_percent=%u capped=%llu",
				    svc_name(svc, n1, sizeof(n1)),
				    fmt_key(&k, s1, sizeof(s1)),
				    r->outlier_max_percent,
				    (unsigned long long)e->eject_refused);
	} else if (v == NM_OUTLIER_EJECTED) {
		b->ejections++;
		a->stats.ejections++;
		/* Rare by construction (N failures each): not rate-limited. */
		pr_info("msg=\"endpoint ejected\" service=%s endpoint=%s ejections=%u duration_ms=%lld failures=%llu map_slots=%u",
			svc_name(svc, n1, sizeof(n1)), fmt_key(&k, s1, sizeof(s1)),
			e->ejections, (long long)(e->ejected_until - now),
			(unsigned long long)e->failures,
			res_map_ejected(a, &k, true));
	}
}

/* nm_outlier_expire() callback: an ejected endpoint is back. */
static void res_on_return(const struct nm_outlier_ep *e, void *arg)
{
	struct nm_agent *a = arg;
	struct nm_breaker_svc *b = nm_breaker_find(&a->breakers, e->key.service_id);
	char s1[64], n1[2 * NM_NAME_MAX + 2];

	if (b)
		b->returns++;
	pr_info("msg=\"endpoint returned\" service=%s endpoint=%s ejections=%u map_slots=%u",
		svc_name(nm_route_service(a->state, e->key.service_id), n1,
			 sizeof(n1)),
		fmt_key(&e->key, s1, sizeof(s1)), e->ejections,
		res_map_ejected(a, &e->key, false));
}

struct res_skip {
	const struct nm_flow *f;
	const struct nm_outlier *o;
	int64_t now;
};

/* Leaves out endpoints this flow tried and endpoints ejected now. */
static bool res_skip_endpoint(const struct nm_addr *addr, uint16_t port_be,
			      void *arg)
{
	const struct res_skip *c = arg;
	const struct nm_flow_res *r = &c->f->res;
	struct nm_outlier_key k;

	for (unsigned int i = 0; i < r->n_tried; i++)
		if (r->tried_port[i] == port_be &&
		    !memcmp(&r->tried_addr[i], addr, sizeof(*addr)))
			return true;
	nm_outlier_key_make(&k, r->service_id, addr, port_be);
	return nm_outlier_is_ejected(c->o, &k, c->now);
}

static void res_mark_tried(struct nm_flow *f)
{
	struct nm_flow_res *r = &f->res;
	__be16 port;

	if (r->n_tried == NM_RES_MAX_TRIED)
		return;
	nm_addr_from_sockaddr(&f->backend, &r->tried_addr[r->n_tried], &port);
	r->tried_port[r->n_tried++] = port;
}

/* Another endpoint of the flow's service, among those not tried and not
 * ejected; 0 or -ENOENT. */
static int res_choose(struct nm_flow *f, struct nm_route_out *out)
{
	struct res_skip c = { f, &f->agent->outlier, nm_loop_now_ms() };
	const struct nm_st_service *svc =
		nm_route_service(f->agent->state, f->res.service_id);

	if (!svc)
		return -ENOENT;
	return nm_route_alternate(f->agent->state, svc, &f->dst,
				  res_skip_endpoint, &c, (uint32_t)random(), out);
}

/* The flow's upstream is alt's from now on. */
static void flow_res_move(struct nm_flow *f, const struct nm_route_out *alt)
{
	f->backend = alt->backend;
	f->connect_to = alt->connect_to;
	f->remote = alt->remote;
	f->has_expected = alt->remote;
	f->expected_peer = alt->peer_id;
	memset(&f->peer_id, 0, sizeof(f->peer_id));
}

/*
 * Drops the failed upstream before a retry. Nothing came down from it (the
 * phase is before RELAY); buf[0] keeps only the pod's early bytes, the old
 * preamble goes (the next attempt writes its own in front of them).
 */
static void flow_res_reset_upstream(struct nm_flow *f)
{
	struct nm_agent *a = f->agent;
	struct nm_side *s = &f->side[1];
	struct nm_buf *b = &f->buf[0];

	if (s->fd >= 0)
		nm_loop_del(a->loop, s->fd);
	nm_side_close(s, true);
	nm_meshconn_unregister(a, &f->meshconn);
	*s = (struct nm_side){ .fd = -1 };
	nm_buf_put(&a->pool, &f->buf[1]);
	if (f->held_handshake) {
		nm_limits_put_handshake(&a->limits);
		f->held_handshake = false;
	}
	f->tunnel = -1;
	f->pooled = false;
	if (b->data && f->res.pre_len <= b->len) {
		memmove(b->data, b->data + f->res.pre_len,
			b->len - f->res.pre_len);
		b->len -= f->res.pre_len;
		b->off = 0;
	}
	if (nm_buf_empty(b))
		nm_buf_put(&a->pool, b);
	f->res.pre_len = 0;
	f->written[0] = f->written[1] = 0;
	f->overhead[0] = f->overhead[1] = 0;
}

static bool flow_local_allowed(struct nm_flow *f);

/* flow_connect(); an immediate failure of the endpoint goes through the
 * retry rules like a later one. */
static int flow_connect_res(struct nm_flow *f)
{
	int err = flow_connect(f);

	if (err && f->res.failed_attempt) {
		f->res.failed_attempt = false;
		return flow_res_attempt_failed(f, err, false);
	}
	return err;
}

/*
 * The attempt on f->backend failed (err, -errno; timeout: the connect
 * timeout ran out). Counted for the service and the endpoint; then a VIP
 * flow with retries left and an endpoint left moves there. Only before
 * RELAY, so no byte has reached the pod. 0: a new attempt is under way;
 * otherwise err, and the caller ends the flow as before.
 */
static int flow_res_attempt_failed(struct nm_flow *f, int err, bool timeout)
{
	struct nm_agent *a = f->agent;
	struct nm_breaker_svc *b;
	struct nm_route_out alt;
	char s1[64], s2[64];

	flow_res_attempt_done(f, false, timeout);
	if (!f->res.vip || f->dir != NM_DIR_OUTBOUND ||
	    f->phase >= NM_PH_RELAY)
		return err;
	b = nm_breaker_find(&a->breakers, f->res.service_id);
	for (;;) {
		if (!f->res.retries_left) {
			if (b)
				b->retries_exhausted++;
			return err;
		}
		res_mark_tried(f);
		if (res_choose(f, &alt)) {
			if (b)
				b->no_alternative++;
			return err;
		}
		nm_sockaddr_format(&f->backend, s1, sizeof(s1));
		flow_res_reset_upstream(f);
		flow_res_move(f, &alt);
		if (!f->remote && !flow_local_allowed(f)) {
			a->stats.policy_denied++;
			continue;
		}
		if (f->remote && !nm_tls_has_identity(a->tls, f->local_id.ns,
						      f->local_id.sa))
			continue;
		f->res.retries_left--;
		a->stats.retries++;
		if (b)
			b->retries++;
		pr_debug("msg=\"retrying on another endpoint\" flow=%llu from=%s to=%s err=\"%s\" retries_left=%u",
			 (unsigned long long)f->id, s1,
			 nm_sockaddr_format(&f->backend, s2, sizeof(s2)),
			 strerror(-err), f->res.retries_left);
		err = flow_connect(f);
		if (!err)
			return 0;
		if (!f->res.failed_attempt)
			return err;
		f->res.failed_attempt = false;
		flow_res_attempt_done(f, false, false);
	}
}

/* ----------------------------------------------------------- connecting */

/* Every failed upstream connect, at once or later, is logged and counted
 * here; err is -errno. */
static void flow_connect_failed(struct nm_flow *f, int err)
{
	char s1[64];

	f->agent->stats.upstream_failures++;
	nm_tel_flow_fail(f->agent->tel, f, NM_TEL_FLAG_CONNECT, "upstream connect failed", NULL);
	pr_warn_ratelimited(&f->agent->rl.connect,
			    "msg=\"connect failed\" flow=%llu to=%s err=\"%s\"",
			    (unsigned long long)f->id,
			    nm_sockaddr_format(&f->connect_to, s1, sizeof(s1)),
			    strerror(-err));
}

/*
 * An established tunnel from the pool (mesh/pool.h), when a live one is
 * there: the flow enters HANDSHAKE with it, where SSL_do_handshake()
 * returns at once and the peer identity is checked again exactly as after
 * a handshake of its own; the preamble then goes out at once. 0, or
 * -ENOENT: connect as usual (the pool refills in the background).
 */
static void flow_pool_key(const struct nm_flow *f, struct nm_pool_key *k)
{
	*k = (struct nm_pool_key){ .src = f->local_id, .peer = f->expected_peer,
				   .node = f->connect_to };
}

static int flow_connect_pooled(struct nm_flow *f)
{
	struct nm_agent *a = f->agent;
	struct nm_pool_key k;
	SSL *ssl;
	int fd;

	flow_pool_key(f, &k);
	if (nm_pool_take(&a->tpool, &k, &fd, &ssl))
		return -ENOENT;
	if (nm_loop_add(a->loop, fd, 0, flow_on_event, f)) {
		SSL_free(ssl);
		close(fd);
		return -ENOENT;
	}
	flow_res_keepalive(f, fd);
	flow_res_attempt_started(f);
	f->side[1] = (struct nm_side){ .fd = fd, .ssl = ssl, .writable = true };
	nm_side_tls_adopt(&f->side[1], &a->paths, &a->pool);
	f->pooled = true;
	f->tunnel = 1;
	f->phase = NM_PH_HANDSHAKE;
	f->deadline_ms = nm_loop_now_ms() + (f->res.service_id ?
					     f->res.connect_timeout_ms :
					     NM_HANDSHAKE_TIMEOUT_MS);
	f->res.attempt_deadline = f->deadline_ms;
	return 0;
}

static int flow_connect(struct nm_flow *f)
{
	struct nm_agent *a = f->agent;
	socklen_t len = f->connect_to.ss_family == AF_INET ?
			sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	int fd, err;

	err = nm_flow_admit_pod(f);
	if (err)
		return err;
	err = flow_res_take_pending(f);
	if (err)
		return err;
	if (f->dir == NM_DIR_OUTBOUND && f->remote && !flow_connect_pooled(f))
		return 0;
	fd = socket(f->connect_to.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		flow_connect_failed(f, err);
		return err;
	}
	/* No mark: connect4/6 leave the agent's sockets alone because the
	 * agent's cgroup is never a meshed workload's (state.c refuses it). */
	set_nodelay(f->agent, fd);
	/* Side 1 faces a pod of this node (inbound, or a same-node relay):
	 * connect from the client's own address when the agent vouches for
	 * it (srcaddr.h); otherwise, or on fallback, from the agent's. */
	if (f->src_trusted && !f->lst->fwd &&
	    !(f->dir == NM_DIR_OUTBOUND && f->remote))
		nm_srcaddr_bind(&a->srcaddr, fd, &f->src, &f->connect_to,
				nm_loop_now_ms());
	flow_res_keepalive(f, fd);
	/* A STRICT pod admits the SYN only with the tuple registered first
	 * (mesh/meshconn.h); binds fd unless it is bound already. */
	err = nm_meshconn_register(a, fd, &f->connect_to, &f->meshconn);
	if (err)
		goto err_close;
	flow_res_attempt_started(f);
	if (connect(fd, (struct sockaddr *)&f->connect_to, len) &&
	    errno != EINPROGRESS) {
		err = -errno;
		f->res.failed_attempt = true; /* the endpoint's, not ours */
		goto err_close;
	}
	err = nm_loop_add(a->loop, fd, NM_EV_WRITE, flow_on_event, f);
	if (err)
		goto err_close;
	f->side[1] = (struct nm_side){ .fd = fd };
	/* Side 1 faces a pod unless it is the tunnel to a peer agent. */
	if (!(f->dir == NM_DIR_OUTBOUND && f->remote))
		nm_side_arm_reset(&f->side[1]);
	f->phase = NM_PH_CONNECTING;
	f->deadline_ms = nm_loop_now_ms() + (f->res.service_id ?
					     f->res.connect_timeout_ms :
					     NM_CONNECT_TIMEOUT_MS);
	f->res.attempt_deadline = f->deadline_ms;
	return 0;

err_close:
	close(fd);
	nm_meshconn_unregister(a, &f->meshconn);
	flow_connect_failed(f, err);
	return err;
}

/* Inbound failure: answer the status on the tunnel, then close. */
static void flow_drain_status(struct nm_flow *f, uint8_t status)
{
	struct nm_agent *a = f->agent;

	f->drain_status = status;
	if (nm_buf_get(&a->pool, &f->buf[1])) {
		f->phase = NM_PH_CLOSED;
		return;
	}
	f->buf[1].off = 0;
	f->buf[1].len = nm_status_encode(status, f->buf[1].data, NM_BUF_SIZE);
	nm_buf_put(&a->pool, &f->buf[0]);
	f->phase = NM_PH_DRAIN;
	f->deadline_ms = nm_loop_now_ms() + NM_CONNECT_TIMEOUT_MS;
}

static void flow_log_open(struct nm_flow *f)
{
	char s1[64], s2[64], s3[64], i1[NM_SPIFFE_MAX], i2[NM_SPIFFE_MAX];
	struct nm_agent *a = f->agent;

	if (f->res.attempts <= 1) /* a retry logs again, counts once */
		a->stats.flows_opened++;
	nm_tel_flow_open(a->tel, f);
	/* Per-flow lines are debug (the flow log comes with telemetry); skip
	 * formatting them when they would not print. */
	if (nm_log_get_level() < NM_LOG_DEBUG)
		return;
	const char *tls = f->tunnel < 0 ? "none" :
			  SSL_session_reused(f->side[f->tunnel].ssl) ? "resumed" : "full";

	if (f->dir == NM_DIR_OUTBOUND)
		pr_debug("msg=\"flow open\" dir=outbound flow=%llu src=%s src_id=%s dst=%s backend=%s path=%s peer_id=%s tls=%s pooled=%s",
			(unsigned long long)f->id, nm_sockaddr_format(&f->src, s1, sizeof(s1)),
			fmt_id(&f->local_id, i1, sizeof(i1)),
			nm_sockaddr_format(&f->dst, s2, sizeof(s2)),
			nm_sockaddr_format(&f->backend, s3, sizeof(s3)),
			f->remote ? "remote" : "local",
			fmt_id(&f->peer_id, i2, sizeof(i2)), tls,
			f->pooled ? "yes" : "no");
	else
		pr_debug("msg=\"flow open\" dir=inbound flow=%llu peer_id=%s local_id=%s src=%s dst=%s tls=%s",
			(unsigned long long)f->id,
			fmt_id(&f->peer_id, i1, sizeof(i1)),
			fmt_id(&f->local_id, i2, sizeof(i2)),
			nm_sockaddr_format(&f->src, s1, sizeof(s1)),
			nm_sockaddr_format(&f->connect_to, s2, sizeof(s2)), tls);
}

/* Outbound tunnel is up: queue the preamble ahead of the client's bytes. */
static int flow_send_preamble(struct nm_flow *f)
{
	struct nm_preamble p = { .dst = f->backend, .has_src = true,
				 .src = f->src, .has_flow = true,
				 .flow_id = f->id };
	struct nm_buf *b = &f->buf[0];
	uint8_t pre[NM_NMTP_MAX];
	uint32_t held;
	int n, err;

	err = nm_buf_get(&f->agent->pool, b);
	if (err)
		return err;
	n = nm_preamble_encode(&p, pre, sizeof(pre));
	if (n < 0)
		return n;
	/* A retry has the pod's early bytes in buf[0] already (at most
	 * NM_BUF_SIZE - NM_NMTP_MAX, see hold_room): they go after it. */
	held = b->len - b->off;
	if (held + n > NM_BUF_SIZE)
		return -ENOBUFS;
	memmove(b->data + n, b->data + b->off, held);
	memcpy(b->data, pre, n);
	b->off = 0;
	b->len = held + n;
	f->overhead[0] = n;
	f->res.pre_len = n;
	return 0;
}

/* ---------------------------------------------------------------- relay */

static bool side_can_read(const struct nm_side *s)
{
	return s->fd >= 0 && (s->readable || nm_side_pending(s) ||
			      (s->rd_want_write && s->writable));
}

static bool side_can_write(const struct nm_side *s)
{
	return s->fd >= 0 && (s->writable || (s->wr_want_read && s->readable));
}

/* Is buf[i] the tunnel's answer still being read (no byte may go down)? */
static bool status_pending(const struct nm_flow *f, int i)
{
	return i == 1 && f->phase == NM_PH_AWAIT_STATUS;
}

/* May bytes of buf[i] go out now? Not while the status is outstanding. */
static bool buf_sendable(const struct nm_flow *f, int i)
{
	return !nm_buf_empty(&f->buf[i]) && !status_pending(f, i);
}

/*
 * An outbound VIP flow with retries left, waiting for the peer agent's
 * status, keeps the pod's bytes in buf[0] after they went up, so a retry
 * can replay them to the next endpoint. Returns the room left for more (the
 * next preamble must still fit in front of them; beyond it the pod waits),
 * or -1 when buf[i] is not held.
 */
static int64_t hold_room(const struct nm_flow *f, int i)
{
	const struct nm_buf *b = &f->buf[i];
	int64_t early;

	if (i != 0 || f->phase != NM_PH_AWAIT_STATUS || !f->res.vip ||
	    !f->res.retries_left)
		return -1;
	early = b->data ? (int64_t)b->len - f->res.pre_len : 0;
	return NM_BUF_SIZE - NM_NMTP_MAX - early;
}

/* An I/O error r on side `side` of the flow: while the outbound tunnel's
 * status is outstanding, one on the tunnel is the attempt's failure. */
static int pump_fail(struct nm_flow *f, int side, int r)
{
	if (f->dir == NM_DIR_OUTBOUND && f->phase == NM_PH_AWAIT_STATUS &&
	    side == 1)
		f->res.failed_attempt = true;
	return r;
}

/* The outbound tunnel's first bytes are NMT1 + status; returns 0 when the
 * status is still incomplete or OK, -ECONNREFUSED when the peer refused. */
static int flow_take_status(struct nm_flow *f)
{
	struct nm_buf *b = &f->buf[1];
	uint8_t status;
	int n;

	n = nm_status_decode(b->data + b->off, b->len - b->off, &status);
	if (n == -EAGAIN)
		return 0;
	if (n < 0) {
		f->res.failed_attempt = true;
		f->agent->stats.preamble_errors++;
		pr_warn_ratelimited(&f->agent->rl.status,
				    "msg=\"malformed status from peer agent\" flow=%llu",
				    (unsigned long long)f->id);
		return -EPROTO;
	}
	if (status != NM_NMTP_OK) {
		char s1[64];

		/* No such destination or refused by it: the endpoint's
		 * failure, retried elsewhere. Denied and overloaded are
		 * answers, not failures. */
		if (status == NM_NMTP_NO_DEST || status == NM_NMTP_DEST_REFUSED)
			f->res.failed_attempt = true;

		pr_warn_ratelimited(&f->agent->rl.status,
				    "msg=\"peer agent refused flow\" flow=%llu backend=%s status=%s",
				    (unsigned long long)f->id,
				    nm_sockaddr_format(&f->backend, s1, sizeof(s1)),
				    nm_status_str(status));
		f->agent->stats.upstream_failures++;
		return -ECONNREFUSED;
	}
	/* Skipped, never written: not part of written[1]. */
	b->off += n;
	flow_res_attempt_done(f, true, false);
	/* The tunnel works and its session ticket came before the status:
	 * the pool's handshakes for this key now resume (mesh/pool.h). Also
	 * after a pooled flow: the refill starts once this flow's path
	 * through both agents is done, not in its way. */
	{
		struct nm_pool_key k;

		flow_pool_key(f, &k);
		nm_pool_warm(&f->agent->tpool, &k);
	}
	f->deadline_ms = 0;
	f->phase = NM_PH_RELAY;
	if (nm_buf_empty(b))
		nm_buf_put(&f->agent->pool, b);
	return 0;
}

/* Moves bytes until nothing more can move. 0, or -errno to reset the flow. */
static int flow_pump(struct nm_flow *f)
{
	struct nm_bufpool *pool = &f->agent->pool;
	bool progress, moved = false;

	do {
		progress = false;
		for (int i = 0; i < 2; i++) {
			struct nm_side *src = &f->side[i], *dst = &f->side[1 - i];
			struct nm_buf *b = &f->buf[i];
			bool status_phase = status_pending(f, i);
			int64_t room = hold_room(f, i);
			bool hold = room >= 0;
			int r;

			/* Records of an earlier write still in the BIO. */
			if (nm_side_wpending(dst) && side_can_write(dst)) {
				r = nm_side_flush(dst);
				if (r && r != -EAGAIN)
					return pump_fail(f, 1 - i, r);
				progress |= !r;
			}
			if (buf_sendable(f, i) && side_can_write(dst)) {
				r = nm_side_write(dst, b->data + b->off,
						  b->len - b->off);
				if (r > 0) {
					b->off += r;
					f->written[i] += r;
					progress = true;
					if (nm_buf_empty(b) && !hold)
						nm_buf_put(pool, b);
				} else if (r != -EAGAIN) {
					return pump_fail(f, 1 - i, r);
				}
			}
			if ((hold ? room > 0 : nm_buf_empty(b) || status_phase) &&
			    !src->rd_eof && side_can_read(src)) {
				if (nm_buf_empty(b) && !status_phase && !hold)
					nm_buf_put(pool, b);
				if (nm_buf_get(pool, b))
					return -ENOMEM;
				r = nm_side_read(src, b->data + b->len,
						 hold ? (size_t)room :
							NM_BUF_SIZE - b->len);
				if (r > 0) {
					b->len += r;
					progress = true;
					if (status_phase && (r = flow_take_status(f)))
						return r;
				} else if (r == 0) {
					src->rd_eof = true;
					progress = true;
					if (status_phase)
						return pump_fail(f, i, -ECONNRESET);
				} else if (r != -EAGAIN) {
					return pump_fail(f, i, r);
				}
				if (nm_buf_empty(b) && !status_pending(f, i) &&
				    hold_room(f, i) < 0)
					nm_buf_put(pool, b);
			}
			if (src->rd_eof && nm_buf_empty(b) && !dst->wr_shut &&
			    dst->fd >= 0) {
				r = nm_side_shutdown(dst);
				if (r == 0) {
					dst->wr_shut = true;
					progress = true;
				} else if (r != -EAGAIN) {
					return pump_fail(f, 1 - i, r);
				}
			}
		}
		moved |= progress;
	} while (progress);
	if (moved && f->res.idle_timeout_ms)
		f->res.last_io_ms = nm_loop_now_ms();
	return 0;
}

static bool flow_finished(const struct nm_flow *f)
{
	return f->side[0].rd_eof && f->side[1].rd_eof && f->side[0].wr_shut &&
	       f->side[1].wr_shut && nm_buf_empty(&f->buf[0]) &&
	       nm_buf_empty(&f->buf[1]) && !nm_side_wpending(&f->side[0]) &&
	       !nm_side_wpending(&f->side[1]);
}

/* -------------------------------------------------------------- phases */

/* The SSL object of side's tunnel; inbound it is made only once the peer
 * sent its first bytes, so a silent connection costs no TLS state. */
static int flow_tls_new(struct nm_flow *f, int side)
{
	struct nm_agent *a = f->agent;
	struct nm_side *s = &f->side[side];
	int err;

	if (f->dir == NM_DIR_OUTBOUND) {
		char node[64];

		/* The destination node keys the session cache: a ticket is
		 * only good at the node that issued it. */
		nm_sockaddr_format(&f->connect_to, node, sizeof(node));
		err = nm_tls_client_new(a->tls, f->local_id.ns, f->local_id.sa,
					&f->expected_peer, node, s->fd, &s->ssl);
	} else {
		err = nm_tls_server_new(a->tls,
					f->lst->fwd ? f->lst->fwd->id_ns : NULL,
					f->lst->fwd ? f->lst->fwd->id_sa : NULL,
					s->fd, &s->ssl);
	}
	if (err)
		return err;
	return nm_side_tls_setup(s, &a->paths, &a->pool);
}

/* Logs a connection a limit does not admit, per reason, rate-limited. */
static void limit_refused(struct nm_agent *a, enum nm_limit_kind kind,
			  enum nm_flow_dir dir,
			  const struct sockaddr_storage *peer,
			  uint32_t workload)
{
	static const char *const names[] = {
		[NM_LIMIT_FLOWS] = "maxFlows",
		[NM_LIMIT_HANDSHAKES] = "maxHandshakes",
		[NM_LIMIT_POD] = "maxFlowsPerPod",
		[NM_LIMIT_PEER] = "maxFlowsPerPeer",
	};
	char s1[64];

	a->stats.refused_limit++;
	pr_warn_ratelimited(&a->rl.limit[kind],
			    "msg=\"refused: over limit\" limit=%s max=%u dir=%s peer=%s workload_id=%u refused=%llu",
			    names[kind],
			    kind == NM_LIMIT_FLOWS ? a->limits.max.max_flows :
			    kind == NM_LIMIT_HANDSHAKES ? a->limits.max.max_handshakes :
			    kind == NM_LIMIT_POD ? a->limits.max.max_flows_per_pod :
						   a->limits.max.max_flows_per_peer,
			    dir == NM_DIR_OUTBOUND ? "outbound" : "inbound",
			    nm_sockaddr_format(peer, s1, sizeof(s1)), workload,
			    (unsigned long long)a->limits.refused[kind]);
}

static int flow_limit_refused(struct nm_flow *f, enum nm_limit_kind kind)
{
	limit_refused(f->agent, kind, f->dir, &f->src, f->src_workload);
	return -EBUSY;
}

int nm_flow_admit_pod(struct nm_flow *f)
{
	if (f->dir != NM_DIR_OUTBOUND || !f->src_workload || f->held_pod)
		return 0;
	if (nm_limits_take_pod(&f->agent->limits, f->src_workload))
		return flow_limit_refused(f, NM_LIMIT_POD);
	f->held_pod = true;
	return 0;
}

static int flow_start_tls(struct nm_flow *f, int side)
{
	int err;

	if (!f->held_handshake) {
		if (nm_limits_take_handshake(&f->agent->limits))
			return flow_limit_refused(f, NM_LIMIT_HANDSHAKES);
		f->held_handshake = true;
	}
	f->tunnel = side;
	f->phase = NM_PH_HANDSHAKE;
	/* A service's connect timeout covers the whole attempt: TCP, TLS
	 * and the peer agent's status. */
	f->deadline_ms = f->res.service_id && f->dir == NM_DIR_OUTBOUND ?
				 f->res.attempt_deadline :
				 nm_loop_now_ms() + NM_HANDSHAKE_TIMEOUT_MS;
	if (f->dir == NM_DIR_INBOUND)
		return 0; /* SSL made on the first bytes (flow_step_handshake) */
	err = flow_tls_new(f, side);
	return err;
}

static int flow_step_connecting(struct nm_flow *f)
{
	struct nm_side *s = &f->side[1];
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (!s->writable)
		return 0;
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len))
		soerr = errno;
	if (soerr == EINPROGRESS || soerr == EALREADY) {
		s->writable = false;
		return 0;
	}
	if (soerr) {
		flow_connect_failed(f, -soerr);
		f->res.failed_attempt = f->dir == NM_DIR_OUTBOUND;
		if (f->dir == NM_DIR_INBOUND) {
			flow_res_attempt_done(f, false, false);
			nm_loop_del(f->agent->loop, s->fd);
			nm_side_close(s, false);
			nm_meshconn_unregister(f->agent, &f->meshconn);
			s->rd_eof = s->wr_shut = true;
			flow_drain_status(f, NM_NMTP_DEST_REFUSED);
			return 0;
		}
		return -soerr;
	}
	f->deadline_ms = 0;
	if (f->dir == NM_DIR_OUTBOUND && f->remote)
		return flow_start_tls(f, 1);
	if (f->dir == NM_DIR_INBOUND) {
		/* The pod accepted: tell the client agent, then relay. */
		struct nm_buf *b = &f->buf[1];
		int err = nm_buf_get(&f->agent->pool, b);

		if (err)
			return err;
		b->off = 0;
		b->len = nm_status_encode(NM_NMTP_OK, b->data, NM_BUF_SIZE);
		f->overhead[1] = b->len;
	}
	flow_res_attempt_done(f, true, false);
	f->phase = NM_PH_RELAY;
	flow_log_open(f);
	return 0;
}

static int flow_step_handshake(struct nm_flow *f)
{
	struct nm_agent *a = f->agent;
	struct nm_side *s = &f->side[f->tunnel];
	const char *why = NULL;
	char ebuf[160], s1[64];
	uint64_t cpu_ns;
	int ret, err;

	if (!s->ssl) {
		if (!s->readable)
			return 0;
		err = flow_tls_new(f, f->tunnel);
		if (err)
			return err;
	}
	ret = nm_tls_handshake_step(s->ssl, &cpu_ns);
	nm_tel_tls_handshake_cpu(a->tel, f->dir == NM_DIR_OUTBOUND, cpu_ns);
	if (ret <= 0) {
		switch (SSL_get_error(s->ssl, ret)) {
		case SSL_ERROR_WANT_READ:
			s->readable = false;
			return 0;
		case SSL_ERROR_WANT_WRITE:
			s->writable = false;
			return 0;
		default:
			/* Our own verify rules say more than OpenSSL's
			 * "certificate verify failed". */
			why = nm_tls_refusal(s->ssl);
			if (!why)
				why = nm_ssl_error_string(ebuf, sizeof(ebuf));
			goto fail;
		}
	}
	err = nm_tls_check_peer(s->ssl, f->has_expected ? &f->expected_peer : NULL,
				&f->peer_id, &why);
	if (err)
		goto fail;
	if (!f->pooled) { /* a pooled tunnel's handshake was counted by the pool */
		nm_tel_tls_handshake(a->tel, f->dir == NM_DIR_OUTBOUND, true,
				     SSL_session_reused(s->ssl));
		nm_ecmeth_count(&a->paths.ec_builtin, s->ssl);
	}
	/* Outbound the slot ends with the handshake; inbound it also covers
	 * the wait for the preamble, so connections that completed a
	 * handshake and then idle are capped too. */
	if (f->held_handshake && f->dir == NM_DIR_OUTBOUND) {
		nm_limits_put_handshake(&a->limits);
		f->held_handshake = false;
	}
	if (f->dir == NM_DIR_OUTBOUND) {
		err = flow_send_preamble(f);
		if (err)
			return err;
		f->deadline_ms = f->res.service_id ? f->res.attempt_deadline : 0;
		f->phase = NM_PH_AWAIT_STATUS;
		flow_log_open(f);
		return 0;
	}
	if (nm_tls_local_identity(s->ssl, &f->local_id) && f->lst->fwd)
		id_from_cfg(a, f->lst->fwd->id_ns, f->lst->fwd->id_sa,
			    &f->local_id);
	f->phase = NM_PH_PREAMBLE;
	return 0;

fail:
	a->stats.tls_failures++;
	nm_tel_tls_handshake(a->tel, f->dir == NM_DIR_OUTBOUND, false, false);
	if (f->dir == NM_DIR_OUTBOUND) /* inbound: nothing is known of the peer yet */
		nm_tel_flow_fail(a->tel, f, NM_TEL_FLAG_TLS, "tls handshake failed", NULL);
	f->res.failed_attempt = f->dir == NM_DIR_OUTBOUND;
	pr_warn_ratelimited(&a->rl.tls,
			    "msg=\"tls handshake failed\" flow=%llu dir=%s peer=%s reason=\"%s\"",
			    (unsigned long long)f->id,
			    f->dir == NM_DIR_OUTBOUND ? "outbound" : "inbound",
			    nm_sockaddr_format(f->dir == NM_DIR_OUTBOUND ?
						       &f->connect_to : &f->src,
					       s1, sizeof(s1)),
			    why ? why : "unknown");
	return -EACCES;
}

/* Inbound: where may this preamble's destination be reached? */
/*
 * Inbound: where may this preamble's destination be reached, and may this
 * peer reach it? policy[len] gets the deciding policy ("ns/name", "-").
 */
static uint8_t flow_authorize_dst(struct nm_flow *f, const struct nm_preamble *p,
				  char *policy, size_t len, const char **reason)
{
	struct nm_agent *a = f->agent;
	const struct nm_forward_cfg *fwd = f->lst->fwd;
	const struct nm_st_workload *wl;
	struct nm_policy_verdict v;
	struct nm_spiffe_id want;
	char i1[NM_SPIFFE_MAX];

	snprintf(policy, len, "-");
	*reason = "";
	if (fwd) {
		if (fwd->n_allowed_peers) {
			bool ok = false;

			fmt_id(&f->peer_id, i1, sizeof(i1));
			for (unsigned int k = 0; k < fwd->n_allowed_peers; k++)
				ok |= !strcmp(fwd->allowed_peers[k], i1);
			if (!ok)
				return NM_NMTP_DENIED;
		}
		if (!sa_equal(&p->dst, &fwd->destination))
			return NM_NMTP_NO_DEST;
		f->connect_to = fwd->destination;
		return NM_NMTP_OK;
	}
	if (nm_route_inbound(a->state, &p->dst, &f->local_id, &wl, &want))
		return NM_NMTP_NO_DEST;
	f->local_id = want;
	/* The destination agent is authoritative: the verified peer
	 * identity, the source address the peer agent vouches for, the pod
	 * and port asked for. */
	if (!nm_authz_check(&a->authz, a->state, wl, &p->dst, &f->peer_id,
			    &f->src, &v, policy, len)) {
		*reason = v.reason ? v.reason : "";
		return NM_NMTP_DENIED;
	}
	f->connect_to = p->dst;
	return NM_NMTP_OK;
}

static int flow_step_preamble(struct nm_flow *f)
{
	struct nm_agent *a = f->agent;
	struct nm_side *s = &f->side[0];
	struct nm_buf *b = &f->buf[0];
	struct nm_preamble p;
	const char *why = NULL;
	uint8_t status;
	char s1[64], s2[64], policy[2 * NM_NAME_MAX + 2];
	int r, err;

	for (;;) {
		r = nm_preamble_decode(b->data ? b->data : (const uint8_t *)"",
				       b->len, &p, &why);
		if (r > 0)
			break;
		if (r != -EAGAIN)
			goto malformed;
		if (!side_can_read(s))
			return 0;
		err = nm_buf_get(&a->pool, b);
		if (err)
			return err;
		r = nm_side_read(s, b->data + b->len, NM_BUF_SIZE - b->len);
		if (r == -EAGAIN)
			return 0;
		if (r == 0 && !b->len) {
			/* Not one preamble byte, then close_notify/FIN: a
			 * pooled tunnel the client agent retired unused
			 * (mesh/pool.h). Normal, so not an error. */
			pr_debug("msg=\"tunnel closed unused\" flow=%llu peer=%s",
				 (unsigned long long)f->id,
				 nm_sockaddr_format(&f->src, s1, sizeof(s1)));
			f->phase = NM_PH_CLOSED;
			return 0;
		}
		if (r <= 0) {
			why = "tunnel closed before the preamble ended";
			goto malformed;
		}
		b->len += r;
	}
	b->off = r; /* the preamble is consumed, never relayed */
	if (f->held_handshake) {
		nm_limits_put_handshake(&a->limits);
		f->held_handshake = false;
	}
	if (nm_buf_empty(b))
		nm_buf_put(&a->pool, b);
	if (p.has_src && !f->lst->fwd) {
		/* The client's address is the peer agent's word: believed
		 * only when the workload owning it has the peer's verified
		 * identity, else the flow is refused, never downgraded. */
		if (nm_route_check_src(a->state, &p.src, &f->peer_id, &why)) {
			char i1[NM_SPIFFE_MAX];

			a->srcaddr.forged++;
			pr_warn_ratelimited(&a->rl.refused,
					    "msg=\"inbound flow refused\" flow=%llu peer_id=%s src=%s dst=%s status=%s policy=- reason=\"forged SRC: %s\"",
					    (unsigned long long)(p.has_flow ? p.flow_id : f->id),
					    fmt_id(&f->peer_id, i1, sizeof(i1)),
					    nm_sockaddr_format(&p.src, s2, sizeof(s2)),
					    nm_sockaddr_format(&p.dst, s1, sizeof(s1)),
					    nm_status_str(NM_NMTP_DENIED), why);
			flow_drain_status(f, NM_NMTP_DENIED);
			return 0;
		}
		f->src = p.src;
		f->src_trusted = true;
	} else if (p.has_src) {
		f->src = p.src;
	}
	if (p.has_flow)
		f->id = p.flow_id;
	f->dst = p.dst;
	status = flow_authorize_dst(f, &p, policy, sizeof(policy), &why);
	if (status != NM_NMTP_OK) {
		char i1[NM_SPIFFE_MAX];

		nm_tel_flow_fail(a->tel, f, status == NM_NMTP_DENIED ? NM_TEL_FLAG_DENY :
					    NM_TEL_FLAG_CONNECT, nm_status_str(status), policy);
		pr_warn_ratelimited(&a->rl.refused,
				    "msg=\"inbound flow refused\" flow=%llu peer_id=%s src=%s dst=%s status=%s policy=%s reason=\"%s\"",
				    (unsigned long long)f->id,
				    fmt_id(&f->peer_id, i1, sizeof(i1)),
				    nm_sockaddr_format(&f->src, s2, sizeof(s2)),
				    nm_sockaddr_format(&p.dst, s1, sizeof(s1)),
				    nm_status_str(status), policy, why);
		flow_drain_status(f, status);
		return 0;
	}
	/* The destination pod's service (lowest ID on that target port):
	 * its breaker, connect timeout, idle timeout and keepalive. */
	{
		const struct nm_st_service *svc = f->lst->fwd ? NULL :
			nm_route_service_of(a->state, &f->connect_to);

		err = svc ? flow_res_bind(f, svc, false) : 0;
	}
	if (!err)
		err = flow_connect(f);
	if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS ||
	    err == -ENOMEM || err == -EBUSY) {
		/* Out of descriptors or memory, or over the service's
		 * circuit breaker, not the pod's fault: tell the client
		 * agent (NMTP status 4) rather than queue. */
		a->stats.status_overloaded++;
		flow_drain_status(f, NM_NMTP_OVERLOADED);
	} else if (err) {
		flow_drain_status(f, NM_NMTP_DEST_REFUSED);
	}
	return 0;

malformed:
	a->stats.preamble_errors++;
	pr_warn_ratelimited(&a->rl.preamble,
			    "msg=\"malformed preamble, closing\" flow=%llu peer=%s reason=\"%s\"",
			    (unsigned long long)f->id,
			    nm_sockaddr_format(&f->src, s1, sizeof(s1)),
			    why ? why : "unknown");
	return -EPROTO;
}

static int flow_step_drain(struct nm_flow *f)
{
	struct nm_side *s = &f->side[0];
	struct nm_buf *b = &f->buf[1];
	int r;

	while (!nm_buf_empty(b) && side_can_write(s)) {
		r = nm_side_write(s, b->data + b->off, b->len - b->off);
		if (r == -EAGAIN)
			return 0;
		if (r < 0)
			return r;
		b->off += r;
	}
	if (!nm_buf_empty(b))
		return 0;
	r = nm_side_shutdown(s);
	if (r == -EAGAIN)
		return 0;
	f->phase = NM_PH_CLOSED;
	return 0;
}

static unsigned int side_mask(const struct nm_flow *f, int i)
{
	const struct nm_side *s = &f->side[i];
	unsigned int m = 0;
	int64_t room;
	bool want;

	switch (f->phase) {
	case NM_PH_CONNECTING:
		return i == 1 && !s->writable ? NM_EV_WRITE : 0;
	case NM_PH_HANDSHAKE:
		if (i != f->tunnel)
			return 0;
		return (!s->readable ? NM_EV_READ : 0) |
		       (!s->writable ? NM_EV_WRITE : 0);
	case NM_PH_PREAMBLE:
		return i == 0 && !s->readable ? NM_EV_READ : 0;
	case NM_PH_DRAIN:
		return i == 0 && !s->writable ? NM_EV_WRITE : 0;
	case NM_PH_AWAIT_STATUS:
	case NM_PH_RELAY:
		if (f->zc)
			return nm_zc_mask(f, i);
		break;
	default:
		return 0;
	}
	/* A held buf[0] takes more until its room is used up. */
	room = hold_room(f, i);
	want = room >= 0 ? room > 0 :
	       nm_buf_empty(&f->buf[i]) || status_pending(f, i);
	if (!s->readable && ((!s->rd_eof && want) || s->wr_want_read))
		m |= NM_EV_READ;
	if (!s->writable &&
	    (buf_sendable(f, 1 - i) || s->rd_want_write || nm_side_wpending(s) ||
	     (f->side[1 - i].rd_eof && nm_buf_empty(&f->buf[1 - i]) &&
	      !s->wr_shut)))
		m |= NM_EV_WRITE;
	return m;
}

static void flow_advance(struct nm_flow *f)
{
	enum nm_flow_phase before;
	int err = 0;

	do {
		before = f->phase;
		switch (f->phase) {
		case NM_PH_CONNECTING:
			err = flow_step_connecting(f);
			break;
		case NM_PH_HANDSHAKE:
			err = flow_step_handshake(f);
			break;
		case NM_PH_PREAMBLE:
			err = flow_step_preamble(f);
			break;
		case NM_PH_AWAIT_STATUS:
		case NM_PH_RELAY:
			/* Plain legs with empty buffers go to the kernel. */
			if (f->zc || nm_zc_begin(f))
				err = nm_zc_pump(f);
			else
				err = flow_pump(f);
			break;
		case NM_PH_DRAIN:
			err = flow_step_drain(f);
			break;
		case NM_PH_CLOSED:
			break;
		}
		if (err && f->res.failed_attempt) {
			/* The upstream failed before RELAY: maybe another
			 * endpoint (0: a new attempt is connecting). */
			f->res.failed_attempt = false;
			err = flow_res_attempt_failed(f, err, false);
		}
	} while (!err && f->phase != before);

	if (err) {
		/* A reset on one side becomes a reset on the other; so does any
		 * failure before the relay started (the client sees
		 * ECONNRESET, never a silent clean close). */
		flow_free(f, true, err == -ECONNRESET ? "reset" : "error");
		return;
	}
	if (f->phase == NM_PH_CLOSED) {
		flow_free(f, false, "refused");
		return;
	}
	if (f->phase == NM_PH_RELAY && flow_finished(f)) {
		flow_free(f, false, "eof");
		return;
	}
	for (int i = 0; i < 2; i++)
		if (f->side[i].fd >= 0)
			nm_loop_set_mask(f->agent->loop, f->side[i].fd,
					 side_mask(f, i));
}

void nm_flow_advance(struct nm_flow *f)
{
	flow_advance(f);
}

static void flow_on_event(struct nm_loop *loop, int fd, unsigned int events,
			  void *data)
{
	struct nm_flow *f = data;
	int i = f->side[0].fd == fd ? 0 : 1;

	if (events & (NM_EV_READ | NM_EV_ERROR))
		f->side[i].readable = true;
	if (events & (NM_EV_WRITE | NM_EV_ERROR))
		f->side[i].writable = true;
	flow_advance(f);
}

/* ------------------------------------------------------------ accepting */

/*
 * Same node: this agent is the destination's too, so it decides for the
 * pod it relays to (the source's identity is its cgroup's, vouched for by
 * the record). A refusal resets the pod's connection, counted, logged.
 */
static bool flow_local_allowed(struct nm_flow *f)
{
	struct nm_agent *a = f->agent;
	const struct nm_st_workload *dst;
	struct nm_policy_verdict v;
	char policy[2 * NM_NAME_MAX + 2], i1[NM_SPIFFE_MAX], s1[64], s2[64];
	struct nm_addr ip;

	nm_addr_from_sockaddr(&f->connect_to, &ip, NULL);
	dst = nm_state_workload_by_addr(a->state, &ip);
	if (!dst)
		return false;
	if (nm_authz_check(&a->authz, a->state, dst, &f->connect_to,
			   &f->local_id, &f->src, &v, policy, sizeof(policy)))
		return true;
	nm_tel_flow_fail(a->tel, f, NM_TEL_FLAG_DENY, "denied", policy);
	pr_warn_ratelimited(&a->rl.refused,
			    "msg=\"local flow refused\" src_id=%s src=%s dst=%s status=denied policy=%s reason=\"%s\"",
			    fmt_id(&f->local_id, i1, sizeof(i1)),
			    nm_sockaddr_format(&f->src, s1, sizeof(s1)),
			    nm_sockaddr_format(&f->connect_to, s2, sizeof(s2)),
			    policy, v.reason ? v.reason : "");
	return false;
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Resilience at the start of an outbound flow: the service it counts
 * against (the VIP's, or a direct pod address's lowest-ID service) and its
 * breaker. For a VIP the kernel's choice (r) may be an endpoint this agent
 * ejected (the kernel does not skip it before NM_EP_EJECTED): choose again
 * among the endpoints in service, counted. 0 or -EBUSY/-ENOMEM (reset).
 */
static int flow_res_start(struct nm_flow *f, const struct nm_orig *orig,
			  struct nm_route_out *r)
{
	struct nm_agent *a = f->agent;
	bool vip = (orig->flags & NM_ORIG_SERVICE) && orig->service_id;
	const struct nm_st_service *svc;
	struct nm_outlier_key k;
	struct nm_outlier_ep *e;
	struct nm_breaker_svc *b;
	struct nm_route_out alt;
	int err;

	svc = vip ? nm_route_service(a->state, orig->service_id) :
		    nm_route_service_of(a->state, &r->backend);
	if (!svc)
		return 0;
	err = flow_res_bind(f, svc, vip);
	if (err || !vip)
		return err;
	f->backend = r->backend;
	res_outlier_key(f, &k);
	if (!nm_outlier_is_ejected(&a->outlier, &k, nm_loop_now_ms()))
		return 0;
	alt = *r;
	if (res_choose(f, &alt))
		return 0; /* every endpoint is out: the kernel's choice stands */
	e = nm_outlier_find(&a->outlier, &k);
	if (e)
		e->skipped++;
	b = nm_breaker_find(&a->breakers, svc->id);
	if (b)
		b->avoided_ejected++;
	*r = alt;
	return 0;
}

/*
 * A pod connection on 15001: take its redirect record, check it against the
 * state (route.c) and connect to the backend or the peer node's agent.
 * Anything the agent cannot vouch for is reset and counted.
 */
static void flow_start_mesh_outbound(struct nm_flow *f)
{
	struct nm_agent *a = f->agent;
	struct nm_route_out r;
	struct nm_orig orig;
	const char *why = NULL;
	char s1[64];
	int err;

	err = nm_datapath_take_orig(a->dp, &f->src, &orig);
	if (err) {
		a->stats.no_record++;
		pr_debug("msg=\"no redirect record, closing\" peer=%s",
			 nm_sockaddr_format(&f->src, s1, sizeof(s1)));
		goto reset;
	}
	err = nm_route_outbound(a->state, a->first_generation, &orig, &f->src,
				monotonic_ns(), &r, &why);
	if (err) {
		a->stats.bad_record++;
		pr_debug("msg=\"redirect record refused, closing\" peer=%s reason=\"%s\" generation=%u workload_id=%u",
			 nm_sockaddr_format(&f->src, s1, sizeof(s1)), why,
			 orig.generation, orig.src_workload_id);
		goto reset;
	}
	f->dst = r.dst;
	if (flow_res_start(f, &orig, &r))
		goto reset;
	f->local_id = r.local_id;
	f->backend = r.backend;
	f->connect_to = r.connect_to;
	f->src_workload = r.src_workload;
	f->src_trusted = true; /* nm_route_outbound checked the address */
	if (!r.remote && !flow_local_allowed(f)) {
		a->stats.policy_denied++;
		goto reset;
	}
	if (r.remote) {
		f->expected_peer = r.peer_id;
		f->has_expected = true;
		f->remote = true;
		if (!nm_tls_has_identity(a->tls, f->local_id.ns, f->local_id.sa)) {
			nm_tel_flow_fail(a->tel, f, NM_TEL_FLAG_IDENTITY,
					 "no certificate for the source identity", NULL);
			pr_warn_ratelimited(&a->rl.other,
					    "msg=\"no certificate for source identity\" flow=%llu ns=%s sa=%s",
					    (unsigned long long)f->id, f->local_id.ns,
					    f->local_id.sa);
			goto reset;
		}
	}
	if (flow_connect_res(f))
		goto reset;
	flow_advance(f);
	return;
reset:
	flow_free(f, true, "refused");
}

static void flow_start_forward_outbound(struct nm_flow *f)
{
	const struct nm_forward_cfg *fwd = f->lst->fwd;
	struct nm_agent *a = f->agent;
	const char *why = NULL;

	id_from_cfg(a, fwd->id_ns, fwd->id_sa, &f->local_id);
	if (nm_spiffe_parse(fwd->peer_identity, &f->expected_peer, &why)) {
		pr_warn("msg=\"bad peerIdentity\" forward=%s reason=\"%s\"",
			fwd->name, why ? why : "");
		flow_free(f, true, "refused");
		return;
	}
	f->has_expected = true;
	f->remote = true;
	f->dst = fwd->destination;
	f->backend = fwd->destination;
	f->connect_to = fwd->peer;
	if (flow_connect(f)) {
		flow_free(f, true, "refused");
		return;
	}
	flow_advance(f);
}

static void flow_start_inbound(struct nm_flow *f)
{
	int err;

	err = nm_loop_add(f->agent->loop, f->side[0].fd, 0, flow_on_event, f);
	if (!err)
		err = flow_start_tls(f, 0);
	if (err) {
		flow_free(f, true, "refused");
		return;
	}
	/* Not readable until epoll says so: the SSL object is made on the
	 * first bytes, and a connection that never sends costs only this
	 * flow record until the handshake deadline. */
	flow_advance(f);
}

/* A connection accepted on listener l: start its flow by the listener's
 * role. Takes ownership of fd. */
void nm_flow_reset_fd(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* Admission before any flow state exists: the flow count, and inbound the
 * peer address's count. 0, or -EBUSY (logged, counted). */
static int flow_admit(struct nm_agent *a, enum nm_flow_dir dir,
		      const struct sockaddr_storage *peer, struct nm_addr *ip)
{
	__be16 port;

	/* An agent whose main did not set limits gets the defaults. */
	if (!a->limits.max.max_flows)
		nm_limits_init(&a->limits, NULL);
	if (nm_limits_take_flow(&a->limits)) {
		limit_refused(a, NM_LIMIT_FLOWS, dir, peer, 0);
		return -EBUSY;
	}
	if (dir == NM_DIR_INBOUND) {
		nm_addr_from_sockaddr(peer, ip, &port);
		if (nm_limits_take_peer(&a->limits, ip)) {
			nm_limits_put_flow(&a->limits);
			limit_refused(a, NM_LIMIT_PEER, dir, peer, 0);
			return -EBUSY;
		}
	}
	return 0;
}

void nm_flow_accept(struct nm_listener *l, int fd,
		    const struct sockaddr_storage *peer)
{
	struct nm_agent *a = l->agent;
	enum nm_flow_dir dir = l->kind == NM_LST_OUTBOUND ||
					       l->kind == NM_LST_FWD_OUT ?
				       NM_DIR_OUTBOUND : NM_DIR_INBOUND;
	struct nm_addr ip = { 0 };
	struct nm_flow *f;

	/* Beyond a limit: reset at once, before any TLS or buffer. */
	if (flow_admit(a, dir, peer, &ip)) {
		nm_flow_reset_fd(fd);
		return;
	}
	set_nodelay(a, fd);
	if (a->paths.busy_poll.active)
		a->paths.busy_poll.flows++;
	f = flow_new(a, l, dir, fd);
	if (!f) {
		nm_limits_put_flow(&a->limits);
		if (dir == NM_DIR_INBOUND)
			nm_limits_put_peer(&a->limits, &ip);
		nm_flow_reset_fd(fd);
		return;
	}
	f->held_flow = true;
	f->held_peer = dir == NM_DIR_INBOUND;
	f->peer_ip = ip;
	f->src = *peer;
	/* Outbound, side 0 is the pod: should the agent die with the flow
	 * open, the kernel resets it rather than fake a clean end. */
	if (dir == NM_DIR_OUTBOUND)
		nm_side_arm_reset(&f->side[0]);
	switch (l->kind) {
	case NM_LST_OUTBOUND:
		/* side 0 is added to the loop once side 1 exists */
		if (nm_loop_add(a->loop, fd, 0, flow_on_event, f)) {
		flow_free(f, true, "refused");
		break;
		}
		flow_start_mesh_outbound(f);
		break;
	case NM_LST_FWD_OUT:
		if (nm_loop_add(a->loop, fd, 0, flow_on_event, f)) {
		flow_free(f, true, "refused");
		break;
		}
		flow_start_forward_outbound(f);
		break;
	case NM_LST_INBOUND:
	case NM_LST_FWD_IN:
		flow_start_inbound(f);
		break;
	}
}

/*
 * policy.applyToExisting: after a policy change, established flows this
 * agent is the destination for (inbound tunnels, same-node relays) are
 * checked again, and the ones the new set denies are reset.
 */
void nm_proxy_recheck(struct nm_agent *a)
{
	struct nm_flow *f, *next;
	unsigned int closed = 0;

	for (f = a->flows; f; f = next) {
		const struct nm_spiffe_id *peer;
		const struct nm_st_workload *dst;
		struct nm_policy_verdict v;
		struct nm_addr ip;

		next = f->next;
		if (f->phase != NM_PH_RELAY || f->lst->fwd ||
		    (f->dir == NM_DIR_OUTBOUND && f->remote))
			continue;
		peer = f->dir == NM_DIR_INBOUND ? &f->peer_id : &f->local_id;
		nm_addr_from_sockaddr(&f->connect_to, &ip, NULL);
		dst = nm_state_workload_by_addr(a->state, &ip);
		if (dst && nm_authz_check(&a->authz, a->state, dst, &f->connect_to,
					  peer, &f->src, &v, NULL, 0))
			continue;
		flow_free(f, true, "policy");
		closed++;
	}
	if (closed)
		pr_info("msg=\"policy change closed established flows\" closed=%u",
			closed);
}

void nm_proxy_close_all(struct nm_agent *a, bool reset)
{
	nm_pool_flush(&a->tpool, "agent stopping");
	while (a->flows)
		flow_free(a->flows, reset, "shutdown");
	nm_limits_free(&a->limits);
	nm_breakers_free(&a->breakers);
	nm_outlier_free(&a->outlier);
}

/* Is the attempt of f still making its upstream usable (its connect
 * timeout applies)? */
static bool attempt_in_progress(const struct nm_flow *f)
{
	if (!f->res.service_id)
		return false;
	if (f->phase == NM_PH_CONNECTING)
		return true;
	return f->dir == NM_DIR_OUTBOUND && (f->phase == NM_PH_HANDSHAKE ||
					     f->phase == NM_PH_AWAIT_STATUS);
}

/*
 * An idle relay (no byte either way for idleTimeoutMs) is reset on both
 * sides, as Envoy's TCP proxy ends it: a FIN would tell each application
 * its peer finished, which neither did.
 */
static void flow_idle_timeout(struct nm_flow *f, int64_t now)
{
	struct nm_agent *a = f->agent;
	struct nm_breaker_svc *b = nm_breaker_find(&a->breakers, f->res.service_id);
	char s1[64], n1[2 * NM_NAME_MAX + 2];

	a->stats.idle_timeouts++;
	if (b)
		b->idle_timeouts++;
	pr_info_ratelimited(&a->rl.timeout,
			    "msg=\"flow idle timeout, reset\" flow=%llu service=%s src=%s idle_ms=%lld idle_timeouts=%llu",
			    (unsigned long long)f->id,
			    svc_name(nm_route_service(a->state, f->res.service_id),
				     n1, sizeof(n1)),
			    nm_sockaddr_format(&f->src, s1, sizeof(s1)),
			    (long long)(now - f->res.last_io_ms),
			    (unsigned long long)a->stats.idle_timeouts);
	flow_free(f, true, "idle");
}

void nm_proxy_sweep(struct nm_agent *a)
{
	int64_t now = nm_loop_now_ms();
	struct nm_flow *f, *next;

	nm_outlier_expire(&a->outlier, now, res_on_return, a);
	nm_pool_expire(&a->tpool, now);
	for (f = a->flows; f; f = next) {
		next = f->next;
		if (f->zc && f->res.idle_timeout_ms)
			nm_zc_sync(f); /* bytes the kernel moved count as I/O */
		if (f->phase == NM_PH_RELAY && f->res.idle_timeout_ms &&
		    now - f->res.last_io_ms > f->res.idle_timeout_ms) {
			flow_idle_timeout(f, now);
			continue;
		}
		if (f->deadline_ms && now > f->deadline_ms &&
		    attempt_in_progress(f)) {
			/* The connect timeout: another endpoint, or the end. */
			if (!flow_res_attempt_failed(f, -ETIMEDOUT, true)) {
				flow_advance(f);
				continue;
			}
		}
		if (f->deadline_ms && now > f->deadline_ms &&
		    f->phase == NM_PH_PREAMBLE && nm_buf_empty(&f->buf[0])) {
			/* Handshaken, then silent: a pooled tunnel kept past
			 * the wait (the client agent retires them earlier). */
			pr_debug("msg=\"unused tunnel timed out\" flow=%llu",
				 (unsigned long long)f->id);
			flow_free(f, true, "timeout");
			continue;
		}
		if (f->deadline_ms && now > f->deadline_ms) {
			char s1[64];

			pr_warn_ratelimited(&a->rl.timeout,
					    "msg=\"flow timed out before relaying\" flow=%llu peer=%s phase=%d",
					    (unsigned long long)f->id,
					    nm_sockaddr_format(&f->src, s1, sizeof(s1)),
					    f->phase);
			flow_free(f, true, "timeout");
		}
	}
}
