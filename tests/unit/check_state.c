// SPDX-License-Identifier: Apache-2.0
/*
 * check_state.c - the state model (state/): stable IDs across reorder,
 * insert and delete, indexes, optional cgroups, the agent's own cgroup; and
 * route.c's record and destination checks built on it (fault 1 of the
 * foundation review: identity taken from file position).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_fixture.h"
#include "datapath/datapath.h"
#include "mesh/route.h"
#include "nm_check.h"
#include "state/state.h"

#define NOW_NS (100ull * 1000000000ull)

static struct nm_ids *ids;

/*
 * A state points into its snapshot, so each generation gets its own copy
 * of the cluster to edit, as a reload parses a new file: cl is replaced
 * by the copy and the old one is kept until teardown.
 */
static struct nm_cluster *old[8];
static unsigned int n_old;

static void *dup_array(const void *p, size_t n, size_t sz)
{
	void *q = calloc(n ? n : 1, sz);

	ck_assert_ptr_nonnull(q);
	memcpy(q, p, n * sz);
	return q;
}

static void next_snapshot(void)
{
	struct nm_cluster *c = malloc(sizeof(*c));

	ck_assert_ptr_nonnull(c);
	*c = *cl;
	c->nodes = dup_array(cl->nodes, cl->n_nodes, sizeof(*cl->nodes));
	c->workloads = dup_array(cl->workloads, cl->n_workloads, sizeof(*cl->workloads));
	c->services = dup_array(cl->services, cl->n_services, sizeof(*cl->services));
	ck_assert_uint_lt(n_old, 8);
	old[n_old++] = cl;
	cl = c;
}

static void setup(void)
{
	cluster_setup();
	ck_assert_int_eq(nm_ids_create(&ids), 0);
}

static void teardown(void)
{
	nm_ids_free(ids);
	ids = NULL;
	cluster_teardown();
	while (n_old) {
		cl = old[--n_old];
		cluster_teardown();
	}
}

static struct nm_state *build_gen(const char *self, uint32_t gen)
{
	struct nm_state_opts o = { .self_node = self, .generation = gen,
				   .cgroup_id = fake_cgroup_id };
	struct nm_state *s = NULL;
	char err[256];

	ck_assert_msg(nm_state_build(cl, ids, &o, &s, err, sizeof(err)) == 0,
		      "%s", err);
	return s;
}

static const struct nm_st_workload *by_name(const struct nm_state *s,
					    const char *ns, const char *name)
{
	for (unsigned int i = 0; i < s->n_workloads; i++)
		if (!strcmp(s->workloads[i].cfg->ns, ns) &&
		    !strcmp(s->workloads[i].cfg->name, name))
			return &s->workloads[i];
	return NULL;
}

struct wl_ids { uint32_t id, identity, ns; };

static struct wl_ids ids_of(const struct nm_state *s, const char *ns,
			    const char *name)
{
	const struct nm_st_workload *w = by_name(s, ns, name);

	ck_assert_ptr_nonnull(w);
	return (struct wl_ids){ w->id, w->identity_id, w->namespace_id };
}

static void swap_workloads(unsigned int i, unsigned int j)
{
	struct nm_workload_cfg t = cl->workloads[i];

	cl->workloads[i] = cl->workloads[j];
	cl->workloads[j] = t;
}

static void assert_same_ids(const struct nm_state *a, const struct nm_state *b,
			    const char *ns, const char *name)
{
	struct wl_ids x = ids_of(a, ns, name), y = ids_of(b, ns, name);

	ck_assert_uint_eq(x.id, y.id);
	ck_assert_uint_eq(x.identity, y.identity);
	ck_assert_uint_eq(x.ns, y.ns);
}

START_TEST(test_ids_stable_across_reorder)
{
	struct nm_state *a = build_gen("node-1", 1), *b;

	next_snapshot();
	swap_workloads(0, 1);
	swap_workloads(2, 3);
	b = build_gen("node-1", 2);
	assert_same_ids(a, b, "default", "client");
	assert_same_ids(a, b, "default", "echo-1");
	assert_same_ids(a, b, "default", "echo-2");
	assert_same_ids(a, b, "prod", "other");
	/* Position in the file changed, the IDs did not. */
	ck_assert_str_eq(b->workloads[0].cfg->name, "echo-1");
	ck_assert_uint_ne(b->workloads[0].id, 1);
	nm_state_free(a);
	nm_state_free(b);
}
END_TEST

