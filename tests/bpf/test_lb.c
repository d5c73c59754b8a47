// SPDX-License-Identifier: Apache-2.0
/*
 * test_lb.c - the kernel's backend choice (bpf/nm_lb.bpf.h) over real
 * connections. Run as root.
 *
 * World (removed on exit): a private network namespace with loopback only,
 * a cgroup subtree <cgroup2>/nm-lbtest-<pid>/root/c<i> (programs attached
 * at root), pins under /sys/fs/bpf/nodemesh/lbtest-<pid>. The test is the
 * "agent": it listens on 127.0.0.1:P, and a child in a client cgroup makes
 * connections to a service VIP one after another; each lands on the
 * listener, and the record connect4 wrote (nm_datapath_take_orig) says which
 * endpoint the kernel chose. Endpoints need not exist: nothing dials them.
 *
 * Bounds: chi-square with 2 degrees of freedom below 13.82 (p = 0.001) for
 * random and least_request with 3 endpoints; round_robin within the number
 * of CPUs; least_request holding 60 open connections within 3 of each
 * other; canary shares within 2 points of the weights over 10,000; maglev
 * equal to the agent's table for every client. connect4's cost per connect
 * from bpf_stats run_time_ns is printed per algorithm.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "config/config.h"
#include "datapath/datapath.h"
#include "datapath/model.h"
#include "lb/lb.h"
#include "../unit/nm_check.h"

#define VIP "198.19.0.10"
#define N_CLIENTS 24

static pid_t g_main_pid;
static char g_instance[64], g_pin[256], g_base[384], g_root[512];
static char g_client[N_CLIENTS][640];
static struct nm_datapath *dp;
static int lfd = -1;
static uint16_t lport;
static struct nm_cluster *cl;

#include "bpf_world.h"

/* --- cluster ----------------------------------------------------------------- */

static void label(struct nm_label *l, unsigned int *n, const char *k, const char *v)
{
	snprintf(l[*n].key, NM_NAME_MAX, "%s", k);
	snprintf(l[*n].value, NM_NAME_MAX, "%s", v);
	(*n)++;
}

static struct nm_workload_cfg *add_wl(const char *name, const char *app,
				      const char *ver, const char *ip, int node,
				      const char *cgroup)
{
	struct nm_workload_cfg *w = &cl->workloads[cl->n_workloads++];

	snprintf(w->name, NM_NAME_MAX, "%s", name);
	snprintf(w->ns, NM_NAME_MAX, "default");
	snprintf(w->sa, NM_NAME_MAX, "%s", app);
	label(w->labels, &w->n_labels, "app", app);
	if (ver)
		label(w->labels, &w->n_labels, "version", ver);
	ck_assert_int_eq(nm_addr_parse(ip, &w->ip, NULL), 0);
	w->node = node;
	snprintf(w->cgroup, NM_PATH_MAX, "%s", cgroup ? cgroup : "");
	return w;
}

/*
 * Nodes n1 (this one, zone a), n2 (zone a), n3 (zone b); clients c0..c23 on
 * n1; endpoints e1 (n1), e2 (n2), e3 (n3) with version v1, v1, v2.
 */
static void build_cluster(enum nm_lb_algo_cfg algo, enum nm_lb_locality_cfg loc)
{
	struct nm_service_cfg *s;
	char name[32], ip[32];

	cl = calloc(1, sizeof(*cl));
	ck_assert_ptr_nonnull(cl);
	snprintf(cl->path, sizeof(cl->path), "lbtest");
	cl->n_nodes = 3;
	cl->nodes = calloc(3, sizeof(*cl->nodes));
	for (int i = 0; i < 3; i++) {
		snprintf(cl->nodes[i].name, NM_NAME_MAX, "n%d", i + 1);
		label(cl->nodes[i].labels, &cl->nodes[i].n_labels, NM_LB_ZONE_LABEL,
		      i < 2 ? "a" : "b");
	}
	cl->workloads = calloc(N_CLIENTS + 3, sizeof(*cl->workloads));
	for (int i = 0; i < N_CLIENTS; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		snprintf(ip, sizeof(ip), "198.18.1.%d", 10 + i);
		add_wl(name, "client", NULL, ip, 0, g_client[i]);
	}
	add_wl("e1", "echo", "v1", "198.18.1.2", 0, NULL);
	add_wl("e2", "echo", "v1", "198.18.2.2", 1, NULL);
	add_wl("e3", "echo", "v2", "198.18.3.2", 2, NULL);
	cl->services = calloc(1, sizeof(*cl->services));
	cl->n_services = 1;
	s = &cl->services[0];
	snprintf(s->name, NM_NAME_MAX, "echo");
	snprintf(s->ns, NM_NAME_MAX, "default");
	ck_assert_int_eq(nm_addr_parse(VIP, &s->vip, NULL), 0);
	s->ports[0] = (struct nm_port_map){ 80, 8080 };
	s->n_ports = 1;
	label(s->selector, &s->n_selector, "app", "echo");
	s->lb.algorithm = algo;
	s->lb.locality = loc;
}

