// SPDX-License-Identifier: Apache-2.0
/*
 * check_model.c - the map model one node builds from a cluster (model.c),
 * cgroup path helpers (cgroup.c) and sockaddr <-> nm_addr conversion.
 *
 * The cluster is made by hand, so these tests do not depend on the parser's
 * file format; cgroup ids come from a table through nm_model_build_with(),
 * so no root and no cgroup directories are needed (one test reads the id of
 * the cgroup v2 mount root, which any user may do).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "datapath/datapath.h"
#include "datapath/model.h"
#include "nm_check.h"

#include "cluster_fixture.h"

/* --- lookups in a built model ---------------------------------------------- */

static struct nm_addr addr_of(const char *s)
{
	struct nm_addr ip;
	struct nm_addr a;

	set_ip(&ip, s);
	memcpy(a.a, ip.a, sizeof(a.a));
	return a;
}

static const struct nm_model_workload *find_wl(const struct nm_model *m,
					       uint64_t cgroup_id)
{
	for (unsigned int i = 0; i < m->n_workloads; i++)
		if (m->workloads[i].cgroup_id == cgroup_id)
			return &m->workloads[i];
	return NULL;
}

static const struct nm_endpoint *find_ep(const struct nm_model *m, const char *ip)
{
	struct nm_addr a = addr_of(ip);

	for (unsigned int i = 0; i < m->n_endpoints; i++)
		if (memcmp(&m->endpoints[i].key, &a, sizeof(a)) == 0)
			return &m->endpoints[i].val;
	return NULL;
}

static const struct nm_service *find_svc(const struct nm_model *m,
					 const char *vip, uint16_t port)
{
	struct nm_svc_key k;

	memset(&k, 0, sizeof(k));
	k.vip = addr_of(vip);
	k.port = htons(port);
	k.proto = IPPROTO_TCP;
	for (unsigned int i = 0; i < m->n_services; i++)
		if (memcmp(&m->services[i].key, &k, sizeof(k)) == 0)
			return &m->services[i].val;
	return NULL;
}

static const struct nm_backend *find_be(const struct nm_model *m,
					uint32_t service_id, uint32_t slot)
{
	for (unsigned int i = 0; i < m->n_backends; i++)
		if (m->backends[i].key.service_id == service_id &&
		    m->backends[i].key.slot == slot)
			return &m->backends[i].val;
	return NULL;
}

static void assert_addr(const struct nm_addr *a, const char *ip)
{
	struct nm_addr want = addr_of(ip);

	ck_assert_mem_eq(a->a, want.a, sizeof(want.a));
}

/* --- tests ------------------------------------------------------------------ */

START_TEST(test_local_workloads_and_ids)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];
	int calls = 0;

	ck_assert_int_eq(nm_model_build_with(cl, 0, fake_cgroup_id, &calls, &m,
					     err, sizeof(err)), 0);
	/* Only node-1's workloads are resolved and present. */
	ck_assert_int_eq(calls, 2);
	ck_assert_uint_eq(m.n_workloads, 2);
	const struct nm_model_workload *c = find_wl(&m, 1001);
	const struct nm_model_workload *e = find_wl(&m, 1002);

	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(c->val.workload_id, 1);
	ck_assert_uint_eq(c->val.identity_id, 1); /* default/client */
	ck_assert_uint_eq(c->val.namespace_id, 1);
	ck_assert_uint_eq(c->val.flags, NM_WL_MESHED);
	ck_assert_uint_eq(e->val.workload_id, 2);
	ck_assert_uint_eq(e->val.identity_id, 2); /* default/echo */
	ck_assert_uint_eq(e->val.namespace_id, 1);
	nm_model_free(&m);

	ck_assert_int_eq(nm_model_build_with(cl, 1, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), 0);
	ck_assert_uint_eq(m.n_workloads, 2);
	e = find_wl(&m, 2001);
	const struct nm_model_workload *o = find_wl(&m, 2002);

	ck_assert_ptr_nonnull(e);
	ck_assert_ptr_nonnull(o);
	ck_assert_uint_eq(e->val.workload_id, 3);
	/* Same (namespace, serviceAccount) as echo-1: same identity on every
	 * node. */
	ck_assert_uint_eq(e->val.identity_id, 2);
	ck_assert_uint_eq(o->val.workload_id, 4);
	ck_assert_uint_eq(o->val.identity_id, 3); /* prod/client, not default/client */
	ck_assert_uint_eq(o->val.namespace_id, 2);
	nm_model_free(&m);
	ck_assert_ptr_null(m.workloads);
	ck_assert_uint_eq(m.n_workloads, 0);
}
END_TEST

