// SPDX-License-Identifier: Apache-2.0
/*
 * test_telemetry.c - the kernel side of telemetry (bpf/nm_telemetry.bpf.h,
 * include/nm_events.h) over real connections. Run as root.
 *
 * World (removed on exit): a private network namespace with loopback only,
 * a cgroup subtree <cgroup2>/nm-teltest-<pid>/root/{client,server} with the
 * programs attached at root, pins under /sys/fs/bpf/nodemesh/teltest-<pid>.
 * The test is the "agent": it listens on 127.0.0.1:P (the outbound
 * listener) and reads nm_events through agent/datapath/events.h. A child in
 * the client cgroup connects to a service VIP (redirected to the listener),
 * sends SEND bytes, reads RECV bytes back, reads its own socket's
 * nm_sock_stats by fd, then closes; the close record must hold exactly
 * those bytes. The "server" workload (127.0.0.2, a pod of this node) is
 * the accepting side of the same exchange.
 *
 * The per-connection cost of the sockops statistics is printed from
 * bpf_stats run_time_ns (sock stats on and off, same connections).
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
#include <linux/tcp.h> /* tcp_info: tcpi_total_retrans */
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "config/config.h"
#include "datapath/datapath.h"
#include "datapath/events.h"
#include "datapath/model.h"
#include "lib/mapinfo.h"
#include "nm_events.h"
#include "../unit/nm_check.h"

#define VIP "198.19.0.10"
#define VIP_EMPTY "198.19.0.20"
#define CLIENT_IP "198.18.1.2"
#define SERVER_IP "127.0.0.2"   /* a pod of this node, reachable here */
#define REMOTE_IP "198.18.2.3"  /* the service's endpoint on another node */
#define CLIENT_WL 1
#define SERVER_WL 2
#define SEND_BYTES 100003u
#define RECV_BYTES 7777u

static pid_t g_main_pid;
static char g_instance[64], g_pin[256], g_base[384], g_root[512];
static char g_client[640], g_server[640];
static struct nm_datapath *dp;
static struct nm_events *evs;
static int lfd = -1;
static uint16_t lport;
static struct nm_cluster *cl;
static int g_stats_fd = -1;

#include "bpf_world.h"

/* --- records the reader hands out ---------------------------------------------- */

#define MAX_SEEN 512
static struct nm_flow_event seen_flows[MAX_SEEN];
static unsigned int n_flows;
static struct nm_connect_event seen_conns[MAX_SEEN];
static unsigned int n_conns;

static void on_flow(void *ctx, const struct nm_flow_event *ev)
{
	if (n_flows < MAX_SEEN)
		seen_flows[n_flows++] = *ev;
}

static void on_conn(void *ctx, const struct nm_connect_event *ev)
{
	if (n_conns < MAX_SEEN)
		seen_conns[n_conns++] = *ev;
}

/* Polls the reader like the agent's loop until pred holds or 5 s pass. */
static bool events_until(bool (*pred)(const void *), const void *arg)
{
	struct pollfd p = { .fd = nm_events_fd(evs), .events = POLLIN };

	for (int i = 0; i < 100; i++) {
		ck_assert_int_ge(nm_events_poll(evs), 0);
		if (pred(arg))
			return true;
		poll(&p, 1, 50);
	}
	return pred(arg);
}

static const struct nm_flow_event *flow_of(uint64_t cookie)
{
	for (unsigned int i = 0; i < n_flows; i++)
		if (seen_flows[i].cookie == cookie)
			return &seen_flows[i];
	return NULL;
}

static bool has_flow(const void *cookie)
{
	return flow_of(*(const uint64_t *)cookie) != NULL;
}

static bool has_conn(const void *n)
{
	return n_conns >= *(const unsigned int *)n;
}

/* --- cluster ---------------------------------------------------------------- */

static void add_wl(const char *name, const char *ip, int node, const char *cgroup)
{
	struct nm_workload_cfg *w = &cl->workloads[cl->n_workloads++];

	snprintf(w->name, NM_NAME_MAX, "%s", name);
	snprintf(w->ns, NM_NAME_MAX, "default");
	snprintf(w->sa, NM_NAME_MAX, "%s", name);
	snprintf(w->labels[0].key, NM_NAME_MAX, "app");
	/* Only "remote" serves the echo service. */
	snprintf(w->labels[0].value, NM_NAME_MAX, "%s",
		 strcmp(name, "remote") ? name : "echo");
	w->n_labels = 1;
	ck_assert_int_eq(nm_addr_parse(ip, &w->ip, NULL), 0);
	w->node = node;
	snprintf(w->cgroup, NM_PATH_MAX, "%s", cgroup ? cgroup : "");
}

/* client (meshed, node 1), server (node 1, 127.0.0.2), remote (node 2);
 * service echo = {remote} on port 80, empty = {} on port 80. */
