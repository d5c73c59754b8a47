// SPDX-License-Identifier: Apache-2.0
/*
 * test_ingress.c - nm_ingress (cgroup_skb/ingress, strict inbound) in the
 * running kernel: its decisions through real sockets on loopback and,
 * for the packets a socket cannot easily send (IPv6 extension headers, bare
 * ACKs, UDP), through BPF_PROG_TEST_RUN on crafted packets. Run as root.
 *
 * The world: a private network namespace with only loopback, a cgroup
 * subtree <cgroup2 mount>/nm-ingtest-<pid>/{root/{strict,permissive},
 * outside} with the datapath attached at .../root only, and the pin
 * directory /sys/fs/bpf/nodemesh/ingtest-<pid>.
 *
 * A "pod" listener is a socket created while the test process sits in the
 * workload's cgroup (a socket's cgroup is fixed at creation); the test then
 * moves to `outside` (not meshed, below no attach point) and connects from
 * there. BPF_PROG_TEST_RUN runs with a dummy socket of the calling task's
 * cgroup, so the process moves into the workload cgroup for those runs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "../unit/nm_check.h"

#define NODE_IP "198.18.0.1"
#define NODE_IP6 "fd00:18::1"
#define STRICT_IP "198.18.1.3"
#define STRICT_IP6 "fd00:18::13"
#define PERM_IP "198.18.1.4"
#define PROBER "127.0.0.2" /* loopback answers for all of 127/8 */

static pid_t g_main_pid;
static char g_instance[64];
static char g_pin[256];
static char g_base[384], g_root[512], g_strict[640], g_perm[640];
static char g_outside[512];

#include "bpf_world.h"

static struct nm_datapath *dp;
static struct nm_cluster *cl;
static uint32_t id_strict, id_perm;

/* --- the cluster ---------------------------------------------------------------- */

static void add_workload(const char *name, const char *ip, const char *cgroup,
			 enum nm_inbound_mode mode)
{
	struct nm_workload_cfg *w = &cl->workloads[cl->n_workloads++];

	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(w->ns, sizeof(w->ns), "default");
	snprintf(w->sa, sizeof(w->sa), "%s", name);
	ck_assert_int_eq(nm_addr_parse(ip, &w->ip, NULL), 0);
	w->node = 0;
	w->mode = mode;
	snprintf(w->cgroup, sizeof(w->cgroup), "%s", cgroup);
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

/* The maps as the agent writes them for this cluster (nm_model_build). */
static void sync_cluster(void)
{
	char err[NM_ERRMSG_MAX];
	struct nm_model m;

	ck_assert_msg(nm_model_build_with(cl, 0, nm_model_cgroup_id, NULL, &m,
					  err, sizeof(err)) == 0, "%s", err);
	id_strict = endpoint_id(&m, STRICT_IP);
	id_perm = endpoint_id(&m, PERM_IP);
	ck_assert_int_eq(nm_datapath_sync(dp, &m), 0);
	nm_model_free(&m);
}

static void build_cluster(void)
{
	cl = calloc(1, sizeof(*cl));
	ck_assert_ptr_nonnull(cl);
	snprintf(cl->path, sizeof(cl->path), "ingtest");
	cl->mesh.default_mode = NM_MODE_PERMISSIVE;
	/* The probers: the node's own addresses by default; here the test's
	 * second loopback address, so real sockets can come from it. */
	cl->mesh.probers_set = true;
	cl->mesh.probers[0] = addr_of(PROBER);
	cl->mesh.n_probers = 1;
	cl->n_nodes = 1;
	cl->nodes = calloc(1, sizeof(*cl->nodes));
	snprintf(cl->nodes[0].name, NM_NAME_MAX, "node-1");
	cl->nodes[0].addr = addr_of(NODE_IP);
	cl->nodes[0].has_addr6 = true;
	cl->nodes[0].addr6 = addr_of(NODE_IP6);
	snprintf(cl->nodes[0].cgroup_root, NM_PATH_MAX, "%s", g_root);
	cl->workloads = calloc(2, sizeof(*cl->workloads));
	add_workload("strict", STRICT_IP, g_strict, NM_MODE_STRICT);
	cl->workloads[0].has_ip6 = true;
	cl->workloads[0].ip6 = addr_of(STRICT_IP6);
	/* UNSET: mesh.defaultMode (PERMISSIVE) applies. */
	add_workload("permissive", PERM_IP, g_perm, NM_MODE_UNSET);
}

static void open_datapath(void)
{
	struct nm_datapath_opts o = { .instance = g_instance,
				      .cgroup_root = g_root };
	char err[NM_ERRMSG_MAX];

	ck_assert_msg(nm_datapath_open(&o, &dp, err, sizeof(err)) == 0, "%s", err);
}

/*
 * Loading the programs is what costs (the verifier; ~15 s a load in the
 * TCG VM): the "live" tests share one datapath, opened once in the parent
 * before the tests fork; each test starts from a fresh sync of the cluster.
 */
static void suite_setup(void)
{
	nm_datapath_remove_pins(g_instance);
	open_datapath();
}

static void suite_teardown(void)
{
	nm_datapath_close(dp);
	dp = NULL;
}

static void setup(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	build_cluster();
	sync_cluster();
}

static void teardown(void)
{
	if (cl) {
		free(cl->nodes);
		free(cl->workloads);
		free(cl);
		cl = NULL;
	}
}

/* The link tests close, reopen and remove the datapath: their own. */
static void setup_own(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	open_datapath();
	build_cluster();
	sync_cluster();
}

static void teardown_own(void)
{
	nm_datapath_close(dp);
	dp = NULL;
	nm_datapath_remove_pins(g_instance);
	teardown();
}

/* --- helpers ------------------------------------------------------------------ */

static void move_to(const char *cgroup)
{
	char procs[PATH_MAX];

	snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup);
	ck_assert_msg(write_str(procs, "0") == 0, "move to %s: %s", cgroup,
		      strerror(errno));
}

