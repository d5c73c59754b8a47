// SPDX-License-Identifier: Apache-2.0
/*
 * listener.c - the agent's listening sockets (outbound 15001, inbound 15008,
 * static forwards): open, accept, hand each connection to its flow.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/agent.h"
#include "lib/log.h"
#include "mesh/flow.h"

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
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				pr_warn("msg=\"accept failed\" err=\"%s\"",
					strerror(errno));
			return;
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

int nm_proxy_listen(struct nm_agent *a)
{
	const struct nm_cluster *c = a->cluster;
	struct sockaddr_storage ss;
	int err;

	if (a->node >= 0) {
		const struct nm_node *n = &c->nodes[a->node];

		if (a->dp) {
			nm_addr_to_sockaddr(&n->addr,
					    htons(c->mesh.outbound_port), &ss);
			err = listener_open(a, NM_LST_OUTBOUND, &ss, NULL);
			if (err)
				return err;
			if (n->has_addr6) {
				nm_addr_to_sockaddr(&n->addr6,
						    htons(c->mesh.outbound_port), &ss);
				err = listener_open(a, NM_LST_OUTBOUND, &ss, NULL);
				if (err)
					return err;
			}
		}
		nm_addr_to_sockaddr(&n->addr,
				    htons(c->mesh.inbound_port), &ss);
		err = listener_open(a, NM_LST_INBOUND, &ss, NULL);
		if (err)
			return err;
	}
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
}
