// SPDX-License-Identifier: Apache-2.0
/*
 * check_lb.c - load balancing without a kernel: Maglev tables (size, balance,
 * the disruption bound when one of N endpoints goes), locality tiers, the
 * backend layout nm_model_build() writes for subsets and tiers, and the
 * cluster file's "lb" and "subsets" refusals with their JSON paths.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "datapath/datapath.h"
#include "datapath/model.h"
#include "lb/lb.h"
#include "nm_check.h"

static uint64_t key_of(unsigned int i)
{
	struct nm_addr a;
	char ip[32];

	snprintf(ip, sizeof(ip), "198.18.%u.%u", 1 + i / 200, 2 + i % 200);
	ck_assert_int_eq(nm_addr_parse(ip, &a, NULL), 0);
	return nm_lb_endpoint_key(&a, htons(8080));
}

START_TEST(test_maglev_size)
{
	ck_assert(nm_lb_is_prime(307));
	ck_assert(!nm_lb_is_prime(301));
	ck_assert_uint_eq(nm_lb_maglev_size(0, 0), 0);
	ck_assert_uint_eq(nm_lb_maglev_size(1, 0), 1009);
	ck_assert_uint_eq(nm_lb_maglev_size(3, 0), 3001);
	for (unsigned int n = 1; n <= 700; n += 37) {
		uint32_t m = nm_lb_maglev_size(n, 0);

		ck_assert(nm_lb_is_prime(m));
		ck_assert_uint_le(m, NM_MAGLEV_MAX);
		ck_assert(m >= NM_LB_MAGLEV_FACTOR * n || m == NM_MAGLEV_MAX);
		ck_assert(m >= 100 * n || n > 655);
	}
	ck_assert_uint_eq(nm_lb_maglev_size(1000, 0), NM_MAGLEV_MAX);
	/* The size in force stays while it still fits... */
	ck_assert_uint_eq(nm_lb_maglev_size(2, 3001), 3001);
	ck_assert_uint_eq(nm_lb_maglev_size(99, NM_MAGLEV_MAX), NM_MAGLEV_MAX);
	/* ...and not when it is too small, not prime or too large. */
	ck_assert_uint_eq(nm_lb_maglev_size(4, 3001), 4001);
	ck_assert_uint_eq(nm_lb_maglev_size(2, 3000), 2003);
	ck_assert_uint_eq(nm_lb_maglev_size(2, 70001), 2003);
}
END_TEST

START_TEST(test_maglev_balance)
{
	unsigned int ns[] = { 1, 3, 7, 20, 100 };

	for (size_t t = 0; t < sizeof(ns) / sizeof(ns[0]); t++) {
		unsigned int n = ns[t], cnt[100] = { 0 }, lo = ~0u, hi = 0;
		uint32_t m = nm_lb_maglev_size(n, 0), *table = calloc(m, sizeof(*table));
		uint64_t keys[100];

		for (unsigned int i = 0; i < n; i++)
			keys[i] = key_of(i);
		ck_assert_int_eq(nm_lb_maglev_fill(keys, n, m, table), 0);
		for (uint32_t j = 0; j < m; j++) {
			ck_assert_uint_lt(table[j], n);
			cnt[table[j]]++;
		}
		for (unsigned int i = 0; i < n; i++) {
			lo = cnt[i] < lo ? cnt[i] : lo;
			hi = cnt[i] > hi ? cnt[i] : hi;
		}
		/* Maglev fills in turns: shares differ by at most one turn. */
		ck_assert_uint_le(hi - lo, 1);
		free(table);
	}
	/* Refused: no endpoints, a table not larger than n, not prime. */
	{
		uint64_t k = 1;
		uint32_t tb[4];

		ck_assert_int_eq(nm_lb_maglev_fill(&k, 0, 3, tb), -EINVAL);
		ck_assert_int_eq(nm_lb_maglev_fill(&k, 1, 4, tb), -EINVAL);
	}
}
END_TEST

/*
 * Removing one of N endpoints (at the size in force, as the datapath keeps
 * it) moves at most 1/N + 2 % of the table: the removed endpoint's entries
 * plus the few that Maglev's turns reshuffle. Every endpoint removed once.
 */