/* A listener on loopback whose socket belongs to `cgroup`. */
static int pod_listener(const char *cgroup, int family, uint16_t *port)
{
	int fd;

	move_to(cgroup);
	fd = listen_on(family, family == AF_INET ? "127.0.0.1" : "::1", 0, port);
	move_to(g_outside);
	ck_assert_int_ge(fd, 0);
	return fd;
}

static struct nm_strict_stats strict_stats(uint32_t wl_id)
{
	int ncpu = libbpf_num_possible_cpus();
	struct nm_strict_stats sum = { 0 }, *v;
	int fd = pinned_fd("nm_strict_drops");

	v = calloc(ncpu, sizeof(*v));
	ck_assert_ptr_nonnull(v);
	if (bpf_map_lookup_elem(fd, &wl_id, v) == 0) {
		for (int i = 0; i < ncpu; i++) {
			sum.drops += v[i].drops;
			sum.mesh_admits += v[i].mesh_admits;
			sum.prober_admits += v[i].prober_admits;
			sum.unparsed += v[i].unparsed;
		}
	}
	free(v);
	close(fd);
	return sum;
}

/*
 * A non-blocking connect from `outside` to the listener, bound first to
 * bind_ip (NULL: the kernel's choice); with register_tuple the 4-tuple goes
 * into nm_mesh_conns before connect(), as the agent does. Returns whether
 * the listener accepted within wait_ms; *key gets the tuple.
 */
