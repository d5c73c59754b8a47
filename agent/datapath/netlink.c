// SPDX-License-Identifier: Apache-2.0
/*
 * netlink.c - local addresses through libnl-route's address cache; the
 * policy routing of source preservation and the on-link prefixes it
 * checks (mesh/srcaddr.c).
 */
#include <errno.h>
#include <net/if.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>

#include "datapath/netlink.h"

/* A connected rtnetlink socket, or -ENOMEM / -ECONNREFUSED. */
static int route_socket(struct nl_sock **out)
{
	struct nl_sock *sk = nl_socket_alloc();

	if (!sk)
		return -ENOMEM;
	if (nl_connect(sk, NETLINK_ROUTE)) {
		nl_socket_free(sk);
		return -ECONNREFUSED;
	}
	*out = sk;
	return 0;
}

int nm_netlink_local_addrs(struct nm_addr **out, unsigned int *n)
{
	struct nl_sock *sk = NULL;
	struct nl_cache *cache = NULL;
	struct nl_object *obj;
	struct nm_addr *addrs = NULL;
	unsigned int count = 0, cap;
	int err;

	err = route_socket(&sk);
	if (err)
		return err;
	err = rtnl_addr_alloc_cache(sk, &cache);
	if (err) {
		err = -EIO;
		goto out;
	}
	cap = nl_cache_nitems(cache);
	addrs = calloc(cap ? cap : 1, sizeof(*addrs));
	if (!addrs) {
		err = -ENOMEM;
		goto out;
	}
	for (obj = nl_cache_get_first(cache); obj && count < cap;
	     obj = nl_cache_get_next(obj)) {
		struct nl_addr *local = rtnl_addr_get_local((struct rtnl_addr *)obj);
		struct nm_addr *ip = &addrs[count];

		if (!local)
			continue;
		if (nl_addr_get_family(local) == AF_INET &&
		    nl_addr_get_len(local) == 4) {
			memset(ip, 0, sizeof(*ip));
			ip->a[10] = ip->a[11] = 0xff;
			memcpy(&ip->a[12], nl_addr_get_binary_addr(local), 4);
			count++;
		} else if (nl_addr_get_family(local) == AF_INET6 &&
			   nl_addr_get_len(local) == 16) {
			memcpy(ip->a, nl_addr_get_binary_addr(local), 16);
			count++;
		}
	}
	*out = addrs;
	*n = count;
	addrs = NULL;
	err = 0;
out:
	free(addrs);
	if (cache)
		nl_cache_free(cache);
	nl_socket_free(sk);
	return err;
}

int nm_netlink_find_local_node(const struct nm_cluster *c)
{
	struct nm_addr *addrs;
	unsigned int n;
	int found = -ENOENT, err;

	err = nm_netlink_local_addrs(&addrs, &n);
	if (err)
		return err;
	for (unsigned int i = 0; i < c->n_nodes; i++) {
		for (unsigned int k = 0; k < n; k++) {
			if (memcmp(&addrs[k], &c->nodes[i].addr, sizeof(addrs[k])) &&
			    (!c->nodes[i].has_addr6 ||
			     memcmp(&addrs[k], &c->nodes[i].addr6, sizeof(addrs[k]))))
				continue;
			if (found >= 0 && found != (int)i) {
				free(addrs);
				return -EEXIST;
			}
			found = i;
		}
	}
	free(addrs);
	return found;
}

/* ------------------------------------------------ source preservation */

static int tproxy_rule(struct nl_sock *sk, bool add, int family,
		       uint32_t mark, uint32_t table, uint32_t prio)
{
	struct rtnl_rule *r = rtnl_rule_alloc();
	int err;

	if (!r)
		return -ENOMEM;
	rtnl_rule_set_family(r, family);
	rtnl_rule_set_prio(r, prio);
	rtnl_rule_set_mark(r, mark);
	rtnl_rule_set_mask(r, mark);
	rtnl_rule_set_table(r, table);
	rtnl_rule_set_action(r, FR_ACT_TO_TBL);
	err = add ? rtnl_rule_add(sk, r, NLM_F_CREATE | NLM_F_EXCL) :
		    rtnl_rule_delete(sk, r, 0);
	rtnl_rule_put(r);
	/* An add after a crash finds its rule still there: that is the
	 * state wanted. A delete of what is gone is done. */
	if (err == -NLE_EXIST || (!add && err == -NLE_OBJ_NOTFOUND))
		err = 0;
	return err ? -EIO : 0;
}