START_TEST(test_endpoints_cover_cluster)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];
	const struct nm_endpoint *ep;

	ck_assert_int_eq(nm_model_build_with(cl, 0, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), 0);
	ck_assert_uint_eq(m.n_endpoints, 5); /* four v4, one v6 */
	ep = find_ep(&m, "198.18.1.3");
	ck_assert_ptr_nonnull(ep);
	ck_assert_uint_eq(ep->workload_id, 2);
	ck_assert_uint_eq(ep->identity_id, 2);
	ck_assert_uint_eq(ep->node_id, 1);
	ck_assert_uint_eq(ep->flags, NM_EP_LOCAL);
	ep = find_ep(&m, "fd00:18::13");
	ck_assert_ptr_nonnull(ep);
	ck_assert_uint_eq(ep->workload_id, 2);
	ck_assert_uint_eq(ep->flags, NM_EP_LOCAL);
	ep = find_ep(&m, "198.18.2.4");
	ck_assert_ptr_nonnull(ep);
	ck_assert_uint_eq(ep->workload_id, 4);
	ck_assert_uint_eq(ep->identity_id, 3);
	ck_assert_uint_eq(ep->node_id, 2);
	ck_assert_uint_eq(ep->flags, 0);
	nm_model_free(&m);

	/* Seen from node-2 the local flag moves. */
	ck_assert_int_eq(nm_model_build_with(cl, 1, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), 0);
	ck_assert_uint_eq(find_ep(&m, "198.18.1.3")->flags, 0);
	ck_assert_uint_eq(find_ep(&m, "198.18.2.3")->flags, NM_EP_LOCAL);
	nm_model_free(&m);
}
END_TEST

START_TEST(test_service_two_endpoints_two_nodes)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];
	const struct nm_service *svc;
	const struct nm_backend *be;

	ck_assert_int_eq(nm_model_build_with(cl, 0, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), 0);
	/* echo: 2 ports x (v4 + v6); bare: 1 port */
	ck_assert_uint_eq(m.n_services, 5);
	ck_assert_uint_eq(m.n_backends, 8);

	svc = find_svc(&m, "198.19.0.10", 80);
	ck_assert_ptr_nonnull(svc);
	ck_assert_uint_eq(svc->service_id, 1);
	ck_assert_uint_eq(svc->backend_count, 2);
	ck_assert_uint_eq(svc->lb_algo, NM_LB_RANDOM);

	be = find_be(&m, 1, NM_BACKEND_SLOT(80, 0, 0));
	ck_assert_ptr_nonnull(be);
	assert_addr(&be->addr, "198.18.1.3");
	ck_assert_uint_eq(ntohs(be->port), 8080);
	ck_assert_uint_eq(be->flags, NM_EP_LOCAL);
	ck_assert_uint_eq(be->workload_id, 2);
	ck_assert_uint_eq(be->identity_id, 2);
	ck_assert_uint_eq(be->weight, 1);
	be = find_be(&m, 1, NM_BACKEND_SLOT(80, 0, 1));
	ck_assert_ptr_nonnull(be);
	assert_addr(&be->addr, "198.18.2.3");
	ck_assert_uint_eq(be->flags, 0);
	ck_assert_uint_eq(be->workload_id, 3);
	/* "other" has app=echo but lives in prod. */
	ck_assert_ptr_null(find_be(&m, 1, NM_BACKEND_SLOT(80, 0, 2)));

	/* The second port has its own set with its own targetPort. */
	svc = find_svc(&m, "198.19.0.10", 443);
	ck_assert_ptr_nonnull(svc);
	ck_assert_uint_eq(svc->backend_count, 2);
	be = find_be(&m, 1, NM_BACKEND_SLOT(443, 0, 1));
	ck_assert_ptr_nonnull(be);
	ck_assert_uint_eq(ntohs(be->port), 8443);
	nm_model_free(&m);
}
END_TEST

