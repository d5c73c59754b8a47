// SPDX-License-Identifier: Apache-2.0
/*
 * pool.c - the tunnel pool (pool.h): per key a short list of connections,
 * each CONNECTING -> HANDSHAKE -> IDLE on the agent's event loop, handed to
 * a flow from IDLE after a liveness check.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "mesh/ecmeth.h"
#include "mesh/pool.h"
#include "mesh/proxy.h"
#include "telemetry/hooks.h"

enum pool_conn_state {
	PC_CONNECTING,
	PC_HANDSHAKE,
	PC_IDLE,
};

struct nm_pool_conn {
	struct nm_pool *pool;
	struct nm_pool_bucket *b;
	enum pool_conn_state state;
	int fd;
	SSL *ssl;
	int64_t born_ms;          /* connect() started */
	bool held_handshake;      /* a maxHandshakes slot, while handshaking */
	struct nm_pool_conn *next;
};

struct nm_pool_bucket {
	struct nm_pool_key key;
	struct nm_pool_conn *conns;
	uint32_t n;               /* conns in the list, any state */
	int64_t used_ms;          /* last take (hit or miss) */
	bool want;                /* refill on the next timer */
	struct nm_pool_bucket *next;
};

/* ------------------------------------------------------------- pure */

bool nm_pool_key_equal(const struct nm_pool_key *a, const struct nm_pool_key *b)
{
	struct nm_addr aa, bb;
	__be16 pa, pb;

	nm_addr_from_sockaddr(&a->node, &aa, &pa);
	nm_addr_from_sockaddr(&b->node, &bb, &pb);
	return pa == pb && !memcmp(&aa, &bb, sizeof(aa)) &&
	       !strcmp(a->src.trust_domain, b->src.trust_domain) &&
	       !strcmp(a->src.ns, b->src.ns) && !strcmp(a->src.sa, b->src.sa) &&
	       !strcmp(a->peer.trust_domain, b->peer.trust_domain) &&
	       !strcmp(a->peer.ns, b->peer.ns) && !strcmp(a->peer.sa, b->peer.sa);
}

uint32_t nm_pool_room(const struct nm_pool_cfg *cfg, uint32_t have,
		      uint32_t total)
{
	uint32_t want, left;

	if (!cfg->size || have >= cfg->size || total >= cfg->max_total)
		return 0;
	want = cfg->size - have;
	left = cfg->max_total - total;
	return want < left ? want : left;
}

bool nm_pool_stale(const struct nm_pool_cfg *cfg, int64_t born_ms, int64_t now)
{
	return now - born_ms >= (int64_t)cfg->idle_ms;
}

/* ------------------------------------------------------- connections */

static void conn_on_event(struct nm_loop *loop, int fd, unsigned int events,
			  void *data);

/* Unlinks c from its bucket and frees it with its socket; graceful sends a
 * close_notify first (a live connection we retire: the peer agent then
 * sees a clean end, not an error). */
