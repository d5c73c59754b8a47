// SPDX-License-Identifier: Apache-2.0
/*
 * test_policy.c - the nm_policy records in the running kernel: what
 * connect4/6 does with a compiled DENY or ALLOW (DESIGN §6, bpf/
 * nm_policy.bpf.h), through real sockets in a real cgroup, and what the
 * lookup costs a connect. Run as root.
 *
 * The world is test_datapath.c's, cut down: a private network namespace with
 * only loopback (a connect the programs let through to a 198.18.0.0/15 pod
 * address fails at once with ENETUNREACH), a cgroup subtree
 * <cgroup2 mount>/nm-poltest-<pid>/root/{meshed,echo1} with the programs
 * attached at .../root, and the pin directory
 * /sys/fs/bpf/nodemesh/poltest-<pid>. The "agent" listens on 127.0.0.1:P and
 * [::1]:P; clients are child processes that move into a cgroup first.
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
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "config/config.h"
#include "datapath/datapath.h"
#include "datapath/model.h"
#include "policy/compile.h"
#include "../unit/nm_check.h"

#define VIP4 "198.19.0.10"      /* service echo, 80 -> 8080, backend echo-2 */
#define VIP6 "fd00:19::10"
#define CLIENT_IP "198.18.1.2"
#define ECHO1_IP "198.18.1.3"   /* local, own cgroup */
#define ECHO2_IP "198.18.2.3"   /* remote */
#define ECHO2_IP6 "fd00:18::23"

static pid_t g_main_pid;
static char g_instance[64];
static char g_pin[256];
static char g_base[384], g_root[512], g_meshed[640], g_echo[640];

#include "bpf_world.h"

static struct nm_datapath *dp;
static int lfd4 = -1, lfd6 = -1;
static uint16_t lport;
static struct nm_cluster *cl;
/* Workload ids as the model gave them. */
static uint32_t id_client, id_echo1, id_echo2;

/* --- helpers ----------------------------------------------------------------- */








static void open_listeners(void)
{
	for (int tries = 0; tries < 20 && lfd6 < 0; tries++) {
		uint16_t p6;

		lfd4 = listen_on(AF_INET, "127.0.0.1", 0, &lport);
		ck_assert_int_ge(lfd4, 0);
		lfd6 = listen_on(AF_INET6, "::1", lport, &p6);
		if (lfd6 < 0) {
			close(lfd4);
			lfd4 = -1;
		}
	}
	ck_assert_int_ge(lfd6, 0);
}

static void set_agent_state(uint32_t fail_mode)
{
	struct nm_agent_state st;

	memset(&st, 0, sizeof(st));
	st.agent_v4 = addr_of("127.0.0.1");
	st.agent_v6 = addr_of("::1");
	st.outbound_port = htons(lport);
	st.fail_mode = fail_mode;
	st.config_generation = 3;
	ck_assert_int_eq(nm_datapath_set_state(dp, &st), 0);
}

static int accept_one(int lfd, int timeout_ms)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static void assert_listeners_idle(void)
{
	struct pollfd p[2] = { { .fd = lfd4, .events = POLLIN },
			       { .fd = lfd6, .events = POLLIN } };

	ck_assert_int_eq(poll(p, 2, 200), 0);
}

/* --- the cluster and its policy records ----------------------------------------- */

static void add_workload(const char *name, const char *ip, int node,
			 const char *cgroup)
{
	struct nm_workload_cfg *w = &cl->workloads[cl->n_workloads++];

	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(w->ns, sizeof(w->ns), "default");
	snprintf(w->sa, sizeof(w->sa), "%s", name);
	snprintf(w->labels[0].key, NM_NAME_MAX, "app");
	snprintf(w->labels[0].value, NM_NAME_MAX, "%s", name);
	w->n_labels = 1;
	ck_assert_int_eq(nm_addr_parse(ip, &w->ip, NULL), 0);
	w->node = node;
	snprintf(w->cgroup, sizeof(w->cgroup), "%s", cgroup);
}