static bool try_connect(int family, int lfd, uint16_t port, const char *bind_ip,
			bool register_tuple, int wait_ms, struct nm_conn_key *key)
{
	const char *dst_ip = family == AF_INET ? "127.0.0.1" : "::1";
	struct sockaddr_storage dst, src;
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	socklen_t len;
	bool accepted;
	int fd, afd;

	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	len = make_sockaddr(family, bind_ip ? bind_ip : dst_ip, 0, &src);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&src, len), 0);
	len = sizeof(src);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&src, &len), 0);
	len = make_sockaddr(family, dst_ip, port, &dst);
	memset(key, 0, sizeof(*key));
	nm_addr_from_sockaddr(&src, &key->saddr, &key->sport);
	nm_addr_from_sockaddr(&dst, &key->daddr, &key->dport);
	if (register_tuple)
		ck_assert_int_eq(nm_datapath_mesh_conn_add(dp, key, id_strict), 0);
	ck_assert(connect(fd, (struct sockaddr *)&dst, len) == 0 ||
		  errno == EINPROGRESS);
	accepted = poll(&p, 1, wait_ms) == 1;
	if (accepted) {
		afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		ck_assert_int_ge(afd, 0);
		close(afd);
	}
	close(fd);
	return accepted;
}

/* The program behind the pinned link, for BPF_PROG_TEST_RUN. */
static int ingress_prog_fd(void)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);
	int lfd = pinned_fd("link_ingress"), fd;

	memset(&info, 0, sizeof(info));
	ck_assert_int_eq(bpf_obj_get_info_by_fd(lfd, &info, &len), 0);
	close(lfd);
	fd = bpf_prog_get_fd_by_id(info.prog_id);
	ck_assert_int_ge(fd, 0);
	return fd;
}

#define F_SYN 0x02
#define F_ACK 0x10

struct pkt {
	unsigned char b[256];
	unsigned int len;
};

/* Ethernet + IPv4 + TCP (or UDP when proto is 17), checksums unused. */
static struct pkt pkt4(const char *src, uint16_t sport, const char *dst,
		       uint16_t dport, uint8_t flags, uint8_t proto)
{
	struct pkt p = { .len = 14 + 20 + 20 };
	unsigned char *ip = p.b + 14, *l4 = ip + 20;
	uint16_t v;

	p.b[12] = 0x08;
	p.b[13] = 0x00;
	ip[0] = 0x45;
	v = htons(40);
	memcpy(ip + 2, &v, 2);
	ip[8] = 64;
	ip[9] = proto;
	inet_pton(AF_INET, src, ip + 12);
	inet_pton(AF_INET, dst, ip + 16);
	v = htons(sport);
	memcpy(l4, &v, 2);
	v = htons(dport);
	memcpy(l4 + 2, &v, 2);
	l4[12] = 5 << 4;
	l4[13] = flags;
	return p;
}

/* Ethernet + IPv6 + n_ext hop-by-hop/destination-options headers + TCP. */
static struct pkt pkt6(const char *src, uint16_t sport, const char *dst,
		       uint16_t dport, uint8_t flags, unsigned int n_ext)
{
	struct pkt p = { .len = 14 + 40 + 8 * n_ext + 20 };
	unsigned char *ip = p.b + 14, *h = ip + 40, *l4;
	uint16_t v;

	p.b[12] = 0x86;
	p.b[13] = 0xdd;
	ip[0] = 0x60;
	v = htons(8 * n_ext + 20);
	memcpy(ip + 4, &v, 2);
	/* The first extension is hop-by-hop (0), the rest destination
	 * options (60); each 8 bytes (hdr ext len 0), padded with PadN. */
	ip[6] = n_ext ? 0 : 6;
	ip[7] = 64;
	inet_pton(AF_INET6, src, ip + 8);
	inet_pton(AF_INET6, dst, ip + 24);
	for (unsigned int i = 0; i < n_ext; i++, h += 8) {
		h[0] = i + 1 < n_ext ? 60 : 6;
		h[1] = 0;
		h[2] = 1; /* PadN */
		h[3] = 4;
	}
	l4 = h;
	v = htons(sport);
	memcpy(l4, &v, 2);
	v = htons(dport);
	memcpy(l4 + 2, &v, 2);
	l4[12] = 5 << 4;
	l4[13] = flags;
	return p;
}

