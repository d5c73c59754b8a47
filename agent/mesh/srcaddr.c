// SPDX-License-Identifier: Apache-2.0
/* srcaddr.c - source preservation (srcaddr.h). */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "datapath/nft.h"
#include "lib/log.h"
#include "mesh/srcaddr.h"

#define ONLINK_MAX_AGE_MS 1000

static void inactive(struct nm_srcaddr *sa, const char *fmt, const char *detail)
{
	sa->active = false;
	snprintf(sa->reason, sizeof(sa->reason), fmt, detail);
	pr_warn("msg=\"source address not preserved: pods see the agent's address\" reason=\"%s\"",
		sa->reason);
}

static int set_transparent(int fd, int family)
{
	int one = 1;

	if (family == AF_INET6)
		return setsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &one,
				  sizeof(one)) ? -errno : 0;
	return setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof(one)) ?
		       -errno : 0;
}

void nm_srcaddr_setup(struct nm_srcaddr *sa, bool want)
{
	char err[128] = "";
	int ret;

	memset(sa, 0, sizeof(*sa));
	if (!want) {
		inactive(sa, "%sturned off by mesh.preserveSourceAddress", "");
		return;
	}
	/* A crashed run may have left both behind: start from nothing. */
	nm_netlink_tproxy_routing(false, NM_SRC_MARK, NM_SRC_TABLE, NM_SRC_RULE_PRIO);
	ret = nm_nft_tproxy_mark(true, NM_SRC_MARK, err, sizeof(err));
	if (ret) {
		inactive(sa, "nftables reply mark (socket transparent) not installed: %s", err);
		return;
	}
	ret = nm_netlink_tproxy_routing(true, NM_SRC_MARK, NM_SRC_TABLE,
					NM_SRC_RULE_PRIO);
	if (ret) {
		nm_nft_tproxy_mark(false, 0, NULL, 0);
		inactive(sa, "policy routing for replies not installed: %s", strerror(-ret));
		return;
	}
	sa->routing = true;
	sa->active = true;
}

void nm_srcaddr_probe(struct nm_srcaddr *sa)
{
	int fd, ret;

	if (!sa->active)
		return;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		inactive(sa, "probe socket: %s", strerror(errno));
		return;
	}
	ret = set_transparent(fd, AF_INET);
	close(fd);
	if (ret)
		inactive(sa, "IP_TRANSPARENT refused: %s (needs CAP_NET_ADMIN)",
			 strerror(-ret));
	else
		pr_info("msg=\"source address preserved\" mark=0x%x table=%u",
			NM_SRC_MARK, NM_SRC_TABLE);
}

void nm_srcaddr_teardown(struct nm_srcaddr *sa)
{
	char err[128] = "";
	int r1, r2;

	free(sa->onlink);
	sa->onlink = NULL;
	sa->n_onlink = 0;
	free(sa->local);
	sa->local = NULL;
	sa->n_local = 0;
	if (!sa->routing)
		return;
	sa->routing = false;
	r1 = nm_netlink_tproxy_routing(false, NM_SRC_MARK, NM_SRC_TABLE,
				       NM_SRC_RULE_PRIO);
	r2 = nm_nft_tproxy_mark(false, 0, err, sizeof(err));
	if (r1 || r2)
		pr_warn("msg=\"source preservation routing not fully removed\" routing=\"%s\" nft=\"%s\"",
			r1 ? strerror(-r1) : "ok", r2 ? err : "ok");
}

static bool prefix_has(const struct nm_prefix *p, const struct nm_addr *a)
{
	unsigned int full = p->len / 8, rest = p->len % 8;

	if (p->len > 128 || memcmp(p->addr.a, a->a, full))
		return false;
	if (!rest)
		return true;
	return ((p->addr.a[full] ^ a->a[full]) & (0xff00 >> rest)) == 0;
}

bool nm_srcaddr_onlink_pair(const struct nm_prefix *p, unsigned int n,
			    const struct nm_addr *a, const struct nm_addr *b)
{
	for (unsigned int i = 0; i < n; i++)
		if (prefix_has(&p[i], a) && prefix_has(&p[i], b))
			return true;
	return false;
}

/* The node's on-link prefixes and local addresses, at most a second old;
 * the last lists stay when a dump fails. */
static void refresh(struct nm_srcaddr *sa, int64_t now_ms)
{
	struct nm_prefix *p;
	struct nm_addr *l;
	unsigned int n;

	if (sa->onlink_ms && now_ms - sa->onlink_ms <= ONLINK_MAX_AGE_MS)
		return;
	sa->onlink_ms = now_ms;
	if (!nm_netlink_onlink_prefixes(&p, &n)) {
		free(sa->onlink);
		sa->onlink = p;
		sa->n_onlink = n;
	}
	if (!nm_netlink_local_addrs(&l, &n)) {
		free(sa->local);
		sa->local = l;
		sa->n_local = n;
	}
}

static bool is_local(const struct nm_srcaddr *sa, const struct nm_addr *a)
{
	for (unsigned int i = 0; i < sa->n_local; i++)
		if (!memcmp(&sa->local[i], a, sizeof(*a)))
			return true;
	return false;
}

int nm_srcaddr_bind(struct nm_srcaddr *sa, int fd,
		    const struct sockaddr_storage *src,
		    const struct sockaddr_storage *dst, int64_t now_ms)
{
	struct nm_addr s, d;
	char s1[64], s2[64];
	socklen_t len;
	int one = 1, err;

	if (!sa->active || src->ss_family != dst->ss_family ||
	    (src->ss_family != AF_INET && src->ss_family != AF_INET6))
		return 0;
	nm_addr_from_sockaddr(src, &s, NULL);
	nm_addr_from_sockaddr(dst, &d, NULL);
	refresh(sa, now_ms);
	if (is_local(sa, &d)) {
		/* A host-network pod answers from the node's own stack: its
		 * replies never pass prerouting, so they would leave for the
		 * client's node instead of reaching this socket. */
		sa->local_dst++;
		return 0;
	}
	if (nm_srcaddr_onlink_pair(sa->onlink, sa->n_onlink, &s, &d)) {
		sa->onlink_pairs++;
		if (!sa->warned_onlink) {
			sa->warned_onlink = true;
			pr_warn("msg=\"client and pod share a link: the pod would answer the client directly, so such flows use the agent's address\" src=%s dst=%s",
				nm_sockaddr_format(src, s1, sizeof(s1)),
				nm_sockaddr_format(dst, s2, sizeof(s2)));
		}
		return 0;
	}
	len = src->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
					  sizeof(struct sockaddr_in6);
	/* SO_REUSEADDR: the agent's own TIME_WAIT of an earlier flow from
	 * the same client port must not stop the client's next one. */
	if ((err = set_transparent(fd, src->ss_family)) ||
	    (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) && (err = -errno)) ||
	    (bind(fd, (const struct sockaddr *)src, len) && (err = -errno))) {
		sa->bind_failed++;
		pr_warn_ratelimited(&sa->rl, "msg=\"cannot connect from the client's address, using the agent's\" src=%s dst=%s err=\"%s\"",
			nm_sockaddr_format(src, s1, sizeof(s1)),
			nm_sockaddr_format(dst, s2, sizeof(s2)), strerror(-err));
		return 0;
	}
	sa->preserved++;
	return 1;
}

bool nm_srcaddr_counts_changed(struct nm_srcaddr *sa)
{
	uint64_t sum = sa->preserved + sa->onlink_pairs + sa->bind_failed +
		       sa->forged + sa->local_dst;

	if (sum == sa->published)
		return false;
	sa->published = sum;
	return true;
}
