/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fields.h - the value types of the cluster file on top of the JSON walker:
 * names and labels (the Kubernetes rules), addresses, ports, cgroup paths,
 * address:port pairs and SPIFFE IDs. Internal to agent/config.
 *
 * Each getter fails with "FILE: path: problem" (through the walker) and,
 * like nm_jw_field(), returns 1 when the field was present, 0 when it was
 * optional and absent, -EINVAL otherwise.
 */
#ifndef NM_CONFIG_FIELDS_H
#define NM_CONFIG_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "lib/jsonwalk.h"
#include "state/cluster.h"

/* One load of one cluster file. */
struct nm_cfg_parser {
	struct nm_jw j;
	struct nm_cluster *c;
	unsigned int *node_idx; /* node indices sorted by name, for lookups */
};

/* Kubernetes DNS label (RFC 1123): [a-z0-9]([-a-z0-9]*[a-z0-9])?, <= 63. */
bool nm_cfg_dns_label_ok(const char *s, size_t n);
/* Kubernetes DNS subdomain: DNS labels joined by '.', at most max bytes. */
bool nm_cfg_dns_subdomain_ok(const char *s, size_t n, size_t max);
/* The file's trustDomain: see docs/config.md, "Top level". */
bool nm_cfg_trust_domain_ok(const char *s);

/* A required DNS-label name into dst[NM_NAME_MAX]; 0 or -EINVAL. */
int nm_cfg_get_name(struct nm_cfg_parser *p, const json_t *obj,
		    const char *parent, const char *key, char *dst);
int nm_cfg_get_port(struct nm_cfg_parser *p, const json_t *obj,
		    const char *parent, const char *key, bool required,
		    uint16_t *out);
/* "ip" fields take IPv4 text only, "ip6" fields real (non-mapped) IPv6. */
int nm_cfg_get_ip(struct nm_cfg_parser *p, const json_t *obj,
		  const char *parent, const char *key, bool want_v6,
		  bool required, struct nm_addr *out);
/* A required IPv4 field and its optional IPv6 twin "<key>6"; 0 or -EINVAL. */
int nm_cfg_get_ip_pair(struct nm_cfg_parser *p, const json_t *obj,
		       const char *parent, const char *key, struct nm_addr *ip,
		       struct nm_addr *ip6, bool *has_ip6);
/* An optional cgroup path into dst[NM_PATH_MAX]; dst stays "" when absent. */
int nm_cfg_get_cgroup(struct nm_cfg_parser *p, const json_t *obj,
		      const char *parent, const char *key, char *dst);
int nm_cfg_get_labels(struct nm_cfg_parser *p, const json_t *obj,
		      const char *parent, const char *key, bool required,
		      struct nm_label *labels, unsigned int *n);
/* "ip:port" or "[ip6]:port", port 1..65535; may_be_any allows 0.0.0.0/::. */
int nm_cfg_get_sockaddr(struct nm_cfg_parser *p, const json_t *obj,
			const char *parent, const char *key, bool required,
			bool may_be_any, struct sockaddr_storage *out);
/*
 * v (at path) as a SPIFFE ID in the file's trust domain, into
 * dst[NM_SPIFFE_MAX]. Validated by lib/spiffe.h's nm_spiffe_parse(), the
 * same parser TLS applies to peer certificates. 0 or -EINVAL.
 */
int nm_cfg_get_spiffe(struct nm_cfg_parser *p, const char *path,
		      const json_t *v, char *dst);

#endif