/* Runs the program on p as seen by a socket of `cgroup`; its verdict. */
static int run_as(const char *cgroup, const struct pkt *p)
{
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = p->b,
		    .data_size_in = p->len, .repeat = 1);
	int fd = ingress_prog_fd(), ret;

	move_to(cgroup);
	ret = bpf_prog_test_run_opts(fd, &o);
	move_to(g_outside);
	close(fd);
	ck_assert_msg(ret == 0, "BPF_PROG_TEST_RUN: %s", strerror(errno));
	return (int)o.retval;
}

static struct nm_conn_key key_of(const char *src, uint16_t sport,
				 const char *dst, uint16_t dport)
{
	struct nm_conn_key k;

	memset(&k, 0, sizeof(k));
	k.saddr = addr_of(src);
	k.daddr = addr_of(dst);
	k.sport = htons(sport);
	k.dport = htons(dport);
	return k;
}

/* --- tests: real sockets ------------------------------------------------------- */

/* The model carries the mode: STRICT flag for the strict pod only. */
START_TEST(test_mode_in_workload_flags)
{
	int fd = pinned_fd("nm_workloads");
	struct nm_workload v;
	uint64_t id;
	int n_strict = 0, n = 0;
	uint64_t key, *prev = NULL;

	while (bpf_map_get_next_key(fd, prev, &key) == 0) {
		id = key;
		prev = &id;
		ck_assert_int_eq(bpf_map_lookup_elem(fd, &key, &v), 0);
		ck_assert(v.flags & NM_WL_MESHED);
		if (v.flags & NM_WL_STRICT) {
			ck_assert_uint_eq(v.workload_id, id_strict);
			n_strict++;
		} else {
			ck_assert_uint_eq(v.workload_id, id_perm);
		}
		n++;
	}
	close(fd);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(n_strict, 1);
	ck_assert_uint_eq(count_keys("nm_probers"), 1);
}
END_TEST

/* A plaintext SYN from an unmeshed process to a STRICT pod is dropped and
 * counted; the same to a PERMISSIVE pod is accepted. IPv4 and IPv6. */
START_TEST(test_strict_drops_permissive_passes)
{
	int families[] = { AF_INET, AF_INET6 };

	for (unsigned int i = 0; i < 2; i++) {
		int fam = families[i];
		struct nm_strict_stats before = strict_stats(id_strict), after;
		struct nm_conn_key k;
		uint16_t ps, pp;
		int ls = pod_listener(g_strict, fam, &ps);
		int lp = pod_listener(g_perm, fam, &pp);

		ck_assert_msg(!try_connect(fam, ls, ps, NULL, false, 400, &k),
			      "family %d: strict pod accepted a plaintext connection", fam);
		after = strict_stats(id_strict);
		ck_assert_msg(after.drops > before.drops, "family %d: no drop counted", fam);
		ck_assert_uint_eq(after.mesh_admits, before.mesh_admits);
		ck_assert_msg(try_connect(fam, lp, pp, NULL, false, 3000, &k),
			      "family %d: permissive pod refused", fam);
		ck_assert_uint_eq(strict_stats(id_perm).drops, 0);
		close(ls);
		close(lp);
	}
}
END_TEST

/* A tuple the agent registered before connect() is admitted and counted;
 * IPv4 and IPv6. */
START_TEST(test_mesh_tuple_admitted)
{
	int families[] = { AF_INET, AF_INET6 };

	for (unsigned int i = 0; i < 2; i++) {
		int fam = families[i];
		struct nm_strict_stats before = strict_stats(id_strict), after;
		struct nm_conn_key k;
		uint16_t ps;
		int ls = pod_listener(g_strict, fam, &ps);

		ck_assert_msg(try_connect(fam, ls, ps, NULL, true, 3000, &k),
			      "family %d: registered tuple refused", fam);
		after = strict_stats(id_strict);
		ck_assert_uint_eq(after.mesh_admits, before.mesh_admits + 1);
		ck_assert_uint_eq(after.drops, before.drops);
		ck_assert_int_eq(nm_datapath_mesh_conn_del(dp, &k), 0);
		close(ls);
	}
	ck_assert_uint_eq(count_keys("nm_mesh_conns"), 0);
}
END_TEST