START_TEST(test_service_v6_vip)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];
	const struct nm_service *svc;
	const struct nm_backend *be;

	ck_assert_int_eq(nm_model_build_with(cl, 0, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), 0);
	svc = find_svc(&m, "fd00:19::10", 80);
	ck_assert_ptr_nonnull(svc);
	ck_assert_uint_eq(svc->service_id, 1);
	ck_assert_uint_eq(svc->backend_count, 2);
	/* echo-1 has a v6 address, echo-2 serves the v6 VIP on its v4 one. */
	be = find_be(&m, 1, NM_BACKEND_SLOT(80, 1, 0));
	ck_assert_ptr_nonnull(be);
	assert_addr(&be->addr, "fd00:18::13");
	ck_assert_uint_eq(ntohs(be->port), 8080);
	be = find_be(&m, 1, NM_BACKEND_SLOT(80, 1, 1));
	ck_assert_ptr_nonnull(be);
	assert_addr(&be->addr, "198.18.2.3");
	ck_assert_ptr_nonnull(find_svc(&m, "fd00:19::10", 443));
	nm_model_free(&m);
}
END_TEST

START_TEST(test_service_without_selector)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];
	const struct nm_service *svc;

	ck_assert_int_eq(nm_model_build_with(cl, 0, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), 0);
	svc = find_svc(&m, "198.19.0.11", 81);
	ck_assert_ptr_nonnull(svc);
	ck_assert_uint_eq(svc->service_id, 2);
	ck_assert_uint_eq(svc->backend_count, 0);
	ck_assert_ptr_null(find_be(&m, 2, NM_BACKEND_SLOT(81, 0, 0)));
	ck_assert_ptr_null(find_svc(&m, "198.19.0.11", 80));
	nm_model_free(&m);
}
END_TEST

START_TEST(test_keys_have_zero_padding)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];

	/* Map keys are compared as bytes by the kernel. */
	ck_assert_int_eq(nm_model_build_with(cl, 0, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), 0);
	for (unsigned int i = 0; i < m.n_services; i++) {
		ck_assert_uint_eq(m.services[i].key.pad, 0);
		ck_assert_uint_eq(m.services[i].key.proto, IPPROTO_TCP);
		ck_assert_uint_eq(m.services[i].val.flags, 0);
	}
	nm_model_free(&m);
}
END_TEST

START_TEST(test_missing_cgroup_names_workload)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];

	snprintf(cl->workloads[1].cgroup, NM_PATH_MAX, "nm/n1/gone");
	ck_assert_int_eq(nm_model_build_with(cl, 0, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), -ENOENT);
	ck_assert_str_eq(err, "test-cluster.json: workloads[1] (default/echo-1): "
			      "cgroup \"nm/n1/gone\": No such file or directory");
	ck_assert_ptr_null(m.workloads);
	ck_assert_ptr_null(m.services);
	/* A remote workload's cgroup is not this node's business. */
	ck_assert_int_eq(nm_model_build_with(cl, 1, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), 0);
	nm_model_free(&m);
}
END_TEST