START_TEST(test_ids_insert_first_and_delete_middle)
{
	struct nm_state *a = build_gen("node-1", 1), *b, *c;
	uint32_t max_id = 0;
	struct nm_workload_cfg *w;

	for (unsigned int i = 0; i < a->n_workloads; i++)
		if (a->workloads[i].id > max_id)
			max_id = a->workloads[i].id;
	/* Insert a newcomer first. */
	next_snapshot();
	w = calloc(cl->n_workloads + 1, sizeof(*w));
	ck_assert_ptr_nonnull(w);
	memcpy(w + 1, cl->workloads, cl->n_workloads * sizeof(*w));
	free(cl->workloads);
	cl->workloads = w;
	cl->n_workloads++;
	memset(&w[0], 0, sizeof(w[0]));
	snprintf(w[0].name, NM_NAME_MAX, "newcomer");
	snprintf(w[0].ns, NM_NAME_MAX, "default");
	snprintf(w[0].sa, NM_NAME_MAX, "newcomer");
	set_ip(&w[0].ip, "198.18.1.9");
	w[0].node = 0;
	b = build_gen("node-1", 2);
	assert_same_ids(a, b, "default", "client");
	assert_same_ids(a, b, "prod", "other");
	ck_assert_uint_gt(ids_of(b, "default", "newcomer").id, max_id);
	ck_assert_uint_gt(ids_of(b, "default", "newcomer").identity,
			  ids_of(b, "default", "echo-1").identity);

	/* Delete echo-1 (in the middle): nobody takes its ID. */
	uint32_t gone = ids_of(a, "default", "echo-1").id;

	next_snapshot();
	memmove(&cl->workloads[2], &cl->workloads[3],
		(cl->n_workloads - 3) * sizeof(*cl->workloads));
	cl->n_workloads--;
	snprintf(cl->workloads[cl->n_workloads - 1].name, NM_NAME_MAX, "late");
	set_ip(&cl->workloads[cl->n_workloads - 1].ip, "198.18.2.9");
	c = build_gen("node-1", 3);
	ck_assert_ptr_null(by_name(c, "default", "echo-1"));
	ck_assert_ptr_null(nm_state_workload_by_id(c, gone));
	for (unsigned int i = 0; i < c->n_workloads; i++)
		ck_assert_uint_ne(c->workloads[i].id, gone);
	assert_same_ids(a, c, "default", "client");
	ck_assert_uint_gt(ids_of(c, "prod", "late").id,
			  ids_of(b, "default", "newcomer").id);
	nm_state_free(a);
	nm_state_free(b);
	nm_state_free(c);
}
END_TEST

START_TEST(test_indexes)
{
	struct nm_state *s = build_gen("node-1", 4);
	const struct nm_st_workload *w;
	struct nm_addr a;

	ck_assert_uint_eq(s->generation, 4);
	ck_assert_ptr_nonnull(s->self);
	ck_assert_str_eq(s->self->cfg->name, "node-1");
	set_ip(&a, "fd00:18::13");
	w = nm_state_workload_by_addr(s, &a);
	ck_assert_ptr_nonnull(w);
	ck_assert_str_eq(w->cfg->name, "echo-1");
	ck_assert(w->local);
	set_ip(&a, "198.18.2.3");
	w = nm_state_workload_by_addr(s, &a);
	ck_assert_str_eq(w->cfg->name, "echo-2");
	ck_assert(!w->local);
	ck_assert_uint_eq(w->cgroup_id, 0); /* remote: not resolved here */
	w = nm_state_workload_by_cgroup(s, 1001);
	ck_assert_str_eq(w->cfg->name, "client");
	ck_assert_ptr_null(nm_state_workload_by_cgroup(s, 2001));
	ck_assert_ptr_eq(nm_state_workload_by_id(s, w->id), w);
	ck_assert_str_eq(nm_state_identity_by_id(s, w->identity_id)->sa, "client");
	/* default/echo is one identity for echo-1 and echo-2. */
	ck_assert_uint_eq(ids_of(s, "default", "echo-1").identity,
			  ids_of(s, "default", "echo-2").identity);
	ck_assert_uint_ne(ids_of(s, "default", "client").identity,
			  ids_of(s, "prod", "other").identity);
	set_ip(&a, "198.18.9.9");
	ck_assert_ptr_null(nm_state_workload_by_addr(s, &a));
	nm_state_free(s);
}
END_TEST