/* A SYN from a configured prober address is admitted. */
START_TEST(test_prober_admitted)
{
	struct nm_strict_stats before = strict_stats(id_strict), after;
	struct nm_conn_key k;
	uint16_t ps;
	int ls = pod_listener(g_strict, AF_INET, &ps);

	ck_assert(try_connect(AF_INET, ls, ps, PROBER, false, 3000, &k));
	after = strict_stats(id_strict);
	ck_assert_uint_eq(after.prober_admits, before.prober_admits + 1);
	ck_assert_uint_eq(after.drops, before.drops);
	close(ls);
}
END_TEST

/* The pod's own outbound connections get their SYN+ACK: a STRICT pod may
 * dial out (here to a listener outside the subtree). */
START_TEST(test_strict_pod_dials_out)
{
	struct sockaddr_storage dst;
	struct nm_strict_stats before = strict_stats(id_strict);
	struct pollfd p;
	socklen_t len;
	uint16_t port;
	int lfd = listen_on(AF_INET, "127.0.0.1", 0, &port), fd, err = 0;

	ck_assert_int_ge(lfd, 0);
	/* Not through connect4's redirect: no agent state is written, and
	 * 127.0.0.1 is no endpoint or service, so connect4 lets it pass. */
	move_to(g_strict);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	move_to(g_outside);
	ck_assert_int_ge(fd, 0);
	len = make_sockaddr(AF_INET, "127.0.0.1", port, &dst);
	ck_assert(connect(fd, (struct sockaddr *)&dst, len) == 0 || errno == EINPROGRESS);
	p = (struct pollfd){ .fd = fd, .events = POLLOUT };
	ck_assert_int_eq(poll(&p, 1, 3000), 1);
	len = sizeof(err);
	ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	ck_assert_msg(err == 0, "strict pod's own connect: %s", strerror(err));
	ck_assert_uint_eq(strict_stats(id_strict).drops, before.drops);
	close(fd);
	close(lfd);
}
END_TEST

/* --- tests: crafted packets (BPF_PROG_TEST_RUN) --------------------------------- */

START_TEST(test_run_decisions_v4)
{
	struct pkt syn = pkt4("198.18.9.9", 40000, STRICT_IP, 8080, F_SYN, 6);
	struct pkt synack = pkt4("198.18.9.9", 40000, STRICT_IP, 8080, F_SYN | F_ACK, 6);
	struct pkt ack = pkt4("198.18.9.9", 40000, STRICT_IP, 8080, F_ACK, 6);
	struct pkt udp = pkt4("198.18.9.9", 40000, STRICT_IP, 8080, 0, 17);
	struct pkt probe = pkt4(PROBER, 40001, STRICT_IP, 8080, F_SYN, 6);
	struct nm_conn_key k = key_of("198.18.9.9", 40000, STRICT_IP, 8080);
	struct nm_strict_stats before = strict_stats(id_strict), after;

	ck_assert_int_eq(run_as(g_strict, &syn), 0);      /* STRICT: dropped */
	ck_assert_int_eq(run_as(g_perm, &syn), 1);        /* PERMISSIVE */
	ck_assert_int_eq(run_as(g_outside, &syn), 1);     /* no workload */
	ck_assert_int_eq(run_as(g_strict, &synack), 1);   /* a reply */
	ck_assert_int_eq(run_as(g_strict, &ack), 1);      /* not a SYN */
	ck_assert_int_eq(run_as(g_strict, &udp), 1);      /* not TCP */
	ck_assert_int_eq(run_as(g_strict, &probe), 1);    /* prober */
	ck_assert_int_eq(nm_datapath_mesh_conn_add(dp, &k, id_strict), 0);
	ck_assert_int_eq(run_as(g_strict, &syn), 1);      /* through the mesh */
	ck_assert_int_eq(nm_datapath_mesh_conn_del(dp, &k), 0);
	ck_assert_int_eq(run_as(g_strict, &syn), 0);      /* closed again */
	after = strict_stats(id_strict);
	ck_assert_uint_eq(after.drops, before.drops + 2);
	ck_assert_uint_eq(after.mesh_admits, before.mesh_admits + 1);
	ck_assert_uint_eq(after.prober_admits, before.prober_admits + 1);
	ck_assert_uint_eq(strict_stats(id_perm).drops, 0);
}
END_TEST

