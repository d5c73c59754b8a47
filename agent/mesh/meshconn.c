// SPDX-License-Identifier: Apache-2.0
/*
 * meshconn.c - the agent's connections to STRICT pods in nm_mesh_conns
 * (meshconn.h).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>

#include "datapath/datapath.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "mesh/meshconn.h"
#include "mesh/proxy.h"
#include "state/state.h"

static socklen_t sa_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
					  sizeof(struct sockaddr_in6);
}

/*
 * The source address the kernel picks for `to`: a UDP connect() does the
 * route lookup and sends nothing.
 */
static int route_source(const struct sockaddr_storage *to,
			struct sockaddr_storage *src)
{
	socklen_t len = sizeof(*src);
	int fd, ret = 0;

	fd = socket(to->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)to, sa_len(to)) ||
	    getsockname(fd, (struct sockaddr *)src, &len))
		ret = -errno;
	close(fd);
	return ret;
}

static int bound_tuple(int fd, const struct sockaddr_storage *to,
		       struct nm_conn_key *key)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	struct nm_addr a;
	__be16 port;
	int one = 1;

	if (getsockname(fd, (struct sockaddr *)&local, &len))
		return -errno;
	nm_addr_from_sockaddr(&local, &a, &port);
	if (port == 0) {
		int ret = route_source(to, &local);

		if (ret)
			return ret;
		if (local.ss_family == AF_INET)
			((struct sockaddr_in *)&local)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&local)->sin6_port = 0;
		/* bind() to port 0 would refuse ports in TIME_WAIT, which
		 * connect() reuses: without this, churn to a STRICT pod ran
		 * out of ports after the first ~28k connections a minute. */
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&local, sa_len(&local)))
			return -errno;
		len = sizeof(local);
		if (getsockname(fd, (struct sockaddr *)&local, &len))
			return -errno;
		nm_addr_from_sockaddr(&local, &a, &port);
	}
	memset(key, 0, sizeof(*key));
	key->saddr = a;
	key->sport = port;
	nm_addr_from_sockaddr(to, &key->daddr, &key->dport);
	return 0;
}

int nm_meshconn_register(struct nm_agent *a, int fd,
			 const struct sockaddr_storage *to,
			 struct nm_meshconn *mc)
{
	const struct nm_st_workload *w;
	struct nm_addr dst;
	__be16 port;
	int ret;

	mc->active = false;
	if (!a->dp || !a->state)
		return 0;
	nm_addr_from_sockaddr(to, &dst, &port);
	w = nm_state_workload_by_addr(a->state, &dst);
	/* Only a STRICT pod of this node checks: PERMISSIVE ones cost
	 * nothing. A pod turned STRICT by a reload while this connect is in
	 * flight may drop its SYN retry; the client's connect then times out
	 * once (docs/strict.md). */
	if (!w || !w->local || !w->strict || !w->cgroup_id)
		return 0;
	ret = bound_tuple(fd, to, &mc->key);
	if (!ret)
		ret = nm_datapath_mesh_conn_add(a->dp, &mc->key, w->id);
	if (ret) {
		char s[64];

		pr_warn_ratelimited(&a->rl.connect,
				    "msg=\"cannot register a strict-mode connection\" to=%s err=\"%s\"",
				    nm_sockaddr_format(to, s, sizeof(s)),
				    strerror(-ret));
		return ret;
	}
	mc->active = true;
	return 0;
}

void nm_meshconn_unregister(struct nm_agent *a, struct nm_meshconn *mc)
{
	if (!mc->active)
		return;
	mc->active = false;
	/* A failure leaves the tuple to the LRU; nothing else to do. */
	nm_datapath_mesh_conn_del(a->dp, &mc->key);
}