static void build_cluster(void)
{
	struct nm_service_cfg *s;

	cl = calloc(1, sizeof(*cl));
	ck_assert_ptr_nonnull(cl);
	snprintf(cl->path, sizeof(cl->path), "teltest");
	cl->n_nodes = 2;
	cl->nodes = calloc(2, sizeof(*cl->nodes));
	snprintf(cl->nodes[0].name, NM_NAME_MAX, "n1");
	snprintf(cl->nodes[1].name, NM_NAME_MAX, "n2");
	cl->workloads = calloc(3, sizeof(*cl->workloads));
	add_wl("client", CLIENT_IP, 0, g_client);
	add_wl("server", SERVER_IP, 0, g_server);
	add_wl("remote", REMOTE_IP, 1, NULL);
	cl->services = calloc(2, sizeof(*cl->services));
	cl->n_services = 2;
	s = &cl->services[0];
	snprintf(s->name, NM_NAME_MAX, "echo");
	snprintf(s->ns, NM_NAME_MAX, "default");
	ck_assert_int_eq(nm_addr_parse(VIP, &s->vip, NULL), 0);
	s->ports[0] = (struct nm_port_map){ 80, 8080 };
	s->n_ports = 1;
	snprintf(s->selector[0].key, NM_NAME_MAX, "app");
	snprintf(s->selector[0].value, NM_NAME_MAX, "echo");
	s->n_selector = 1;
	s = &cl->services[1];
	snprintf(s->name, NM_NAME_MAX, "empty");
	snprintf(s->ns, NM_NAME_MAX, "default");
	ck_assert_int_eq(nm_addr_parse(VIP_EMPTY, &s->vip, NULL), 0);
	s->ports[0] = (struct nm_port_map){ 80, 8080 };
	s->n_ports = 1;
	snprintf(s->selector[0].key, NM_NAME_MAX, "app");
	snprintf(s->selector[0].value, NM_NAME_MAX, "nothing");
	s->n_selector = 1;
}