/* IPv6: plain, behind extension headers, and past the walk's bound. */
START_TEST(test_run_decisions_v6)
{
	const char *src = "fd00:18::99";
	struct pkt syn = pkt6(src, 40000, STRICT_IP6, 8080, F_SYN, 0);
	struct pkt syn_ext = pkt6(src, 40000, STRICT_IP6, 8080, F_SYN, 2);
	struct pkt ack_ext = pkt6(src, 40000, STRICT_IP6, 8080, F_ACK, 2);
	struct pkt synack = pkt6(src, 40000, STRICT_IP6, 8080, F_SYN | F_ACK, 0);
	struct pkt deep = pkt6(src, 40000, STRICT_IP6, 8080, F_ACK, 7);
	struct pkt node = pkt6(NODE_IP6, 40000, STRICT_IP6, 8080, F_SYN, 0);
	struct nm_conn_key k = key_of(src, 40000, STRICT_IP6, 8080);
	struct nm_strict_stats before = strict_stats(id_strict), after;

	ck_assert_int_eq(run_as(g_strict, &syn), 0);
	ck_assert_int_eq(run_as(g_strict, &syn_ext), 0);
	ck_assert_int_eq(run_as(g_perm, &syn_ext), 1);
	ck_assert_int_eq(run_as(g_strict, &ack_ext), 1);
	ck_assert_int_eq(run_as(g_strict, &synack), 1);
	/* Seven extension headers: the TCP header is out of reach, so even
	 * an ACK is refused for a STRICT pod (fail closed)... */
	ck_assert_int_eq(run_as(g_strict, &deep), 0);
	/* ...and left alone for a PERMISSIVE one. */
	ck_assert_int_eq(run_as(g_perm, &deep), 1);
	/* The node's v6 address is not a prober here (mesh.probers set). */
	ck_assert_int_eq(run_as(g_strict, &node), 0);
	ck_assert_int_eq(nm_datapath_mesh_conn_add(dp, &k, id_strict), 0);
	ck_assert_int_eq(run_as(g_strict, &syn), 1);
	ck_assert_int_eq(run_as(g_strict, &syn_ext), 1);
	ck_assert_int_eq(nm_datapath_mesh_conn_del(dp, &k), 0);
	after = strict_stats(id_strict);
	ck_assert_uint_eq(after.drops, before.drops + 3);
	ck_assert_uint_eq(after.unparsed, before.unparsed + 1);
	ck_assert_uint_eq(after.mesh_admits, before.mesh_admits + 2);
}
END_TEST

/* Default probers are the node's addresses; a mode change on sync turns
 * the drop off without reloading any program. */
