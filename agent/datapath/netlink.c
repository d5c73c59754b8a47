// SPDX-License-Identifier: Apache-2.0
/* netlink.c - local addresses through libnl-route's address cache. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>

#include "datapath/netlink.h"

int nm_netlink_local_addrs(struct nm_addr **out, unsigned int *n)
{
	struct nl_sock *sk = NULL;
	struct nl_cache *cache = NULL;
	struct nl_object *obj;
	struct nm_addr *addrs = NULL;
	unsigned int count = 0, cap;
	int err;

	sk = nl_socket_alloc();
	if (!sk)
		return -ENOMEM;
	err = nl_connect(sk, NETLINK_ROUTE);
	if (err) {
		err = -ECONNREFUSED;
		goto out;
	}
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
