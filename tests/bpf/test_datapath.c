// SPDX-License-Identifier: Apache-2.0
/*
 * test_datapath.c - nm_connect/nm_sockops in the running kernel, driven
 * through real sockets (DESIGN §11 "BPF"). Run as root.
 *
 * The test makes its own world and removes it, also on failure or SIGINT:
 *   - a private network namespace with only loopback and one veth to a
 *     "pod" namespace (198.18.9.1 <-> 198.18.9.2), so a connection the
 *     programs let through (198.19.0.0/16 VIPs, pod addresses) fails at once
 *     with ENETUNREACH and nothing ever leaves the host;
 *   - a cgroup subtree <cgroup2 mount>/nm-bpftest-<pid>/{root/{meshed,echo1},
 *     outside}; the programs are attached at .../root only;
 *   - the pin directory /sys/fs/bpf/nodemesh/bpftest-<pid>.
 * Each test opens the datapath, listens on 127.0.0.1:P and [::1]:P as the
 * "agent", and connects from short-lived child processes that move
 * themselves into a cgroup first.
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
#include <netlink/addr.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/socket.h>

#include "config/config.h"
#include "datapath/datapath.h"
#include "datapath/model.h"
#include "../unit/nm_check.h"

#define VIP4 "198.19.0.10"
#define VIP6 "fd00:19::10"
#define VIP4_EMPTY "198.19.0.20"
#define ECHO1_IP "198.18.1.3"
#define ECHO1_IP6 "fd00:18::13"
#define ECHO2_IP "198.18.2.3"
#define CLIENT_WL_ID 1

/* Set once in main(), before the suite forks. */
static pid_t g_main_pid;
static char g_instance[64];
static char g_pin[256];
/* Sized so each path provably fits on top of its parent. */
static char g_base[384], g_root[512], g_meshed[640];
static char g_echo[640], g_outside[512];

#include "bpf_world.h"

/*
 * A "pod" network namespace joined to the test's namespace by a veth pair,
 * as in the real cluster: the pod has POD_IP, the test side (the "node")
 * NODE_IP. A holder process keeps the namespace alive.
 */
#define NODE_IF "nmt0"
#define POD_IF "nmt0p"
#define NODE_IP "198.18.9.1"
#define POD_IP "198.18.9.2"
static pid_t g_pod_holder = -1;
static char g_pod_netns[64];

/* Per test (the checked fixture runs in the test's own process). */
static struct nm_datapath *dp;
static int lfd4 = -1, lfd6 = -1;
static uint16_t lport;
static struct nm_cluster *cl;

/* --- small helpers ----------------------------------------------------------- */



static bool addr_eq(const struct nm_addr *a, const char *s)
{
	struct nm_addr b = addr_of(s);

	return memcmp(a->a, b.a, sizeof(b.a)) == 0;
}




struct link_ids {
	__u32 link_id, prog_id;
	__u64 cgroup_id;
};

static struct link_ids link_ids(const char *name)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);
	struct link_ids ids;
	int fd = pinned_fd(name);

	memset(&info, 0, sizeof(info));
	ck_assert_int_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
	close(fd);
	ck_assert_uint_eq(info.type, BPF_LINK_TYPE_CGROUP);
	ids.link_id = info.id;
	ids.prog_id = info.prog_id;
	ids.cgroup_id = info.cgroup.cgroup_id;
	return ids;
}

static uint64_t cgroup_id_of(const char *path)
{
	uint64_t id;

	ck_assert_int_eq(nm_cgroup_id(path, &id), 0);
	return id;
}

/* --- the "agent": two listeners on one port ------------------------------------ */



static void open_listeners(void)
{
	/* One outbound port serves both families, as in nm_agent_state. */
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

#define OLD_AGENT_MARK 0x6e6d0001
#define TEST_GENERATION 7

static void set_agent_state_mode(bool with_addresses, uint32_t fail_mode)
{
	struct nm_agent_state st;

	memset(&st, 0, sizeof(st));
	if (with_addresses) {
		st.agent_v4 = addr_of("127.0.0.1");
		st.agent_v6 = addr_of("::1");
		st.outbound_port = htons(lport);
	}
	st.fail_mode = fail_mode;
	st.config_generation = TEST_GENERATION;
	ck_assert_int_eq(nm_datapath_set_state(dp, &st), 0);
}

static void set_agent_state(bool with_addresses)
{
	set_agent_state_mode(with_addresses, NM_FAIL_CLOSED);
}

/* Returns an accepted fd, or -1 when nothing arrives within timeout_ms. */
static int accept_one(int lfd, int timeout_ms, struct sockaddr_storage *peer)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	socklen_t len = sizeof(*peer);

	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	return accept4(lfd, (struct sockaddr *)peer, &len, SOCK_CLOEXEC);
}

static void assert_listeners_idle(void)
{
	struct pollfd p[2] = { { .fd = lfd4, .events = POLLIN },
			       { .fd = lfd6, .events = POLLIN } };

	ck_assert_int_eq(poll(p, 2, 200), 0);
}

/* --- the cluster the maps are built from ---------------------------------------- */