START_TEST(test_default_probers_and_mode_change)
{
	struct pkt node4 = pkt4(NODE_IP, 40000, STRICT_IP, 8080, F_SYN, 6);
	struct pkt node6 = pkt6(NODE_IP6, 40000, STRICT_IP6, 8080, F_SYN, 0);
	struct pkt syn = pkt4("198.18.9.9", 40000, STRICT_IP, 8080, F_SYN, 6);

	ck_assert_int_eq(run_as(g_strict, &node4), 0);
	cl->mesh.probers_set = false;
	cl->mesh.n_probers = 0;
	sync_cluster();
	ck_assert_uint_eq(count_keys("nm_probers"), 2);
	ck_assert_int_eq(run_as(g_strict, &node4), 1);
	ck_assert_int_eq(run_as(g_strict, &node6), 1);
	ck_assert_int_eq(run_as(g_strict, &syn), 0);
	cl->workloads[0].mode = NM_MODE_PERMISSIVE;
	sync_cluster();
	ck_assert_int_eq(run_as(g_strict, &syn), 1);
	/* mesh.defaultMode STRICT reaches the UNSET workload. */
	cl->mesh.default_mode = NM_MODE_STRICT;
	sync_cluster();
	ck_assert_int_eq(run_as(g_perm, &syn), 0);
	ck_assert_int_eq(run_as(g_strict, &syn), 1); /* its own PERMISSIVE wins */
}
END_TEST

/* The hook sits on the node's cgroup root behind a pinned link, reused by
 * the next datapath, and goes with the pins. */
START_TEST(test_link_pinned_and_removed)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info), first;
	char err[NM_ERRMSG_MAX];
	struct nm_datapath_opts o = { .instance = g_instance,
				      .cgroup_root = g_root };
	uint64_t root_id;
	int fd = pinned_fd("link_ingress");

	memset(&info, 0, sizeof(info));
	ck_assert_int_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
	close(fd);
	ck_assert_int_eq(nm_cgroup_id(g_root, &root_id), 0);
	ck_assert_uint_eq(info.type, BPF_LINK_TYPE_CGROUP);
	ck_assert_uint_eq(info.cgroup.cgroup_id, root_id);
	ck_assert_uint_eq(info.cgroup.attach_type, BPF_CGROUP_INET_INGRESS);
	first = info.id;
	/* A second open (agent restart) updates the same link in place. */
	nm_datapath_close(dp);
	ck_assert_msg(nm_datapath_open(&o, &dp, err, sizeof(err)) == 0, "%s", err);
	fd = pinned_fd("link_ingress");
	memset(&info, 0, sizeof(info));
	len = sizeof(info);
	ck_assert_int_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
	close(fd);
	ck_assert_uint_eq(info.id, first);
	/* Removing the pins detaches: a strict pod is reachable again. */
	nm_datapath_close(dp);
	dp = NULL;
	ck_assert_int_eq(nm_datapath_remove_pins(g_instance), 0);
	{
		struct nm_conn_key k;
		uint16_t ps;
		int ls = pod_listener(g_strict, AF_INET, &ps);

		ck_assert(try_connect(AF_INET, ls, ps, NULL, false, 3000, &k));
		close(ls);
	}
	ck_assert_msg(nm_datapath_open(&o, &dp, err, sizeof(err)) == 0, "%s", err);
}
END_TEST

/* What the hook costs per packet (printed, not asserted: the figures are
 * the machine's): an established segment (the fast path every packet of
 * a connection takes), a SYN to a PERMISSIVE pod, and for a STRICT pod a
 * SYN admitted by its tuple and one dropped. BPF_PROG_TEST_RUN, repeat. */
START_TEST(test_cost)
{
	struct nm_conn_key k = key_of("198.18.9.9", 40002, STRICT_IP, 8080);
	struct {
		const char *what, *cgroup;
		struct pkt p;
	} cases[] = {
		{ "ack", g_strict, pkt4("198.18.9.9", 40002, STRICT_IP, 8080, F_ACK, 6) },
		{ "syn-permissive", g_perm, pkt4("198.18.9.9", 40002, PERM_IP, 8080, F_SYN, 6) },
		{ "syn-strict-tuple", g_strict, pkt4("198.18.9.9", 40002, STRICT_IP, 8080, F_SYN, 6) },
		{ "syn-strict-drop", g_strict, pkt4("198.18.9.9", 40003, STRICT_IP, 8080, F_SYN, 6) },
	};
	int fd = ingress_prog_fd();

	ck_assert_int_eq(nm_datapath_mesh_conn_add(dp, &k, id_strict), 0);
	printf("ingress cost (ns/packet, BPF_PROG_TEST_RUN repeat 200000):");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = cases[i].p.b,
			    .data_size_in = cases[i].p.len, .repeat = 200000);

		move_to(cases[i].cgroup);
		ck_assert_int_eq(bpf_prog_test_run_opts(fd, &o), 0);
		move_to(g_outside);
		ck_assert_int_eq(o.retval, strcmp(cases[i].what, "syn-strict-drop") ? 1 : 0);
		printf(" %s=%u", cases[i].what, o.duration);
	}
	printf("\n");
	fflush(stdout);
	close(fd);
	ck_assert_int_eq(nm_datapath_mesh_conn_del(dp, &k), 0);
}
END_TEST

