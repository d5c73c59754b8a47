/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sections.h - one parser per part of the cluster file, each filling its
 * part of p->c from the document root. Internal to agent/config; config.c
 * calls them in file-reference order (docs/config.md) and then runs the
 * checks that span sections. Each returns 0 or -errno with the message
 * written.
 */
#ifndef NM_CONFIG_SECTIONS_H
#define NM_CONFIG_SECTIONS_H

#include "config/fields.h"

/* mesh.c: "mesh" (ports, failMode, limits); defaults already set in p->c. */
int nm_cfg_parse_mesh(struct nm_cfg_parser *p, const json_t *root);
/*
 * mesh.c: a "mode" string at obj.key (workloads[i].mode, mesh.defaultMode):
 * "STRICT" or "PERMISSIVE" into *out; absent leaves it. 1, 0 or -EINVAL.
 */
int nm_cfg_get_mode(struct nm_cfg_parser *p, const json_t *obj,
		    const char *parent, const char *key,
		    enum nm_inbound_mode *out);
/* nodes.c: "nodes"; also builds p->node_idx for nm_cfg_lookup_node(). */
int nm_cfg_parse_nodes(struct nm_cfg_parser *p, const json_t *root);
/* Index of the parsed node with this name, or -ENOENT. */
int nm_cfg_lookup_node(const struct nm_cfg_parser *p, const char *name);
/* workloads.c: "workloads" (needs nodes parsed first). */
int nm_cfg_parse_workloads(struct nm_cfg_parser *p, const json_t *root);
/* services.c: "services". */
int nm_cfg_parse_services(struct nm_cfg_parser *p, const json_t *root);
/* resilience.c: svc's optional "resilience" into r (defaults when absent). */
int nm_cfg_parse_resilience(struct nm_cfg_parser *p, const json_t *svc,
			    const char *svc_path, struct nm_resilience_cfg *r);
/* forwards.c: "forwards" (needs trustDomain for its SPIFFE IDs). */
int nm_cfg_parse_forwards(struct nm_cfg_parser *p, const json_t *root);

/* telemetry.c: "telemetry" (needs "mesh" parsed first: ports, adminPort). */
int nm_cfg_parse_telemetry(struct nm_cfg_parser *p, const json_t *root);
/* The section's defaults; the admin port defaults to mesh.adminPort. */
void nm_cfg_telemetry_defaults(struct nm_telemetry_cfg *t, uint16_t admin_port);

#endif