static void add_workload(const char *name, const char *sa, const char *app,
			 const char *ip, int node, const char *cgroup)
{
	struct nm_workload_cfg *w = &cl->workloads[cl->n_workloads++];

	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(w->ns, sizeof(w->ns), "default");
	snprintf(w->sa, sizeof(w->sa), "%s", sa);
	snprintf(w->labels[0].key, NM_NAME_MAX, "app");
	snprintf(w->labels[0].value, NM_NAME_MAX, "%s", app);
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
	snprintf(cl->path, sizeof(cl->path), "bpftest");
	cl->n_nodes = 2;
	cl->nodes = calloc(2, sizeof(*cl->nodes));
	snprintf(cl->nodes[0].name, NM_NAME_MAX, "node-1");
	snprintf(cl->nodes[1].name, NM_NAME_MAX, "node-2");
	cl->workloads = calloc(3, sizeof(*cl->workloads));
	add_workload("client", "client", "client", "198.18.1.2", 0, g_meshed);
	add_workload("echo-1", "echo", "echo", ECHO1_IP, 0, g_echo);
	cl->workloads[1].has_ip6 = true;
	ck_assert_int_eq(nm_addr_parse(ECHO1_IP6, &cl->workloads[1].ip6, NULL), 0);
	/* Remote: its cgroup is never resolved on node-1. */
	add_workload("echo-2", "echo", "echo", ECHO2_IP, 1, "nm-elsewhere/echo2");

	cl->services = calloc(2, sizeof(*cl->services));
	cl->n_services = 2;
	s = &cl->services[0];
	snprintf(s->name, NM_NAME_MAX, "echo");
	snprintf(s->ns, NM_NAME_MAX, "default");
	ck_assert_int_eq(nm_addr_parse(VIP4, &s->vip, NULL), 0);
	s->has_vip6 = true;
	ck_assert_int_eq(nm_addr_parse(VIP6, &s->vip6, NULL), 0);
	s->ports[0] = (struct nm_port_map){ 80, 8080 };
	s->n_ports = 1;
	snprintf(s->selector[0].key, NM_NAME_MAX, "app");
	snprintf(s->selector[0].value, NM_NAME_MAX, "echo");
	s->n_selector = 1;
	s = &cl->services[1];
	snprintf(s->name, NM_NAME_MAX, "empty");
	snprintf(s->ns, NM_NAME_MAX, "default");
	ck_assert_int_eq(nm_addr_parse(VIP4_EMPTY, &s->vip, NULL), 0);
	s->ports[0] = (struct nm_port_map){ 80, 8080 };
	s->n_ports = 1;
}

static void sync_cluster(void)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];

	ck_assert_msg(nm_model_build_with(cl, 0, nm_model_cgroup_id, NULL, &m, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(m.n_workloads, 2);
	ck_assert_int_eq(nm_datapath_sync(dp, &m), 0);
	nm_model_free(&m);
}

static void open_datapath(const char *cgroup_root)
{
	struct nm_datapath_opts o = { .instance = g_instance,
				      .cgroup_root = cgroup_root };
	char err[NM_ERRMSG_MAX];

	ck_assert_msg(nm_datapath_open(&o, &dp, err, sizeof(err)) == 0, "%s", err);
}

static void setup(void)
{
	/* Should the runner die, this test process goes with it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	nm_datapath_remove_pins(g_instance);
	open_datapath(g_root);
	open_listeners();
	set_agent_state(true);
	build_cluster();
	sync_cluster();
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

/* --- clients in a cgroup ----------------------------------------------------------- */

#define CLIENT_SETUP_FAILED 100000

struct client_res {
	int err; /* 0 connected, an errno, or CLIENT_SETUP_FAILED + errno */
	struct sockaddr_storage local;
};

static int client_child(const char *cgroup, const char *netns, int family,
			const char *ip, uint16_t port, bool marked,
			struct sockaddr_storage *local)
{
	char procs[PATH_MAX];
	struct sockaddr_storage dst;
	socklen_t len;
	int fd, err;

	if (netns) {
		int nfd = open(netns, O_RDONLY | O_CLOEXEC);

		if (nfd < 0 || setns(nfd, CLONE_NEWNET))
			return CLIENT_SETUP_FAILED + errno;
		close(nfd);
	}
	/* Move first: the socket's cgroup is fixed when it is created. */
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup);
	if (write_str(procs, "0"))
		return CLIENT_SETUP_FAILED + errno;
	len = make_sockaddr(family, ip, port, &dst);
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return CLIENT_SETUP_FAILED + errno;
	if (marked) {
		/* The mark that exempted the agent's sockets before: a pod
		 * with CAP_NET_ADMIN can set it, so it must mean nothing. */
		int mark = OLD_AGENT_MARK;

		if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)))
			return CLIENT_SETUP_FAILED + errno;
	}
	if (connect(fd, (struct sockaddr *)&dst, len) == 0) {
		err = 0;
	} else if (errno == EINPROGRESS) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		socklen_t elen = sizeof(err);

		if (poll(&p, 1, 5000) == 0)
			err = ETIMEDOUT;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen))
			err = errno;
	} else {
		err = errno;
	}
	len = sizeof(*local);
	getsockname(fd, (struct sockaddr *)local, &len);
	return err;
}

struct client {
	pid_t pid;
	int fd; /* reads its struct client_res */
};

/* Starts a connect from a fresh child process placed in `cgroup` (and
 * `netns`); client_finish() collects the result. */