static void build_cluster(void)
{
	struct nm_service_cfg *s;

	cl = calloc(1, sizeof(*cl));
	ck_assert_ptr_nonnull(cl);
	snprintf(cl->path, sizeof(cl->path), "poltest");
	cl->n_nodes = 2;
	cl->nodes = calloc(2, sizeof(*cl->nodes));
	snprintf(cl->nodes[0].name, NM_NAME_MAX, "node-1");
	snprintf(cl->nodes[1].name, NM_NAME_MAX, "node-2");
	cl->workloads = calloc(3, sizeof(*cl->workloads));
	add_workload("client", CLIENT_IP, 0, g_meshed);
	add_workload("echo1", ECHO1_IP, 0, g_echo);
	add_workload("echo2", ECHO2_IP, 1, "nm-elsewhere/echo2");
	cl->workloads[2].has_ip6 = true;
	cl->workloads[2].ip6 = addr_of(ECHO2_IP6);

	cl->services = calloc(1, sizeof(*cl->services));
	cl->n_services = 1;
	s = &cl->services[0];
	snprintf(s->name, NM_NAME_MAX, "echo");
	snprintf(s->ns, NM_NAME_MAX, "default");
	s->vip = addr_of(VIP4);
	s->has_vip6 = true;
	s->vip6 = addr_of(VIP6);
	s->ports[0] = (struct nm_port_map){ 80, 8080 };
	s->n_ports = 1;
	snprintf(s->selector[0].key, NM_NAME_MAX, "app");
	snprintf(s->selector[0].value, NM_NAME_MAX, "echo2");
	s->n_selector = 1;
}

static uint32_t endpoint_id(const struct nm_model *m, const char *ip)
{
	struct nm_addr a = addr_of(ip);

	for (unsigned int i = 0; i < m->n_endpoints; i++)
		if (memcmp(m->endpoints[i].key.a, a.a, sizeof(a.a)) == 0)
			return m->endpoints[i].val.workload_id;
	ck_abort_msg("no endpoint %s in the model", ip);
	return 0;
}

/*
 * Writes the cluster's maps plus these policy records through
 * nm_datapath_sync(), as the agent does after nm_model_build().
 */
static void sync_with(const struct nm_policy_rec *recs, unsigned int n)
{
	char err[NM_ERRMSG_MAX];
	struct nm_model m;

	ck_assert_msg(nm_model_build_with(cl, 0, nm_model_cgroup_id, NULL, &m,
					  err, sizeof(err)) == 0, "%s", err);
	id_client = endpoint_id(&m, CLIENT_IP);
	id_echo1 = endpoint_id(&m, ECHO1_IP);
	id_echo2 = endpoint_id(&m, ECHO2_IP);
	free(m.policies);
	m.policies = NULL;
	m.n_policies = 0;
	if (n) {
		m.policies = calloc(n, sizeof(*recs));
		ck_assert_ptr_nonnull(m.policies);
		memcpy(m.policies, recs, n * sizeof(*recs));
		m.n_policies = n;
	}
	ck_assert_int_eq(nm_datapath_sync(dp, &m), 0);
	nm_model_free(&m);
}

static struct nm_policy_rec rec(uint32_t src, uint32_t dst, uint16_t port,
				uint32_t verdict)
{
	struct nm_policy_rec r;

	memset(&r, 0, sizeof(r));
	r.key.src_workload_id = src;
	r.key.dst_workload_id = dst;
	r.key.port = htons(port);
	r.val.verdict = verdict;
	r.val.policy_id = 1;
	return r;
}

static void open_datapath(void)
{
	struct nm_datapath_opts o = { .instance = g_instance,
				      .cgroup_root = g_root };
	char err[NM_ERRMSG_MAX];

	ck_assert_msg(nm_datapath_open(&o, &dp, err, sizeof(err)) == 0, "%s", err);
}

