// SPDX-License-Identifier: Apache-2.0
/*
 * listener.c - the agent's listening sockets (outbound 15001, inbound 15008,
 * static forwards): open, accept, hand each connection to its flow.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "mesh/proxy.h"
#include "lib/log.h"
#include "mesh/flow.h"
#include "state/state.h"

/* ------------------------------------------------------------- overload */

#define NM_ACCEPT_BACKOFF_MIN_MS 250
#define NM_ACCEPT_BACKOFF_MAX_MS 1000
#define NM_ACCEPT_SHED_MAX 256

static void listener_on_event(struct nm_loop *loop, int lfd,
			      unsigned int events, void *data);

/* The reserve descriptor: while it is held, one accept() can always be
 * made to take a pending connection off the queue and reset it. */
static void spare_fd_open(struct nm_agent *a)
{
	int fd;

	if (a->has_spare_fd)
		return;
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	a->spare_fd = fd;
	a->has_spare_fd = true;
}

static void spare_fd_close(struct nm_agent *a)
{
	if (!a->has_spare_fd)
		return;
	close(a->spare_fd);
	a->has_spare_fd = false;
}

/* Out of descriptors: give the spare back, take the pending connections
 * off the queue and reset them (their clients fail at once instead of
 * hanging on a queue nobody serves), then hold the spare again. */
static void listener_shed(struct nm_listener *l)
{
	struct nm_agent *a = l->agent;

	if (!a->has_spare_fd)
		return;
	spare_fd_close(a);
	for (int n = 0; n < NM_ACCEPT_SHED_MAX; n++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			break;
		nm_flow_reset_fd(fd);
		l->shed++;
		a->stats.accept_shed++;
	}
	spare_fd_open(a);
}

static void listener_resume(struct nm_listener *l)
{
	l->paused_until = 0;
	if (l->agent->listeners_paused)
		l->agent->listeners_paused--;
	nm_loop_set_mask(l->agent->loop, l->fd, NM_EV_READ);
}

/* A flow ended: listeners paused for want of descriptors try again at
 * once instead of waiting out their timer (the timer stays as the retry
 * for memory shortages and when no flow ends). */
void nm_proxy_fds_freed(struct nm_agent *a)
{
	unsigned int still = 0;

	for (struct nm_listener *l = a->listeners; l; l = l->next) {
		if (!l->paused_until)
			continue;
		if (l->last_errno == EMFILE || l->last_errno == ENFILE)
			listener_resume(l);
		else
			still++;
	}
	/* Recounted: a listener closed while paused is not waited for. */
	a->listeners_paused = still;
}

/* Resumes the listeners whose pause is over; runs again for the others. */
static int64_t listener_on_resume(struct nm_loop *loop, uint64_t id,
				  void *data)
{
	struct nm_agent *a = data;
	int64_t now = nm_loop_now_ms(), next = 0;

	for (struct nm_listener *l = a->listeners; l; l = l->next) {
		if (!l->paused_until)
			continue;
		if (l->paused_until <= now) {
			listener_resume(l);
			continue;
		}
		if (!next || l->paused_until - now < next)
			next = l->paused_until - now;
	}
	if (next)
		return next;
	a->accept_timer = 0;
	return NM_TIMER_STOP;
}

/*
 * accept() failed for want of descriptors or memory. A level-triggered
 * listener would fire again at once and spin: stop polling it and retry
 * on a timer (250 ms, doubling to 1 s while it keeps failing), with one
 * log line per pause rather than one per failure.
 */
static void listener_pause(struct nm_listener *l, int err)
{
	struct nm_agent *a = l->agent;
	char s1[64];

	a->stats.accept_errors++;
	l->failed++;
	l->last_errno = err;
	if (err == EMFILE || err == ENFILE)
		listener_shed(l);
	l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 :
					NM_ACCEPT_BACKOFF_MIN_MS;
	if (l->backoff_ms > NM_ACCEPT_BACKOFF_MAX_MS)
		l->backoff_ms = NM_ACCEPT_BACKOFF_MAX_MS;
	if (!l->paused_until)
		a->listeners_paused++;
	l->paused_until = nm_loop_now_ms() + l->backoff_ms;
	nm_loop_set_mask(a->loop, l->fd, 0);
	if (!a->accept_timer)
		a->accept_timer = nm_loop_add_timer(a->loop, l->backoff_ms,
						    listener_on_resume, a);
	if (!a->accept_timer) {
		/* No timer, no pause: keep polling rather than go deaf. */
		listener_resume(l);
	}
	/* Flows ending resume the listener early, so pauses can come faster
	 * than the backoff: at most one line a second, with the counts since
	 * the last one. */
	if (!a->rl.accept_pause.interval_ms) {
		a->rl.accept_pause.interval_ms = 1000;
		a->rl.accept_pause.burst = 1;
	}
	if (!nm_ratelimit_check(&a->rl.accept_pause, nm_log_now_ms(), NULL))
		return;
	pr_warn("msg=\"accept failed, pausing listener\" addr=%s err=\"%s\" failures=%llu shed=%llu retry_ms=%lld",
		nm_sockaddr_format(&l->addr, s1, sizeof(s1)), strerror(err),
		(unsigned long long)l->failed, (unsigned long long)l->shed,
		(long long)l->backoff_ms);
	l->failed = 0;
	l->shed = 0;
}