static struct client client_start(const char *cgroup, const char *netns,
				  int family, const char *ip, uint16_t port,
				  bool marked)
{
	struct client c;
	int pfd[2];

	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	c.pid = fork();
	ck_assert_int_ge(c.pid, 0);
	if (c.pid == 0) {
		struct client_res r;

		memset(&r, 0, sizeof(r));
		/* Never outlive the test, whatever happens to it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(20);
		close(pfd[0]);
		r.err = client_child(cgroup, netns, family, ip, port, marked,
				     &r.local);
		if (write(pfd[1], &r, sizeof(r)) != sizeof(r))
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	c.fd = pfd[0];
	return c;
}

static struct client_res client_finish(struct client c)
{
	struct client_res r;
	struct pollfd p = { .fd = c.fd, .events = POLLIN };
	int status;

	ck_assert_int_eq(poll(&p, 1, 15000), 1);
	ck_assert_int_eq(read(c.fd, &r, sizeof(r)), sizeof(r));
	close(c.fd);
	ck_assert_int_eq(waitpid(c.pid, &status, 0), c.pid);
	ck_assert_msg(r.err < CLIENT_SETUP_FAILED, "client setup: %s",
		      strerror(r.err - CLIENT_SETUP_FAILED));
	return r;
}

static struct client_res client_connect_in(const char *cgroup, const char *netns,
					   int family, const char *ip,
					   uint16_t port, bool marked)
{
	return client_finish(client_start(cgroup, netns, family, ip, port, marked));
}

static struct client_res client_connect(const char *cgroup, int family,
					const char *ip, uint16_t port,
					bool marked)
{
	return client_connect_in(cgroup, NULL, family, ip, port, marked);
}

/*
 * The connection must land on `lfd`, and its record must be there once. Like
 * the agent, take the record the moment accept() returns, while the client
 * may still be inside connect().
 */
static struct nm_orig expect_redirect_marked(const char *cgroup, const char *netns,
					     int family, const char *ip,
					     uint16_t port, int lfd, bool marked)
{
	struct sockaddr_storage peer;
	struct nm_addr pa, la;
	struct nm_orig orig, again;
	struct client_res r;
	struct client c;
	__be16 pp, lp;
	int cfd, took;

	c = client_start(cgroup, netns, family, ip, port, marked);
	cfd = accept_one(lfd, 5000, &peer);
	took = cfd >= 0 ? nm_datapath_take_orig(dp, &peer, &orig) : -1;
	r = client_finish(c);
	ck_assert_msg(r.err == 0, "connect %s:%u: %s", ip, port, strerror(r.err));
	ck_assert_msg(cfd >= 0, "the agent listener saw no connection");
	ck_assert_int_eq(took, 0);
	nm_addr_from_sockaddr(&peer, &pa, &pp);
	nm_addr_from_sockaddr(&r.local, &la, &lp);
	ck_assert_mem_eq(pa.a, la.a, sizeof(pa.a));
	ck_assert_uint_eq(pp, lp);
	ck_assert_int_eq(nm_datapath_take_orig(dp, &peer, &again), -ENOENT);
	close(cfd);
	ck_assert_uint_ne(orig.cookie, 0);
	ck_assert_uint_eq(orig.src_workload_id, CLIENT_WL_ID);
	ck_assert_uint_eq(orig.src_identity_id, 1);
	ck_assert(addr_eq(&orig.orig_dst, ip));
	ck_assert_uint_eq(ntohs(orig.orig_port), port);
	/* The agent checks both: the state it was written under, and age. */
	ck_assert_uint_eq(orig.generation, TEST_GENERATION);
	{
		struct timespec ts;
		uint64_t now;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		ck_assert_uint_le(orig.stamp_ns, now);
		ck_assert_uint_lt(now - orig.stamp_ns, NM_ORIG_MAX_AGE_NS);
	}
	return orig;
}

static struct nm_orig expect_redirect_in(const char *cgroup, const char *netns,
					 int family, const char *ip,
					 uint16_t port, int lfd)
{
	return expect_redirect_marked(cgroup, netns, family, ip, port, lfd, false);
}

static struct nm_orig expect_redirect(const char *cgroup, int family,
				      const char *ip, uint16_t port, int lfd)
{
	return expect_redirect_in(cgroup, NULL, family, ip, port, lfd);
}

/* The connection keeps its real destination, which does not exist here. */
static void expect_passthrough(const char *cgroup, int family, const char *ip,
			       uint16_t port, bool marked)
{
	struct client_res r = client_connect(cgroup, family, ip, port, marked);

	ck_assert_msg(r.err == ENETUNREACH || r.err == EHOSTUNREACH ||
			      r.err == ETIMEDOUT,
		      "connect %s:%u: expected unreachable, got %s", ip, port,
		      strerror(r.err));
	assert_listeners_idle();
	ck_assert_uint_eq(count_keys("nm_orig_tuple"), 0);
}

/* --- tests ------------------------------------------------------------------------ */

START_TEST(test_service_vip_v4_redirected)
{
	struct nm_wl_stats before = wl_stats(CLIENT_WL_ID), after;
	struct nm_orig o = expect_redirect(g_meshed, AF_INET, VIP4, 80, lfd4);

	ck_assert_uint_eq(o.flags & (NM_ORIG_SERVICE | NM_ORIG_ENDPOINT | NM_ORIG_V6),
			  NM_ORIG_SERVICE);
	ck_assert_uint_eq(o.service_id, 1);
	ck_assert_uint_eq(ntohs(o.backend_port), 8080);
	if (addr_eq(&o.backend, ECHO1_IP)) {
		ck_assert_uint_eq(o.dst_workload_id, 2);
		ck_assert(o.flags & NM_ORIG_LOCAL);
	} else {
		ck_assert_msg(addr_eq(&o.backend, ECHO2_IP), "backend not in the set");
		ck_assert_uint_eq(o.dst_workload_id, 3);
		ck_assert(!(o.flags & NM_ORIG_LOCAL));
	}
	ck_assert_uint_eq(o.dst_identity_id, 2);
	/* sockops moved the record: nothing left under the cookie. */
	ck_assert_uint_eq(count_keys("nm_orig_cookie"), 0);
	after = wl_stats(CLIENT_WL_ID);
	ck_assert_uint_eq(after.connects, before.connects + 1);
	ck_assert_uint_eq(after.redirects, before.redirects + 1);
	ck_assert_uint_eq(after.errors, before.errors);
}
END_TEST

START_TEST(test_backends_spread)
{
	bool seen1 = false, seen2 = false;

	/* Without locality (echo-1 is local and would win by default). */
	cl->services[0].lb.locality = NM_CFG_LOC_NONE;
	sync_cluster();
	/* Random pick: 32 tries miss one of two backends with p = 2^-31. */
	for (int i = 0; i < 32 && !(seen1 && seen2); i++) {
		struct nm_orig o = expect_redirect(g_meshed, AF_INET, VIP4, 80, lfd4);

		seen1 |= addr_eq(&o.backend, ECHO1_IP);
		seen2 |= addr_eq(&o.backend, ECHO2_IP);
	}
	ck_assert(seen1 && seen2);
}
END_TEST

START_TEST(test_pod_address_redirected)
{
	struct nm_orig o = expect_redirect(g_meshed, AF_INET, ECHO2_IP, 8080, lfd4);

	ck_assert_uint_eq(o.flags, NM_ORIG_ENDPOINT);
	ck_assert(addr_eq(&o.backend, ECHO2_IP));
	ck_assert_uint_eq(ntohs(o.backend_port), 8080);
	ck_assert_uint_eq(o.service_id, 0);
	ck_assert_uint_eq(o.dst_workload_id, 3);
	ck_assert_uint_eq(o.dst_identity_id, 2);

	o = expect_redirect(g_meshed, AF_INET, ECHO1_IP, 9000, lfd4);
	ck_assert_uint_eq(o.flags, NM_ORIG_ENDPOINT | NM_ORIG_LOCAL);
	ck_assert_uint_eq(ntohs(o.backend_port), 9000);
	ck_assert_uint_eq(o.dst_workload_id, 2);
}
END_TEST

START_TEST(test_outside_cgroup_untouched)
{
	struct nm_wl_stats before = wl_stats(CLIENT_WL_ID), after;

	expect_passthrough(g_outside, AF_INET, VIP4, 80, false);
	/* Inside the attach point but not a workload: untouched too. */
	expect_passthrough(g_root, AF_INET, VIP4, 80, false);
	expect_passthrough(g_root, AF_INET6, VIP6, 80, false);
	after = wl_stats(CLIENT_WL_ID);
	ck_assert_uint_eq(after.connects, before.connects);
}
END_TEST

/* Fault 4: a pod process that sets the agent's old mark is still meshed. */
START_TEST(test_marked_socket_still_meshed)
{
	struct nm_wl_stats before = wl_stats(CLIENT_WL_ID), after;

	expect_redirect_marked(g_meshed, NULL, AF_INET, VIP4, 80, lfd4, true);
	expect_redirect_marked(g_meshed, NULL, AF_INET6, VIP6, 80, lfd6, true);
	after = wl_stats(CLIENT_WL_ID);
	ck_assert_uint_eq(after.connects, before.connects + 2);
	ck_assert_uint_eq(after.redirects, before.redirects + 2);
}
END_TEST

/*
 * A container cgroup below the pod's (how runtimes place a pod's
 * processes): still that workload, with its identity. A cgroup below an
 * unmeshed one stays unmeshed.
 */
START_TEST(test_container_cgroup_below_pod_meshed)
{
	char ctr[700], deeper[760], outside_ctr[700];
	struct nm_wl_stats before = wl_stats(CLIENT_WL_ID), after;
	struct nm_orig o;

	snprintf(ctr, sizeof(ctr), "%s/ctr", g_meshed);
	snprintf(deeper, sizeof(deeper), "%s/ctr/init", g_meshed);
	snprintf(outside_ctr, sizeof(outside_ctr), "%s/ctr", g_outside);
	ck_assert_int_eq(mkdir(ctr, 0755), 0);
	ck_assert_int_eq(mkdir(deeper, 0755), 0);
	ck_assert_int_eq(mkdir(outside_ctr, 0755), 0);
	o = expect_redirect(ctr, AF_INET, VIP4, 80, lfd4);
	ck_assert_uint_eq(o.src_workload_id, CLIENT_WL_ID);
	o = expect_redirect(deeper, AF_INET6, VIP6, 80, lfd6);
	ck_assert_uint_eq(o.src_workload_id, CLIENT_WL_ID);
	after = wl_stats(CLIENT_WL_ID);
	ck_assert_uint_eq(after.redirects, before.redirects + 2);
	expect_passthrough(outside_ctr, AF_INET, VIP4, 80, false);
	remove_cgroup(deeper);
	remove_cgroup(ctr);
	remove_cgroup(outside_ctr);
}
END_TEST

START_TEST(test_unknown_destination_untouched)
{
	struct nm_wl_stats before = wl_stats(CLIENT_WL_ID), after;

	expect_passthrough(g_meshed, AF_INET, "198.19.0.99", 80, false);
	expect_passthrough(g_meshed, AF_INET, VIP4, 81, false); /* VIP, other port */
	expect_passthrough(g_meshed, AF_INET6, "fd00:19::99", 80, false);
	after = wl_stats(CLIENT_WL_ID);
	ck_assert_uint_eq(after.connects, before.connects + 3);
	ck_assert_uint_eq(after.passthrough, before.passthrough + 3);
	ck_assert_uint_eq(after.redirects, before.redirects);
	ck_assert_uint_eq(count_keys("nm_orig_cookie"), 0);
}
END_TEST

START_TEST(test_service_without_endpoints_refused)
{
	struct nm_wl_stats before = wl_stats(CLIENT_WL_ID), after;
	struct client_res r = client_connect(g_meshed, AF_INET, VIP4_EMPTY, 80, false);

	ck_assert_int_eq(r.err, EPERM);
	assert_listeners_idle();
	after = wl_stats(CLIENT_WL_ID);
	ck_assert_uint_eq(after.denies, before.denies + 1);
}
END_TEST

/* Fault 4: every datapath error refuses the connect in fail-closed mode;
 * only fail-open mode lets it go to its original destination. */
static void expect_refused(int family, const char *ip, uint16_t port)
{
	struct client_res r = client_connect(g_meshed, family, ip, port, false);

	ck_assert_msg(r.err == EPERM, "connect %s:%u: expected EPERM, got %s",
		      ip, port, strerror(r.err));
	assert_listeners_idle();
}

START_TEST(test_no_agent_address_fails_closed)
{
	struct nm_wl_stats before = wl_stats(CLIENT_WL_ID), after;

	set_agent_state(false);
	expect_refused(AF_INET, VIP4, 80);
	expect_refused(AF_INET6, VIP6, 80);
	/* A pod address is meshed as well. */
	expect_refused(AF_INET, ECHO2_IP, 8080);
	ck_assert_uint_eq(count_keys("nm_orig_cookie"), 0);
	after = wl_stats(CLIENT_WL_ID);
	ck_assert_uint_eq(after.errors, before.errors + 3);
	ck_assert_uint_eq(after.denies, before.denies + 3);
	ck_assert_uint_eq(after.passthrough, before.passthrough);
	/* Fail-open: the same error passes, counted. */
	set_agent_state_mode(false, NM_FAIL_OPEN);
	expect_passthrough(g_meshed, AF_INET, VIP4, 80, false);
	after = wl_stats(CLIENT_WL_ID);
	ck_assert_uint_eq(after.errors, before.errors + 4);
	ck_assert_uint_eq(after.passthrough, before.passthrough + 1);
	set_agent_state(true);
	expect_redirect(g_meshed, AF_INET, VIP4, 80, lfd4);
}
END_TEST

/* A service announcing more backends than its slots (a sync in progress,
 * a failed map write) is an error, not a way around the mesh. */
START_TEST(test_missing_backend_slot_fails_closed)
{
	struct nm_wl_stats before = wl_stats(CLIENT_WL_ID), after;
	struct nm_svc_key key;
	struct nm_service svc, saved;
	int fd = pinned_fd("nm_services");

	memset(&key, 0, sizeof(key));
	key.vip = addr_of(VIP4);
	key.port = htons(80);
	key.proto = IPPROTO_TCP;
	ck_assert_int_eq(bpf_map_lookup_elem(fd, &key, &saved), 0);
	svc = saved;
	svc.backend_count = NM_MAX_BACKENDS_PER_SVC; /* slots 2.. do not exist */
	ck_assert_int_eq(bpf_map_update_elem(fd, &key, &svc, BPF_ANY), 0);
	{
		/* Without its layout the pick is uniform over backend_count. */
		struct nm_backend_key lk = { saved.service_id, NM_BACKEND_SLOT(80, 0, 0) };
		int lfd = pinned_fd("nm_lb_sets");

		ck_assert_int_eq(bpf_map_delete_elem(lfd, &lk), 0);
		close(lfd);
	}
	/* Random picks: with 2 of 1024 slots present, 8 tries all but surely
	 * hit a missing one; every miss must be refused, none pass. */
	for (int i = 0; i < 8; i++) {
		struct client_res r = client_connect(g_meshed, AF_INET, VIP4, 80, false);
		struct sockaddr_storage peer;
		int cfd;

		ck_assert_msg(r.err == EPERM || r.err == 0,
			      "connect: expected EPERM or a redirect, got %s",
			      strerror(r.err));
		if (r.err == 0) {
			struct nm_orig o;

			cfd = accept_one(lfd4, 5000, &peer);
			ck_assert_int_ge(cfd, 0);
			ck_assert_int_eq(nm_datapath_take_orig(dp, &peer, &o), 0);
			close(cfd);
		}
	}
	after = wl_stats(CLIENT_WL_ID);
	ck_assert_uint_gt(after.errors, before.errors);
	ck_assert_uint_eq(after.passthrough, before.passthrough);
	ck_assert_int_eq(bpf_map_update_elem(fd, &key, &saved, BPF_ANY), 0);
	close(fd);
}
END_TEST

START_TEST(test_pod_netns_redirected)
{
	struct nm_agent_state st;
	struct client_res r;
	struct nm_orig o;
	uint16_t bound;
	int lfd;

	/* The real shape: the pod in its own netns, the agent listening on
	 * the node's address on the other end of a veth. */
	lfd = listen_on(AF_INET, NODE_IP, lport, &bound);
	ck_assert_int_ge(lfd, 0);
	memset(&st, 0, sizeof(st));
	st.agent_v4 = addr_of(NODE_IP);
	st.outbound_port = htons(lport);
	st.config_generation = TEST_GENERATION;
	ck_assert_int_eq(nm_datapath_set_state(dp, &st), 0);

	o = expect_redirect_in(g_meshed, g_pod_netns, AF_INET, VIP4, 80, lfd);
	ck_assert_uint_eq(o.flags & NM_ORIG_SERVICE, NM_ORIG_SERVICE);
	ck_assert_uint_eq(count_keys("nm_orig_cookie"), 0);

	/* Outside the mesh, the pod's VIP connect is not steered. */
	r = client_connect_in(g_outside, g_pod_netns, AF_INET, VIP4, 80, false);
	ck_assert_int_eq(r.err, ENETUNREACH);
	close(lfd);
}
END_TEST

START_TEST(test_v6_vip_redirected)
{
	struct nm_orig o = expect_redirect(g_meshed, AF_INET6, VIP6, 80, lfd6);

	ck_assert_uint_eq(o.flags & (NM_ORIG_SERVICE | NM_ORIG_V6),
			  NM_ORIG_SERVICE | NM_ORIG_V6);
	ck_assert_uint_eq(o.service_id, 1);
	ck_assert_uint_eq(ntohs(o.backend_port), 8080);
	ck_assert(addr_eq(&o.backend, ECHO1_IP6) || addr_eq(&o.backend, ECHO2_IP));

	o = expect_redirect(g_meshed, AF_INET6, ECHO1_IP6, 8080, lfd6);
	ck_assert_uint_eq(o.flags, NM_ORIG_ENDPOINT | NM_ORIG_LOCAL | NM_ORIG_V6);
}
END_TEST

START_TEST(test_v4_mapped_through_connect6)
{
	/* An AF_INET6 socket dialling ::ffff:VIP4 reaches the v4 listener, and
	 * the agent finds the record from the plain v4 peer address. */
	struct nm_orig o = expect_redirect(g_meshed, AF_INET6, "::ffff:" VIP4, 80,
					   lfd4);

	ck_assert(addr_eq(&o.orig_dst, VIP4));
	ck_assert_uint_eq(o.flags & (NM_ORIG_SERVICE | NM_ORIG_V6),
			  NM_ORIG_SERVICE | NM_ORIG_V6);
	ck_assert(addr_eq(&o.backend, ECHO1_IP) || addr_eq(&o.backend, ECHO2_IP));
}
END_TEST

START_TEST(test_restart_reuses_pinned_links)
{
	static const char *const names[] = { "link_connect4", "link_connect6",
					     "link_sockops" };
	struct link_ids before[3], after;
	struct sockaddr_storage peer;
	struct nm_orig o;
	struct client_res r;
	int cfd;

	for (int i = 0; i < 3; i++) {
		before[i] = link_ids(names[i]);
		ck_assert_uint_eq(before[i].cgroup_id, cgroup_id_of(g_root));
	}

	/* Agent gone: the pinned links keep redirecting. */
	nm_datapath_close(dp);
	dp = NULL;
	r = client_connect(g_meshed, AF_INET, VIP4, 80, false);
	ck_assert_int_eq(r.err, 0);
	cfd = accept_one(lfd4, 5000, &peer);
	ck_assert_int_ge(cfd, 0);
	close(cfd);
	ck_assert_uint_eq(count_keys("nm_orig_tuple"), 1);

	/* Restart: same links, new programs, same maps. */
	open_datapath(g_root);
	for (int i = 0; i < 3; i++) {
		after = link_ids(names[i]);
		ck_assert_uint_eq(after.link_id, before[i].link_id);
		ck_assert_uint_ne(after.prog_id, before[i].prog_id);
		ck_assert_uint_eq(after.cgroup_id, before[i].cgroup_id);
	}
	ck_assert_int_eq(nm_datapath_take_orig(dp, &peer, &o), 0);
	ck_assert(addr_eq(&o.orig_dst, VIP4));
	expect_redirect(g_meshed, AF_INET, VIP4, 80, lfd4);
	expect_redirect(g_meshed, AF_INET6, VIP6, 80, lfd6);
}
END_TEST

START_TEST(test_agent_down_fails_closed)
{
	struct client_res r;
	struct timespec t0, t1;

	nm_datapath_close(dp);
	dp = NULL;
	close(lfd4);
	lfd4 = -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = client_connect(g_meshed, AF_INET, VIP4, 80, false);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* Refused at once by loopback; a leak to the VIP would have been
	 * ENETUNREACH, a hang ETIMEDOUT. */
	ck_assert_int_eq(r.err, ECONNREFUSED);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 3);
}
END_TEST

START_TEST(test_moved_root_replaces_links)
{
	struct link_ids before = link_ids("link_connect4"), after;

	/* The agent comes back configured with another root (here: the
	 * meshed cgroup itself); the links follow it. */
	nm_datapath_close(dp);
	dp = NULL;
	open_datapath(g_meshed);
	after = link_ids("link_connect4");
	ck_assert_uint_ne(after.link_id, before.link_id);
	ck_assert_uint_eq(after.cgroup_id, cgroup_id_of(g_meshed));
	ck_assert_uint_eq(link_ids("link_sockops").cgroup_id, cgroup_id_of(g_meshed));
	expect_redirect(g_meshed, AF_INET, VIP4, 80, lfd4);
	/* The old links left the old root at once: a workload directly under
	 * it (echo-1's cgroup) is no longer steered. */
	expect_passthrough(g_echo, AF_INET, VIP4, 80, false);
}
END_TEST

START_TEST(test_sync_prunes_stale_entries)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];

	ck_assert_uint_eq(count_keys("nm_services"), 3);
	ck_assert_uint_eq(count_keys("nm_backends"), 4);
	ck_assert_uint_eq(count_keys("nm_endpoints"), 4);
	ck_assert_uint_eq(count_keys("nm_workloads"), 2);

	/* Drop the services and echo-2. */
	cl->n_services = 0;
	cl->n_workloads = 2;
	ck_assert_msg(nm_model_build_with(cl, 0, nm_model_cgroup_id, NULL, &m, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(nm_datapath_sync(dp, &m), 0);
	nm_model_free(&m);
	ck_assert_uint_eq(count_keys("nm_services"), 0);
	ck_assert_uint_eq(count_keys("nm_backends"), 0);
	ck_assert_uint_eq(count_keys("nm_endpoints"), 3);
	ck_assert_uint_eq(count_keys("nm_workloads"), 2);
	expect_passthrough(g_meshed, AF_INET, VIP4, 80, false);
	expect_passthrough(g_meshed, AF_INET, ECHO2_IP, 8080, false);

	/* Empty model: the client is no longer meshed at all. */
	memset(&m, 0, sizeof(m));
	ck_assert_int_eq(nm_datapath_sync(dp, &m), 0);
	ck_assert_uint_eq(count_keys("nm_workloads"), 0);
	ck_assert_uint_eq(count_keys("nm_endpoints"), 0);
	expect_passthrough(g_meshed, AF_INET, ECHO1_IP, 8080, false);

	cl->n_services = 2;
	cl->n_workloads = 3;
	sync_cluster();
	expect_redirect(g_meshed, AF_INET, VIP4, 80, lfd4);
}
END_TEST

START_TEST(test_remove_pins_detaches)
{
	struct stat st;

	nm_datapath_close(dp);
	dp = NULL;
	ck_assert_int_eq(nm_datapath_remove_pins(g_instance), 0);
	ck_assert_int_eq(stat(g_pin, &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	/* Links and maps are gone with their last reference. */
	struct client_res r = client_connect(g_meshed, AF_INET, VIP4, 80, false);

	ck_assert_int_eq(r.err, ENETUNREACH);
	assert_listeners_idle();
	ck_assert_int_eq(nm_datapath_remove_pins(g_instance), 0);
}
END_TEST

START_TEST(test_heartbeat_and_state)
{
	struct nm_agent_state st;
	struct timespec ts;
	__u32 key = 0;
	int fd = pinned_fd("nm_agent_state");
	uint64_t now;

	ck_assert_int_eq(nm_datapath_heartbeat(dp), 0);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
	ck_assert_int_eq(bpf_map_lookup_elem(fd, &key, &st), 0);
	close(fd);
	ck_assert_uint_eq(st.abi_version, NM_ABI_VERSION);
	ck_assert_uint_le(st.heartbeat_ns, now);
	ck_assert_uint_gt(st.heartbeat_ns, now - 1000000000ull);
	ck_assert(addr_eq(&st.agent_v4, "127.0.0.1"));
	ck_assert_uint_eq(ntohs(st.outbound_port), lport);
}
END_TEST

START_TEST(test_take_orig_unknown_peer)
{
	struct sockaddr_storage ss;
	struct nm_orig o;

	make_sockaddr(AF_INET, "127.0.0.1", 40000, &ss);
	ck_assert_int_eq(nm_datapath_take_orig(dp, &ss, &o), -ENOENT);
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

static void dump_pinned(const char *map, char *out, size_t len)
{
	char cmd[PATH_MAX + 64];
	size_t n;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "bpftool map dump pinned %s/%s 2>&1", g_pin, map);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(out, 1, len - 1, f);
	out[n] = '\0';
	ck_assert_int_eq(pclose(f), 0);
}

/* Every map carries BTF for its key and value, so dumps are typed records. */
START_TEST(test_maps_are_btf_typed)
{
	static const char *const maps[] = {
		"nm_workloads", "nm_services", "nm_backends", "nm_endpoints",
		"nm_orig_cookie", "nm_orig_tuple", "nm_agent_state",
		"nm_wl_stats",
	};
	char out[65536];

	for (unsigned int i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		struct bpf_map_info info;
		__u32 len = sizeof(info);
		int fd = pinned_fd(maps[i]);

		memset(&info, 0, sizeof(info));
		ck_assert_int_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
		close(fd);
		/* The kernel keeps 15 characters of a name; pins keep all. */
		ck_assert_int_eq(strncmp(info.name, maps[i], BPF_OBJ_NAME_LEN - 1), 0);
		ck_assert_msg(info.btf_id && info.btf_key_type_id &&
				      info.btf_value_type_id,
			      "%s has no key/value BTF", maps[i]);
	}
	/* The VM images may lack bpftool; the BTF ids above are the proof,
	 * the dump shows what an operator sees. */
	if (!have_bpftool())
		return;
	dump_pinned("nm_services", out, sizeof(out));
	ck_assert_msg(strstr(out, "\"vip\"") && strstr(out, "\"service_id\": 1") &&
			      strstr(out, "\"backend_count\": 2"),
		      "untyped dump:\n%s", out);
	dump_pinned("nm_backends", out, sizeof(out));
	ck_assert_msg(strstr(out, "\"slot\"") && strstr(out, "\"workload_id\""),
		      "untyped dump:\n%s", out);
}
END_TEST

START_TEST(test_abi_mismatch_refused)
{
	struct nm_datapath_opts o = { .instance = g_instance,
				      .cgroup_root = g_root };
	struct nm_agent_state st;
	struct nm_datapath *d = NULL;
	char err[NM_ERRMSG_MAX];
	__u32 key = 0;
	int fd = pinned_fd("nm_agent_state");

	/* Pins left by an agent of another ABI version. */
	nm_datapath_close(dp);
	dp = NULL;
	ck_assert_int_eq(bpf_map_lookup_elem(fd, &key, &st), 0);
	st.abi_version = NM_ABI_VERSION + 1;
	ck_assert_int_eq(bpf_map_update_elem(fd, &key, &st, BPF_ANY), 0);
	close(fd);
	ck_assert_int_eq(nm_datapath_open(&o, &d, err, sizeof(err)), -EPROTO);
	ck_assert_ptr_null(d);
	ck_assert_msg(strstr(err, "pinned maps have ABI version") != NULL, "%s", err);
	/* The old links were left alone: still redirecting. */
	struct client_res r = client_connect(g_meshed, AF_INET, VIP4, 80, false);
	struct sockaddr_storage peer;
	int cfd;

	ck_assert_int_eq(r.err, 0);
	cfd = accept_one(lfd4, 5000, &peer);
	ck_assert_int_ge(cfd, 0);
	close(cfd);
}
END_TEST

START_TEST(test_open_errors)
{
	char other[96];
	struct nm_datapath_opts o = { .instance = other };
	struct nm_datapath *d = NULL;
	char err[NM_ERRMSG_MAX], mnt[PATH_MAX], want[PATH_MAX + 64];
	struct stat st;

	snprintf(other, sizeof(other), "%s-other", g_instance);
	o.cgroup_root = "/nonexistent-nm-cgroup";
	ck_assert_int_eq(nm_datapath_open(&o, &d, err, sizeof(err)), -ENOENT);
	ck_assert_str_eq(err, "cgroup root /nonexistent-nm-cgroup: No such file or directory");
	ck_assert_ptr_null(d);

	o.cgroup_root = "/tmp";
	ck_assert_int_eq(nm_datapath_open(&o, &d, err, sizeof(err)), -EMEDIUMTYPE);
	ck_assert_str_eq(err, "cgroup root /tmp: not a cgroup v2 directory");

	ck_assert_int_eq(nm_cgroup2_mount(mnt, sizeof(mnt)), 0);
	o.cgroup_root = mnt;
	ck_assert_int_eq(nm_datapath_open(&o, &d, err, sizeof(err)), -EPERM);
	snprintf(want, sizeof(want),
		 "cgroup root %s: refusing the cgroup v2 mount root; use a subtree", mnt);
	ck_assert_str_eq(err, want);

	o.instance = "../escape";
	o.cgroup_root = g_root;
	ck_assert_int_eq(nm_datapath_open(&o, &d, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "instance \"../escape\""));
	ck_assert_int_eq(nm_datapath_remove_pins("../escape"), -EINVAL);
	/* Failed opens leave no pin directory behind. */
	snprintf(want, sizeof(want), "%s/%s", NM_PIN_BASE, other);
	ck_assert_int_eq(stat(want, &st), -1);
}
END_TEST

/* --- the private world --------------------------------------------------------------- */



static void world_cleanup(void)
{
	if (getpid() != g_main_pid)
		return;
	/* The veth pair goes with the namespaces. */
	if (g_pod_holder > 0) {
		kill(g_pod_holder, SIGKILL);
		waitpid(g_pod_holder, NULL, 0);
		g_pod_holder = -1;
	}
	nm_datapath_remove_pins(g_instance);
	remove_cgroup(g_meshed);
	remove_cgroup(g_echo);
	remove_cgroup(g_root);
	remove_cgroup(g_outside);
	remove_cgroup(g_base);
}

/*
 * Check runs each test in a child of its own process group, which a terminal's
 * SIGINT does not reach: stop it (its clients die with it, PDEATHSIG) before
 * cleaning up.
 */
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


static int nl_link_up(struct nl_sock *sk, const char *name)
{
	struct rtnl_link *link = NULL, *change = NULL;
	int ret;

	ret = rtnl_link_get_kernel(sk, 0, name, &link);
	if (ret < 0)
		return ret;
	change = rtnl_link_alloc();
	rtnl_link_set_flags(change, IFF_UP);
	ret = rtnl_link_change(sk, link, change, 0);
	rtnl_link_put(change);
	rtnl_link_put(link);
	return ret;
}

static int nl_addr_add(struct nl_sock *sk, const char *ifname, const char *cidr)
{
	struct rtnl_addr *addr = rtnl_addr_alloc();
	struct nl_addr *local = NULL;
	int ifindex, ret;

	ifindex = (int)if_nametoindex(ifname);
	if (!addr || !ifindex)
		return -1;
	ret = nl_addr_parse(cidr, AF_INET, &local);
	if (ret == 0) {
		rtnl_addr_set_ifindex(addr, ifindex);
		ret = rtnl_addr_set_local(addr, local);
	}
	if (ret == 0)
		ret = rtnl_addr_add(sk, addr, 0);
	nl_addr_put(local);
	rtnl_addr_put(addr);
	return ret;
}

static struct nl_sock *nl_open(void)
{
	struct nl_sock *sk = nl_socket_alloc();

	if (sk && nl_connect(sk, NETLINK_ROUTE) < 0) {
		nl_socket_free(sk);
		sk = NULL;
	}
	return sk;
}

/* The pod side, run by the holder inside its new namespace. */
static int pod_netns_configure(void)
{
	struct nl_sock *sk = nl_open();
	int ret;

	if (!sk)
		return -1;
	ret = nl_link_up(sk, "lo");
	if (ret == 0)
		ret = nl_addr_add(sk, POD_IF, POD_IP "/24");
	if (ret == 0)
		ret = nl_link_up(sk, POD_IF);
	nl_socket_free(sk);
	return ret;
}

/*
 * Forks the holder of the pod namespace, then wires it to ours:
 * veth NODE_IF (here, NODE_IP) <-> POD_IF (there, POD_IP).
 */
static int pod_netns_setup(void)
{
	int to_child[2], to_parent[2];
	struct nl_sock *sk;
	char c = 0;
	int ret = -1;

	if (pipe2(to_child, O_CLOEXEC) || pipe2(to_parent, O_CLOEXEC))
		return -1;
	g_pod_holder = fork();
	if (g_pod_holder < 0)
		return -1;
	if (g_pod_holder == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		c = unshare(CLONE_NEWNET) == 0 ? 'u' : 'E';
		if (write(to_parent[1], &c, 1) != 1 || c == 'E')
			_exit(1);
		if (read(to_child[0], &c, 1) != 1) /* veth is here */
			_exit(1);
		c = pod_netns_configure() == 0 ? 'c' : 'E';
		if (write(to_parent[1], &c, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	snprintf(g_pod_netns, sizeof(g_pod_netns), "/proc/%d/ns/net",
		 (int)g_pod_holder);
	if (read(to_parent[0], &c, 1) != 1 || c != 'u')
		goto out;
	sk = nl_open();
	if (!sk)
		goto out;
	ret = rtnl_link_veth_add(sk, NODE_IF, POD_IF, g_pod_holder);
	if (ret == 0)
		ret = nl_addr_add(sk, NODE_IF, NODE_IP "/24");
	if (ret == 0)
		ret = nl_link_up(sk, NODE_IF);
	nl_socket_free(sk);
	if (ret)
		goto out;
	ret = -1;
	if (write(to_child[1], &c, 1) != 1 || read(to_parent[0], &c, 1) != 1 ||
	    c != 'c')
		goto out;
	ret = 0;
out:
	close(to_child[0]);
	close(to_child[1]);
	close(to_parent[0]);
	close(to_parent[1]);
	if (ret)
		fprintf(stderr, "test_datapath: pod namespace setup failed\n");
	return ret;
}

static int world_setup(void)
{
	char mnt[256];
	int ret;

	if (unshare(CLONE_NEWNET) || loopback_up()) {
		fprintf(stderr, "test_datapath: private network namespace: %s\n",
			strerror(errno));
		return -1;
	}
	if (pod_netns_setup())
		return -1;
	ret = nm_cgroup2_mount(mnt, sizeof(mnt));
	if (ret) {
		fprintf(stderr, "test_datapath: no cgroup v2 mount: %s\n",
			strerror(-ret));
		return -1;
	}
	snprintf(g_instance, sizeof(g_instance), "bpftest-%d", (int)g_main_pid);
	snprintf(g_pin, sizeof(g_pin), "%s/%s", NM_PIN_BASE, g_instance);
	snprintf(g_base, sizeof(g_base), "%s/nm-bpftest-%d", mnt, (int)g_main_pid);
	snprintf(g_root, sizeof(g_root), "%s/root", g_base);
	snprintf(g_meshed, sizeof(g_meshed), "%s/meshed", g_root);
	snprintf(g_echo, sizeof(g_echo), "%s/echo1", g_root);
	snprintf(g_outside, sizeof(g_outside), "%s/outside", g_base);
	const char *dirs[] = { g_base, g_root, g_meshed, g_echo, g_outside };

	for (unsigned int i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (mkdir(dirs[i], 0755)) {
			fprintf(stderr, "test_datapath: mkdir %s: %s\n", dirs[i],
				strerror(errno));
			return -1;
		}
	}
	return 0;
}

static Suite *datapath_suite(void)
{
	Suite *s = suite_create("datapath");
	TCase *tc = tcase_create("live");

	tcase_add_checked_fixture(tc, setup, teardown);
	/* The VM matrix sets CK_DEFAULT_TIMEOUT for its slower CPUs. */
	if (!getenv("CK_DEFAULT_TIMEOUT"))
		tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_service_vip_v4_redirected);
	tcase_add_test(tc, test_backends_spread);
	tcase_add_test(tc, test_pod_address_redirected);
	tcase_add_test(tc, test_outside_cgroup_untouched);
	tcase_add_test(tc, test_marked_socket_still_meshed);
	tcase_add_test(tc, test_container_cgroup_below_pod_meshed);
	tcase_add_test(tc, test_unknown_destination_untouched);
	tcase_add_test(tc, test_service_without_endpoints_refused);
	tcase_add_test(tc, test_no_agent_address_fails_closed);
	tcase_add_test(tc, test_missing_backend_slot_fails_closed);
	tcase_add_test(tc, test_pod_netns_redirected);
	tcase_add_test(tc, test_v6_vip_redirected);
	tcase_add_test(tc, test_v4_mapped_through_connect6);
	tcase_add_test(tc, test_restart_reuses_pinned_links);
	tcase_add_test(tc, test_agent_down_fails_closed);
	tcase_add_test(tc, test_moved_root_replaces_links);
	tcase_add_test(tc, test_sync_prunes_stale_entries);
	tcase_add_test(tc, test_remove_pins_detaches);
	tcase_add_test(tc, test_heartbeat_and_state);
	tcase_add_test(tc, test_take_orig_unknown_peer);
	tcase_add_test(tc, test_maps_are_btf_typed);
	tcase_add_test(tc, test_abi_mismatch_refused);
	tcase_add_test(tc, test_open_errors);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int failed;

	if (geteuid() != 0) {
		fprintf(stderr, "test_datapath: must run as root (BPF, cgroups, netns)\n");
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
	/* Each test in its own process: a failing one cannot leak fds or
	 * attachments into the next; the world is cleaned here, once. */
	failed = nm_check_run(datapath_suite(), CK_FORK);
	world_cleanup();
	return failed ? 1 : 0;
}