static void set_subsets(uint32_t w1, uint32_t w2)
{
	struct nm_service_cfg *s = &cl->services[0];

	s->n_subsets = 2;
	snprintf(s->subsets[0].name, NM_NAME_MAX, "v1");
	s->subsets[0].n_selector = 0;
	label(s->subsets[0].selector, &s->subsets[0].n_selector, "version", "v1");
	s->subsets[0].weight = w1;
	snprintf(s->subsets[1].name, NM_NAME_MAX, "v2");
	s->subsets[1].n_selector = 0;
	label(s->subsets[1].selector, &s->subsets[1].n_selector, "version", "v2");
	s->subsets[1].weight = w2;
}

static struct nm_model g_model;

static void sync_cluster(void)
{
	char err[NM_ERRMSG_MAX];

	nm_model_free(&g_model);
	ck_assert_msg(nm_model_build_with(cl, 0, nm_model_cgroup_id, NULL, &g_model,
					  err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(nm_datapath_sync(dp, &g_model), 0);
}

static void free_cluster(void)
{
	if (!cl)
		return;
	free(cl->nodes);
	free(cl->workloads);
	free(cl->services);
	free(cl);
	cl = NULL;
}

/* Workload index of the endpoint with this id (e1 = 0 .. e3 = 2), or -1. */
static int ep_of(uint32_t wl_id)
{
	for (unsigned int i = 0; i < g_model.n_backends; i++)
		if (g_model.backends[i].val.workload_id == wl_id) {
			struct nm_addr a = g_model.backends[i].val.addr;

			return a.a[14] - 1; /* 198.18.<1|2|3>.2 */
		}
	return -1;
}

/* --- fixture ---------------------------------------------------------------- */

static void setup(void)
{
	struct nm_datapath_opts o = { .instance = g_instance, .cgroup_root = g_root };
	struct nm_agent_state st;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	char err[NM_ERRMSG_MAX];

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	nm_datapath_remove_pins(g_instance);
	ck_assert_msg(nm_datapath_open(&o, &dp, err, sizeof(err)) == 0, "%s", err);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(lfd, 512), 0);
	getsockname(lfd, (struct sockaddr *)&sin, &len);
	lport = ntohs(sin.sin_port);
	memset(&st, 0, sizeof(st));
	nm_addr_parse("127.0.0.1", &st.agent_v4, NULL);
	st.outbound_port = htons(lport);
	st.config_generation = 1;
	ck_assert_int_eq(nm_datapath_set_state(dp, &st), 0);
	memset(&g_model, 0, sizeof(g_model));
}

static void teardown(void)
{
	nm_model_free(&g_model);
	nm_datapath_close(dp);
	dp = NULL;
	nm_datapath_remove_pins(g_instance);
	if (lfd >= 0)
		close(lfd);
	lfd = -1;
	free_cluster();
}

/* --- clients ----------------------------------------------------------------- */


static int vip_connect(void)
{
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(80) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, VIP, &dst.sin_addr);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst))) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static void rst_close(int fd)
{
	struct linger l = { 1, 0 };

	/* No TIME_WAIT: thousands of connects reuse the port range. */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

/*
 * A child in client cgroup ci makes n connections one after another: each
 * waits for the test to take its record and close, then goes away with a
 * RST. hold: keep them all open until a byte arrives on *ctl, report the
 * first connect error on the pipe.
 */
static pid_t client_run(int ci, int n, bool hold, int *ctl)
{
	int res[2], go[2];
	pid_t pid;

	ck_assert_int_eq(pipe2(res, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char procs[PATH_MAX], b;
		int *fds = calloc(n, sizeof(int)), err = 0;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(120);
		snprintf(procs, sizeof(procs), "%s/cgroup.procs", g_client[ci]);
		if (write_str(procs, "0"))
			_exit(3);
		for (int i = 0; i < n && !err; i++) {
			fds[i] = vip_connect();
			if (fds[i] < 0) {
				err = -fds[i];
				break;
			}
			if (!hold) {
				/* EOF: the test closed its side. */
				while (read(fds[i], &b, 1) > 0)
					;
				rst_close(fds[i]);
			}
		}
		if (write(res[1], &err, sizeof(err)) != sizeof(err))
			_exit(2);
		if (hold) {
			if (read(go[0], &b, 1) < 0)
				_exit(2);
			for (int i = 0; i < n; i++)
				if (fds[i] >= 0)
					rst_close(fds[i]);
		}
		_exit(0);
	}
	close(res[1]);
	close(go[0]);
	ctl[0] = res[0];
	ctl[1] = go[1];
	return pid;
}

/* Takes n redirected connections, counting the chosen endpoint of each. */
static void take_n(int n, unsigned int cnt[3], uint32_t *wl_ids)
{
	for (int i = 0; i < n; i++) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		struct nm_orig o;
		int fd, e;

		ck_assert_msg(poll(&p, 1, 5000) == 1, "connection %d never came", i);
		fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(nm_datapath_take_orig(dp, &peer, &o), 0);
		close(fd);
		e = ep_of(o.dst_workload_id);
		ck_assert_int_ge(e, 0);
		cnt[e]++;
		if (wl_ids)
			wl_ids[i] = o.dst_workload_id;
	}
}

static int client_wait(pid_t pid, int *ctl)
{
	int err = -1, status;

	ck_assert_int_eq(read(ctl[0], &err, sizeof(err)), sizeof(err));
	close(ctl[1]);
	close(ctl[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	return err;
}

/* n sequential connections from client ci; counts per endpoint. */
static void run_conns(int ci, int n, unsigned int cnt[3])
{
	int ctl[2];
	pid_t pid = client_run(ci, n, false, ctl);

	take_n(n, cnt, NULL);
	ck_assert_int_eq(client_wait(pid, ctl), 0);
}

/* --- connect4 cost ------------------------------------------------------------ */

static int g_stats_fd = -1;

static void prog_stats(uint64_t *ns, uint64_t *cnt)
{
	struct bpf_link_info li;
	struct bpf_prog_info pi;
	__u32 len = sizeof(li);
	char path[PATH_MAX];
	int fd, pfd;

	snprintf(path, sizeof(path), "%s/link_connect4", g_pin);
	fd = bpf_obj_get(path);
	ck_assert_int_ge(fd, 0);
	memset(&li, 0, sizeof(li));
	ck_assert_int_eq(bpf_obj_get_info_by_fd(fd, &li, &len), 0);
	close(fd);
	pfd = bpf_prog_get_fd_by_id(li.prog_id);
	ck_assert_int_ge(pfd, 0);
	memset(&pi, 0, sizeof(pi));
	len = sizeof(pi);
	ck_assert_int_eq(bpf_obj_get_info_by_fd(pfd, &pi, &len), 0);
	close(pfd);
	*ns = pi.run_time_ns;
	*cnt = pi.run_cnt;
}

static double chi2(const unsigned int *c, const double *expect, int k)
{
	double x = 0;

	for (int i = 0; i < k; i++)
		x += (c[i] - expect[i]) * (c[i] - expect[i]) / expect[i];
	return x;
}

/* --- tests ------------------------------------------------------------------ */

static const char *const algo_name[] = { "random", "round_robin",
					 "least_request", "maglev" };

/* random, round_robin, least_request (sequential): 3000 connects over 3. */
START_TEST(test_distribution)
{
	enum nm_lb_algo_cfg algo = (enum nm_lb_algo_cfg)_i;
	unsigned int cnt[3] = { 0 }, lo, hi;
	const double ex[3] = { 1000, 1000, 1000 };
	uint64_t ns0, c0, ns1, c1;
	double x;

	build_cluster(algo, NM_CFG_LOC_NONE);
	sync_cluster();
	prog_stats(&ns0, &c0);
	run_conns(0, 3000, cnt);
	prog_stats(&ns1, &c1);
	x = chi2(cnt, ex, 3);
	lo = cnt[0] < cnt[1] ? cnt[0] : cnt[1];
	lo = lo < cnt[2] ? lo : cnt[2];
	hi = cnt[0] > cnt[1] ? cnt[0] : cnt[1];
	hi = hi > cnt[2] ? hi : cnt[2];
	printf("lb %s: e1=%u e2=%u e3=%u chi2=%.2f max-min=%u; connect4 %.0f ns per connect (%llu runs)\n",
	       algo_name[algo], cnt[0], cnt[1], cnt[2], x, hi - lo,
	       c1 > c0 ? (double)(ns1 - ns0) / (double)(c1 - c0) : 0.0,
	       (unsigned long long)(c1 - c0));
	ck_assert_uint_eq(c1 - c0, 3000);
	if (algo == NM_CFG_LB_ROUND_ROBIN)
		ck_assert_uint_le(hi - lo, (unsigned int)libbpf_num_possible_cpus());
	else
		ck_assert_msg(x < 13.82, "chi2 %.2f", x);
}
END_TEST

/* least_request with connections held open: counts stay balanced, and
 * closing them brings every count back to 0. */
START_TEST(test_least_request_open)
{
	unsigned int cnt[3] = { 0 };
	uint32_t ids[60];
	uint64_t a;
	int ctl[2];
	pid_t pid;

	build_cluster(NM_CFG_LB_LEAST_REQUEST, NM_CFG_LOC_NONE);
	sync_cluster();
	pid = client_run(0, 60, true, ctl);
	take_n(60, cnt, ids);
	printf("lb least_request, 60 held open: e1=%u e2=%u e3=%u\n", cnt[0],
	       cnt[1], cnt[2]);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_ge(cnt[i], 17);
		ck_assert_uint_le(cnt[i], 23);
	}
	ck_assert_int_eq(nm_datapath_lb_active(dp, ids[0], &a), 0);
	ck_assert_uint_eq(a, cnt[ep_of(ids[0])]);
	ck_assert_int_eq(write(ctl[1], "x", 1), 1);
	ck_assert_int_eq(client_wait(pid, ctl), 0);
	for (int i = 0; i < 3; i++) {
		uint32_t id = 0;

		for (int k = 0; k < 60; k++)
			if (ep_of(ids[k]) == i)
				id = ids[k];
		for (int t = 0; t < 100; t++) {
			ck_assert_int_eq(nm_datapath_lb_active(dp, id, &a), 0);
			if (a == 0)
				break;
			usleep(20000);
		}
		ck_assert_uint_eq(a, 0);
	}
}
END_TEST

/* maglev: every client always lands where the agent's table says. */
START_TEST(test_maglev_clients)
{
	unsigned int per[3] = { 0 };
	uint64_t ns0, c0, ns1, c1;

	build_cluster(NM_CFG_LB_MAGLEV, NM_CFG_LOC_NONE);
	sync_cluster();
	ck_assert_uint_eq(g_model.lb_sets[0].val.subsets[0].maglev_size, 3001);
	prog_stats(&ns0, &c0);
	for (int ci = 0; ci < N_CLIENTS; ci++) {
		const struct nm_workload_cfg *w = &cl->workloads[ci];
		uint32_t idx = nm_lb_hash_addr(&w->ip) % 3001, want = ~0u;
		unsigned int cnt[3] = { 0 };

		for (unsigned int k = 0; k < g_model.n_maglev; k++)
			if (g_model.maglev[k].key.idx == idx)
				want = g_model.maglev[k].val;
		ck_assert_uint_lt(want, 3);
		run_conns(ci, 10, cnt);
		/* Slots 0..2 are e1..e3 (locality none, one subset). */
		ck_assert_msg(cnt[want] == 10, "client %d: %u %u %u, table says e%u",
			      ci, cnt[0], cnt[1], cnt[2], want + 1);
		per[want]++;
	}
	prog_stats(&ns1, &c1);
	printf("lb maglev: %d clients -> e1=%u e2=%u e3=%u, each always the same; connect4 %.0f ns per connect\n",
	       N_CLIENTS, per[0], per[1], per[2],
	       (double)(ns1 - ns0) / (double)(c1 - c0));
	/* Over many addresses the table spreads evenly. */
	{
		unsigned int sim[3] = { 0 };
		const double ex[3] = { 10000, 10000, 10000 };

		for (uint32_t i = 0; i < 30000; i++) {
			struct nm_addr a;
			uint32_t idx;

			memset(&a, 0, sizeof(a));
			a.a[10] = a.a[11] = 0xff;
			a.a[12] = 10;
			a.a[13] = (uint8_t)(i >> 16);
			a.a[14] = (uint8_t)(i >> 8);
			a.a[15] = (uint8_t)i;
			idx = nm_lb_hash_addr(&a) % 3001;
			sim[g_model.maglev[idx].val]++;
		}
		printf("lb maglev: 30000 client addresses -> %u %u %u chi2=%.2f\n",
		       sim[0], sim[1], sim[2], chi2(sim, ex, 3));
		ck_assert(chi2(sim, ex, 3) < 13.82);
	}
}
END_TEST

static void set_ejected(int ep, bool on)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/nm_backends", g_pin);
	fd = bpf_obj_get(path);
	ck_assert_int_ge(fd, 0);
	for (unsigned int i = 0; i < g_model.n_backends; i++) {
		struct nm_model_backend *b = &g_model.backends[i];
		struct nm_backend v;

		if (b->val.addr.a[14] - 1 != ep)
			continue;
		ck_assert_int_eq(bpf_map_lookup_elem(fd, &b->key, &v), 0);
		v.flags = on ? v.flags | NM_EP_EJECTED : v.flags & ~NM_EP_EJECTED;
		ck_assert_int_eq(bpf_map_update_elem(fd, &b->key, &v, BPF_EXIST), 0);
	}
	close(fd);
}

/* failover: this node, then this zone, then anywhere; ejection and a
 * resync both move the choice; strict refuses with no local endpoint. */
START_TEST(test_locality)
{
	unsigned int cnt[3] = { 0 };
	int ctl[2];
	pid_t pid;

	build_cluster(NM_CFG_LB_RANDOM, NM_CFG_LOC_FAILOVER);
	sync_cluster();
	run_conns(0, 200, cnt);
	ck_assert_msg(cnt[0] == 200, "local first: %u %u %u", cnt[0], cnt[1], cnt[2]);
	set_ejected(0, true);
	memset(cnt, 0, sizeof(cnt));
	run_conns(0, 200, cnt);
	ck_assert_msg(cnt[1] == 200, "zone next: %u %u %u", cnt[0], cnt[1], cnt[2]);
	/* A resync keeps the ejection. */
	sync_cluster();
	set_ejected(1, true);
	memset(cnt, 0, sizeof(cnt));
	run_conns(0, 200, cnt);
	ck_assert_msg(cnt[2] == 200, "then any: %u %u %u", cnt[0], cnt[1], cnt[2]);
	set_ejected(0, false);
	set_ejected(1, false);
	/* e1 moves to zone b: e2 (same zone) takes over. */
	cl->workloads[N_CLIENTS].node = 2;
	sync_cluster();
	memset(cnt, 0, sizeof(cnt));
	run_conns(0, 200, cnt);
	ck_assert_msg(cnt[1] == 200, "zone: %u %u %u", cnt[0], cnt[1], cnt[2]);
	/* strict: only this node, and there is no local endpoint now. */
	cl->services[0].lb.locality = NM_CFG_LOC_STRICT;
	sync_cluster();
	pid = client_run(0, 1, false, ctl);
	ck_assert_int_eq(client_wait(pid, ctl), EPERM);
	cl->workloads[N_CLIENTS].node = 0;
	sync_cluster();
	memset(cnt, 0, sizeof(cnt));
	run_conns(0, 100, cnt);
	ck_assert_uint_eq(cnt[0], 100);
	printf("lb locality: node first, then zone, then any; strict refuses without a local endpoint\n");
}
END_TEST

/* Canary: v1 (e1, e2) 90 / v2 (e3) 10 over 10,000, then 50/50 after a
 * resync with the same programs. */
START_TEST(test_canary)
{
	unsigned int cnt[3] = { 0 };
	uint64_t ns0, c0, ns1, c1;
	double v2;
	__u32 prog_before;
	struct bpf_link_info li;
	__u32 len = sizeof(li);
	char path[PATH_MAX];
	int fd;

	build_cluster(NM_CFG_LB_RANDOM, NM_CFG_LOC_NONE);
	set_subsets(90, 10);
	sync_cluster();
	snprintf(path, sizeof(path), "%s/link_connect4", g_pin);
	fd = bpf_obj_get(path);
	memset(&li, 0, sizeof(li));
	ck_assert_int_eq(bpf_obj_get_info_by_fd(fd, &li, &len), 0);
	prog_before = li.prog_id;
	prog_stats(&ns0, &c0);
	run_conns(0, 10000, cnt);
	prog_stats(&ns1, &c1);
	v2 = 100.0 * cnt[2] / 10000;
	printf("lb canary 90/10: v1=%u (e1=%u e2=%u) v2=%u -> v2 %.2f%%; connect4 %.0f ns per connect with subsets\n",
	       cnt[0] + cnt[1], cnt[0], cnt[1], cnt[2], v2,
	       (double)(ns1 - ns0) / (double)(c1 - c0));
	ck_assert(v2 >= 8 && v2 <= 12);
	set_subsets(50, 50);
	sync_cluster();
	memset(cnt, 0, sizeof(cnt));
	run_conns(0, 10000, cnt);
	v2 = 100.0 * cnt[2] / 10000;
	printf("lb canary 50/50 after resync: v1=%u v2=%u -> v2 %.2f%%\n",
	       cnt[0] + cnt[1], cnt[2], v2);
	ck_assert(v2 >= 48 && v2 <= 52);
	memset(&li, 0, sizeof(li));
	len = sizeof(li);
	ck_assert_int_eq(bpf_obj_get_info_by_fd(fd, &li, &len), 0);
	ck_assert_uint_eq(li.prog_id, prog_before);
	close(fd);
}
END_TEST

/* --- world ------------------------------------------------------------------- */


static void world_cleanup(void)
{
	if (getpid() != g_main_pid)
		return;
	nm_datapath_remove_pins(g_instance);
	for (int i = 0; i < N_CLIENTS; i++)
		remove_cgroup(g_client[i]);
	remove_cgroup(g_root);
	remove_cgroup(g_base);
}

static void on_signal(int sig)
{
	if (getpid() == g_main_pid) {
		world_cleanup();
		signal(sig, SIG_DFL);
		raise(sig);
	}
	_exit(128 + sig);
}

static int world_setup(void)
{
	struct ifreq ifr;
	char mnt[256];
	int fd;

	if (unshare(CLONE_NEWNET))
		return -1;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		return -1;
	close(fd);
	if (nm_cgroup2_mount(mnt, sizeof(mnt)))
		return -1;
	snprintf(g_instance, sizeof(g_instance), "lbtest-%d", (int)g_main_pid);
	snprintf(g_pin, sizeof(g_pin), "%s/%s", NM_PIN_BASE, g_instance);
	snprintf(g_base, sizeof(g_base), "%s/nm-lbtest-%d", mnt, (int)g_main_pid);
	snprintf(g_root, sizeof(g_root), "%s/root", g_base);
	if (mkdir(g_base, 0755) || mkdir(g_root, 0755))
		return -1;
	for (int i = 0; i < N_CLIENTS; i++) {
		snprintf(g_client[i], sizeof(g_client[i]), "%s/c%d", g_root, i);
		if (mkdir(g_client[i], 0755))
			return -1;
	}
	return 0;
}

static Suite *lb_suite(void)
{
	Suite *s = suite_create("lb-bpf");
	TCase *tc = tcase_create("live");

	tcase_add_checked_fixture(tc, setup, teardown);
	if (!getenv("CK_DEFAULT_TIMEOUT"))
		tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_distribution, NM_CFG_LB_RANDOM,
			    NM_CFG_LB_LEAST_REQUEST + 1);
	tcase_add_test(tc, test_least_request_open);
	tcase_add_test(tc, test_maglev_clients);
	tcase_add_test(tc, test_locality);
	tcase_add_test(tc, test_canary);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int failed;

	if (geteuid() != 0) {
		fprintf(stderr, "test_lb: must run as root (BPF, cgroups, netns)\n");
		return 1;
	}
	g_main_pid = getpid();
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (world_setup()) {
		fprintf(stderr, "test_lb: world setup: %s\n", strerror(errno));
		world_cleanup();
		return 1;
	}
	/* bpf_stats run_time_ns for the cost figures while the test runs. */
	g_stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	failed = nm_check_run(lb_suite(), CK_FORK);
	if (g_stats_fd >= 0)
		close(g_stats_fd);
	world_cleanup();
	return failed ? 1 : 0;
}
