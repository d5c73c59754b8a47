// SPDX-License-Identifier: Apache-2.0
/*
 * test_kernel_path.c - the same-node kernel path (DESIGN §2 path 3,
 * docs/kernel-path.md) in the running kernel: when connect4/6 sends a
 * meshed pod's connection straight to a same-node backend, when it keeps
 * the agent path, what sockops leaves behind, and how a STRICT destination
 * admits it. Real sockets in real cgroups. Run as root.
 *
 * The world: a private network namespace whose loopback also carries the
 * "pod" addresses of echo1 (198.18.1.3, fd00:18::13), a cgroup subtree
 * <cgroup2 mount>/nm-kptest-<pid>/{root/{meshed,echo1},outside} with the
 * programs attached at .../root, the pin directory
 * /sys/fs/bpf/nodemesh/kptest-<pid>. The "agent" listens on 127.0.0.1:P and
 * [::1]:P; echo1's listeners are sockets created in echo1's cgroup (a
 * socket's cgroup is fixed at creation), so strict inbound applies to them.
 * Clients are child processes that move into a cgroup first; the test
 * itself sits in `outside` (below no attach point: an unmeshed stranger).
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

#define VIP4 "198.19.0.10"      /* service echo, 80 -> 8080, backend echo1 */
#define VIP6 "fd00:19::10"
#define RVIP4 "198.19.0.20"     /* service remote, 80 -> 8080, backend echo2 */
#define CLIENT_IP "198.18.1.2"
#define ECHO1_IP "198.18.1.3"   /* local, own cgroup, on loopback here */
#define ECHO1_IP6 "fd00:18::13"
#define ECHO1_MAPPED "::ffff:198.18.1.3"
#define ECHO2_IP "198.18.2.3"   /* remote */
#define ECHO_PORT 8080

static pid_t g_main_pid;
static char g_instance[64];
static char g_pin[256];
static char g_base[384], g_root[512], g_meshed[640], g_echo[640], g_outside[640];

#include "bpf_world.h"

static struct nm_datapath *dp;
static int lfd4 = -1, lfd6 = -1;  /* the agent's listener */
static int efd4 = -1, efd6 = -1;  /* echo1's, in its cgroup */
static uint16_t lport;
static struct nm_cluster *cl;
static uint32_t id_client, id_echo1, id_echo2;

/* --- the agent and the pods --------------------------------------------------- */

static void move_to(const char *cgroup)
{
	char procs[PATH_MAX];

	snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup);
	ck_assert_msg(write_str(procs, "0") == 0, "move to %s: %s", cgroup,
		      strerror(errno));
}

static void open_listeners(void)
{
	uint16_t p;

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
	move_to(g_echo);
	efd4 = listen_on(AF_INET, ECHO1_IP, ECHO_PORT, &p);
	efd6 = listen_on(AF_INET6, ECHO1_IP6, ECHO_PORT, &p);
	move_to(g_outside);
	ck_assert_int_ge(efd4, 0);
	ck_assert_int_ge(efd6, 0);
}

static void set_agent_state(uint16_t flags)
{
	struct nm_agent_state st;

	memset(&st, 0, sizeof(st));
	st.agent_v4 = addr_of("127.0.0.1");
	st.agent_v6 = addr_of("::1");
	st.outbound_port = htons(lport);
	st.fail_mode = NM_FAIL_CLOSED;
	st.config_generation = 3;
	st.flags = flags;
	ck_assert_int_eq(nm_datapath_set_state(dp, &st), 0);
}

static int accept_one(int lfd, int timeout_ms)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static void assert_idle(int a, int b)
{
	struct pollfd p[2] = { { .fd = a, .events = POLLIN },
			       { .fd = b, .events = POLLIN } };

	ck_assert_int_eq(poll(p, 2, 200), 0);
}

/* --- the cluster --------------------------------------------------------------- */

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

static void add_service(const char *name, const char *vip, const char *vip6,
			const char *app)
{
	struct nm_service_cfg *s = &cl->services[cl->n_services++];

	snprintf(s->name, NM_NAME_MAX, "%s", name);
	snprintf(s->ns, NM_NAME_MAX, "default");
	s->vip = addr_of(vip);
	if (vip6) {
		s->has_vip6 = true;
		s->vip6 = addr_of(vip6);
	}
	s->ports[0] = (struct nm_port_map){ 80, ECHO_PORT };
	s->n_ports = 1;
	snprintf(s->selector[0].key, NM_NAME_MAX, "app");
	snprintf(s->selector[0].value, NM_NAME_MAX, "%s", app);
	s->n_selector = 1;
	nm_resilience_defaults(&s->resilience);
}

