// SPDX-License-Identifier: Apache-2.0
/*
 * authz.c - connection -> nm_policy_conn -> verdict, counted (authz.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "mesh/authz.h"

int nm_authz_replace(struct nm_authz *z, struct nm_policy_set *ps)
{
	unsigned int n = ps ? nm_policy_count(ps) : 0;
	uint64_t *counts = calloc(n ? n : 1, sizeof(*counts));

	if (!counts)
		return -ENOMEM;
	nm_policy_set_free(z->policies);
	free(z->by_policy);
	z->policies = ps;
	z->by_policy = counts;
	z->n_policies = n;
	z->allowed = z->denied = 0;
	return 0;
}

void nm_authz_free(struct nm_authz *z)
{
	nm_policy_set_free(z->policies);
	free(z->by_policy);
	memset(z, 0, sizeof(*z));
}

bool nm_authz_check(struct nm_authz *z, const struct nm_state *s,
		    const struct nm_st_workload *dst,
		    const struct sockaddr_storage *dst_addr,
		    const struct nm_spiffe_id *peer,
		    const struct sockaddr_storage *src,
		    struct nm_policy_verdict *v, char *policy_name,
		    size_t len)
{
	/* Istio principals are SPIFFE IDs without the scheme. */
	char principal[3 * NM_NAME_MAX + 16];
	struct nm_policy_conn c = {
		.dst_ns = dst->cfg->ns,
		.dst_labels = dst->cfg->labels,
		.n_dst_labels = dst->cfg->n_labels,
	};
	struct nm_policy_info info;
	__be16 port;

	(void)s;
	nm_addr_from_sockaddr(dst_addr, &c.dst_ip, &port);
	c.dst_port = ntohs(port);
	nm_addr_from_sockaddr(src, &c.src_ip, NULL);
	if (peer && peer->trust_domain[0]) {
		snprintf(principal, sizeof(principal), "%s/ns/%s/sa/%s",
			 peer->trust_domain, peer->ns, peer->sa);
		c.src_principal = principal;
	}
	if (!z->policies) {
		*v = (struct nm_policy_verdict){ .allow = true, .policy = -1,
						 .rule = -1,
						 .reason = "no policies" };
	} else {
		nm_policy_evaluate(z->policies, &c, v);
	}
	if (v->allow)
		z->allowed++;
	else
		z->denied++;
	if (v->policy >= 0 && (unsigned int)v->policy < z->n_policies)
		z->by_policy[v->policy]++;
	if (policy_name && len) {
		if (v->policy >= 0 && !nm_policy_get(z->policies, (unsigned int)v->policy, &info))
			snprintf(policy_name, len, "%s/%s", info.ns, info.name);
		else
			snprintf(policy_name, len, "-");
	}
	if (z->tel)
		nm_tel_policy_decision(z->tel, policy_name && len ? policy_name : NULL, v->allow);
	return v->allow;
}