static void conn_free(struct nm_pool *p, struct nm_pool_conn *c, bool graceful)
{
	struct nm_agent *a = p->agent;
	struct nm_pool_conn **pp;

	for (pp = &c->b->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	c->b->n--;
	p->total--;
	if (c->state == PC_IDLE)
		p->idle--;
	if (c->held_handshake)
		nm_limits_put_handshake(&a->limits);
	nm_limits_put_flow(&a->limits);
	if (c->fd >= 0)
		nm_loop_del(a->loop, c->fd);
	if (c->ssl) {
		if (graceful) {
			ERR_clear_error();
			SSL_shutdown(c->ssl); /* non-blocking: best effort */
		}
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

/* Starts one connection for b; 0 or -errno (-EBUSY: a limit is full). */
static int conn_start(struct nm_pool *p, struct nm_pool_bucket *b)
{
	struct nm_agent *a = p->agent;
	const struct sockaddr_storage *to = &b->key.node;
	socklen_t len = to->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
						   sizeof(struct sockaddr_in6);
	struct nm_pool_conn *c;
	int one = 1, err;

	/* The pool never takes the last slots flows would need. */
	if (nm_limits_take_flow(&a->limits))
		return -EBUSY;
	if (nm_limits_take_handshake(&a->limits)) {
		nm_limits_put_flow(&a->limits);
		return -EBUSY;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		err = -ENOMEM;
		goto err_limits;
	}
	c->pool = p;
	c->b = b;
	c->held_handshake = true;
	c->born_ms = nm_loop_now_ms();
	c->fd = socket(to->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		err = -errno;
		goto err_free;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (const struct sockaddr *)to, len) && errno != EINPROGRESS) {
		err = -errno;
		goto err_close;
	}
	err = nm_loop_add(a->loop, c->fd, NM_EV_WRITE, conn_on_event, c);
	if (err)
		goto err_close;
	c->state = PC_CONNECTING;
	c->next = b->conns;
	b->conns = c;
	b->n++;
	p->total++;
	return 0;

err_close:
	close(c->fd);
err_free:
	free(c);
err_limits:
	nm_limits_put_handshake(&a->limits);
	nm_limits_put_flow(&a->limits);
	return err;
}

static void conn_failed(struct nm_pool *p, struct nm_pool_conn *c,
			const char *why)
{
	char s1[64];

	p->stats.warm_failed++;
	pr_debug("msg=\"tunnel pool: connection failed\" peer=%s reason=\"%s\"",
		 nm_sockaddr_format(&c->b->key.node, s1, sizeof(s1)), why);
	conn_free(p, c, false);
}

/* The handshake, as flow_step_handshake does it for a flow: the peer must
 * present exactly the expected identity. */
static void conn_handshake(struct nm_pool *p, struct nm_pool_conn *c)
{
	struct nm_agent *a = p->agent;
	struct nm_spiffe_id got;
	const char *why = NULL;
	char ebuf[160];
	uint64_t cpu_ns;
	int ret;

	ret = nm_tls_handshake_step(c->ssl, &cpu_ns);
	nm_tel_tls_handshake_cpu(a->tel, true, cpu_ns);
	if (ret <= 0) {
		switch (SSL_get_error(c->ssl, ret)) {
		case SSL_ERROR_WANT_READ:
			nm_loop_set_mask(a->loop, c->fd, NM_EV_READ);
			return;
		case SSL_ERROR_WANT_WRITE:
			nm_loop_set_mask(a->loop, c->fd, NM_EV_WRITE);
			return;
		default:
			why = nm_tls_refusal(c->ssl);
			nm_tel_tls_handshake(a->tel, true, false, false);
			conn_failed(p, c, why ? why : nm_ssl_error_string(ebuf, sizeof(ebuf)));
			return;
		}
	}
	if (nm_tls_check_peer(c->ssl, &c->b->key.peer, &got, &why)) {
		nm_tel_tls_handshake(a->tel, true, false, false);
		conn_failed(p, c, why ? why : "peer identity refused");
		return;
	}
	nm_tel_tls_handshake(a->tel, true, true, SSL_session_reused(c->ssl));
	nm_ecmeth_count(&a->paths.ec_builtin, c->ssl);
	nm_limits_put_handshake(&a->limits);
	c->held_handshake = false;
	c->state = PC_IDLE;
	p->idle++;
	p->stats.warmed++;
	/* Readable from now on means a session ticket (consumed), a
	 * close_notify, a FIN or a reset: conn_alive() tells which. */
	nm_loop_set_mask(a->loop, c->fd, NM_EV_READ);
}

/*
 * An idle connection is alive when reading from it would block: the peer
 * agent sends nothing before our preamble except TLS 1.3 session tickets,
 * which SSL_read consumes (and the session cache keeps). close_notify, EOF,
 * a reset or any application byte means it cannot carry a flow.
 */
static bool conn_alive(struct nm_pool_conn *c)
{
	uint8_t byte;
	int ret;

	ERR_clear_error();
	ret = SSL_read(c->ssl, &byte, 1);
	if (ret > 0)
		return false;
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return true;
	default:
		return false;
	}
}

static void conn_on_event(struct nm_loop *loop, int fd, unsigned int events,
			  void *data)
{
	struct nm_pool_conn *c = data;
	struct nm_pool *p = c->pool;
	int soerr = 0, err;
	socklen_t len = sizeof(soerr);
	char node[64];

	(void)loop;
	(void)fd;
	(void)events;
	switch (c->state) {
	case PC_CONNECTING:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len))
			soerr = errno;
		if (soerr == EINPROGRESS || soerr == EALREADY)
			return;
		if (soerr) {
			conn_failed(p, c, strerror(soerr));
			return;
		}
		/* The destination node keys the session cache, as for a
		 * flow (flow_tls_new): the refill is a resumed handshake. */
		nm_sockaddr_format(&c->b->key.node, node, sizeof(node));
		err = !p->agent->tls ? -ENOENT : nm_tls_client_new(p->agent->tls, c->b->key.src.ns,
					c->b->key.src.sa, &c->b->key.peer, node,
					c->fd, &c->ssl);
		if (err) {
			conn_failed(p, c, strerror(-err));
			return;
		}
		/* As a flow's own tunnel: kTLS or the tuned OpenSSL path. */
		err = nm_ssl_tune(c->ssl, c->fd, &p->agent->paths);
		if (err < 0) {
			conn_failed(p, c, strerror(-err));
			return;
		}
		c->state = PC_HANDSHAKE;
		/* fall through */
	case PC_HANDSHAKE:
		conn_handshake(p, c);
		return;
	case PC_IDLE:
		if (!conn_alive(c)) {
			p->stats.discards++;
			conn_free(p, c, false);
		}
		return;
	}
}