START_TEST(test_maglev_disruption)
{
	unsigned int ns[] = { 3, 5, 7, 10, 25, 50, 100, 300 };

	for (size_t t = 0; t < sizeof(ns) / sizeof(ns[0]); t++) {
		unsigned int n = ns[t];
		uint32_t m = nm_lb_maglev_size(n, 0);
		uint32_t *a = calloc(m, sizeof(*a)), *b = calloc(m, sizeof(*b));
		uint64_t keys[300], rest[300];
		double worst = 0;

		for (unsigned int i = 0; i < n; i++)
			keys[i] = key_of(i);
		ck_assert_int_eq(nm_lb_maglev_fill(keys, n, m, a), 0);
		/* Every endpoint up to 25, then every n/25-th. */
		for (unsigned int gone = 0; gone < n; gone += n > 25 ? n / 25 : 1) {
			unsigned int moved = 0, r = 0;

			for (unsigned int i = 0; i < n; i++)
				if (i != gone)
					rest[r++] = keys[i];
			ck_assert_uint_eq(nm_lb_maglev_size(n - 1, m), m);
			ck_assert_int_eq(nm_lb_maglev_fill(rest, n - 1, m, b), 0);
			for (uint32_t j = 0; j < m; j++) {
				/* Same endpoint? b's positions skip `gone`. */
				uint32_t was = a[j], now = b[j] >= gone ? b[j] + 1 : b[j];

				moved += was != now;
			}
			if ((double)moved / m > worst)
				worst = (double)moved / m;
		}
		printf("maglev: N=%u M=%u worst remap on removing one endpoint %.2f%% (bound %.2f%%)\n",
		       n, m, 100 * worst, 100.0 / n + 2);
		ck_assert_msg(worst <= 1.0 / n + 0.02, "N=%u: %.4f", n, worst);
		free(a);
		free(b);
	}
}
END_TEST

START_TEST(test_tiers)
{
	ck_assert_uint_eq(nm_lb_tier(true, "a", "b"), 0);
	ck_assert_uint_eq(nm_lb_tier(false, "a", "a"), 1);
	ck_assert_uint_eq(nm_lb_tier(false, "a", "b"), 2);
	ck_assert_uint_eq(nm_lb_tier(false, "", ""), 1);
	ck_assert_uint_eq(nm_lb_tier(false, NULL, "b"), 2);
	{
		struct nm_lb_subset ss = { .n = { 0, 2, 3 } };
		unsigned int off;

		ck_assert_uint_eq(nm_lb_primary_range(&ss, NM_LB_LOC_FAILOVER, &off), 2);
		ck_assert_uint_eq(off, 0);
		ck_assert_uint_eq(nm_lb_primary_range(&ss, NM_LB_LOC_STRICT, &off), 0);
		ck_assert_uint_eq(nm_lb_primary_range(&ss, NM_LB_LOC_NONE, &off), 5);
		ss.n[1] = 0;
		ck_assert_uint_eq(nm_lb_primary_range(&ss, NM_LB_LOC_FAILOVER, &off), 3);
		ck_assert_uint_eq(off, 0);
		ss.n[0] = 1;
		ck_assert_uint_eq(nm_lb_primary_range(&ss, NM_LB_LOC_FAILOVER, &off), 1);
	}
}
END_TEST

/* --- the cluster file and the model ---------------------------------------- */

#define NAME "lb.json"
#define HDR "'trustDomain':'td','certDir':'c'"
#define NODES                                                               \
	"'nodes':[{'name':'n1','address':'198.18.0.1','labels':{'topology.kubernetes.io/zone':'a'}}," \
	"{'name':'n2','address':'198.18.0.2','labels':{'topology.kubernetes.io/zone':'a'}}," \
	"{'name':'n3','address':'198.18.0.3','labels':{'topology.kubernetes.io/zone':'b'}}]"
#define WL(n, ip, node, ver)                                                \
	"{'name':'" n "','namespace':'default','serviceAccount':'echo','ip':'" ip \
	"','node':'" node "','labels':{'app':'echo','version':'" ver "'}}"
#define WLS                                                                 \
	"'workloads':[" WL("e1", "198.18.1.2", "n1", "v1") ","              \
	WL("e2", "198.18.2.2", "n2", "v1") "," WL("e3", "198.18.3.2", "n3", "v1") "," \
	WL("e4", "198.18.3.3", "n3", "v2") "]"
#define SVC(extra)                                                          \
	"'services':[{'name':'echo','namespace':'default','vip':'198.19.0.10'," \
	"'ports':[{'port':80,'targetPort':8080}],'selector':{'app':'echo'}" extra "}]"

