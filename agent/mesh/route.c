// SPDX-License-Identifier: Apache-2.0
/*
 * route.c - outbound record checks and inbound destination checks (route.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/addr.h"
#include "mesh/route.h"

void nm_route_identity(const struct nm_state *s, const char *ns,
		       const char *sa, struct nm_spiffe_id *id)
{
	memset(id, 0, sizeof(*id));
	snprintf(id->trust_domain, sizeof(id->trust_domain), "%s",
		 nm_state_trust_domain(s));
	snprintf(id->ns, sizeof(id->ns), "%s", ns);
	snprintf(id->sa, sizeof(id->sa), "%s", sa);
}

static bool identity_of(const struct nm_state *s, uint32_t identity_id,
			struct nm_spiffe_id *id)
{
	const struct nm_st_identity *ident = nm_state_identity_by_id(s, identity_id);

	if (!ident)
		return false;
	nm_route_identity(s, ident->ns, ident->sa, id);
	return true;
}

static bool workload_has_addr(const struct nm_st_workload *w,
			      const struct nm_addr *a)
{
	return !memcmp(&w->cfg->ip, a, sizeof(*a)) ||
	       (w->cfg->has_ip6 && !memcmp(&w->cfg->ip6, a, sizeof(*a)));
}

static int refuse(const char **why, const char *reason)
{
	if (why)
		*why = reason;
	return -EACCES;
}

int nm_route_outbound(const struct nm_state *s, uint32_t first_gen,
		      const struct nm_orig *rec,
		      const struct sockaddr_storage *peer, uint64_t now_ns,
		      struct nm_route_out *out, const char **why)
{
	const struct nm_st_workload *src, *dst;
	struct nm_addr peer_ip;

	memset(out, 0, sizeof(*out));
	/* Generations count up within one agent run; a record outside
	 * [first_gen, current] was written for another run's IDs. */
	if (rec->generation < first_gen || rec->generation > s->generation)
		return refuse(why, "record generation unknown to this agent");
	if (rec->stamp_ns > now_ns || now_ns - rec->stamp_ns > NM_ORIG_MAX_AGE_NS)
		return refuse(why, "record too old");
	src = nm_state_workload_by_id(s, rec->src_workload_id);
	if (!src || !src->local || src->identity_id != rec->src_identity_id)
		return refuse(why, "record names no local source workload");
	nm_addr_from_sockaddr(peer, &peer_ip, NULL);
	if (!workload_has_addr(src, &peer_ip))
		return refuse(why, "connection does not come from the source workload's address");
	if (!identity_of(s, src->identity_id, &out->local_id))
		return refuse(why, "source identity unknown");
	out->src_workload = src->id;

	dst = nm_state_workload_by_addr(s, &rec->backend);
	if (!dst || dst->id != rec->dst_workload_id ||
	    dst->identity_id != rec->dst_identity_id)
		return refuse(why, "record's backend does not match the state");
	nm_addr_to_sockaddr(&rec->orig_dst, rec->orig_port, &out->dst);
	nm_addr_to_sockaddr(&rec->backend, rec->backend_port, &out->backend);
	/* Where the backend runs comes from the state, not the record's
	 * flag: the state is what the agent vouches for. */
	if (dst->local) {
		out->connect_to = out->backend;
		return 0;
	}
	if (!identity_of(s, dst->identity_id, &out->peer_id))
		return refuse(why, "backend identity unknown");
	nm_addr_to_sockaddr(&dst->node->cfg->addr,
			    htons(s->cluster->mesh.inbound_port), &out->connect_to);
	out->remote = true;
	return 0;
}

static bool id_equal(const struct nm_spiffe_id *x, const struct nm_spiffe_id *y)
{
	return !strcmp(x->trust_domain, y->trust_domain) &&
	       !strcmp(x->ns, y->ns) && !strcmp(x->sa, y->sa);
}

int nm_route_inbound(const struct nm_state *s,
		     const struct sockaddr_storage *dst,
		     const struct nm_spiffe_id *asked,
		     const struct nm_st_workload **wl,
		     struct nm_spiffe_id *local_id)
{
	const struct nm_st_workload *w;
	struct nm_addr a;

	nm_addr_from_sockaddr(dst, &a, NULL);
	w = nm_state_workload_by_addr(s, &a);
	if (!w || !w->local)
		return -ENOENT;
	nm_route_identity(s, w->cfg->ns, w->cfg->sa, local_id);
	/* The client asked (by SNI) for one identity's certificate; it must
	 * be the identity of the pod it wants to reach. */
	if (asked && asked->trust_domain[0] && !id_equal(asked, local_id))
		return -EACCES;
	*wl = w;
	return 0;
}
