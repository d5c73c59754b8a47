// SPDX-License-Identifier: Apache-2.0
// fuzz-sources: agent/config/*.c agent/k8s/objects.c agent/k8s/snapshot.c agent/k8s/cgroup.c lib/jsonwalk.c lib/pins.c agent/state/cluster.c agent/policy/load.c agent/policy/convert.c agent/policy/evaluate.c agent/policy/yaml.c lib/log.c lib/addr.c lib/file.c lib/spiffe.c lib/errbuf.c
/*
 * fuzz_k8s.c - libFuzzer target for what the API server sends the
 * Kubernetes source: the input is a watch body (fed in two pieces cut at a
 * point taken from the first byte, so lines end anywhere) and also a list
 * page. Every decoded event is applied to a store, and the store is built
 * into a snapshot. Beyond "no crash, no leak, no UB": a refused line says
 * why, a snapshot's strings are terminated, indices in range, workload
 * addresses unique, every service has a selector and non-zero ports.
 *
 *   make fuzz && build/tests/fuzz/fuzz_k8s -max_total_time=60 tests/fuzz/corpus/k8s
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "k8s/k8s.h"
#include "lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TERMINATED(field) (strnlen((field), sizeof(field)) < sizeof(field))
#define CHECK(cond)               \
	do {                      \
		if (!(cond))      \
			abort();  \
	} while (0)

static struct nm_k8s_store st;
static struct nm_cluster *base;

static int kind_of(const json_t *obj)
{
	const char *k = json_string_value(json_object_get(obj, "kind"));

	if (!k)
		return NM_K8S_PODS;
	if (!strcmp(k, "Service"))
		return NM_K8S_SERVICES;
	if (!strcmp(k, "EndpointSlice"))
		return NM_K8S_SLICES;
	if (!strcmp(k, "Node"))
		return NM_K8S_NODES;
	if (!strcmp(k, "Namespace"))
		return NM_K8S_NAMESPACES;
	if (!strcmp(k, "AuthorizationPolicy"))
		return NM_K8S_POLICIES;
	return NM_K8S_PODS;
}

static int on_line(const char *line, size_t len, void *arg)
{
	struct nm_k8s_event ev;
	char err[256];
	int ret;

	ret = nm_k8s_event_parse(line, len, &ev, err, sizeof(err));
	if (ret) {
		CHECK(ret == -EINVAL && err[0] && ev.object == NULL);
		return 0;
	}
	CHECK(ev.object && TERMINATED(ev.rv));
	if (ev.type != NM_K8S_EV_ERROR && ev.type != NM_K8S_EV_BOOKMARK)
		CHECK(nm_k8s_store_apply(st.objs[kind_of(ev.object)], &ev) >= 0);
	nm_k8s_event_clear(&ev);
	return 0;
}

static void check_snapshot(const struct nm_cluster *c)
{
	unsigned int i, j;

	CHECK(c->n_nodes >= 1);
	for (i = 0; i < c->n_nodes; i++)
		CHECK(TERMINATED(c->nodes[i].name) && c->nodes[i].name[0] &&
		      nm_addr_is_v4(&c->nodes[i].addr));
	for (i = 0; i < c->n_workloads; i++) {
		const struct nm_workload_cfg *w = &c->workloads[i];

		CHECK(TERMINATED(w->name) && TERMINATED(w->ns) && TERMINATED(w->sa) &&
		      w->sa[0] && TERMINATED(w->cgroup));
		CHECK(w->node >= 0 && (unsigned int)w->node < c->n_nodes);
		CHECK(w->n_labels <= NM_MAX_LABELS && nm_addr_is_v4(&w->ip));
		CHECK(nm_cluster_find_workload_by_ip(c, &w->ip) == (int)i);
	}
	for (i = 0; i < c->n_services; i++) {
		const struct nm_service_cfg *s = &c->services[i];

		CHECK(s->n_selector >= 1 && s->n_ports >= 1 && s->n_ports <= NM_MAX_PORTS);
		for (j = 0; j < s->n_ports; j++)
			CHECK(s->ports[j].port && s->ports[j].target_port);
		CHECK(nm_cluster_find_workload_by_ip(c, &s->vip) == -ENOENT);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char cfg[] = "{\"trustDomain\":\"cluster.local\",\"certDir\":\"/c\"}";
	struct nm_k8s_build_opts o = { .node = "node-1", .cgroup_root = "" };
	struct nm_k8s_lines lb = { 0 };
	struct nm_k8s_build_info info;
	struct nm_k8s_page pg;
	struct nm_cluster *c = NULL;
	json_t *root = NULL;
	size_t cut;
	char err[512];

	if (!base) {
		nm_log_set_level(NM_LOG_WARN);
		CHECK(nm_cluster_load_buf(cfg, strlen(cfg), "mesh.json", &base, err,
					  sizeof(err)) == 0);
	}
	CHECK(nm_k8s_store_init(&st) == 0);
	st.policies_present = true;
	/* A fixed node so that pods can land somewhere. */
	{
		const char node[] = "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Node\",\"metadata\":{\"name\":\"node-1\"},"
				    "\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"10.0.0.1\"}]}}}";

		on_line(node, strlen(node), NULL);
	}
	cut = size ? data[0] % (size + 1) : 0;
	CHECK(nm_k8s_lines_feed(&lb, (const char *)data, cut, on_line, NULL) == 0 ||
	      size > (64u << 20));
	nm_k8s_lines_feed(&lb, (const char *)data + cut, size - cut, on_line, NULL);
	nm_k8s_lines_free(&lb);
	if (nm_k8s_page_parse((const char *)data, size, &root, &pg, err, sizeof(err)) == 0) {
		CHECK(root && json_is_array(pg.items) && TERMINATED(pg.rv) && TERMINATED(pg.cont));
		json_decref(root);
	} else {
		CHECK(root == NULL && err[0]);
	}
	o.base = base;
	if (nm_k8s_build(&st, &o, &c, &info) == 0) {
		check_snapshot(c);
		free(info.policies_json);
		nm_cluster_free(c);
	}
	nm_k8s_store_free(&st);
	return 0;
}
