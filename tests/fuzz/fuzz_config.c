// SPDX-License-Identifier: Apache-2.0
// fuzz-sources: agent/config/*.c lib/jsonwalk.c lib/log.c lib/addr.c lib/file.c lib/spiffe.c agent/state/cluster.c lib/pins.c
/*
 * fuzz_config.c - libFuzzer target for the cluster file parser.
 *
 * Beyond "no crash, no leak, no UB" it checks the parser's promises: a
 * failure leaves *out NULL and a message that starts with the file name; a
 * success yields terminated strings, in-range indices, unique names and
 * addresses that the find helpers return, and addresses that survive a
 * format/parse round trip. Any broken promise aborts, which libFuzzer reports.
 *
 *   make fuzz && build/tests/fuzz/fuzz_config -max_total_time=60 \
 *       tests/fuzz/corpus/config
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "config/config.h"
#include "lib/spiffe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FNAME "fuzz/cluster.json"

#define TERMINATED(field) (strnlen((field), sizeof(field)) < sizeof(field))
#define CHECK(cond)               \
	do {                      \
		if (!(cond))      \
			abort();  \
	} while (0)

static void check_ip(const struct nm_addr *ip)
{
	char buf[INET6_ADDRSTRLEN];
	struct nm_addr back;

	nm_addr_format(ip, buf, sizeof(buf));
	CHECK(nm_addr_parse(buf, &back, NULL) == 0);
	CHECK(memcmp(&back, ip, sizeof(back)) == 0);
}

static void check_spiffe(const struct nm_cluster *c, const char *uri)
{
	struct nm_spiffe_id id;

	CHECK(nm_spiffe_parse(uri, &id, NULL) == 0);
	CHECK(strcmp(id.trust_domain, c->trust_domain) == 0);
}

static void check_cluster(const struct nm_cluster *c)
{
	unsigned int i, j;

	CHECK(TERMINATED(c->path) && strcmp(c->path, FNAME) == 0);
	CHECK(TERMINATED(c->trust_domain) && c->trust_domain[0]);
	CHECK(TERMINATED(c->cert_dir) && c->cert_dir[0]);
	CHECK(c->mesh.outbound_port && c->mesh.inbound_port && c->mesh.admin_port);
	CHECK(c->mesh.limits.max_flows <= 10000000 &&
	      c->mesh.limits.max_handshakes <= 10000000 &&
	      c->mesh.limits.max_flows_per_pod <= 10000000 &&
	      c->mesh.limits.max_flows_per_peer <= 10000000);

	for (i = 0; i < c->n_nodes; i++) {
		const struct nm_node *n = &c->nodes[i];

		CHECK(TERMINATED(n->name) && TERMINATED(n->cgroup_root));
		CHECK(nm_cluster_find_node(c, n->name) == (int)i);
		CHECK(nm_addr_is_v4(&n->addr));
		check_ip(&n->addr);
		if (n->has_addr6) {
			CHECK(!nm_addr_is_v4(&n->addr6));
			check_ip(&n->addr6);
		}
	}
	for (i = 0; i < c->n_workloads; i++) {
		const struct nm_workload_cfg *w = &c->workloads[i];

		CHECK(TERMINATED(w->name) && TERMINATED(w->ns) &&
		      TERMINATED(w->sa) && TERMINATED(w->cgroup));
		CHECK(w->node >= 0 && (unsigned int)w->node < c->n_nodes);
		CHECK(w->n_labels <= NM_MAX_LABELS);
		for (j = 0; j < w->n_labels; j++)
			CHECK(TERMINATED(w->labels[j].key) &&
			      TERMINATED(w->labels[j].value));
		CHECK(nm_cluster_find_workload(c, w->ns, w->name) == (int)i);
		/* addresses are unique across the file */
		CHECK(nm_cluster_find_workload_by_ip(c, &w->ip) == (int)i);
		check_ip(&w->ip);
		if (w->has_ip6)
			CHECK(nm_cluster_find_workload_by_ip(c, &w->ip6) == (int)i);
	}
	for (i = 0; i < c->n_services; i++) {
		const struct nm_service_cfg *s = &c->services[i];

		CHECK(TERMINATED(s->name) && TERMINATED(s->ns));
		CHECK(s->n_ports >= 1 && s->n_ports <= NM_MAX_PORTS);
		CHECK(s->n_selector >= 1 && s->n_selector <= NM_MAX_LABELS);
		for (j = 0; j < s->n_ports; j++)
			CHECK(s->ports[j].port && s->ports[j].target_port);
		CHECK(nm_cluster_find_workload_by_ip(c, &s->vip) == -ENOENT);
		check_ip(&s->vip);
		/* bounded: fuzz inputs are small */
		for (j = 0; j < c->n_workloads && j < 64; j++) {
			bool sel = nm_service_selects(s, &c->workloads[j]);

			CHECK(!sel || strcmp(s->ns, c->workloads[j].ns) == 0);
		}
	}
	CHECK(c->n_forwards <= NM_MAX_FORWARDS);
	for (i = 0; i < c->n_forwards; i++) {
		const struct nm_forward_cfg *f = &c->forwards[i];

		CHECK(TERMINATED(f->name) && TERMINATED(f->id_ns) &&
		      TERMINATED(f->id_sa) && TERMINATED(f->peer_identity));
		CHECK(f->listen.ss_family == AF_INET || f->listen.ss_family == AF_INET6);
		CHECK(f->n_allowed_peers <= NM_MAX_ALLOWED_PEERS);
		if (f->mode == NM_FWD_OUTBOUND)
			CHECK(f->peer_identity[0] && f->n_allowed_peers == 0);
		else
			CHECK(!f->peer_identity[0]);
		/* Every accepted ID is one TLS would accept, in our domain. */
		if (f->peer_identity[0])
			check_spiffe(c, f->peer_identity);
		for (j = 0; j < f->n_allowed_peers; j++) {
			CHECK(TERMINATED(f->allowed_peers[j]));
			check_spiffe(c, f->allowed_peers[j]);
		}
	}
}

/* The address helpers get the first line of the input as text. */
static void fuzz_helpers(const uint8_t *data, size_t size)
{
	char text[128];
	size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
	struct sockaddr_storage ss;
	struct nm_addr ip;
	bool v6;

	memcpy(text, data, n);
	text[n] = '\0';
	text[strcspn(text, "\n")] = '\0';
	if (nm_addr_parse(text, &ip, &v6) == 0) {
		check_ip(&ip);
		CHECK(v6 || nm_addr_is_v4(&ip));
	}
	if (nm_sockaddr_parse(text, &ss) == 0)
		CHECK(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = (struct nm_cluster *)&err; /* must be reset */
	int ret;

	ret = nm_cluster_load_buf((const char *)data, size, FNAME, &c, err,
				  sizeof(err));
	if (ret) {
		CHECK(c == NULL);
		CHECK(ret == -EINVAL || ret == -ENOMEM);
		CHECK(strncmp(err, FNAME ": ", strlen(FNAME) + 2) == 0);
		CHECK(TERMINATED(err));
	} else {
		CHECK(c != NULL);
		check_cluster(c);
		nm_cluster_free(c);
	}
	fuzz_helpers(data, size);
	return 0;
}