/* Fault 8: a local workload without a cgroup is known, not meshed. */
START_TEST(test_optional_cgroup)
{
	struct nm_state *s;
	struct nm_model m;
	char err[256];

	cl->workloads[1].cgroup[0] = '\0';
	s = build_gen("node-1", 1);
	ck_assert_uint_eq(by_name(s, "default", "echo-1")->cgroup_id, 0);
	ck_assert_int_eq(nm_model_build(s, &m, err, sizeof(err)), 0);
	ck_assert_uint_eq(m.n_workloads, 1); /* only client */
	ck_assert_uint_eq(m.workloads[0].cgroup_id, 1001);
	ck_assert_uint_eq(m.n_endpoints, 5); /* its addresses still count */
	nm_model_free(&m);
	nm_state_free(s);
}
END_TEST

START_TEST(test_agent_cgroup_refused)
{
	struct nm_state_opts o = { .self_node = "node-1", .generation = 1,
				   .cgroup_id = fake_cgroup_id,
				   .agent_cgroup_id = 1002 };
	struct nm_state *s = NULL;
	char err[256];

	ck_assert_int_eq(nm_state_build(cl, ids, &o, &s, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(err, "default/echo-1") && strstr(err, "agent's own cgroup"),
		      "%s", err);
}
END_TEST

START_TEST(test_errors_name_the_workload)
{
	struct nm_state_opts o = { .self_node = "node-1", .generation = 1,
				   .cgroup_id = fake_cgroup_id };
	struct nm_state *s = NULL;
	char err[256];

	set_ip(&cl->workloads[2].ip, "198.18.1.2");
	ck_assert_int_eq(nm_state_build(cl, ids, &o, &s, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "test-cluster.json: ") &&
		      strstr(err, "workloads[0] (default/client)") && strstr(err, "workloads[2] (default/echo-2)") &&
		      strstr(err, "198.18.1.2"), "%s", err);
	set_ip(&cl->workloads[2].ip, "198.18.2.3");
	snprintf(cl->workloads[0].cgroup, NM_PATH_MAX, "nm/n1/missing");
	ck_assert_int_eq(nm_state_build(cl, ids, &o, &s, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "default/client") && strstr(err, "nm/n1/missing"),
		      "%s", err);
	o.self_node = "node-9";
	ck_assert_int_eq(nm_state_build(cl, ids, &o, &s, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "node-9"), "%s", err);
}
END_TEST

/* --- route.c --------------------------------------------------------------- */

static void sockaddr_of(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	struct nm_addr a;

	set_ip(&a, ip);
	nm_addr_to_sockaddr(&a, htons(port), ss);
}

/* The record connect4 writes when client (node-1) connects to echo-2. */
static struct nm_orig record_to(const struct nm_state *s, const char *backend,
				uint16_t port)
{
	const struct nm_st_workload *src = by_name(s, "default", "client"), *dst;
	struct nm_orig o = { 0 };

	set_ip(&o.orig_dst, "198.19.0.10");
	o.orig_port = htons(80);
	set_ip(&o.backend, backend);
	o.backend_port = htons(port);
	dst = nm_state_workload_by_addr(s, &o.backend);
	o.src_workload_id = src->id;
	o.src_identity_id = src->identity_id;
	o.dst_workload_id = dst->id;
	o.dst_identity_id = dst->identity_id;
	o.generation = s->generation;
	o.stamp_ns = NOW_NS - 1000;
	o.flags = NM_ORIG_SERVICE;
	return o;
}

START_TEST(test_route_remote_and_local)
{
	struct nm_state *s = build_gen("node-1", 1);
	struct sockaddr_storage peer, want;
	struct nm_orig o = record_to(s, "198.18.2.3", 8080);
	struct nm_route_out r;
	const char *why = NULL;

	sockaddr_of("198.18.1.2", 40000, &peer);
	ck_assert_int_eq(nm_route_outbound(s, 1, &o, &peer, NOW_NS, &r, &why), 0);
	ck_assert(r.remote);
	ck_assert_str_eq(r.local_id.ns, "default");
	ck_assert_str_eq(r.local_id.sa, "client");
	ck_assert_str_eq(r.peer_id.sa, "echo");
	ck_assert_str_eq(r.peer_id.trust_domain, "cluster.local");
	sockaddr_of("198.18.0.2", 15008, &want);
	ck_assert_mem_eq(&r.connect_to, &want, sizeof(want));
	ck_assert_uint_eq(r.src_workload, by_name(s, "default", "client")->id);

	o = record_to(s, "198.18.1.3", 8080);
	ck_assert_int_eq(nm_route_outbound(s, 1, &o, &peer, NOW_NS, &r, &why), 0);
	ck_assert(!r.remote);
	sockaddr_of("198.18.1.3", 8080, &want);
	ck_assert_mem_eq(&r.connect_to, &want, sizeof(want));
	nm_state_free(s);
}
END_TEST

static void expect_refused(const struct nm_state *s, uint32_t first,
			   const struct nm_orig *o, const char *peer_ip,
			   const char *reason)
{
	struct sockaddr_storage peer;
	struct nm_route_out r;
	const char *why = NULL;

	sockaddr_of(peer_ip, 40000, &peer);
	ck_assert_int_eq(nm_route_outbound(s, first, o, &peer, NOW_NS, &r, &why),
			 -EACCES);
	ck_assert_msg(why && strstr(why, reason), "why=%s want %s", why, reason);
}

START_TEST(test_route_refuses_untrusted_records)
{
	struct nm_state *s = build_gen("node-1", 5);
	struct nm_orig o = record_to(s, "198.18.2.3", 8080), bad;

	/* Generations outside this run: an earlier run, or none yet. */
	bad = o, bad.generation = 2;
	expect_refused(s, 3, &bad, "198.18.1.2", "generation");
	bad = o, bad.generation = 6;
	expect_refused(s, 3, &bad, "198.18.1.2", "generation");
	bad = o, bad.stamp_ns = NOW_NS - NM_ORIG_MAX_AGE_NS - 1;
	expect_refused(s, 3, &bad, "198.18.1.2", "too old");
	bad = o, bad.stamp_ns = NOW_NS + 1;
	expect_refused(s, 3, &bad, "198.18.1.2", "too old");
	/* Fault 5: someone else bound the client's address:port. */
	expect_refused(s, 3, &o, "198.18.1.99", "address");
	expect_refused(s, 3, &o, "198.18.1.3", "address");
	bad = o, bad.src_workload_id = 999;
	expect_refused(s, 3, &bad, "198.18.1.2", "source");
	bad = o, bad.src_identity_id = by_name(s, "default", "echo-1")->identity_id;
	expect_refused(s, 3, &bad, "198.18.1.2", "source");
	/* A remote workload cannot be the source of a redirected flow here. */
	bad = o, bad.src_workload_id = by_name(s, "default", "echo-2")->id;
	bad.src_identity_id = by_name(s, "default", "echo-2")->identity_id;
	expect_refused(s, 3, &bad, "198.18.2.3", "source");
	bad = o, bad.dst_workload_id = by_name(s, "prod", "other")->id;
	expect_refused(s, 3, &bad, "198.18.1.2", "backend");
	bad = o, set_ip(&bad.backend, "198.18.7.7");
	expect_refused(s, 3, &bad, "198.18.1.2", "backend");
	nm_state_free(s);
}
END_TEST

/* Fault 1: a record written before the file was reordered still leaves
 * with the client's identity, never the one now at its old position. */
START_TEST(test_route_identity_survives_reorder)
{
	struct nm_state *a = build_gen("node-1", 1), *b;
	struct nm_orig o = record_to(a, "198.18.2.3", 8080);
	struct sockaddr_storage peer;
	struct nm_route_out r;
	const char *why = NULL;

	next_snapshot();
	swap_workloads(0, 1);
	b = build_gen("node-1", 2);
	sockaddr_of("198.18.1.2", 40000, &peer);
	ck_assert_int_eq(nm_route_outbound(b, 1, &o, &peer, NOW_NS, &r, &why), 0);
	ck_assert_str_eq(r.local_id.sa, "client");
	ck_assert_str_eq(r.peer_id.sa, "echo");
	nm_state_free(a);
	nm_state_free(b);
}
END_TEST

START_TEST(test_route_inbound)
{
	struct nm_state *s = build_gen("node-2", 1);
	const struct nm_st_workload *w = NULL;
	struct nm_spiffe_id asked, got;
	struct sockaddr_storage dst;

	sockaddr_of("198.18.2.3", 8080, &dst);
	ck_assert_int_eq(nm_route_inbound(s, &dst, NULL, &w, &got), 0);
	ck_assert_str_eq(w->cfg->name, "echo-2");
	ck_assert_str_eq(got.sa, "echo");
	nm_route_identity(s, "default", "echo", &asked);
	ck_assert_int_eq(nm_route_inbound(s, &dst, &asked, &w, &got), 0);
	nm_route_identity(s, "prod", "client", &asked);
	ck_assert_int_eq(nm_route_inbound(s, &dst, &asked, &w, &got), -EACCES);
	/* Not on this node, or not a workload at all. */
	sockaddr_of("198.18.1.3", 8080, &dst);
	ck_assert_int_eq(nm_route_inbound(s, &dst, NULL, &w, &got), -ENOENT);
	sockaddr_of("198.18.0.2", 22, &dst);
	ck_assert_int_eq(nm_route_inbound(s, &dst, NULL, &w, &got), -ENOENT);
	nm_state_free(s);
}
END_TEST

/* The NMTP SRC field is believed only from the identity that owns it. */
START_TEST(test_route_check_src)
{
	struct nm_state *s = build_gen("node-2", 1);
	struct nm_spiffe_id client, echo, none;
	struct sockaddr_storage src;
	const char *why = NULL;

	nm_route_identity(s, "default", "client", &client);
	nm_route_identity(s, "default", "echo", &echo);
	memset(&none, 0, sizeof(none));
	/* The client's own address from the client's identity. */
	sockaddr_of("198.18.1.2", 40000, &src);
	ck_assert_int_eq(nm_route_check_src(s, &src, &client, &why), 0);
	/* A valid identity speaking for another workload's address. */
	ck_assert_int_eq(nm_route_check_src(s, &src, &echo, &why), -EACCES);
	ck_assert_str_eq(why, "SRC belongs to a workload of another identity");
	/* Same service account name, other namespace: not the owner. */
	sockaddr_of("198.18.2.4", 40000, &src);
	ck_assert_int_eq(nm_route_check_src(s, &src, &client, &why), -EACCES);
	/* echo-1's IPv6 address belongs to echo too. */
	sockaddr_of("fd00:18::13", 40000, &src);
	ck_assert_int_eq(nm_route_check_src(s, &src, &echo, &why), 0);
	ck_assert_int_eq(nm_route_check_src(s, &src, &client, &why), -EACCES);
	/* Nobody's address (a node's), and no peer identity at all. */
	sockaddr_of("198.18.0.1", 40000, &src);
	ck_assert_int_eq(nm_route_check_src(s, &src, &client, &why), -EACCES);
	ck_assert_str_eq(why, "SRC is no workload's address");
	sockaddr_of("198.18.1.2", 40000, &src);
	ck_assert_int_eq(nm_route_check_src(s, &src, &none, &why), -EACCES);
	/* Another trust domain with the same ns/sa. */
	snprintf(client.trust_domain, sizeof(client.trust_domain), "other.test");
	ck_assert_int_eq(nm_route_check_src(s, &src, &client, &why), -EACCES);
	nm_state_free(s);
}
END_TEST

static Suite *state_suite(void)
{
	Suite *s = suite_create("state");
	TCase *tc = tcase_create("state");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_ids_stable_across_reorder);
	tcase_add_test(tc, test_ids_insert_first_and_delete_middle);
	tcase_add_test(tc, test_indexes);
	tcase_add_test(tc, test_optional_cgroup);
	tcase_add_test(tc, test_agent_cgroup_refused);
	tcase_add_test(tc, test_errors_name_the_workload);
	tcase_add_test(tc, test_route_remote_and_local);
	tcase_add_test(tc, test_route_refuses_untrusted_records);
	tcase_add_test(tc, test_route_identity_survives_reorder);
	tcase_add_test(tc, test_route_inbound);
	tcase_add_test(tc, test_route_check_src);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(state_suite)