static char *sq(const char *s)
{
	char *d = strdup(s);

	for (char *p = d; *p; p++)
		if (*p == '\'')
			*p = '"';
	return d;
}

static int load(const char *doc, struct nm_cluster **c, char *err)
{
	char *d = sq(doc);
	int ret = nm_cluster_load_buf(d, strlen(d), NAME, c, err, NM_ERRMSG_MAX);

	free(d);
	return ret;
}

static const char *load_err(const char *doc)
{
	static char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	ck_assert_int_ne(load(doc, &c, err), 0);
	ck_assert_ptr_null(c);
	return err;
}

static int no_cgroup(const char *cg, uint64_t *id, void *arg)
{
	(void)cg;
	(void)arg;
	*id = 0;
	return 0;
}

START_TEST(test_config_lb)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	ck_assert_msg(load("{" HDR "," NODES "," WLS "," SVC("") "}", &c, err) == 0, "%s", err);
	ck_assert_int_eq(c->services[0].lb.algorithm, NM_CFG_LB_RANDOM);
	ck_assert_int_eq(c->services[0].lb.locality, NM_CFG_LOC_FAILOVER);
	ck_assert_uint_eq(c->services[0].n_subsets, 0);
	ck_assert_uint_eq(c->nodes[2].n_labels, 1);
	ck_assert_str_eq(c->nodes[2].labels[0].value, "b");
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR "," NODES "," WLS "," SVC(",'lb':{'algorithm':'maglev','locality':'strict'},"
		      "'subsets':[{'name':'v1','selector':{'version':'v1'},'weight':90},"
		      "{'name':'v2','selector':{'version':'v2'},'weight':10}]") "}", &c, err) == 0, "%s", err);
	ck_assert_int_eq(c->services[0].lb.algorithm, NM_CFG_LB_MAGLEV);
	ck_assert_int_eq(c->services[0].lb.locality, NM_CFG_LOC_STRICT);
	ck_assert_uint_eq(c->services[0].n_subsets, 2);
	ck_assert_uint_eq(c->services[0].subsets[1].weight, 10);
	nm_cluster_free(c);

	ck_assert_str_eq(load_err("{" HDR "," NODES "," WLS "," SVC(",'lb':{'algorithm':'ring_hash'}") "}"),
			 NAME ": services[0].lb.algorithm: unknown algorithm \"ring_hash\" (random, round_robin, least_request or maglev)");
	ck_assert_str_eq(load_err("{" HDR "," NODES "," WLS "," SVC(",'lb':{'locality':'zone'}") "}"),
			 NAME ": services[0].lb.locality: unknown locality \"zone\" (failover, strict or none)");
	ck_assert_str_eq(load_err("{" HDR "," NODES "," WLS "," SVC(",'lb':{'algo':'random'}") "}"),
			 NAME ": services[0].lb.algo: unknown field");
	ck_assert_str_eq(load_err("{" HDR "," NODES "," WLS "," SVC(",'subsets':[{'name':'v1','selector':{'version':'v1'},'weight':0},"
				  "{'name':'v2','selector':{'version':'v2'},'weight':0}]") "}"),
			 NAME ": services[0].subsets: the weights add up to 0");
	ck_assert_str_eq(load_err("{" HDR "," NODES "," WLS "," SVC(",'subsets':[{'name':'v1','selector':{'version':'v1'},'weight':50},"
				  "{'name':'v3','selector':{'version':'v3'},'weight':50}]") "}"),
			 NAME ": services[0].subsets[1].selector: subset v3 selects no workload of service default/echo");
	ck_assert_str_eq(load_err("{" HDR "," NODES "," WLS "," SVC(",'subsets':[{'name':'v1','selector':{'version':'v1'},'weight':50},"
				  "{'name':'v1','selector':{'version':'v2'},'weight':50}]") "}"),
			 NAME ": services[0].subsets[1].name: v1 is already used by subsets[0]");
	ck_assert_str_eq(load_err("{" HDR "," NODES "," WLS "," SVC(",'subsets':[{'name':'v1','selector':{'version':'v1'},'weight':-1}]") "}"),
			 NAME ": services[0].subsets[0].weight: -1 is not a weight (0..10000)");
	ck_assert_str_eq(load_err("{" HDR "," NODES "," WLS "," SVC(",'subsets':[]") "}"),
			 NAME ": services[0].subsets: must list at least one subset (or leave subsets out)");
}
END_TEST