static void listener_on_event(struct nm_loop *loop, int lfd,
			      unsigned int events, void *data)
{
	struct nm_listener *l = data;

	for (int n = 0; n < 64; n++) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd;

		fd = accept4(lfd, (struct sockaddr *)&peer, &len,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int err = errno;

			if (err == ECONNABORTED || err == EPROTO)
				continue;
			if (err == EMFILE || err == ENFILE || err == ENOMEM ||
			    err == ENOBUFS) {
				listener_pause(l, err);
				return;
			}
			if (err != EAGAIN && err != EINTR)
				pr_warn_ratelimited(&l->agent->rl.accept,
						    "msg=\"accept failed\" err=\"%s\"",
						    strerror(err));
			return;
		}
		if (l->backoff_ms) {
			char s1[64];

			pr_info("msg=\"accepting again\" addr=%s",
				nm_sockaddr_format(&l->addr, s1, sizeof(s1)));
			l->backoff_ms = 0;
		}
		nm_flow_accept(l, fd, &peer);
	}
}

/* ------------------------------------------------------------ listeners */

static int listener_open(struct nm_agent *a, enum nm_listener_kind kind,
			 const struct sockaddr_storage *addr,
			 const struct nm_forward_cfg *fwd)
{
	socklen_t len = addr->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
						     sizeof(struct sockaddr_in6);
	struct nm_listener *l;
	char s1[64];
	int one = 1, err, fd;

	fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)addr, len) || listen(fd, 4096)) {
		err = -errno;
		pr_warn("msg=\"cannot listen\" addr=%s err=\"%s\"",
			nm_sockaddr_format(addr, s1, sizeof(s1)), strerror(-err));
		goto err_close;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		err = -ENOMEM;
		goto err_close;
	}
	*l = (struct nm_listener){ .agent = a, .kind = kind, .fd = fd,
				   .addr = *addr, .fwd = fwd,
				   .next = a->listeners };
	err = nm_loop_add(a->loop, fd, NM_EV_READ, listener_on_event, l);
	if (err) {
		free(l);
		goto err_close;
	}
	a->listeners = l;
	spare_fd_open(a);
	pr_info("msg=\"listening\" role=%s addr=%s%s%s",
		kind == NM_LST_OUTBOUND ? "outbound" :
		kind == NM_LST_INBOUND ? "inbound" :
		kind == NM_LST_FWD_OUT ? "forward-outbound" : "forward-inbound",
		nm_sockaddr_format(addr, s1, sizeof(s1)), fwd ? " forward=" : "",
		fwd ? fwd->name : "");
	return 0;

err_close:
	close(fd);
	return err;
}

static bool listener_has(const struct nm_agent *a, enum nm_listener_kind kind,
			 const struct sockaddr_storage *ss)
{
	for (const struct nm_listener *l = a->listeners; l; l = l->next)
		if (l->kind == kind && !memcmp(&l->addr, ss, sizeof(*ss)))
			return true;
	return false;
}

static int listen_once(struct nm_agent *a, enum nm_listener_kind kind,
		       const struct nm_addr *ip, uint16_t port)
{
	struct sockaddr_storage ss;

	nm_addr_to_sockaddr(ip, htons(port), &ss);
	if (listener_has(a, kind, &ss))
		return 0;
	return listener_open(a, kind, &ss, NULL);
}

static uint16_t listener_port(const struct nm_listener *l)
{
	__be16 port;
	struct nm_addr ip;

	nm_addr_from_sockaddr(&l->addr, &ip, &port);
	return ntohs(port);
}

int nm_proxy_listen_mesh(struct nm_agent *a, const struct nm_state *s)
{
	const struct nm_mesh_cfg *mc = &s->cluster->mesh;
	const struct nm_node *n;
	int err;

	if (!s->self)
		return 0;
	n = s->self->cfg;
	if (a->dp) {
		err = listen_once(a, NM_LST_OUTBOUND, &n->addr, mc->outbound_port);
		if (!err && n->has_addr6)
			err = listen_once(a, NM_LST_OUTBOUND, &n->addr6,
					  mc->outbound_port);
		if (err)
			return err;
	}
	return listen_once(a, NM_LST_INBOUND, &n->addr, mc->inbound_port);
}

void nm_proxy_close_stale_mesh(struct nm_agent *a, const struct nm_state *s)
{
	const struct nm_mesh_cfg *mc = &s->cluster->mesh;
	struct nm_listener **pp = &a->listeners, *l;

	while ((l = *pp)) {
		bool stale = (l->kind == NM_LST_OUTBOUND &&
			      listener_port(l) != mc->outbound_port) ||
			     (l->kind == NM_LST_INBOUND &&
			      listener_port(l) != mc->inbound_port);

		if (!stale) {
			pp = &l->next;
			continue;
		}
		*pp = l->next;
		nm_loop_del(a->loop, l->fd);
		close(l->fd);
		free(l);
	}
}

int nm_proxy_listen(struct nm_agent *a)
{
	const struct nm_cluster *c = a->cluster;
	int err;

	err = nm_proxy_listen_mesh(a, a->state);
	if (err)
		return err;
	for (unsigned int i = 0; i < c->n_forwards; i++) {
		const struct nm_forward_cfg *fwd = &c->forwards[i];

		err = listener_open(a, fwd->mode == NM_FWD_OUTBOUND ?
				       NM_LST_FWD_OUT : NM_LST_FWD_IN,
				    &fwd->listen, fwd);
		if (err)
			return err;
	}
	return 0;
}

void nm_proxy_stop_listening(struct nm_agent *a)
{
	struct nm_listener *l, *next;

	for (l = a->listeners; l; l = next) {
		next = l->next;
		nm_loop_del(a->loop, l->fd);
		close(l->fd);
		free(l);
	}
	a->listeners = NULL;
	a->listeners_paused = 0;
	if (a->accept_timer) {
		nm_loop_del_timer(a->loop, a->accept_timer);
		a->accept_timer = 0;
	}
	spare_fd_close(a);
}