/* --- the private world ------------------------------------------------------------ */

static void world_cleanup(void)
{
	if (getpid() != g_main_pid)
		return;
	nm_datapath_remove_pins(g_instance);
	remove_cgroup(g_strict);
	remove_cgroup(g_perm);
	remove_cgroup(g_root);
	remove_cgroup(g_outside);
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
	char mnt[256];
	int ret;

	if (unshare(CLONE_NEWNET) || loopback_up()) {
		fprintf(stderr, "test_ingress: private network namespace: %s\n",
			strerror(errno));
		return -1;
	}
	ret = nm_cgroup2_mount(mnt, sizeof(mnt));
	if (ret) {
		fprintf(stderr, "test_ingress: no cgroup v2 mount: %s\n",
			strerror(-ret));
		return -1;
	}
	snprintf(g_instance, sizeof(g_instance), "ingtest-%d", (int)g_main_pid);
	snprintf(g_pin, sizeof(g_pin), "%s/%s", NM_PIN_BASE, g_instance);
	snprintf(g_base, sizeof(g_base), "%s/nm-ingtest-%d", mnt, (int)g_main_pid);
	snprintf(g_root, sizeof(g_root), "%s/root", g_base);
	snprintf(g_strict, sizeof(g_strict), "%s/strict", g_root);
	snprintf(g_perm, sizeof(g_perm), "%s/permissive", g_root);
	snprintf(g_outside, sizeof(g_outside), "%s/outside", g_base);
	const char *dirs[] = { g_base, g_root, g_strict, g_perm, g_outside };

	for (unsigned int i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (mkdir(dirs[i], 0755)) {
			fprintf(stderr, "test_ingress: mkdir %s: %s\n", dirs[i],
				strerror(errno));
			return -1;
		}
	}
	return 0;
}

static Suite *ingress_suite(void)
{
	Suite *s = suite_create("ingress-bpf");
	TCase *tc = tcase_create("live"), *own = tcase_create("link");

	tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(own, setup_own, teardown_own);
	if (!getenv("CK_DEFAULT_TIMEOUT")) {
		tcase_set_timeout(tc, 120);
		tcase_set_timeout(own, 120);
	}
	tcase_add_test(tc, test_mode_in_workload_flags);
	tcase_add_test(tc, test_strict_drops_permissive_passes);
	tcase_add_test(tc, test_mesh_tuple_admitted);
	tcase_add_test(tc, test_prober_admitted);
	tcase_add_test(tc, test_strict_pod_dials_out);
	tcase_add_test(tc, test_run_decisions_v4);
	tcase_add_test(tc, test_run_decisions_v6);
	tcase_add_test(tc, test_default_probers_and_mode_change);
	tcase_add_test(tc, test_cost);
	tcase_add_test(own, test_link_pinned_and_removed);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, own);
	return s;
}

int main(void)
{
	int failed;

	if (geteuid() != 0) {
		fprintf(stderr, "test_ingress: must run as root (BPF, cgroups, netns)\n");
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
	/* Each test in its own process: they move themselves between cgroups. */
	failed = nm_check_run(ingress_suite(), CK_FORK);
	world_cleanup();
	return failed ? 1 : 0;
}