static int tproxy_route(struct nl_sock *sk, bool add, int family,
			uint32_t table, int lo)
{
	struct rtnl_route *r = rtnl_route_alloc();
	struct rtnl_nexthop *nh = NULL;
	struct nl_addr *dst = NULL;
	int err = -ENOMEM;

	if (!r)
		return -ENOMEM;
	if (nl_addr_parse(family == AF_INET ? "0.0.0.0/0" : "::/0", family, &dst))
		goto out;
	nh = rtnl_route_nh_alloc();
	if (!nh)
		goto out;
	rtnl_route_nh_set_ifindex(nh, lo);
	rtnl_route_add_nexthop(r, nh); /* the route owns nh now */
	rtnl_route_set_family(r, family);
	rtnl_route_set_table(r, table);
	rtnl_route_set_type(r, RTN_LOCAL);
	rtnl_route_set_scope(r, RT_SCOPE_HOST);
	rtnl_route_set_dst(r, dst);
	err = add ? rtnl_route_add(sk, r, NLM_F_CREATE | NLM_F_REPLACE) :
		    rtnl_route_delete(sk, r, 0);
	if (!add && (err == -NLE_OBJ_NOTFOUND || err == -NLE_NOADDR))
		err = 0;
	err = err ? -EIO : 0;
out:
	nl_addr_put(dst);
	rtnl_route_put(r);
	return err;
}

int nm_netlink_tproxy_routing(bool add, uint32_t mark, uint32_t table,
			      uint32_t prio)
{
	static const int families[] = { AF_INET, AF_INET6 };
	struct nl_sock *sk;
	int lo = if_nametoindex("lo");
	int err = 0, e;

	if (!lo)
		return -ENODEV;
	err = route_socket(&sk);
	if (err)
		return err;
	for (unsigned int i = 0; i < 2; i++) {
		if (add) {
			err = tproxy_route(sk, true, families[i], table, lo);
			if (!err)
				err = tproxy_rule(sk, true, families[i], mark, table, prio);
			if (err)
				break;
			continue;
		}
		/* Removal goes on past a failure: leave as little as possible. */
		e = tproxy_rule(sk, false, families[i], mark, table, prio);
		if (e && !err)
			err = e;
		e = tproxy_route(sk, false, families[i], table, lo);
		if (e && !err)
			err = e;
	}
	if (add && err) {
		for (unsigned int i = 0; i < 2; i++) {
			tproxy_rule(sk, false, families[i], mark, table, prio);
			tproxy_route(sk, false, families[i], table, lo);
		}
	}
	nl_socket_free(sk);
	return err;
}

int nm_netlink_onlink_prefixes(struct nm_prefix **out, unsigned int *n)
{
	struct nl_sock *sk = NULL;
	struct nl_cache *cache = NULL;
	struct nl_object *obj;
	struct nm_prefix *pfx = NULL;
	unsigned int count = 0, cap;
	int err;

	err = route_socket(&sk);
	if (err)
		return err;
	err = rtnl_route_alloc_cache(sk, AF_UNSPEC, 0, &cache);
	if (err) {
		err = -EIO;
		goto out;
	}
	cap = nl_cache_nitems(cache);
	pfx = calloc(cap ? cap : 1, sizeof(*pfx));
	if (!pfx) {
		err = -ENOMEM;
		goto out;
	}
	for (obj = nl_cache_get_first(cache); obj && count < cap;
	     obj = nl_cache_get_next(obj)) {
		struct rtnl_route *r = (struct rtnl_route *)obj;
		struct nl_addr *dst = rtnl_route_get_dst(r);
		struct nm_prefix *p = &pfx[count];
		bool gw = false;
		int fam;

		if (rtnl_route_get_table(r) != RT_TABLE_MAIN ||
		    rtnl_route_get_type(r) != RTN_UNICAST || !dst)
			continue;
		for (int k = 0; k < rtnl_route_get_nnexthops(r); k++)
			gw |= rtnl_route_nh_get_gateway(rtnl_route_nexthop_n(r, k)) != NULL;
		if (gw)
			continue;
		fam = nl_addr_get_family(dst);
		memset(p, 0, sizeof(*p));
		if (fam == AF_INET && nl_addr_get_len(dst) <= 4) {
			p->addr.a[10] = p->addr.a[11] = 0xff;
			memcpy(&p->addr.a[12], nl_addr_get_binary_addr(dst),
			       nl_addr_get_len(dst));
			p->len = 96 + nl_addr_get_prefixlen(dst);
		} else if (fam == AF_INET6 && nl_addr_get_len(dst) <= 16) {
			memcpy(p->addr.a, nl_addr_get_binary_addr(dst),
			       nl_addr_get_len(dst));
			p->len = nl_addr_get_prefixlen(dst);
			/* fe80::/64 is on every link and holds no pod. */
			if (p->addr.a[0] == 0xfe && (p->addr.a[1] & 0xc0) == 0x80)
				continue;
		} else {
			continue;
		}
		count++;
	}
	*out = pfx;
	*n = count;
	pfx = NULL;
	err = 0;
out:
	free(pfx);
	if (cache)
		nl_cache_free(cache);
	nl_socket_free(sk);
	return err;
}