static void build_cluster(void)
{
	cl = calloc(1, sizeof(*cl));
	ck_assert_ptr_nonnull(cl);
	snprintf(cl->path, sizeof(cl->path), "kptest");
	cl->n_nodes = 2;
	cl->nodes = calloc(2, sizeof(*cl->nodes));
	snprintf(cl->nodes[0].name, NM_NAME_MAX, "node-1");
	snprintf(cl->nodes[1].name, NM_NAME_MAX, "node-2");
	cl->workloads = calloc(3, sizeof(*cl->workloads));
	add_workload("client", CLIENT_IP, 0, g_meshed);
	add_workload("echo1", ECHO1_IP, 0, g_echo);
	cl->workloads[1].has_ip6 = true;
	cl->workloads[1].ip6 = addr_of(ECHO1_IP6);
	add_workload("echo2", ECHO2_IP, 1, "nm-elsewhere/echo2");
	cl->services = calloc(2, sizeof(*cl->services));
	add_service("echo", VIP4, VIP6, "echo1");
	add_service("remote", RVIP4, NULL, "echo2");
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
 * Writes the cluster's maps as the agent does. compiled: keep the records
 * nm_model_build_with() compiled (no policy set: ALLOW to every local
 * destination); else exactly recs.
 */
static void sync_with(bool compiled, const struct nm_policy_rec *recs,
		      unsigned int n)
{
	char err[NM_ERRMSG_MAX];
	struct nm_model m;

	ck_assert_msg(nm_model_build_with(cl, 0, nm_model_cgroup_id, NULL, &m,
					  err, sizeof(err)) == 0, "%s", err);
	id_client = endpoint_id(&m, CLIENT_IP);
	id_echo1 = endpoint_id(&m, ECHO1_IP);
	id_echo2 = endpoint_id(&m, ECHO2_IP);
	if (!compiled) {
		free(m.policies);
		m.policies = NULL;
		m.n_policies = 0;
		if (n) {
			m.policies = calloc(n, sizeof(*recs));
			ck_assert_ptr_nonnull(m.policies);
			memcpy(m.policies, recs, n * sizeof(*recs));
			m.n_policies = n;
		}
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

static void setup(void)
{
	struct nm_datapath_opts o = { .instance = g_instance,
				      .cgroup_root = g_root,
				      .sock_stats = true };
	char err[NM_ERRMSG_MAX];

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	move_to(g_outside);
	nm_datapath_remove_pins(g_instance);
	ck_assert_msg(nm_datapath_open(&o, &dp, err, sizeof(err)) == 0, "%s", err);
	open_listeners();
	set_agent_state(NM_AGENT_F_KERNEL_PATH);
	build_cluster();
	sync_with(true, NULL, 0);
}

static void teardown(void)
{
	nm_datapath_close(dp);
	dp = NULL;
	nm_datapath_remove_pins(g_instance);
	int *fds[] = { &lfd4, &lfd6, &efd4, &efd6 };

	for (unsigned int i = 0; i < 4; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	if (cl) {
		free(cl->nodes);
		free(cl->workloads);
		free(cl->services);
		free(cl);
		cl = NULL;
	}
}

/* --- clients in a cgroup -------------------------------------------------------------- */

#define CLIENT_SETUP_FAILED 100000

/* 0 when connected and "kp" was sent, an errno, or CLIENT_SETUP_FAILED + errno. */
static int client_child(const char *cgroup, int family, const char *ip,
			uint16_t port)
{
	char procs[PATH_MAX];
	struct sockaddr_storage dst;
	socklen_t len;
	int fd, err = 0;

	snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup);
	if (write_str(procs, "0"))
		return CLIENT_SETUP_FAILED + errno;
	len = make_sockaddr(family, ip, port, &dst);
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return CLIENT_SETUP_FAILED + errno;
	if (connect(fd, (struct sockaddr *)&dst, len))
		err = errno;
	else if (write(fd, "kp", 2) != 2)
		err = errno;
	close(fd);
	return err;
}

struct client {
	pid_t pid;
	int fd;
};

static struct client client_start(int family, const char *ip, uint16_t port)
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
		r = client_child(g_meshed, family, ip, port);
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

/*
 * The connection lands on echo1's listener efd with the client's bytes,
 * none on the agent's; one more kernel flow, and no redirect record left
 * for the agent (sockops dropped it at TCP_CONNECT_CB).
 */
static void expect_kernel(int family, const char *ip, uint16_t port, int efd)
{
	uint64_t before = wl_stats(id_client).kernel_flows;
	/* Agent-path records of earlier connects stay: no agent takes them. */
	unsigned int tuples = count_keys("nm_orig_tuple");
	struct client c = client_start(family, ip, port);
	int cfd = accept_one(efd, 5000);
	int err = client_finish(c);
	char buf[8] = { 0 };

	ck_assert_msg(err == 0, "connect %s:%u: %s", ip, port, strerror(err));
	ck_assert_msg(cfd >= 0, "connect %s:%u: the backend saw nothing", ip, port);
	ck_assert_int_eq(recv(cfd, buf, sizeof(buf), MSG_WAITALL), 2);
	ck_assert_str_eq(buf, "kp");
	close(cfd);
	assert_idle(lfd4, lfd6);
	ck_assert_uint_eq(wl_stats(id_client).kernel_flows, before + 1);
	ck_assert_uint_eq(count_keys("nm_orig_cookie"), 0);
	ck_assert_uint_eq(count_keys("nm_orig_tuple"), tuples);
}

/* The connection lands on the agent's listener lfd (the agent path), with
 * its redirect record; the backend sees nothing. */
static void expect_agent(int family, const char *ip, uint16_t port, int lfd)
{
	uint64_t before = wl_stats(id_client).kernel_flows;
	unsigned int tuples = count_keys("nm_orig_tuple");
	struct client c = client_start(family, ip, port);
	int cfd = accept_one(lfd, 5000);
	int err = client_finish(c);

	ck_assert_msg(err == 0, "connect %s:%u: %s", ip, port, strerror(err));
	ck_assert_msg(cfd >= 0, "connect %s:%u: the agent listener saw nothing",
		      ip, port);
	close(cfd);
	assert_idle(efd4, efd6);
	ck_assert_uint_eq(wl_stats(id_client).kernel_flows, before);
	ck_assert_uint_eq(count_keys("nm_orig_tuple"), tuples + 1);
}

/* --- tests ---------------------------------------------------------------------------- */

/* No policy set at all: its compiled ALLOW records open the kernel path to
 * the local backend, through a VIP and a pod address, v4, v6 and
 * v4-mapped through an AF_INET6 socket. */
START_TEST(test_local_allowed_goes_direct)
{
	expect_kernel(AF_INET, VIP4, 80, efd4);
	expect_kernel(AF_INET, ECHO1_IP, ECHO_PORT, efd4);
	expect_kernel(AF_INET6, VIP6, 80, efd6);
	expect_kernel(AF_INET6, ECHO1_IP6, ECHO_PORT, efd6);
	expect_kernel(AF_INET6, ECHO1_MAPPED, ECHO_PORT, efd4);
	expect_kernel(AF_INET6, "::ffff:" VIP4, 80, efd4);
	ck_assert_uint_eq(wl_stats(id_client).redirects, 0);
}
END_TEST

/* mesh.kernelPath false (the flag clear): the agent path, as before. */
START_TEST(test_switch_off_keeps_agent)
{
	set_agent_state(0);
	expect_agent(AF_INET, VIP4, 80, lfd4);
	expect_agent(AF_INET, ECHO1_IP, ECHO_PORT, lfd4);
	expect_agent(AF_INET6, VIP6, 80, lfd6);
	set_agent_state(NM_AGENT_F_KERNEL_PATH);
	expect_kernel(AF_INET, VIP4, 80, efd4);
}
END_TEST

/* Only an exact ALLOW for (client, echo1, 8080) opens it: no record (the
 * agent must decide, e.g. an ipBlocks policy), an ALLOW for another port
 * shadowing nothing, or another source's ALLOW keep the agent path; a DENY
 * refuses; the port record wins over port 0 both ways. */
START_TEST(test_needs_exact_allow)
{
	struct nm_policy_rec r[2];

	sync_with(false, NULL, 0);
	expect_agent(AF_INET, VIP4, 80, lfd4);
	r[0] = rec(id_echo1, id_echo1, 0, NM_PV_ALLOW);
	sync_with(false, r, 1);
	expect_agent(AF_INET, ECHO1_IP, ECHO_PORT, lfd4);
	r[0] = rec(id_client, id_echo1, 9090, NM_PV_ALLOW);
	sync_with(false, r, 1);
	expect_agent(AF_INET, ECHO1_IP, ECHO_PORT, lfd4);
	r[0] = rec(id_client, id_echo1, ECHO_PORT, NM_PV_ALLOW);
	sync_with(false, r, 1);
	expect_kernel(AF_INET, VIP4, 80, efd4);
	r[1] = rec(id_client, id_echo1, 0, NM_PV_DENY);
	sync_with(false, r, 2);
	expect_kernel(AF_INET, ECHO1_IP, ECHO_PORT, efd4);
	r[0] = rec(id_client, id_echo1, ECHO_PORT, NM_PV_DENY);
	r[1] = rec(id_client, id_echo1, 0, NM_PV_ALLOW);
	sync_with(false, r, 2);
	ck_assert_int_eq(client_finish(client_start(AF_INET, VIP4, 80)), EPERM);
	assert_idle(efd4, lfd4);
	/* A verdict a newer agent may define admits, through the agent. */
	r[0] = rec(id_client, id_echo1, 0, 7);
	sync_with(false, r, 1);
	expect_agent(AF_INET, VIP4, 80, lfd4);
}
END_TEST

/* A remote backend with an ALLOW (possible only with records written by
 * hand: the compiler writes none) and a service whose resilience settings
 * need the agent both keep the agent path. */
START_TEST(test_remote_and_agent_services)
{
	struct nm_policy_rec r[2];

	r[0] = rec(id_client, id_echo2, 0, NM_PV_ALLOW);
	r[1] = rec(id_client, id_echo1, 0, NM_PV_ALLOW);
	sync_with(false, r, 2);
	expect_agent(AF_INET, RVIP4, 80, lfd4);
	cl->services[0].resilience.present = true;
	sync_with(false, r, 2);
	expect_agent(AF_INET, VIP4, 80, lfd4);
	expect_agent(AF_INET6, VIP6, 80, lfd6);
	/* The pod address is no service: its resilience does not apply. */
	expect_kernel(AF_INET, ECHO1_IP, ECHO_PORT, efd4);
}
END_TEST

static struct nm_strict_stats strict_stats(uint32_t wl_id)
{
	int ncpu = libbpf_num_possible_cpus();
	struct nm_strict_stats sum = { 0 }, *v;
	int fd = pinned_fd("nm_strict_drops");

	v = calloc(ncpu, sizeof(*v));
	ck_assert_ptr_nonnull(v);
	if (bpf_map_lookup_elem(fd, &wl_id, v) == 0)
		for (int i = 0; i < ncpu; i++) {
			sum.drops += v[i].drops;
			sum.mesh_admits += v[i].mesh_admits;
		}
	free(v);
	close(fd);
	return sum;
}

/* A TCP connect from the test (unmeshed, below no attach point): true when
 * it connected within timeout_ms. */
static bool stranger_connects(int family, const char *ip, uint16_t port,
			      int timeout_ms)
{
	struct sockaddr_storage dst;
	socklen_t len = make_sockaddr(family, ip, port, &dst);
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int err = 0;
	socklen_t elen = sizeof(err);
	bool ok;

	ck_assert_int_ge(fd, 0);
	if (connect(fd, (struct sockaddr *)&dst, len) && errno != EINPROGRESS) {
		close(fd);
		return false;
	}
	ok = poll(&p, 1, timeout_ms) == 1 &&
	     getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0;
	close(fd);
	return ok;
}

/*
 * echo1 STRICT: kernel-path clients get in (sockops admitted their
 * 4-tuple before the SYN, v4, v6 and v4-mapped), and their admissions are
 * gone once they closed; a stranger who is not on the kernel path is still
 * dropped.
 */
START_TEST(test_strict_admits_kernel_path)
{
	struct nm_strict_stats before, after;

	cl->workloads[1].mode = NM_MODE_STRICT;
	sync_with(true, NULL, 0);
	before = strict_stats(id_echo1);
	expect_kernel(AF_INET, VIP4, 80, efd4);
	expect_kernel(AF_INET6, ECHO1_IP6, ECHO_PORT, efd6);
	expect_kernel(AF_INET6, ECHO1_MAPPED, ECHO_PORT, efd4);
	after = strict_stats(id_echo1);
	ck_assert_uint_eq(after.mesh_admits, before.mesh_admits + 3);
	ck_assert_uint_eq(after.drops, before.drops);
	/* The client closed first; its socket reaches TCP_CLOSE after
	 * FIN_WAIT, and TIME_WAIT sockets run no sockops: allow a moment. */
	for (int i = 0; i < 100 && count_keys("nm_mesh_conns"); i++)
		usleep(20000);
	ck_assert_uint_eq(count_keys("nm_mesh_conns"), 0);

	ck_assert(!stranger_connects(AF_INET, ECHO1_IP, ECHO_PORT, 300));
	ck_assert(!stranger_connects(AF_INET6, ECHO1_IP6, ECHO_PORT, 300));
	ck_assert_uint_ge(strict_stats(id_echo1).drops, after.drops + 2);
	/* Without the kernel path the agent admits; the kernel does not. */
	set_agent_state(0);
	expect_agent(AF_INET, ECHO1_IP, ECHO_PORT, lfd4);
	ck_assert_uint_eq(count_keys("nm_mesh_conns"), 0);
}
END_TEST

/* The decode `nodemesh maps` and bpftool readers use: the agent state's
 * flag and a kernel-path admission are visible in the pinned maps. */
START_TEST(test_state_flag_pinned)
{
	struct nm_agent_state st;

	ck_assert_int_eq(nm_datapath_get_state(dp, &st), 0);
	ck_assert_uint_eq(st.flags & NM_AGENT_F_KERNEL_PATH, NM_AGENT_F_KERNEL_PATH);
	ck_assert_uint_eq(st.abi_version, NM_ABI_VERSION);
	/* The heartbeat keeps the flag. */
	ck_assert_int_eq(nm_datapath_heartbeat(dp), 0);
	ck_assert_int_eq(nm_datapath_get_state(dp, &st), 0);
	ck_assert_uint_eq(st.flags & NM_AGENT_F_KERNEL_PATH, NM_AGENT_F_KERNEL_PATH);
}
END_TEST

/* --- the private world ------------------------------------------------------------------ */

static void world_cleanup(void)
{
	if (getpid() != g_main_pid)
		return;
	nm_datapath_remove_pins(g_instance);
	remove_cgroup(g_meshed);
	remove_cgroup(g_echo);
	remove_cgroup(g_root);
	remove_cgroup(g_outside);
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
		fprintf(stderr, "test_kernel_path: private network namespace: %s\n",
			strerror(errno));
		return -1;
	}
	/* echo1's pod addresses, on this namespace's loopback only (no
	 * duplicate address detection runs on loopback; busybox's ip, the
	 * kernel matrix's, knows no "nodad"). */
	if (system("ip addr add " ECHO1_IP "/32 dev lo && "
		   "ip -6 addr add " ECHO1_IP6 "/128 dev lo")) {
		fprintf(stderr, "test_kernel_path: cannot add echo1's addresses to lo\n");
		return -1;
	}
	ret = nm_cgroup2_mount(mnt, sizeof(mnt));
	if (ret) {
		fprintf(stderr, "test_kernel_path: no cgroup v2 mount: %s\n",
			strerror(-ret));
		return -1;
	}
	snprintf(g_instance, sizeof(g_instance), "kptest-%d", (int)g_main_pid);
	snprintf(g_pin, sizeof(g_pin), "%s/%s", NM_PIN_BASE, g_instance);
	snprintf(g_base, sizeof(g_base), "%s/nm-kptest-%d", mnt, (int)g_main_pid);
	snprintf(g_root, sizeof(g_root), "%s/root", g_base);
	snprintf(g_meshed, sizeof(g_meshed), "%s/meshed", g_root);
	snprintf(g_echo, sizeof(g_echo), "%s/echo1", g_root);
	snprintf(g_outside, sizeof(g_outside), "%s/outside", g_base);
	const char *dirs[] = { g_base, g_root, g_meshed, g_echo, g_outside };

	for (unsigned int i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (mkdir(dirs[i], 0755)) {
			fprintf(stderr, "test_kernel_path: mkdir %s: %s\n", dirs[i],
				strerror(errno));
			return -1;
		}
	}
	return 0;
}

static Suite *kernel_path_suite(void)
{
	Suite *s = suite_create("kernel-path-bpf");
	TCase *tc = tcase_create("live");

	tcase_add_checked_fixture(tc, setup, teardown);
	if (!getenv("CK_DEFAULT_TIMEOUT"))
		tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_local_allowed_goes_direct);
	tcase_add_test(tc, test_switch_off_keeps_agent);
	tcase_add_test(tc, test_needs_exact_allow);
	tcase_add_test(tc, test_remote_and_agent_services);
	tcase_add_test(tc, test_strict_admits_kernel_path);
	tcase_add_test(tc, test_state_flag_pinned);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int failed;

	if (geteuid() != 0) {
		fprintf(stderr, "test_kernel_path: must run as root (BPF, cgroups, netns)\n");
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
	failed = nm_check_run(kernel_path_suite(), CK_FORK);
	world_cleanup();
	return failed ? 1 : 0;
}