static void sync_cluster(void)
{
	struct nm_model m;
	char err[NM_ERRMSG_MAX];

	ck_assert_msg(nm_model_build_with(cl, 0, nm_model_cgroup_id, NULL, &m,
					  err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(nm_datapath_sync(dp, &m), 0);
	nm_model_free(&m);
}

static void open_world(bool sock_stats, enum nm_events_transport t)
{
	struct nm_datapath_opts o = { .instance = g_instance, .cgroup_root = g_root,
				      .sock_stats = sock_stats, .events = t };
	struct nm_agent_state st;
	char err[NM_ERRMSG_MAX];

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	nm_datapath_remove_pins(g_instance);
	ck_assert_msg(nm_datapath_open(&o, &dp, err, sizeof(err)) == 0, "%s", err);
	if (t != NM_EVENTS_AUTO)
		ck_assert_int_eq(nm_datapath_events_transport(dp), t);
	ck_assert_int_eq(nm_events_open(dp, &evs), 0);
	nm_events_set_flow_handler(evs, on_flow, NULL);
	nm_events_set_connect_handler(evs, on_conn, NULL);
	n_flows = n_conns = 0;
	lfd = listen_on(AF_INET, "127.0.0.1", 0, &lport);
	ck_assert_int_ge(lfd, 0);
	memset(&st, 0, sizeof(st));
	st.agent_v4 = addr_of("127.0.0.1");
	st.outbound_port = htons(lport);
	st.config_generation = 3;
	ck_assert_int_eq(nm_datapath_set_state(dp, &st), 0);
	build_cluster();
	sync_cluster();
}

static void setup(void)
{
	open_world(true, NM_EVENTS_AUTO);
}

static void teardown(void)
{
	nm_events_close(evs);
	evs = NULL;
	nm_datapath_close(dp);
	dp = NULL;
	nm_datapath_remove_pins(g_instance);
	if (lfd >= 0)
		close(lfd);
	lfd = -1;
	if (cl) {
		free(cl->nodes);
		free(cl->workloads);
		free(cl->services);
		free(cl);
		cl = NULL;
	}
}

/* --- the exchange ------------------------------------------------------------- */

static int write_all(int fd, size_t n)
{
	static char buf[16384];

	while (n > 0) {
		ssize_t w = write(fd, buf, n < sizeof(buf) ? n : sizeof(buf));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads exactly n bytes (n == 0: until EOF); -1 on error or short read. */
static ssize_t read_n(int fd, size_t n)
{
	char buf[16384];
	size_t got = 0;

	for (;;) {
		size_t want = n ? n - got : sizeof(buf);
		ssize_t r;

		if (n && got == n)
			return (ssize_t)got;
		r = read(fd, buf, want < sizeof(buf) ? want : sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return n ? -1 : (ssize_t)got;
		got += (size_t)r;
	}
}

static void set_blocking(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
}

/* What a child reports through its pipe. */
struct peer_res {
	int err;                    /* 0, or the errno of the step that failed */
	int stats_err;              /* nm_sock_stats lookup: 0 or -errno */
	uint64_t cookie;            /* SO_COOKIE of its socket */
	struct nm_sock_stats stats; /* its socket's storage before close() */
	uint32_t tcpi_total_retrans; /* the kernel's own count, same moment */
};

static int move_to(const char *cgroup)
{
	char procs[PATH_MAX];

	snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup);
	return write_str(procs, "0");
}

static void sock_stats_of(int fd, struct peer_res *r)
{
	int mfd = pinned_fd("nm_sock_stats");

	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	r->stats_err = bpf_map_lookup_elem(mfd, &fd, &r->stats) ? -errno : 0;
	close(mfd);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
		r->tcpi_total_retrans = ti.tcpi_total_retrans;
}

static uint64_t cookie_of(int fd)
{
	uint64_t c = 0;
	socklen_t len = sizeof(c);

	getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len);
	return c;
}

/*
 * Client child: in cgroup, connect to ip:port, send SEND_BYTES, read
 * RECV_BYTES, wait for the peer's FIN, read its own storage, close. With
 * kernel_record, it first writes the record connect4 would write for the
 * same-node kernel path (NM_ORIG_KERNEL) under its socket's cookie.
 */
static int client_body(const char *cgroup, const char *ip, uint16_t port,
		       bool kernel_record, struct peer_res *r)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	if (move_to(cgroup))
		return errno;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	r->cookie = cookie_of(fd);
	if (kernel_record) {
		struct nm_orig o;
		int mfd = pinned_fd("nm_orig_cookie");

		memset(&o, 0, sizeof(o));
		o.orig_dst = addr_of(ip);
		o.orig_port = htons(port);
		o.backend = o.orig_dst;
		o.backend_port = o.orig_port;
		o.src_workload_id = CLIENT_WL;
		o.src_identity_id = 1;
		o.dst_workload_id = SERVER_WL;
		o.flags = NM_ORIG_ENDPOINT | NM_ORIG_LOCAL | NM_ORIG_KERNEL;
		o.cookie = r->cookie;
		if (bpf_map_update_elem(mfd, &r->cookie, &o, BPF_ANY))
			return errno;
		close(mfd);
	}
	len = make_sockaddr(AF_INET, ip, port, &ss);
	if (connect(fd, (struct sockaddr *)&ss, len))
		return errno;
	if (write_all(fd, SEND_BYTES) || read_n(fd, RECV_BYTES) != RECV_BYTES)
		return EIO;
	shutdown(fd, SHUT_WR);
	if (read_n(fd, 0) != 0) /* the peer's FIN */
		return EIO;
	sock_stats_of(fd, r);
	close(fd);
	return 0;
}

/* Server child: in cgroup, listen on SERVER_IP, report the port, accept one,
 * read SEND_BYTES, send RECV_BYTES, wait for EOF, read storage, close. */
static int server_body(const char *cgroup, int port_pipe, struct peer_res *r)
{
	uint16_t port;
	int l, fd;

	if (move_to(cgroup))
		return errno;
	l = listen_on(AF_INET, SERVER_IP, 0, &port);
	if (l < 0)
		return errno;
	set_blocking(l);
	if (write(port_pipe, &port, sizeof(port)) != sizeof(port))
		return EIO;
	fd = accept(l, NULL, NULL);
	if (fd < 0)
		return errno;
	r->cookie = cookie_of(fd);
	if (read_n(fd, SEND_BYTES) != SEND_BYTES || write_all(fd, RECV_BYTES))
		return EIO;
	if (read_n(fd, 0) != 0)
		return EIO;
	shutdown(fd, SHUT_WR);
	sock_stats_of(fd, r);
	close(fd);
	close(l);
	return 0;
}

struct child {
	pid_t pid;
	int fd;
};

static struct child child_start(int role, const char *cgroup, const char *ip,
				uint16_t port, bool kernel_record, int port_pipe)
{
	struct child c;
	int pfd[2];

	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
	c.pid = fork();
	ck_assert_int_ge(c.pid, 0);
	if (c.pid == 0) {
		struct peer_res r;

		memset(&r, 0, sizeof(r));
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(30);
		close(pfd[0]);
		r.err = role == 0 ? client_body(cgroup, ip, port, kernel_record, &r) :
				    server_body(cgroup, port_pipe, &r);
		if (write(pfd[1], &r, sizeof(r)) != sizeof(r))
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	c.fd = pfd[0];
	return c;
}

static struct peer_res child_finish(struct child c)
{
	struct pollfd p = { .fd = c.fd, .events = POLLIN };
	struct peer_res r;
	int status;

	ck_assert_int_eq(poll(&p, 1, 30000), 1);
	ck_assert_int_eq(read(c.fd, &r, sizeof(r)), sizeof(r));
	close(c.fd);
	ck_assert_int_eq(waitpid(c.pid, &status, 0), c.pid);
	ck_assert_msg(r.err == 0, "child: %s", strerror(r.err));
	return r;
}

/* The "agent" end of one redirected connection: take the record, read
 * SEND_BYTES, send RECV_BYTES, close after the client's FIN. */
static struct nm_orig agent_serve(int lfd_, bool take)
{
	struct pollfd p = { .fd = lfd_, .events = POLLIN };
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	struct nm_orig o;
	int fd;

	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(poll(&p, 1, 10000), 1);
	fd = accept4(lfd_, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	if (take)
		ck_assert_int_eq(nm_datapath_take_orig(dp, &peer, &o), 0);
	set_blocking(fd);
	ck_assert_int_eq(read_n(fd, SEND_BYTES), SEND_BYTES);
	/* The agent's own socket has no storage: TCP_INFO stands in. The
	 * client waits for our bytes, so nothing more has arrived yet. */
	{
		struct nm_sock_stats ss;

		ck_assert_int_eq(nm_datapath_sock_stats(dp, fd, &ss), 0);
		ck_assert_uint_eq(ss.flags, NM_FLOW_TCP_INFO);
		ck_assert_uint_eq(ss.bytes_received, SEND_BYTES);
		ck_assert_uint_gt(ss.srtt_us, 0);
		ck_assert_uint_eq(ss.src_workload_id, 0);
	}
	ck_assert_int_eq(write_all(fd, RECV_BYTES), 0);
	ck_assert_int_eq(read_n(fd, 0), 0);
	close(fd);
	return o;
}

/* One redirected flow; returns the client's report and the record taken. */
static struct peer_res redirected_flow(struct nm_orig *o)
{
	struct child c = child_start(0, g_client, VIP, 80, false, -1);

	*o = agent_serve(lfd, true);
	return child_finish(c);
}

/* The application's bytes in a record: the kernel counts the SYN in
 * bytes_acked (snd_una moves past it) and a FIN in either counter. */
static void assert_exact_bytes(const char *what, uint64_t acked, uint64_t received)
{
	ck_assert_msg(acked == SEND_BYTES && received == RECV_BYTES,
		      "%s: bytes_acked=%llu (sent %u) bytes_received=%llu (got %u)",
		      what, (unsigned long long)acked, SEND_BYTES,
		      (unsigned long long)received, RECV_BYTES);
}

/* --- tests -------------------------------------------------------------------- */

START_TEST(test_flow_close_record_exact_bytes)
{
	struct nm_wl_stats before, after;
	const struct nm_flow_event *f;
	struct peer_res r;
	struct nm_orig o;
	struct timespec ts;
	uint64_t now;

	ck_assert_int_eq(nm_datapath_wl_stats(dp, CLIENT_WL, &before), 0);
	r = redirected_flow(&o);
	ck_assert_uint_eq(r.cookie, o.cookie);

	/* The storage the client read by fd just before close(). */
	ck_assert_int_eq(r.stats_err, 0);
	assert_exact_bytes("sk_storage", r.stats.bytes_acked, r.stats.bytes_received);
	ck_assert_uint_gt(r.stats.srtt_us, 0);
	ck_assert_uint_eq(r.stats.cookie, o.cookie);
	ck_assert_uint_gt(r.stats.segs_out, 0);
	ck_assert_uint_gt(r.stats.segs_in, 0);

	ck_assert_msg(events_until(has_flow, &o.cookie), "no close record");
	f = flow_of(o.cookie);
	ck_assert_uint_eq(f->hdr.type, NM_EVT_FLOW_CLOSE);
	ck_assert_uint_eq(f->hdr.size, sizeof(*f));
	assert_exact_bytes("close record", f->bytes_acked, f->bytes_received);
	ck_assert_uint_gt(f->srtt_us, 0);
	ck_assert_uint_eq(f->path, NM_FLOW_PATH_AGENT);
	ck_assert_uint_eq(f->role, NM_FLOW_ROLE_CLIENT);
	ck_assert(f->flags & NM_FLOW_ESTABLISHED);
	ck_assert_uint_eq(f->src_workload_id, CLIENT_WL);
	ck_assert_uint_eq(f->src_identity_id, o.src_identity_id);
	ck_assert_uint_eq(f->dst_workload_id, o.dst_workload_id);
	ck_assert_uint_eq(f->dst_identity_id, o.dst_identity_id);
	ck_assert_uint_eq(f->service_id, o.service_id);
	ck_assert_uint_ne(f->service_id, 0);
	ck_assert_uint_eq(f->generation, 3);
	ck_assert_mem_eq(f->dst.a, addr_of(VIP).a, 16);
	ck_assert_uint_eq(ntohs(f->dst_port), 80);
	ck_assert_mem_eq(f->backend.a, addr_of(REMOTE_IP).a, 16);
	ck_assert_uint_eq(ntohs(f->backend_port), 8080);
	/* The socket's own ends: the pod on loopback, the agent listener. */
	ck_assert_mem_eq(f->peer.a, addr_of("127.0.0.1").a, 16);
	ck_assert_uint_eq(ntohs(f->peer_port), lport);
	ck_assert_mem_eq(f->src.a, addr_of("127.0.0.1").a, 16);
	ck_assert_uint_ne(f->src_port, 0);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	ck_assert_uint_gt(f->start_ns, 0);
	ck_assert_uint_ge(f->end_ns, f->start_ns);
	ck_assert_uint_le(f->end_ns, now);
	/* Retransmits happen (a slow VM fires a tail loss probe): whatever
	 * the kernel counted is what storage and record say. */
	ck_assert_uint_eq(r.stats.total_retrans, r.tcpi_total_retrans);
	ck_assert_uint_eq(f->total_retrans, r.stats.total_retrans);

	ck_assert_int_eq(nm_datapath_wl_stats(dp, CLIENT_WL, &after), 0);
	ck_assert_uint_eq(after.connects, before.connects + 1);
	ck_assert_uint_eq(after.redirects, before.redirects + 1);
	ck_assert_uint_eq(after.denies, before.denies);
	ck_assert_uint_eq(after.kernel_flows, before.kernel_flows);
	printf("telemetry: close record bytes_acked=%llu bytes_received=%llu srtt_us=%u segs_in=%u segs_out=%u duration_us=%llu (%s)\n",
	       (unsigned long long)f->bytes_acked,
	       (unsigned long long)f->bytes_received, f->srtt_us, f->segs_in,
	       f->segs_out, (unsigned long long)(f->end_ns - f->start_ns) / 1000,
	       nm_events_transport_name(nm_datapath_events_transport(dp)));
}
END_TEST

/* The accepting pod's socket: tracked because its address is a workload of
 * this node; the caller (the test, not a workload) stays unnamed. */
START_TEST(test_server_side_record)
{
	int pp[2], fd;
	uint16_t port;
	struct sockaddr_storage ss;
	socklen_t len;
	const struct nm_flow_event *f;
	struct peer_res r;
	struct child c;

	ck_assert_int_eq(pipe2(pp, O_CLOEXEC), 0);
	c = child_start(1, g_server, NULL, 0, false, pp[1]);
	ck_assert_int_eq(read(pp[0], &port, sizeof(port)), sizeof(port));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	len = make_sockaddr(AF_INET, SERVER_IP, port, &ss);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(write_all(fd, SEND_BYTES), 0);
	ck_assert_int_eq(read_n(fd, RECV_BYTES), RECV_BYTES);
	shutdown(fd, SHUT_WR);
	ck_assert_int_eq(read_n(fd, 0), 0);
	close(fd);
	r = child_finish(c);
	close(pp[0]);
	close(pp[1]);

	ck_assert_int_eq(r.stats_err, 0);
	/* The server received SEND_BYTES and sent RECV_BYTES. */
	ck_assert_msg(r.stats.bytes_received == SEND_BYTES &&
			      r.stats.bytes_acked == RECV_BYTES,
		      "server storage: acked=%llu received=%llu",
		      (unsigned long long)r.stats.bytes_acked,
		      (unsigned long long)r.stats.bytes_received);
	ck_assert_msg(events_until(has_flow, &r.cookie), "no server close record");
	f = flow_of(r.cookie);
	ck_assert_uint_eq(f->path, NM_FLOW_PATH_INBOUND);
	ck_assert_uint_eq(f->role, NM_FLOW_ROLE_SERVER);
	ck_assert_uint_eq(f->bytes_received, SEND_BYTES);
	ck_assert_uint_eq(f->bytes_acked, RECV_BYTES);
	ck_assert_uint_eq(f->dst_workload_id, SERVER_WL);
	ck_assert_uint_eq(f->src_workload_id, 0);
	ck_assert_mem_eq(f->dst.a, addr_of(SERVER_IP).a, 16);
	ck_assert_uint_eq(ntohs(f->dst_port), port);
	ck_assert_uint_gt(f->srtt_us, 0);
}
END_TEST

/* A kernel-path connection (the record connect4 writes for it, made here by
 * cookie): counted in kernel_flows, reported with path kernel. */
START_TEST(test_kernel_path_flow)
{
	struct nm_wl_stats before, after;
	const struct nm_flow_event *f;
	struct peer_res r;
	struct child c;

	ck_assert_int_eq(nm_datapath_wl_stats(dp, CLIENT_WL, &before), 0);
	/* 127.0.0.1 is neither a service nor an endpoint: connect4 lets it
	 * through to the listener untouched, as the kernel path would. */
	c = child_start(0, g_client, "127.0.0.1", lport, true, -1);
	agent_serve(lfd, false);
	r = child_finish(c);
	ck_assert_msg(events_until(has_flow, &r.cookie), "no kernel-path record");
	f = flow_of(r.cookie);
	ck_assert_uint_eq(f->path, NM_FLOW_PATH_KERNEL);
	ck_assert_uint_eq(f->dst_workload_id, SERVER_WL);
	assert_exact_bytes("kernel path", f->bytes_acked, f->bytes_received);
	ck_assert_int_eq(nm_datapath_wl_stats(dp, CLIENT_WL, &after), 0);
	ck_assert_uint_eq(after.kernel_flows, before.kernel_flows + 1);
	ck_assert_uint_eq(after.passthrough, before.passthrough + 1);
}
END_TEST

/* Refusals count as denies and come as NM_EVT_CONNECT records. */
START_TEST(test_denies_counted_and_reported)
{
	struct nm_wl_stats before, after;
	struct sockaddr_storage ss;
	unsigned int want = 1;
	socklen_t len;
	pid_t pid;
	int status;

	ck_assert_int_eq(nm_datapath_wl_stats(dp, CLIENT_WL, &before), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (move_to(g_client))
			_exit(10);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		len = make_sockaddr(AF_INET, VIP_EMPTY, 80, &ss);
		_exit(connect(fd, (struct sockaddr *)&ss, len) == 0 ? 0 :
		      errno == EPERM ? 1 : 11);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 1); /* EPERM */
	ck_assert_int_eq(nm_datapath_wl_stats(dp, CLIENT_WL, &after), 0);
	ck_assert_uint_eq(after.connects, before.connects + 1);
	ck_assert_uint_eq(after.denies, before.denies + 1);
	ck_assert_uint_eq(after.redirects, before.redirects);
	ck_assert_msg(events_until(has_conn, &want), "no connect record");
	ck_assert_uint_eq(seen_conns[0].hdr.type, NM_EVT_CONNECT);
	ck_assert_uint_eq(seen_conns[0].verdict, NM_CV_REFUSED);
	ck_assert_uint_eq(seen_conns[0].reason, NM_CR_NO_ENDPOINTS);
	ck_assert_uint_eq(seen_conns[0].src_workload_id, CLIENT_WL);
	ck_assert_mem_eq(seen_conns[0].dst.a, addr_of(VIP_EMPTY).a, 16);
	ck_assert_uint_eq(ntohs(seen_conns[0].dst_port), 80);
	ck_assert_uint_eq(n_flows, 0); /* no socket to track: no SYN left */
}
END_TEST

/*
 * nm_wl_stats full: the next workload's counters cannot be created, and
 * that failed update is counted in nm_map_errors; map fill reads full. An
 * agent-side write that does not fit is counted on the agent's side.
 */
START_TEST(test_full_map_update_counted)
{
	int ncpu = libbpf_num_possible_cpus(), fd = pinned_fd("nm_wl_stats");
	struct nm_map_info info[NM_MAP__COUNT];
	struct nm_wl_stats *zero;
	struct peer_res r;
	struct nm_orig o;
	uint64_t base;
	int wfd;

	ck_assert_int_eq(nm_datapath_map_info(dp, info), 0);
	base = info[NM_MAP_WL_STATS].kernel_errors;
	ck_assert_str_eq(info[NM_MAP_WL_STATS].name, "nm_wl_stats");
	ck_assert(info[NM_MAP_WL_STATS].present);
	ck_assert_uint_eq(info[NM_MAP_WL_STATS].max_entries, NM_MAX_WORKLOADS);
	/* The model's workloads (client and server) and nothing else yet. */
	ck_assert_int_eq(info[NM_MAP_WORKLOADS].entries, 2);
	ck_assert_uint_eq(info[NM_MAP_WORKLOADS].max_entries, NM_MAX_WORKLOADS);
	ck_assert_int_eq(info[NM_MAP_SOCK_STATS].entries, -1);

	zero = calloc(ncpu, sizeof(*zero));
	ck_assert_ptr_nonnull(zero);
	/* Workload ids the model never hands out fill every slot. */
	for (uint32_t k = 0; k < NM_MAX_WORKLOADS; k++) {
		uint32_t key = 1000000 + k;

		if (bpf_map_update_elem(fd, &key, zero, BPF_NOEXIST))
			break;
	}
	free(zero);
	close(fd);
	ck_assert_int_eq(nm_datapath_map_info(dp, info), 0);
	ck_assert_int_eq(info[NM_MAP_WL_STATS].entries, NM_MAX_WORKLOADS);

	/* The client has no counters yet: connect4 cannot make them. The
	 * connection itself still goes through (counters are best effort). */
	r = redirected_flow(&o);
	ck_assert_uint_eq(r.cookie, o.cookie);
	ck_assert_int_eq(nm_datapath_map_info(dp, info), 0);
	ck_assert_msg(info[NM_MAP_WL_STATS].kernel_errors >= base + 1,
		      "nm_map_errors[nm_wl_stats] = %llu, was %llu",
		      (unsigned long long)info[NM_MAP_WL_STATS].kernel_errors,
		      (unsigned long long)base);
	ck_assert_uint_eq(info[NM_MAP_ORIG_COOKIE].kernel_errors, 0);

	/* Agent side: a model with more workloads than nm_workloads holds. */
	{
		struct nm_model m;
		unsigned int n = NM_MAX_WORKLOADS + 1;

		memset(&m, 0, sizeof(m));
		m.workloads = calloc(n, sizeof(*m.workloads));
		ck_assert_ptr_nonnull(m.workloads);
		for (unsigned int i = 0; i < n; i++) {
			m.workloads[i].cgroup_id = 5000000 + i;
			m.workloads[i].val.workload_id = 2000000 + i;
		}
		m.n_workloads = n;
		ck_assert_int_ne(nm_datapath_sync(dp, &m), 0);
		free(m.workloads);
	}
	ck_assert_uint_eq(nm_datapath_agent_map_errors(dp, NM_MAP_WORKLOADS), 1);
	ck_assert_int_eq(nm_datapath_map_info(dp, info), 0);
	ck_assert_uint_eq(info[NM_MAP_WORKLOADS].agent_errors, 1);
	ck_assert_int_eq(info[NM_MAP_WORKLOADS].entries, NM_MAX_WORKLOADS);
	/* The pins alone (the CLI, no agent) read the kernel's count too. */
	{
		struct nm_map_info pins[NM_MAP__COUNT];

		ck_assert_int_eq(nm_map_info_read(g_pin, pins), 0);
		ck_assert_uint_eq(pins[NM_MAP_WL_STATS].kernel_errors,
				  info[NM_MAP_WL_STATS].kernel_errors);
		ck_assert_uint_eq(pins[NM_MAP_WORKLOADS].agent_errors, 0);
	}
	wfd = pinned_fd("nm_map_errors");
	close(wfd);
}
END_TEST

/* Without sock stats: no storage, no records; counters still count. */
START_TEST(test_sock_stats_off)
{
	struct nm_wl_stats before, after;
	struct peer_res r;
	struct nm_orig o;

	teardown();
	open_world(false, NM_EVENTS_AUTO);
	ck_assert(!nm_datapath_sock_stats_on(dp));
	ck_assert_int_eq(nm_datapath_wl_stats(dp, CLIENT_WL, &before), 0);
	r = redirected_flow(&o);
	ck_assert_int_eq(r.stats_err, -ENOENT);
	ck_assert(!events_until(has_flow, &o.cookie));
	ck_assert_int_eq(nm_datapath_wl_stats(dp, CLIENT_WL, &after), 0);
	ck_assert_uint_eq(after.redirects, before.redirects + 1);
}
END_TEST

/* The perf buffer fallback delivers the same record. */
START_TEST(test_perfbuf_fallback)
{
	const struct nm_flow_event *f;
	struct nm_map_info info[NM_MAP__COUNT];
	struct peer_res r;
	struct nm_orig o;
	unsigned int want = 1;

	teardown();
	open_world(true, NM_EVENTS_PERFBUF);
	ck_assert_int_eq(nm_datapath_map_info(dp, info), 0);
	ck_assert_uint_eq(info[NM_MAP_EVENTS].type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	r = redirected_flow(&o);
	ck_assert_int_eq(r.stats_err, 0);
	ck_assert_msg(events_until(has_flow, &o.cookie), "no record through the perf buffer");
	f = flow_of(o.cookie);
	ck_assert_uint_eq(f->hdr.size, sizeof(*f));
	assert_exact_bytes("perfbuf record", f->bytes_acked, f->bytes_received);
	ck_assert_uint_eq(f->bytes_acked, r.stats.bytes_acked);
	ck_assert_uint_eq(f->bytes_received, r.stats.bytes_received);
	ck_assert_uint_gt(f->srtt_us, 0);
	ck_assert_uint_eq(f->path, NM_FLOW_PATH_AGENT);
	ck_assert_uint_eq(f->src_workload_id, CLIENT_WL);
	ck_assert_uint_eq(f->service_id, o.service_id);
	/* connect4's records take the same way. */
	{
		struct sockaddr_storage ss;
		socklen_t len;
		pid_t pid = fork();
		int status;

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			int fd;

			if (move_to(g_client))
				_exit(10);
			fd = socket(AF_INET, SOCK_STREAM, 0);
			len = make_sockaddr(AF_INET, VIP_EMPTY, 80, &ss);
			_exit(connect(fd, (struct sockaddr *)&ss, len) ? 0 : 1);
		}
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(events_until(has_conn, &want), "no connect record through the perf buffer");
		ck_assert_uint_eq(seen_conns[0].reason, NM_CR_NO_ENDPOINTS);
	}
	/* Switching back replaces the pinned perf array with a ring buffer. */
	teardown();
	open_world(true, NM_EVENTS_RINGBUF);
	ck_assert_int_eq(nm_datapath_map_info(dp, info), 0);
	ck_assert_uint_eq(info[NM_MAP_EVENTS].type, BPF_MAP_TYPE_RINGBUF);
}
END_TEST

/* --- cost -------------------------------------------------------------------- */

static void sockops_stats(uint64_t *ns, uint64_t *cnt)
{
	struct bpf_link_info li;
	struct bpf_prog_info pi;
	__u32 len = sizeof(li);
	int fd = pinned_fd("link_sockops"), pfd;

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

#define COST_CONNS 100

/* sockops time per redirected connection (SEND/RECV bytes each), with and
 * without sock stats. Printed, not asserted: a figure of this machine. */
START_TEST(test_cost_per_connection)
{
	double per[2], calls[2];

	ck_assert_msg(g_stats_fd >= 0, "bpf_enable_stats: %s", strerror(errno));
	for (int on = 1; on >= 0; on--) {
		uint64_t ns0, c0, ns1, c1;
		struct nm_orig o;

		teardown();
		open_world(on, NM_EVENTS_AUTO);
		sockops_stats(&ns0, &c0);
		for (int i = 0; i < COST_CONNS; i++) {
			redirected_flow(&o);
			ck_assert_int_ge(nm_events_poll(evs), 0);
		}
		sockops_stats(&ns1, &c1);
		per[on] = (double)(ns1 - ns0) / COST_CONNS;
		calls[on] = (double)(c1 - c0) / COST_CONNS;
	}
	printf("telemetry cost: sockops %.0f ns per connection with sock stats (%.1f callbacks), %.0f ns without (%.1f callbacks); %u+%u bytes per connection, %d connections each\n",
	       per[1], calls[1], per[0], calls[0], SEND_BYTES, RECV_BYTES,
	       COST_CONNS);
	ck_assert_uint_ge(n_flows, 0);
}
END_TEST

/* --- world ------------------------------------------------------------------- */

static void world_cleanup(void)
{
	if (getpid() != g_main_pid)
		return;
	nm_datapath_remove_pins(g_instance);
	remove_cgroup(g_client);
	remove_cgroup(g_server);
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
	char mnt[256];

	if (unshare(CLONE_NEWNET) || loopback_up())
		return -1;
	if (nm_cgroup2_mount(mnt, sizeof(mnt)))
		return -1;
	snprintf(g_instance, sizeof(g_instance), "teltest-%d", (int)g_main_pid);
	snprintf(g_pin, sizeof(g_pin), "%s/%s", NM_PIN_BASE, g_instance);
	snprintf(g_base, sizeof(g_base), "%s/nm-teltest-%d", mnt, (int)g_main_pid);
	snprintf(g_root, sizeof(g_root), "%s/root", g_base);
	snprintf(g_client, sizeof(g_client), "%s/client", g_root);
	snprintf(g_server, sizeof(g_server), "%s/server", g_root);
	if (mkdir(g_base, 0755) || mkdir(g_root, 0755) ||
	    mkdir(g_client, 0755) || mkdir(g_server, 0755))
		return -1;
	return 0;
}

static Suite *telemetry_suite(void)
{
	Suite *s = suite_create("telemetry");
	TCase *tc = tcase_create("live");

	tcase_add_checked_fixture(tc, setup, teardown);
	if (!getenv("CK_DEFAULT_TIMEOUT"))
		tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_flow_close_record_exact_bytes);
	tcase_add_test(tc, test_server_side_record);
	tcase_add_test(tc, test_kernel_path_flow);
	tcase_add_test(tc, test_denies_counted_and_reported);
	tcase_add_test(tc, test_full_map_update_counted);
	tcase_add_test(tc, test_sock_stats_off);
	tcase_add_test(tc, test_perfbuf_fallback);
	tcase_add_test(tc, test_cost_per_connection);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int failed;

	if (geteuid() != 0) {
		fprintf(stderr, "test_telemetry: must run as root (BPF, cgroups, netns)\n");
		return 1;
	}
	g_main_pid = getpid();
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (world_setup()) {
		fprintf(stderr, "test_telemetry: world setup: %s\n", strerror(errno));
		world_cleanup();
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	g_stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	failed = nm_check_run(telemetry_suite(), CK_FORK);
	if (g_stats_fd >= 0)
		close(g_stats_fd);
	world_cleanup();
	return failed ? 1 : 0;
}