/* ----------------------------------------------------------- buckets */

static struct nm_pool_bucket *bucket_find(struct nm_pool *p,
					  const struct nm_pool_key *k)
{
	for (struct nm_pool_bucket *b = p->buckets; b; b = b->next)
		if (nm_pool_key_equal(&b->key, k))
			return b;
	return NULL;
}

static void bucket_free(struct nm_pool *p, struct nm_pool_bucket *b)
{
	struct nm_pool_bucket **pp;

	while (b->conns)
		conn_free(p, b->conns, b->conns->state == PC_IDLE);
	for (pp = &p->buckets; *pp; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	free(b);
}

static int64_t refill_timer(struct nm_loop *loop, uint64_t id, void *data)
{
	struct nm_pool *p = data;

	(void)loop;
	(void)id;
	p->refill_timer = 0;
	for (struct nm_pool_bucket *b = p->buckets; b; b = b->next) {
		uint32_t n;

		if (!b->want)
			continue;
		b->want = false;
		n = nm_pool_room(&p->cfg, b->n, p->total);
		while (n--)
			if (conn_start(p, b))
				break; /* a limit or the descriptors: next take */
	}
	return NM_TIMER_STOP;
}

/* Marks b for a refill on a 0 ms timer: after the current events, so the
 * flow that asked goes first. */
static void bucket_want(struct nm_pool *p, struct nm_pool_bucket *b)
{
	b->want = true;
	if (!p->refill_timer)
		p->refill_timer = nm_loop_add_timer(p->agent->loop, 0,
						    refill_timer, p);
}

/* ------------------------------------------------------------ public */

int nm_pool_take(struct nm_pool *p, const struct nm_pool_key *k, int *fd,
		 SSL **ssl)
{
	int64_t now = nm_loop_now_ms();
	struct nm_pool_bucket *b;
	struct nm_pool_conn *c, *next;

	if (!p->cfg.size || !p->agent)
		return -ENOENT;
	b = bucket_find(p, k);
	if (!b) {
		/* Warmed once the flow's own tunnel is up (nm_pool_warm). */
		p->stats.misses++;
		return -ENOENT;
	}
	/* The refill waits for the flow's status (nm_pool_warm): on a
	 * shared CPU it would otherwise compete with this very flow. */
	b->used_ms = now;
	for (c = b->conns; c; c = next) {
		next = c->next;
		if (c->state != PC_IDLE)
			continue;
		if (nm_pool_stale(&p->cfg, c->born_ms, now)) {
			p->stats.retired++;
			conn_free(p, c, true);
			continue;
		}
		if (!conn_alive(c)) {
			p->stats.discards++;
			conn_free(p, c, false);
			continue;
		}
		/* Hand over: the flow holds its own slots from here on. */
		nm_loop_del(p->agent->loop, c->fd);
		*fd = c->fd;
		*ssl = c->ssl;
		c->fd = -1;
		c->ssl = NULL;
		conn_free(p, c, false);
		p->stats.hits++;
		p->agent->paths.tunnel_pool.flows++;
		return 0;
	}
	p->stats.misses++;
	return -ENOENT;
}

void nm_pool_warm(struct nm_pool *p, const struct nm_pool_key *k)
{
	struct nm_pool_bucket *b;

	if (!p->cfg.size || !p->agent)
		return;
	b = bucket_find(p, k);
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return;
		b->key = *k;
		b->next = p->buckets;
		p->buckets = b;
	}
	b->used_ms = nm_loop_now_ms();
	bucket_want(p, b);
}