START_TEST(test_bad_node_index)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];

	ck_assert_int_eq(nm_model_build_with(cl, 2, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "node index 2"));
	ck_assert_int_eq(nm_model_build_with(cl, -1, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(test_duplicate_address)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];

	set_ip(&cl->workloads[3].ip, "198.18.1.2");
	ck_assert_int_eq(nm_model_build_with(cl, 0, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "test-cluster.json: workloads[0] (default/client) and "
			      "workloads[3] (prod/other) share the address 198.18.1.2");
}
END_TEST

START_TEST(test_duplicate_vip_port)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];

	set_ip(&cl->services[1].vip, "198.19.0.10");
	cl->services[1].ports[0].port = 443;
	ck_assert_int_eq(nm_model_build_with(cl, 0, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "test-cluster.json: services[0] (default/echo) and "
			      "services[1] (default/bare) use the same VIP and port 443");
}
END_TEST

START_TEST(test_shared_cgroup)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];

	snprintf(cl->workloads[1].cgroup, NM_PATH_MAX, "nm/n1/client");
	ck_assert_int_eq(nm_model_build_with(cl, 0, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "are in the same cgroup"));
}
END_TEST

START_TEST(test_identity_first_appearance)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];

	/* Moving prod/client to the front renumbers identities and
	 * namespaces by first appearance. */
	struct nm_workload_cfg tmp = cl->workloads[0];

	cl->workloads[0] = cl->workloads[3];
	cl->workloads[3] = tmp;
	ck_assert_int_eq(nm_model_build_with(cl, 0, fake_cgroup_id, NULL, &m,
					     err, sizeof(err)), 0);
	/* node-1 now holds echo-1 (index 1) and client (index 3). */
	const struct nm_model_workload *c = find_wl(&m, 1001);
	const struct nm_model_workload *e = find_wl(&m, 1002);

	ck_assert_uint_eq(c->val.workload_id, 4);
	ck_assert_uint_eq(c->val.identity_id, 3); /* after prod/client, default/echo */
	ck_assert_uint_eq(c->val.namespace_id, 2);
	ck_assert_uint_eq(e->val.identity_id, 2);
	ck_assert_uint_eq(e->val.namespace_id, 2);
	nm_model_free(&m);
}
END_TEST

START_TEST(test_real_cgroup_resolution)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX], mnt[256];
	uint64_t root_id;

	/* The v2 mount root exists everywhere nodemesh runs and its id can be
	 * read without privileges. */
	ck_assert_int_eq(nm_cgroup2_mount(mnt, sizeof(mnt)), 0);
	ck_assert_int_eq(nm_cgroup_id(mnt, &root_id), 0);
	snprintf(cl->workloads[0].cgroup, NM_PATH_MAX, ".");
	snprintf(cl->workloads[1].cgroup, NM_PATH_MAX, "%s/nm-no-such-cgroup",
		 mnt);
	ck_assert_int_eq(nm_model_build_with(cl, 0, nm_model_cgroup_id, NULL, &m, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "workloads[1] (default/echo-1)"));
	ck_assert_ptr_nonnull(strstr(err, "nm-no-such-cgroup"));

	cl->workloads[1].node = 1;
	ck_assert_int_eq(nm_model_build_with(cl, 0, nm_model_cgroup_id, NULL, &m, err, sizeof(err)), 0);
	ck_assert_uint_eq(m.n_workloads, 1);
	ck_assert_uint_eq(m.workloads[0].cgroup_id, root_id);
	nm_model_free(&m);

	/* A directory outside cgroupfs is not a cgroup. */
	snprintf(cl->workloads[0].cgroup, NM_PATH_MAX, "/tmp");
	ck_assert_int_eq(nm_model_build_with(cl, 0, nm_model_cgroup_id, NULL, &m, err, sizeof(err)), -EMEDIUMTYPE);
	ck_assert_ptr_nonnull(strstr(err, "not a cgroup v2 directory"));
}
END_TEST