static void setup(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	nm_datapath_remove_pins(g_instance);
	open_datapath();
	open_listeners();
	set_agent_state(NM_FAIL_CLOSED);
	build_cluster();
	sync_with(NULL, 0);
}

static void teardown(void)
{
	nm_datapath_close(dp);
	dp = NULL;
	nm_datapath_remove_pins(g_instance);
	if (lfd4 >= 0)
		close(lfd4);
	if (lfd6 >= 0)
		close(lfd6);
	lfd4 = lfd6 = -1;
	if (cl) {
		free(cl->nodes);
		free(cl->workloads);
		free(cl->services);
		free(cl);
		cl = NULL;
	}
}

/* --- clients in a cgroup --------------------------------------------------------- */

#define CLIENT_SETUP_FAILED 100000

/* 0 connected, an errno, or CLIENT_SETUP_FAILED + errno. */
static int client_child(const char *cgroup, int family, const char *ip,
			uint16_t port, int count)
{
	char procs[PATH_MAX];
	struct sockaddr_storage dst;
	socklen_t len;
	int err = 0;

	/* Move first: the socket's cgroup is fixed when it is created. */
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup);
	if (write_str(procs, "0"))
		return CLIENT_SETUP_FAILED + errno;
	len = make_sockaddr(family, ip, port, &dst);
	for (int i = 0; i < count && !err; i++) {
		int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return CLIENT_SETUP_FAILED + errno;
		err = connect(fd, (struct sockaddr *)&dst, len) ? errno : 0;
		close(fd);
	}
	return err;
}

struct client {
	pid_t pid;
	int fd; /* reads the child's result */
};

