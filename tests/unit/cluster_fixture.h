/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cluster_fixture.h - a hand-made two-node cluster for the state and model
 * suites, so they do not depend on the parser's file format, and a cgroup
 * table so they need no root and no cgroup directories.
 */
#ifndef NM_TEST_CLUSTER_FIXTURE_H
#define NM_TEST_CLUSTER_FIXTURE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nm_check.h"
#include "state/cluster.h"

/* --- a hand-made cluster --------------------------------------------------- */

static struct nm_cluster *cl;

static void set_ip(struct nm_addr *ip, const char *s)
{
	ck_assert_int_eq(nm_addr_parse(s, ip, NULL), 0);
}

static void add_label(struct nm_workload_cfg *w, const char *k, const char *v)
{
	snprintf(w->labels[w->n_labels].key, NM_NAME_MAX, "%s", k);
	snprintf(w->labels[w->n_labels].value, NM_NAME_MAX, "%s", v);
	w->n_labels++;
}

static void set_wl(unsigned int i, const char *name, const char *ns,
		   const char *sa, const char *app, const char *ip, int node,
		   const char *cgroup)
{
	struct nm_workload_cfg *w = &cl->workloads[i];

	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(w->ns, sizeof(w->ns), "%s", ns);
	snprintf(w->sa, sizeof(w->sa), "%s", sa);
	add_label(w, "app", app);
	set_ip(&w->ip, ip);
	w->node = node;
	snprintf(w->cgroup, sizeof(w->cgroup), "%s", cgroup);
}

/*
 * node-1: client (default/client), echo-1 (default/echo, also v6)
 * node-2: echo-2 (default/echo), other (prod/client, labelled app=echo but in
 *         another namespace, so not an echo endpoint)
 * echo: 198.19.0.10 + fd00:19::10, ports 80->8080 and 443->8443, app=echo
 * bare: 198.19.0.11:81, no selector
 */
static void cluster_setup(void)
{
	cl = calloc(1, sizeof(*cl));
	ck_assert_ptr_nonnull(cl);
	snprintf(cl->path, sizeof(cl->path), "test-cluster.json");
	snprintf(cl->trust_domain, sizeof(cl->trust_domain), "cluster.local");
	cl->mesh.outbound_port = 15001;
	cl->mesh.inbound_port = 15008;
	cl->n_nodes = 2;
	cl->nodes = calloc(cl->n_nodes, sizeof(*cl->nodes));
	snprintf(cl->nodes[0].name, NM_NAME_MAX, "node-1");
	snprintf(cl->nodes[1].name, NM_NAME_MAX, "node-2");
	set_ip(&cl->nodes[0].addr, "198.18.0.1");
	set_ip(&cl->nodes[1].addr, "198.18.0.2");

	cl->n_workloads = 4;
	cl->workloads = calloc(cl->n_workloads, sizeof(*cl->workloads));
	set_wl(0, "client", "default", "client", "client", "198.18.1.2", 0,
	       "nm/n1/client");
	set_wl(1, "echo-1", "default", "echo", "echo", "198.18.1.3", 0,
	       "nm/n1/echo1");
	cl->workloads[1].has_ip6 = true;
	set_ip(&cl->workloads[1].ip6, "fd00:18::13");
	set_wl(2, "echo-2", "default", "echo", "echo", "198.18.2.3", 1,
	       "nm/n2/echo2");
	set_wl(3, "other", "prod", "client", "echo", "198.18.2.4", 1,
	       "nm/n2/other");

	cl->n_services = 2;
	cl->services = calloc(cl->n_services, sizeof(*cl->services));
	struct nm_service_cfg *s = &cl->services[0];

	snprintf(s->name, NM_NAME_MAX, "echo");
	snprintf(s->ns, NM_NAME_MAX, "default");
	set_ip(&s->vip, "198.19.0.10");
	s->has_vip6 = true;
	set_ip(&s->vip6, "fd00:19::10");
	s->ports[0] = (struct nm_port_map){ 80, 8080 };
	s->ports[1] = (struct nm_port_map){ 443, 8443 };
	s->n_ports = 2;
	snprintf(s->selector[0].key, NM_NAME_MAX, "app");
	snprintf(s->selector[0].value, NM_NAME_MAX, "echo");
	s->n_selector = 1;

	s = &cl->services[1];
	snprintf(s->name, NM_NAME_MAX, "bare");
	snprintf(s->ns, NM_NAME_MAX, "default");
	set_ip(&s->vip, "198.19.0.11");
	s->ports[0] = (struct nm_port_map){ 81, 0 };
	s->n_ports = 1;
}

static void cluster_teardown(void)
{
	free(cl->nodes);
	free(cl->workloads);
	free(cl->services);
	free(cl);
	cl = NULL;
}

/* cgroup path -> id from a table; unknown paths do not exist. */
static int fake_cgroup_id(const char *cgroup, uint64_t *id, void *arg)
{
	static const struct { const char *path; uint64_t id; } tbl[] = {
		{ "nm/n1/client", 1001 }, { "nm/n1/echo1", 1002 },
		{ "nm/n2/echo2", 2001 },  { "nm/n2/other", 2002 },
	};
	int *calls = arg;

	if (calls)
		(*calls)++;
	for (unsigned int i = 0; i < sizeof(tbl) / sizeof(tbl[0]); i++) {
		if (strcmp(tbl[i].path, cgroup) == 0) {
			*id = tbl[i].id;
			return 0;
		}
	}
	return -ENOENT;
}

#endif