START_TEST(test_cgroup_resolve)
{
	char mnt[NM_PATH_MAX], buf[NM_PATH_MAX], want[NM_PATH_MAX + 16];

	ck_assert_int_eq(nm_cgroup2_mount(mnt, sizeof(mnt)), 0);
	ck_assert_int_eq(mnt[0], '/');
	ck_assert_int_eq(nm_cgroup_resolve("/x/y", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/x/y");
	ck_assert_int_eq(nm_cgroup_resolve("nm/a", buf, sizeof(buf)), 0);
	snprintf(want, sizeof(want), "%s/nm/a", mnt);
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(nm_cgroup_resolve("./nm/a", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(nm_cgroup_resolve("", buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(nm_cgroup_resolve("/long/path", buf, 5), -ENAMETOOLONG);
	ck_assert_int_eq(nm_cgroup2_mount(buf, 2), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_sockaddr_roundtrip)
{
	struct sockaddr_storage ss, back;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct nm_addr a;
	__be16 port;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(15001);
	inet_pton(AF_INET, "198.18.1.2", &sin->sin_addr);
	nm_addr_from_sockaddr(&ss, &a, &port);
	assert_addr(&a, "198.18.1.2");
	ck_assert_uint_eq(port, htons(15001));
	nm_addr_to_sockaddr(&a, port, &back);
	ck_assert_int_eq(back.ss_family, AF_INET);
	ck_assert_mem_eq(&back, &ss, sizeof(struct sockaddr_in));

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(8080);
	inet_pton(AF_INET6, "fd00:18::13", &sin6->sin6_addr);
	nm_addr_from_sockaddr(&ss, &a, &port);
	assert_addr(&a, "fd00:18::13");
	ck_assert_uint_eq(port, htons(8080));
	nm_addr_to_sockaddr(&a, port, &back);
	ck_assert_int_eq(back.ss_family, AF_INET6);
	ck_assert_mem_eq(&back, &ss, sizeof(struct sockaddr_in6));

	/* A v4-mapped v6 peer yields the same key as the v4 peer, which is
	 * what sockops stores for an AF_INET6 socket talking v4. */
	inet_pton(AF_INET6, "::ffff:198.18.1.2", &sin6->sin6_addr);
	nm_addr_from_sockaddr(&ss, &a, &port);
	assert_addr(&a, "198.18.1.2");
	nm_addr_to_sockaddr(&a, port, &back);
	ck_assert_int_eq(back.ss_family, AF_INET);

	ss.ss_family = AF_UNIX;
	nm_addr_from_sockaddr(&ss, &a, &port);
	ck_assert_uint_eq(port, 0);
	for (unsigned int i = 0; i < sizeof(a.a); i++)
		ck_assert_uint_eq(a.a[i], 0);
}
END_TEST

static Suite *model_suite(void)
{
	Suite *s = suite_create("model");
	TCase *tc = tcase_create("model");
	TCase *tc_misc = tcase_create("helpers");

	tcase_add_checked_fixture(tc, cluster_setup, cluster_teardown);
	tcase_add_test(tc, test_local_workloads_and_ids);
	tcase_add_test(tc, test_endpoints_cover_cluster);
	tcase_add_test(tc, test_service_two_endpoints_two_nodes);
	tcase_add_test(tc, test_service_v6_vip);
	tcase_add_test(tc, test_service_without_selector);
	tcase_add_test(tc, test_keys_have_zero_padding);
	tcase_add_test(tc, test_missing_cgroup_names_workload);
	tcase_add_test(tc, test_bad_node_index);
	tcase_add_test(tc, test_duplicate_address);
	tcase_add_test(tc, test_duplicate_vip_port);
	tcase_add_test(tc, test_shared_cgroup);
	tcase_add_test(tc, test_identity_first_appearance);
	tcase_add_test(tc, test_real_cgroup_resolution);
	suite_add_tcase(s, tc);

	tcase_add_test(tc_misc, test_cgroup_resolve);
	tcase_add_test(tc_misc, test_sockaddr_roundtrip);
	suite_add_tcase(s, tc_misc);
	return s;
}

NM_CHECK_MAIN(model_suite)
