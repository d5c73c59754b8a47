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

int nm_route_check_src(const struct nm_state *s,
		       const struct sockaddr_storage *src,
		       const struct nm_spiffe_id *peer, const char **why)
{
	const struct nm_st_workload *w;
	struct nm_spiffe_id owner;
	struct nm_addr a;

	if (src->ss_family != AF_INET && src->ss_family != AF_INET6)
		return refuse(why, "SRC is not an IPv4 or IPv6 address");
	nm_addr_from_sockaddr(src, &a, NULL);
	w = nm_state_workload_by_addr(s, &a);
	if (!w)
		return refuse(why, "SRC is no workload's address");
	if (!peer->trust_domain[0])
		return refuse(why, "SRC from a peer without an identity");
	nm_route_identity(s, w->cfg->ns, w->cfg->sa, &owner);
	if (!id_equal(&owner, peer))
		return refuse(why, "SRC belongs to a workload of another identity");
	return 0;
}

/* ------------------------------------------------------------- retries */

const struct nm_st_service *nm_route_service(const struct nm_state *s,
					     uint32_t service_id)
{
	/* Services are few next to flows' bytes; a retry is rare. */
	for (unsigned int i = 0; service_id && i < s->n_services; i++)
		if (s->services[i].id == service_id)
			return &s->services[i];
	return NULL;
}

/* The port map of svc for VIP port port_host, or NULL. */
static const struct nm_port_map *port_map(const struct nm_service_cfg *sc,
					  uint16_t port_host)
{
	for (unsigned int i = 0; i < sc->n_ports; i++)
		if (sc->ports[i].port == port_host)
			return &sc->ports[i];
	return NULL;
}

/*
 * Walks svc's endpoints for dst as build_vip_port() in datapath/model.c
 * lays them out; calls visit for each one skip keeps. Returns the number of
 * endpoints (kept or not); *kept how many were visited.
 */
typedef bool (*visit_fn)(const struct nm_st_workload *w,
			 const struct nm_addr *addr, uint16_t port_be,
			 void *arg);

static unsigned int walk_endpoints(const struct nm_state *s,
				   const struct nm_st_service *svc,
				   const struct sockaddr_storage *dst,
				   nm_route_skip_fn skip, void *skip_arg,
				   visit_fn visit, void *arg,
				   unsigned int *kept)
{
	const struct nm_service_cfg *sc = svc->cfg;
	const struct nm_port_map *pm;
	struct nm_addr vip;
	__be16 vport;
	unsigned int n = 0;
	uint16_t port_be;
	bool v6;

	*kept = 0;
	nm_addr_from_sockaddr(dst, &vip, &vport);
	pm = port_map(sc, ntohs(vport));
	if (!pm || !sc->n_selector)
		return 0;
	port_be = htons(pm->target_port ? pm->target_port : pm->port);
	v6 = !nm_addr_is_v4(&vip);
	for (unsigned int i = 0; i < s->n_workloads; i++) {
		const struct nm_st_workload *w = &s->workloads[i];
		const struct nm_addr *a;

		if (!nm_service_selects(sc, w->cfg))
			continue;
		n++;
		a = v6 && w->cfg->has_ip6 ? &w->cfg->ip6 : &w->cfg->ip;
		if (skip && skip(a, port_be, skip_arg))
			continue;
		(*kept)++;
		if (visit && visit(w, a, port_be, arg))
			break;
	}
	return n;
}

unsigned int nm_route_endpoints(const struct nm_state *s,
				const struct nm_st_service *svc,
				const struct sockaddr_storage *dst,
				nm_route_skip_fn skip, void *arg,
				unsigned int *left)
{
	unsigned int kept, n;

	n = walk_endpoints(s, svc, dst, skip, arg, NULL, NULL, &kept);
	if (left)
		*left = kept;
	return n;
}

struct pick_ctx {
	uint32_t target;
	uint32_t seen;
	const struct nm_st_workload *w;
	struct nm_addr addr;
	uint16_t port_be;
};

static bool pick_visit(const struct nm_st_workload *w,
		       const struct nm_addr *addr, uint16_t port_be, void *arg)
{
	struct pick_ctx *c = arg;

	if (c->seen++ != c->target)
		return false;
	c->w = w;
	c->addr = *addr;
	c->port_be = port_be;
	return true;
}

int nm_route_alternate(const struct nm_state *s,
		       const struct nm_st_service *svc,
		       const struct sockaddr_storage *dst,
		       nm_route_skip_fn skip, void *arg, uint32_t pick,
		       struct nm_route_out *out)
{
	struct pick_ctx c = { 0 };
	unsigned int left;

	nm_route_endpoints(s, svc, dst, skip, arg, &left);
	if (!left)
		return -ENOENT;
	c.target = pick % left;
	walk_endpoints(s, svc, dst, skip, arg, pick_visit, &c, &left);
	if (!c.w)
		return -ENOENT;
	nm_addr_to_sockaddr(&c.addr, c.port_be, &out->backend);
	memset(&out->peer_id, 0, sizeof(out->peer_id));
	if (c.w->local) {
		out->connect_to = out->backend;
		out->remote = false;
		return 0;
	}
	if (!identity_of(s, c.w->identity_id, &out->peer_id))
		return -ENOENT;
	nm_addr_to_sockaddr(&c.w->node->cfg->addr,
			    htons(s->cluster->mesh.inbound_port), &out->connect_to);
	out->remote = true;
	return 0;
}

const struct nm_st_service *nm_route_service_of(const struct nm_state *s,
						const struct sockaddr_storage *ep)
{
	const struct nm_st_service *best = NULL;
	const struct nm_st_workload *w;
	struct nm_addr a;
	__be16 port;

	nm_addr_from_sockaddr(ep, &a, &port);
	w = nm_state_workload_by_addr(s, &a);
	if (!w)
		return NULL;
	/* The lowest ID, not the first in the file: positions mean nothing. */
	for (unsigned int i = 0; i < s->n_services; i++) {
		const struct nm_st_service *v = &s->services[i];
		const struct nm_service_cfg *sc = v->cfg;
		bool port_ok = false;

		if (!sc->n_selector || !nm_service_selects(sc, w->cfg))
			continue;
		for (unsigned int k = 0; k < sc->n_ports && !port_ok; k++)
			port_ok = htons(sc->ports[k].target_port ?
					sc->ports[k].target_port :
					sc->ports[k].port) == port;
		if (port_ok && (!best || v->id < best->id))
			best = v;
	}
	return best;
}