/* Layout for node n1 (zone a): per subset, tiers node / zone / other. */
START_TEST(test_model_layout)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;
	struct nm_model m;
	const struct nm_lb_set *set;

	ck_assert_msg(load("{" HDR "," NODES "," WLS "," SVC(",'lb':{'algorithm':'maglev'},"
		      "'subsets':[{'name':'v1','selector':{'version':'v1'},'weight':90},"
		      "{'name':'v2','selector':{'version':'v2'},'weight':10}]") "}", &c, err) == 0, "%s", err);
	ck_assert_msg(nm_model_build_with(c, 0, no_cgroup, NULL, &m, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(m.n_lb_sets, 1);
	ck_assert_uint_eq(m.n_services, 1);
	ck_assert_uint_eq(m.services[0].val.backend_count, 4);
	ck_assert_uint_eq(m.services[0].val.lb_algo, NM_LB_MAGLEV);
	set = &m.lb_sets[0].val;
	ck_assert_uint_eq(m.lb_sets[0].key.slot, NM_BACKEND_SLOT(80, 0, 0));
	ck_assert_uint_eq(set->n_subsets, 2);
	ck_assert_uint_eq(set->total_weight, 100);
	ck_assert_uint_eq(set->subsets[0].weight_end, 90);
	ck_assert_uint_eq(set->subsets[1].weight_end, 100);
	/* v1: e1 here, e2 same zone, e3 elsewhere; v2: e4 elsewhere. */
	ck_assert_uint_eq(set->subsets[0].start, 0);
	ck_assert_uint_eq(set->subsets[0].n[0], 1);
	ck_assert_uint_eq(set->subsets[0].n[1], 1);
	ck_assert_uint_eq(set->subsets[0].n[2], 1);
	ck_assert_uint_eq(set->subsets[1].start, 3);
	ck_assert_uint_eq(set->subsets[1].n[2], 1);
	{
		struct nm_addr e1, e2, e3, e4;

		nm_addr_parse("198.18.1.2", &e1, NULL);
		nm_addr_parse("198.18.2.2", &e2, NULL);
		nm_addr_parse("198.18.3.2", &e3, NULL);
		nm_addr_parse("198.18.3.3", &e4, NULL);
		ck_assert_mem_eq(m.backends[0].val.addr.a, e1.a, 16);
		ck_assert_uint_eq(m.backends[0].val.flags & NM_EP_LOCAL, NM_EP_LOCAL);
		ck_assert_mem_eq(m.backends[1].val.addr.a, e2.a, 16);
		ck_assert_mem_eq(m.backends[2].val.addr.a, e3.a, 16);
		ck_assert_mem_eq(m.backends[3].val.addr.a, e4.a, 16);
		ck_assert_uint_eq(m.backends[3].key.slot, NM_BACKEND_SLOT(80, 0, 3));
	}
	/* Maglev over each subset's primary tier: 1 endpoint -> 1009 entries. */
	ck_assert_uint_eq(set->subsets[0].maglev_size, 1009);
	ck_assert_uint_eq(set->subsets[1].maglev_size, 1009);
	ck_assert_uint_eq(m.n_maglev, 2018);
	ck_assert_uint_eq(m.maglev[1009].key.set, NM_BACKEND_SLOT(80, 0, 1));
	/* The client address maglev hashes travels with the workload. */
	nm_model_free(&m);

	/* Seen from n3 (zone b), locality none: one tier. */
	ck_assert_msg(nm_model_build_with(c, 2, no_cgroup, NULL, &m, err, sizeof(err)) == 0, "%s", err);
	set = &m.lb_sets[0].val;
	ck_assert_uint_eq(set->subsets[0].n[0], 1); /* e3 */
	ck_assert_uint_eq(set->subsets[0].n[1], 0);
	ck_assert_uint_eq(set->subsets[0].n[2], 2);
	nm_model_free(&m);
	nm_cluster_free(c);
}
END_TEST

static Suite *lb_suite(void)
{
	Suite *s = suite_create("lb");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_maglev_size);
	tcase_add_test(tc, test_maglev_balance);
	tcase_add_test(tc, test_maglev_disruption);
	tcase_add_test(tc, test_tiers);
	tcase_add_test(tc, test_config_lb);
	tcase_add_test(tc, test_model_layout);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(lb_suite)