void nm_pool_expire(struct nm_pool *p, int64_t now)
{
	struct nm_pool_bucket *b, *bnext;
	struct nm_pool_conn *c, *next;

	for (b = p->buckets; b; b = bnext) {
		bnext = b->next;
		for (c = b->conns; c; c = next) {
			next = c->next;
			if (c->state == PC_IDLE &&
			    nm_pool_stale(&p->cfg, c->born_ms, now)) {
				p->stats.retired++;
				conn_free(p, c, true);
			} else if (c->state != PC_IDLE &&
				   now - c->born_ms > NM_HANDSHAKE_TIMEOUT_MS) {
				conn_failed(p, c, "handshake timed out");
			}
		}
		/* Nobody asked for idleTimeoutMs: not refilled, forgotten. */
		if (!b->n && now - b->used_ms >= (int64_t)p->cfg.idle_ms)
			bucket_free(p, b);
	}
}

void nm_pool_flush(struct nm_pool *p, const char *why)
{
	uint32_t n = p->total;

	while (p->buckets)
		bucket_free(p, p->buckets);
	p->stats.flushed += n;
	if (p->agent && p->refill_timer)
		nm_loop_del_timer(p->agent->loop, p->refill_timer);
	p->refill_timer = 0;
	if (n)
		pr_debug("msg=\"tunnel pool flushed\" reason=\"%s\" connections=%u",
			 why, n);
}

/* Is node a tunnel address of s: a node's inbound listener or a forward's
 * peer? */
static bool node_known(const struct nm_state *s, const struct sockaddr_storage *node)
{
	const struct nm_cluster *c = s->cluster;
	__be16 port = htons(c->mesh.inbound_port), np;
	struct nm_addr ip;

	nm_addr_from_sockaddr(node, &ip, &np);
	for (unsigned int i = 0; i < c->n_forwards; i++) {
		struct nm_addr fip;
		__be16 fp;

		nm_addr_from_sockaddr(&c->forwards[i].peer, &fip, &fp);
		if (fp == np && !memcmp(&fip, &ip, sizeof(ip)))
			return true;
	}
	if (np != port)
		return false;
	for (unsigned int i = 0; i < s->n_nodes; i++) {
		const struct nm_node *n = s->nodes[i].cfg;

		if (!memcmp(&n->addr, &ip, sizeof(ip)) ||
		    (n->has_addr6 && !memcmp(&n->addr6, &ip, sizeof(ip))))
			return true;
	}
	return false;
}

void nm_pool_prune(struct nm_pool *p, const struct nm_state *s)
{
	struct nm_pool_bucket *b, *next;

	for (b = p->buckets; b; b = next) {
		next = b->next;
		if (node_known(s, &b->key.node))
			continue;
		p->stats.flushed += b->n;
		bucket_free(p, b);
	}
}

void nm_pool_configure(struct nm_pool *p, struct nm_agent *a,
		       const struct nm_pool_cfg *cfg)
{
	p->agent = a;
	p->cfg = *cfg;
	if (!p->cfg.max_total)
		p->cfg.max_total = NM_POOL_DEFAULT_MAX_TOTAL;
	if (!p->cfg.idle_ms)
		p->cfg.idle_ms = NM_POOL_DEFAULT_IDLE_MS;
	if (!p->cfg.size)
		nm_pool_flush(p, "mesh.tunnelPool.size is 0");
	nm_pool_report(p);
}

void nm_pool_report(const struct nm_pool *p)
{
	struct nm_path_state *st = &p->agent->paths.tunnel_pool;
	char mode[32];

	if (!p->cfg.size) {
		nm_path_set(st, false, "off", "mesh.tunnelPool.size is 0");
		return;
	}
	snprintf(mode, sizeof(mode), "%u per key", p->cfg.size);
	nm_path_set(st, true, mode, "");
}