static struct client client_start(const char *cgroup, int family,
				  const char *ip, uint16_t port, int count)
{
	struct client c;
	int pfd[2];

	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	c.pid = fork();
	ck_assert_int_ge(c.pid, 0);
	if (c.pid == 0) {
		int r;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(60);
		close(pfd[0]);
		r = client_child(cgroup, family, ip, port, count);
		if (write(pfd[1], &r, sizeof(r)) != sizeof(r))
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	c.fd = pfd[0];
	return c;
}

static int client_finish(struct client c)
{
	struct pollfd p = { .fd = c.fd, .events = POLLIN };
	int r, status;

	ck_assert_int_eq(poll(&p, 1, 60000), 1);
	ck_assert_int_eq(read(c.fd, &r, sizeof(r)), sizeof(r));
	close(c.fd);
	ck_assert_int_eq(waitpid(c.pid, &status, 0), c.pid);
	ck_assert_msg(r < CLIENT_SETUP_FAILED, "client setup: %s",
		      strerror(r - CLIENT_SETUP_FAILED));
	return r;
}

/* The connection lands on the agent listener lfd (the mesh path). */
static void expect_redirect(int family, const char *ip, uint16_t port, int lfd)
{
	struct client c = client_start(g_meshed, family, ip, port, 1);
	int cfd = accept_one(lfd, 5000);
	int err = client_finish(c);

	ck_assert_msg(err == 0, "connect %s:%u: %s", ip, port, strerror(err));
	ck_assert_msg(cfd >= 0, "connect %s:%u: the agent listener saw nothing",
		      ip, port);
	close(cfd);
}

/* connect() fails with EPERM and nothing reaches the agent. */
static void expect_denied(int family, const char *ip, uint16_t port)
{
	int err = client_finish(client_start(g_meshed, family, ip, port, 1));

	ck_assert_msg(err == EPERM, "connect %s:%u: expected EPERM, got %s", ip,
		      port, strerror(err));
	assert_listeners_idle();
}

/* --- tests ---------------------------------------------------------------------- */

/* A DENY record refuses a pod-address and a service connect before any
 * packet; the refusal is counted and leaves no redirect record. */
START_TEST(test_deny_refuses)
{
	struct nm_policy_rec r = rec(id_client, id_echo2, 8080, NM_PV_DENY);
	struct nm_wl_stats before, after;

	sync_with(&r, 1);
	ck_assert_uint_eq(count_keys("nm_policy"), 1);
	before = wl_stats(id_client);
	expect_denied(AF_INET, ECHO2_IP, 8080);
	/* VIP:80 picks echo-2, whose backend port 8080 is the denied one. */
	expect_denied(AF_INET, VIP4, 80);
	expect_denied(AF_INET6, VIP6, 80);
	expect_denied(AF_INET6, ECHO2_IP6, 8080);
	after = wl_stats(id_client);
	ck_assert_uint_eq(after.connects, before.connects + 4);
	ck_assert_uint_eq(after.denies, before.denies + 4);
	ck_assert_uint_eq(after.redirects, before.redirects);
	ck_assert_uint_eq(after.errors, before.errors);
	ck_assert_uint_eq(count_keys("nm_orig_cookie"), 0);
	ck_assert_uint_eq(count_keys("nm_orig_tuple"), 0);
	/* Other destinations of the same source are untouched. */
	expect_redirect(AF_INET, ECHO1_IP, 8080, lfd4);
	expect_redirect(AF_INET, ECHO2_IP, 9000, lfd4);
}
END_TEST

/* ALLOW and no record both take the mesh path. */
START_TEST(test_allow_and_none_redirect)
{
	struct nm_policy_rec r = rec(id_client, id_echo2, 8080, NM_PV_ALLOW);
	struct nm_wl_stats before, after;

	before = wl_stats(id_client);
	expect_redirect(AF_INET, ECHO2_IP, 8080, lfd4); /* no record */
	sync_with(&r, 1);
	expect_redirect(AF_INET, ECHO2_IP, 8080, lfd4);
	expect_redirect(AF_INET, VIP4, 80, lfd4);
	expect_redirect(AF_INET6, VIP6, 80, lfd6);
	after = wl_stats(id_client);
	ck_assert_uint_eq(after.redirects, before.redirects + 4);
	ck_assert_uint_eq(after.denies, before.denies);
}
END_TEST

/* The port-specific record wins over port 0, both ways. */
START_TEST(test_port_record_wins)
{
	struct nm_policy_rec r[2] = {
		rec(id_client, id_echo2, 0, NM_PV_DENY),
		rec(id_client, id_echo2, 8080, NM_PV_ALLOW),
	};

	sync_with(r, 2);
	expect_redirect(AF_INET, ECHO2_IP, 8080, lfd4);
	expect_redirect(AF_INET, VIP4, 80, lfd4);
	expect_denied(AF_INET, ECHO2_IP, 9000);
	expect_denied(AF_INET, ECHO2_IP, 443);

	r[0].val.verdict = NM_PV_ALLOW;
	r[1].val.verdict = NM_PV_DENY;
	sync_with(r, 2);
	expect_denied(AF_INET, ECHO2_IP, 8080);
	expect_denied(AF_INET, VIP4, 80);
	expect_redirect(AF_INET, ECHO2_IP, 9000, lfd4);
	/* The record is per destination workload: echo-1 has none. */
	expect_redirect(AF_INET, ECHO1_IP, 8080, lfd4);
}
END_TEST

/* DENY is the destination's verdict, not a datapath error: fail-open mode
 * refuses it too. */
START_TEST(test_deny_in_fail_open)
{
	struct nm_policy_rec r = rec(id_client, id_echo2, 0, NM_PV_DENY);

	sync_with(&r, 1);
	set_agent_state(NM_FAIL_OPEN);
	expect_denied(AF_INET, ECHO2_IP, 8080);
	expect_redirect(AF_INET, ECHO1_IP, 8080, lfd4);
}
END_TEST

/* A verdict value the kernel does not know admits (only DENY refuses). */
START_TEST(test_unknown_verdict_admits)
{
	struct nm_policy_rec r = rec(id_client, id_echo2, 8080, 77);

	sync_with(&r, 1);
	expect_redirect(AF_INET, ECHO2_IP, 8080, lfd4);
}
END_TEST

/* The next sync removes records the model no longer has. */
START_TEST(test_sync_prunes_records)
{
	struct nm_policy_rec r[3] = {
		rec(id_client, id_echo2, 0, NM_PV_DENY),
		rec(id_client, id_echo1, 0, NM_PV_DENY),
		rec(id_client, id_echo1, 8080, NM_PV_ALLOW),
	};

	sync_with(r, 3);
	ck_assert_uint_eq(count_keys("nm_policy"), 3);
	expect_denied(AF_INET, ECHO1_IP, 9000);
	sync_with(r, 1);
	ck_assert_uint_eq(count_keys("nm_policy"), 1);
	expect_redirect(AF_INET, ECHO1_IP, 9000, lfd4);
	expect_denied(AF_INET, ECHO2_IP, 8080);
	sync_with(NULL, 0);
	ck_assert_uint_eq(count_keys("nm_policy"), 0);
	expect_redirect(AF_INET, ECHO2_IP, 8080, lfd4);
}
END_TEST

static bool have_bpftool(void)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	for (const char *p = path; p && *p;) {
		size_t n = strcspn(p, ":");

		snprintf(buf, sizeof(buf), "%.*s/bpftool", (int)n, p);
		if (access(buf, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

/* nm_policy carries BTF, so `bpftool map dump` prints named fields. */
START_TEST(test_policy_map_btf_typed)
{
	struct nm_policy_rec r = rec(id_client, id_echo2, 8080, NM_PV_DENY);
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	char cmd[PATH_MAX + 64], out[8192];
	int fd;
	size_t n;
	FILE *f;

	sync_with(&r, 1);
	fd = pinned_fd("nm_policy");
	memset(&info, 0, sizeof(info));
	ck_assert_int_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
	close(fd);
	ck_assert_str_eq(info.name, "nm_policy");
	ck_assert_uint_eq(info.type, BPF_MAP_TYPE_HASH);
	ck_assert_uint_eq(info.key_size, sizeof(struct nm_policy_key));
	ck_assert_uint_eq(info.value_size, sizeof(struct nm_policy_val));
	ck_assert_uint_eq(info.max_entries, NM_MAX_POLICY_RECS);
	ck_assert_msg(info.btf_id && info.btf_key_type_id && info.btf_value_type_id,
		      "nm_policy has no key/value BTF");
	/* The VM images may lack bpftool; the BTF ids above are the proof. */
	if (!have_bpftool())
		return;
	snprintf(cmd, sizeof(cmd), "bpftool map dump pinned %s/nm_policy 2>&1",
		 g_pin);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	ck_assert_int_eq(pclose(f), 0);
	printf("test_policy: bpftool map dump pinned %s/nm_policy:\n%s", g_pin,
	       out);
	ck_assert_msg(strstr(out, "\"src_workload_id\"") &&
			      strstr(out, "\"dst_workload_id\"") &&
			      strstr(out, "\"port\"") &&
			      strstr(out, "\"verdict\": 2") &&
			      strstr(out, "\"policy_id\": 1"),
		      "untyped dump:\n%s", out);
}
END_TEST

/* --- cost --------------------------------------------------------------------- */

struct prog_stats {
	__u64 run_time_ns, run_cnt;
};

static struct prog_stats connect4_stats(void)
{
	struct bpf_link_info linfo;
	struct bpf_prog_info pinfo;
	__u32 len = sizeof(linfo);
	struct prog_stats ps;
	int fd = pinned_fd("link_connect4"), pfd;

	memset(&linfo, 0, sizeof(linfo));
	ck_assert_int_eq(bpf_obj_get_info_by_fd(fd, &linfo, &len), 0);
	close(fd);
	pfd = bpf_prog_get_fd_by_id(linfo.prog_id);
	ck_assert_int_ge(pfd, 0);
	memset(&pinfo, 0, sizeof(pinfo));
	len = sizeof(pinfo);
	ck_assert_int_eq(bpf_obj_get_info_by_fd(pfd, &pinfo, &len), 0);
	close(pfd);
	ps.run_time_ns = pinfo.run_time_ns;
	ps.run_cnt = pinfo.run_cnt;
	return ps;
}

/*
 * ns per connect4 run over `count` redirected connects to ip:port, the
 * agent listener accepting as they come. The kernel's own accounting
 * (BPF_ENABLE_STATS, what `bpftool prog show` prints as run_time_ns and
 * run_cnt), so only the program is timed, not the socket calls.
 */
static double connect4_ns(const char *ip, uint16_t port, int count)
{
	struct prog_stats a, b;
	struct client c;
	int accepted = 0, err;

	a = connect4_stats();
	c = client_start(g_meshed, AF_INET, ip, port, count);
	while (accepted < count) {
		int cfd = accept_one(lfd4, 5000);

		if (cfd < 0)
			break;
		close(cfd);
		accepted++;
	}
	err = client_finish(c);
	ck_assert_msg(err == 0, "connect %s:%u: %s", ip, port, strerror(err));
	ck_assert_int_eq(accepted, count);
	b = connect4_stats();
	ck_assert_uint_eq(b.run_cnt - a.run_cnt, (__u64)count);
	return (double)(b.run_time_ns - a.run_time_ns) / (double)count;
}

/* What the policy lookup costs a connect: connect4's run time with an
 * empty nm_policy, with a full-ish one and a port-0 hit (two lookups), and
 * with a port hit (one lookup). Printed; figures vary by machine. */
START_TEST(test_lookup_cost)
{
	enum { N_RECS = 20000 };
	/* The VM matrix (emulated CPUs) sets CK_DEFAULT_TIMEOUT: a short
	 * run there, the figure is the host's. NM_POLICY_COST_CONNECTS
	 * overrides the count. */
	const bool slow = getenv("CK_DEFAULT_TIMEOUT") != NULL;
	const char *env = getenv("NM_POLICY_COST_CONNECTS");
	const int N_CONNECTS = env && atoi(env) > 0 ? atoi(env) : slow ? 100 : 2000;
	const int ROUNDS = slow ? 1 : 5;
	double empty = 1e18, port0 = 1e18, port_hit = 1e18;
	struct nm_policy_rec *r;
	int stats_fd;

	stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	ck_assert_msg(stats_fd >= 0, "BPF_ENABLE_STATS: %s", strerror(errno));
	r = calloc(N_RECS, sizeof(*r));
	ck_assert_ptr_nonnull(r);
	/* Records for other pairs fill the hash table; the last ones are the
	 * client's. */
	for (unsigned int i = 0; i < N_RECS - 2; i++)
		r[i] = rec(1000 + i / 64, 2000 + i % 64, 8080, NM_PV_DENY);
	r[N_RECS - 2] = rec(id_client, id_echo2, 0, NM_PV_ALLOW);
	r[N_RECS - 1] = rec(id_client, id_echo1, 8080, NM_PV_ALLOW);

	/* Best of a few rounds each, interleaved, against noise. */
	for (int round = 0; round < ROUNDS; round++) {
		double x;

		sync_with(NULL, 0);
		x = connect4_ns(ECHO2_IP, 8080, N_CONNECTS);
		empty = x < empty ? x : empty;
		sync_with(r, N_RECS);
		x = connect4_ns(ECHO2_IP, 8080, N_CONNECTS);
		port0 = x < port0 ? x : port0;
		x = connect4_ns(ECHO1_IP, 8080, N_CONNECTS);
		port_hit = x < port_hit ? x : port_hit;
	}
	ck_assert_uint_eq(count_keys("nm_policy"), N_RECS);
	printf("test_policy: connect4 run time (bpf_stats, best of %d x %d connects): "
	       "empty nm_policy %.0f ns, %d records with a port-0 hit %.0f ns (+%.0f), "
	       "port hit %.0f ns (+%.0f)\n",
	       ROUNDS, N_CONNECTS, empty, N_RECS, port0, port0 - empty, port_hit,
	       port_hit - empty);
	fflush(stdout);
	free(r);
	close(stats_fd);
}
END_TEST

/* --- the private world ------------------------------------------------------------ */



static void world_cleanup(void)
{
	if (getpid() != g_main_pid)
		return;
	nm_datapath_remove_pins(g_instance);
	remove_cgroup(g_meshed);
	remove_cgroup(g_echo);
	remove_cgroup(g_root);
	remove_cgroup(g_base);
}

static void kill_test_children(void)
{
	char path[64];
	FILE *f;
	int pid;

	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
	f = fopen(path, "re");
	if (!f)
		return;
	while (fscanf(f, "%d", &pid) == 1) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	fclose(f);
}

static void on_signal(int sig)
{
	if (getpid() == g_main_pid) {
		kill_test_children();
		world_cleanup();
		signal(sig, SIG_DFL);
		raise(sig);
	}
	_exit(128 + sig);
}


static int world_setup(void)
{
	char mnt[256];
	int ret;

	if (unshare(CLONE_NEWNET) || loopback_up()) {
		fprintf(stderr, "test_policy: private network namespace: %s\n",
			strerror(errno));
		return -1;
	}
	ret = nm_cgroup2_mount(mnt, sizeof(mnt));
	if (ret) {
		fprintf(stderr, "test_policy: no cgroup v2 mount: %s\n",
			strerror(-ret));
		return -1;
	}
	snprintf(g_instance, sizeof(g_instance), "poltest-%d", (int)g_main_pid);
	snprintf(g_pin, sizeof(g_pin), "%s/%s", NM_PIN_BASE, g_instance);
	snprintf(g_base, sizeof(g_base), "%s/nm-poltest-%d", mnt, (int)g_main_pid);
	snprintf(g_root, sizeof(g_root), "%s/root", g_base);
	snprintf(g_meshed, sizeof(g_meshed), "%s/meshed", g_root);
	snprintf(g_echo, sizeof(g_echo), "%s/echo1", g_root);
	const char *dirs[] = { g_base, g_root, g_meshed, g_echo };

	for (unsigned int i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (mkdir(dirs[i], 0755)) {
			fprintf(stderr, "test_policy: mkdir %s: %s\n", dirs[i],
				strerror(errno));
			return -1;
		}
	}
	return 0;
}

static Suite *policy_suite(void)
{
	Suite *s = suite_create("policy-bpf");
	TCase *tc = tcase_create("live");

	tcase_add_checked_fixture(tc, setup, teardown);
	if (!getenv("CK_DEFAULT_TIMEOUT"))
		tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_deny_refuses);
	tcase_add_test(tc, test_allow_and_none_redirect);
	tcase_add_test(tc, test_port_record_wins);
	tcase_add_test(tc, test_deny_in_fail_open);
	tcase_add_test(tc, test_unknown_verdict_admits);
	tcase_add_test(tc, test_sync_prunes_records);
	tcase_add_test(tc, test_policy_map_btf_typed);
	tcase_add_test(tc, test_lookup_cost);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int failed;

	if (geteuid() != 0) {
		fprintf(stderr, "test_policy: must run as root (BPF, cgroups, netns)\n");
		return 1;
	}
	g_main_pid = getpid();
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	if (world_setup()) {
		world_cleanup();
		return 1;
	}
	failed = nm_check_run(policy_suite(), CK_FORK);
	world_cleanup();
	return failed ? 1 : 0;
}
