// SPDX-License-Identifier: Apache-2.0
/*
 * nodemeshd - the nodemesh node agent.
 *
 *   nodemeshd --config FILE [--node NAME] [--instance NAME] [--log-level L]
 *             [--kubernetes [--kubeconfig FILE] [--kube-cgroup-root DIR]]
 *
 * Reads the cluster file, keeps its node's part, loads and attaches the BPF
 * datapath at the node's cgroup root, fills the maps, and proxies redirected
 * pod connections over mTLS (NMTP) to the destination node's agent. SIGHUP
 * (or a change of the file) reloads the configuration; a file that does not
 * parse keeps the last good state. SIGTERM stops listening, closes flows and
 * exits 0; pinned maps and links stay, so pods fail fast while it is down.
 *
 * With --kubernetes the nodes, workloads and services come from the API
 * server (agent/k8s) and the file gives only the settings; every snapshot
 * the watch builds is applied with nm_daemon_apply(), as a file reload is.
 */
#include <poll.h>
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "config/policydir.h"
#include "mesh/proxy.h"
#include "mesh/ecmeth.h"
#include "mesh/ktls.h"
#include "mesh/records.h"
#include "mesh/relay.h"
#include "core/caps.h"
#include "lib/log.h"
#include "datapath/netlink.h"
#include "datapath/probe.h"
#include "core/daemon.h"
#include "core/runstate.h"
#include "telemetry/health.h"
#include "telemetry/telemetry.h"
#include "k8s/k8s.h"
#include "lib/pins.h"


static void usage(FILE *out)
{
	fprintf(out,
		"Usage: nodemeshd --config FILE [--node NAME] [--instance NAME] [--log-level L]\n"
		"                 [--tls-resumption on|off]\n"
		"\n"
		"  --config FILE    standalone cluster file (see docs/config.md)\n"
		"  --node NAME      this node's name in the file (default: $NODE_NAME, else\n"
		"                   the node whose address is configured on this host)\n"
		"  --instance NAME  pin directory /sys/fs/bpf/nodemesh/NAME (default: default)\n"
		"  --log-level L    warn, info (default) or debug\n"
		"  --tls-resumption on|off\n"
		"                   reuse TLS 1.3 sessions for new tunnels (default on)\n"
		"  --kubernetes     nodes, pods and services from the API server (in-cluster\n"
		"                   service account); --config then holds the settings only\n"
		"  --kubeconfig FILE  the API server and credentials from a kubeconfig\n"
		"  --kube-cgroup-root DIR\n"
		"                   the kubelet's --cgroup-root, relative to the cgroup v2\n"
		"                   mount (default: the mount; kubepods.slice or kubepods)\n");
}

/* This agent's node name: --node / $NODE_NAME, else the node whose address
 * is configured here, copied into buf. *out is NULL for a forwards-only
 * agent. */
static int pick_node(const struct nm_cluster *c, const char *name,
		     char *buf, size_t len, const char **out)
{
	int n;

	*out = NULL;
	if (name) {
		n = nm_cluster_find_node(c, name);
		if (n < 0) {
			pr_warn("msg=\"node not in cluster file\" node=%s file=%s",
				name, c->path);
			return -ENOENT;
		}
		snprintf(buf, len, "%s", c->nodes[n].name);
		*out = buf;
		return 0;
	}
	if (!c->n_nodes)
		return 0; /* forwards only */
	n = nm_netlink_find_local_node(c);
	if (n == -EEXIST)
		pr_warn("msg=\"several nodes in the cluster file have local addresses; pass --node\"");
	else if (n < 0)
		pr_warn("msg=\"no node in the cluster file has a local address; pass --node\" file=%s",
			c->path);
	if (n < 0)
		return -ENOENT;
	snprintf(buf, len, "%s", c->nodes[n].name);
	*out = buf;
	return 0;
}

static void config_reload(struct nm_daemon *d);

static void on_signal(struct nm_loop *loop, int fd, unsigned int events,
		      void *data)
{
	struct nm_daemon *d = data;
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			pr_info("msg=\"SIGHUP: reloading\"");
			config_reload(d);
			break;
		case SIGTERM:
		case SIGINT:
			pr_info("msg=\"stopping\" signal=%s",
				si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			d->agent.stopping = true;
			nm_health_set_ready(d->health, false);
			nm_loop_stop(loop);
			break;
		}
	}
}

static int64_t on_sweep(struct nm_loop *loop, uint64_t id, void *data)
{
	struct nm_daemon *d = data;
	uint64_t live = d->agent.stats.flows_active;

	nm_proxy_sweep(&d->agent);
	/* After a burst of flows has drained, hand the freed heap back to the
	 * kernel: glibc keeps it otherwise, and RSS would stay at the peak. */
	if (live > d->flows_high)
		d->flows_high = live;
	if (d->flows_high >= 256 && live < d->flows_high / 2) {
		malloc_trim(0);
		d->flows_high = live;
	}
	return 500;
}

/* nm_events has records: hand them to the handlers (datapath/events.h). */
static void on_bpf_events(struct nm_loop *loop, int fd, unsigned int events,
			  void *data)
{
	struct nm_daemon *d = data;
	int ret = nm_events_poll(d->events);

	if (ret < 0)
		pr_warn_ratelimited(&d->events_rl, "msg=\"reading BPF events failed\" err=\"%s\"",
				    strerror(-ret));
}

/*
 * Flows the kernel decided go to the flow log and metrics: a kernel-path
 * close, or a connect() connect4/6 refused. Agent-path and inbound closes
 * are the agent's own flows (it logs them itself); their records count in
 * the reader's stats only.
 */
static void kernel_flow_to_tel(struct nm_daemon *d, const struct nm_addr *src,
			       const struct nm_addr *dst, __be16 dst_port,
			       struct nm_tel_kernel_flow *k)
{
	char s1[64], s2[64], d1[80];

	nm_addr_format(src, s1, sizeof(s1));
	nm_addr_format(dst, s2, sizeof(s2));
	snprintf(d1, sizeof(d1), strchr(s2, ':') ? "[%s]:%u" : "%s:%u", s2,
		 ntohs(dst_port));
	k->src_addr = s1;
	k->dst_addr = d1;
	nm_tel_kernel_flow(d->agent.tel, k);
}

static void on_bpf_flow(void *ctx, const struct nm_flow_event *f)
{
	struct nm_tel_kernel_flow k = {
		.src_workload_id = f->src_workload_id,
		.dst_workload_id = f->dst_workload_id,
		.bytes_up = f->bytes_acked,
		.bytes_down = f->bytes_received,
		.duration_ns = f->end_ns - f->start_ns,
		.srtt_us = f->srtt_us,
		.retransmits = f->total_retrans,
		.verdict = "allow",
	};

	if (f->path == NM_FLOW_PATH_KERNEL)
		kernel_flow_to_tel(ctx, &f->src, &f->backend, f->backend_port, &k);
}

static void on_bpf_connect(void *ctx, const struct nm_connect_event *c)
{
	struct nm_tel_kernel_flow k = {
		.src_workload_id = c->src_workload_id,
		.dst_workload_id = c->dst_workload_id,
		.verdict = c->verdict == NM_CV_REFUSED ? "deny" : "allow",
		.reason = nm_connect_reason_name(c->reason),
	};
	struct nm_addr none = { 0 };
	struct nm_daemon *d = ctx;
	const struct nm_st_workload *w;

	/* The record has no source address (connect() has not bound yet). */
	w = d->agent.state ? nm_state_workload_by_id(d->agent.state, c->src_workload_id) : NULL;
	kernel_flow_to_tel(d, w ? &w->cfg->ip : &none, &c->dst, c->dst_port, &k);
}

/* The BPF events reader on the loop; the mesh works without it. */
static void bpf_events_open(struct nm_daemon *d)
{
	struct nm_agent *a = &d->agent;
	int ret;

	if (!a->dp)
		return;
	ret = nm_events_open(a->dp, &d->events);
	if (!ret && a->tel) {
		nm_events_set_flow_handler(d->events, on_bpf_flow, d);
		nm_events_set_connect_handler(d->events, on_bpf_connect, d);
	}
	if (!ret)
		ret = nm_loop_add(a->loop, nm_events_fd(d->events), NM_EV_READ,
				  on_bpf_events, d);
	if (ret) {
		pr_warn("msg=\"no BPF flow events\" err=\"%s\"", strerror(-ret));
		nm_events_close(d->events);
		d->events = NULL;
	}
}

static int64_t on_heartbeat(struct nm_loop *loop, uint64_t id, void *data)
{
	struct nm_agent *a = data;

	if (a->dp) {
		nm_datapath_heartbeat(a->dp);
		nm_daemon_kernel_path_poll(a);
	}
	/* agent.json carries the source-preservation and fast-path counts:
	 * at most once a second, and only when they moved. */
	if (nm_srcaddr_counts_changed(&a->srcaddr) |
	    nm_fastpaths_changed(&a->paths))
		nm_runstate_write(a);
	return 1000;
}

static int64_t on_reload_check(struct nm_loop *loop, uint64_t id, void *data)
{
	struct nm_daemon *d = data;
	struct timespec ts;

	if (!nm_daemon_file_mtime(d->config_path, &ts) &&
	    (ts.tv_sec != d->config_mtime.tv_sec ||
	     ts.tv_nsec != d->config_mtime.tv_nsec)) {
		pr_info("msg=\"config file changed: reloading\" file=%s",
			d->config_path);
		config_reload(d);
	}
	return 2000;
}

/* Two fds per flow: the default soft limit of 1024 would cap an agent at
 * about 500 flows. Raise it to the hard limit (no capability needed). */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		pr_warn("msg=\"cannot raise the open-file limit\" limit=%llu",
			(unsigned long long)rl.rlim_max);
}

static int setup_signals(struct nm_daemon *d)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(2) */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return -errno;
	d->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return d->sigfd < 0 ? -errno : 0;
}

/* The Kubernetes source, when --kubernetes (one per process). */
static struct nm_k8s *k8s_src;

/* The file changed or SIGHUP: with --kubernetes only its settings reload
 * (the watch keeps the objects); else the file is the whole snapshot. */
static void config_reload(struct nm_daemon *d)
{
	struct nm_cluster *c = NULL;
	char err[NM_ERRMSG_MAX];

	if (!k8s_src) {
		nm_daemon_reload(d);
		return;
	}
	nm_daemon_file_mtime(d->config_path, &d->config_mtime);
	if (nm_cluster_load_file(d->config_path, &c, err, sizeof(err))) {
		pr_warn("msg=\"config rejected, keeping the last good settings\" err=\"%s\"",
			err);
		return;
	}
	nm_k8s_set_base(k8s_src, c);
	nm_cluster_free(c);
}

static void on_k8s_snapshot(struct nm_loop *loop, int fd, unsigned int events,
			    void *data)
{
	struct nm_cluster *c = nm_k8s_take(k8s_src);

	if (c)
		nm_daemon_apply(data, c);
}

/* Starts the source and waits for its first snapshot (every kind listed),
 * which replaces the file's settings-only cluster in *cl. */
static int k8s_first(const struct nm_k8s_opts *ko, const char *instance,
		     struct nm_cluster **cl)
{
	struct pollfd pfd = { .events = POLLIN };
	struct nm_cluster *c = NULL;
	int ret, waited = 0;

	ret = nm_k8s_start(ko, *cl, &k8s_src);
	if (ret)
		return ret;
	pfd.fd = nm_k8s_fd(k8s_src);
	while (!(c = nm_k8s_take(k8s_src))) {
		if (poll(&pfd, 1, 1000) == 0 && ++waited % 10 == 0)
			pr_info("msg=\"waiting for the API server's first complete snapshot\" waited_s=%d",
				waited);
	}
	nm_cluster_free(*cl);
	*cl = c;
	(void)instance;
	return 0;
}

/*
 * The readiness endpoint on the node's address (mesh.healthPort). Not
 * fatal: the mesh works without it, and two agents sharing a network
 * namespace (tests, forwards-only hosts) would collide on the port.
 */
static void health_open(struct nm_daemon *d)
{
	struct nm_agent *a = &d->agent;
	uint16_t port = a->cluster->mesh.health_port;
	struct sockaddr_storage ss;
	char s1[64];
	int ret;

	if (!port || !a->state->self)
		return;
	nm_addr_to_sockaddr(&a->state->self->cfg->addr, htons(port), &ss);
	ret = nm_health_open(a->loop, &ss, &d->health);
	if (ret)
		pr_warn("msg=\"cannot serve the readiness endpoint\" addr=%s err=\"%s\"",
			nm_sockaddr_format(&ss, s1, sizeof(s1)), strerror(-ret));
	else
		pr_info("msg=\"listening\" role=health addr=%s path=/healthz/ready",
			nm_sockaddr_format(&ss, s1, sizeof(s1)));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "node", required_argument, NULL, 'n' },
		{ "instance", required_argument, NULL, 'i' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "tls-resumption", required_argument, NULL, 'r' },
		{ "kubernetes", no_argument, NULL, 'K' },
		{ "kubeconfig", required_argument, NULL, 'k' },
		{ "kube-cgroup-root", required_argument, NULL, 'G' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct nm_daemon d = { .sigfd = -1, .policy_fd = -1, .tls_resumption = true };
	struct nm_policy_set *ps = NULL;
	struct nm_agent *a = &d.agent;
	enum nm_log_level level;
	char err[NM_ERRMSG_MAX], feat_path[NM_PATH_MAX] = "";
	struct nm_features feat = { 0 };
	struct nm_choices want = { 0 }, chosen = { 0 };
	uint64_t keep_caps = 0;
	int opt, ret, rc = 1;
	bool kubernetes = false;
	struct nm_k8s_opts ko = { 0 };
	char k8s_policy_dir[NM_PATH_MAX];

	a->instance = "default";
	while ((opt = getopt_long(argc, argv, "c:n:i:l:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			d.config_path = optarg;
			break;
		case 'n':
			d.node_name = optarg;
			break;
		case 'i':
			a->instance = optarg;
			break;
		case 'l':
			if (nm_log_parse_level(optarg, &level)) {
				fprintf(stderr, "nodemeshd: --log-level: unknown level '%s'\n", optarg);
				return 2;
			}
			nm_log_set_level(level);
			break;
		case 'r':
			if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
				fprintf(stderr, "nodemeshd: --tls-resumption: expected on or off, got '%s'\n", optarg);
				return 2;
			}
			d.tls_resumption = !strcmp(optarg, "on");
			break;
		case 'K':
			kubernetes = true;
			break;
		case 'k':
			ko.kubeconfig = optarg;
			break;
		case 'G':
			ko.cgroup_parent = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!d.config_path || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!d.node_name)
		d.node_name = getenv("NODE_NAME");
	if (strchr(a->instance, '/') || !a->instance[0] ||
	    strlen(a->instance) > NM_NAME_MAX) {
		fprintf(stderr, "nodemeshd: --instance: '%s' is not a valid name\n", a->instance);
		return 2;
	}

	ret = nm_cluster_load_file(d.config_path, &a->cluster, err, sizeof(err));
	if (ret) {
		pr_warn("msg=\"cannot load config\" err=\"%s\"", err);
		return 1;
	}
	nm_daemon_file_mtime(d.config_path, &d.config_mtime);
	if (kubernetes) {
		/* AuthorizationPolicies from the API go where the policy
		 * loader reads a policyDir, one List file, written whole. */
		snprintf(k8s_policy_dir, sizeof(k8s_policy_dir), "%s/%s/authorizationpolicies",
			 NM_RUN_DIR, a->instance);
		mkdir(NM_RUN_DIR, 0755);
		*strrchr(k8s_policy_dir, '/') = '\0';
		mkdir(k8s_policy_dir, 0755);
		k8s_policy_dir[strlen(k8s_policy_dir)] = '/';
		ko.node = d.node_name;
		ko.policy_dir = k8s_policy_dir;
		if (k8s_first(&ko, a->instance, &a->cluster))
			goto out;
	}
	if (pick_node(a->cluster, d.node_name, d.node_buf, sizeof(d.node_buf),
		      &d.node_name))
		goto out;
	/* The agent's own cgroup must never be a meshed workload's: that is
	 * what keeps connect4/6 away from the agent's sockets. */
	if (nm_cgroup_self_id(&d.agent_cgroup_id))
		d.agent_cgroup_id = 0;
	ret = nm_ids_create(&a->ids);
	if (ret)
		goto out;
	a->first_generation = 1;
	if (nm_daemon_state_build(&d, a->cluster, a->first_generation, &a->state))
		goto out;
	/* A policy folder that does not load stops the start: there is no
	 * last good set to keep yet. */
	if (nm_daemon_policies_load(a->cluster, &ps))
		goto out;
	if (nm_authz_replace(&a->authz, ps)) {
		nm_policy_set_free(ps);
		goto out;
	}
	a->state->policies = ps;
	/* Before the first certificate is parsed: it decides how every
	 * certificate key is decoded (mesh/ecmeth.h). */
	if (nm_ecmeth_setup(a->cluster->mesh.tls_ec_provider, &a->paths.ec_builtin))
		pr_warn("msg=\"certificate keys stay on OpenSSL's decoders\" reason=\"%s\"",
			a->paths.ec_builtin.reason);
	else
		pr_info("msg=\"certificate keys\" mode=%s reason=\"%s\"",
			a->paths.ec_builtin.mode, a->paths.ec_builtin.reason);
	ret = nm_tls_create(a->cluster->cert_dir, a->cluster->trust_domain,
			    &a->tls, err, sizeof(err));
	if (ret) {
		pr_warn("msg=\"cannot load certificates\" err=\"%s\"", err);
		goto out;
	}
	nm_tls_set_resumption(a->tls, d.tls_resumption);
	{
		uint64_t r;

		if (getentropy(&r, sizeof(r)))
			r = (uint64_t)time(NULL) << 20;
		/* Flow ids unique across agents: random high bits. */
		a->flow_base = r & ~0xffffffffull;
	}
	raise_fd_limit();
	nm_limits_init(&a->limits, &a->cluster->mesh.limits);
	ret = nm_loop_create(&a->loop);
	if (ret)
		goto out;
	nm_pool_configure(&a->tpool, a, &a->cluster->mesh.tunnel_pool);
	ret = nm_tel_create(a, &a->tel);
	if (ret)
		goto out;
	a->authz.tel = a->tel;
	ret = setup_signals(&d);
	if (ret)
		goto out;
	nm_loop_add(a->loop, d.sigfd, NM_EV_READ, on_signal, &d);
	if (k8s_src && nm_loop_add(a->loop, nm_k8s_fd(k8s_src), NM_EV_READ,
				   on_k8s_snapshot, &d))
		goto out;
	if (a->state->self && a->state->self->cfg->cgroup_root[0]) {
		const char *missing;

		/* Refuse a kernel that lacks what the datapath needs, naming
		 * the feature and the minimum kernel, before loading anything. */
		nm_probe_features(&feat);
		missing = nm_probe_required_missing(&feat);
		if (missing) {
			pr_warn("msg=\"kernel not supported\" reason=\"%s\"", missing);
			goto out;
		}
		/* No acceleration is built yet: only the BPF telemetry is
		 * asked for, and the choice is recorded for `nodemesh status`. */
		want.flow_events = true;
		/* telemetry.sockStats: read once, the programs' rodata is
		 * fixed at load (a reload cannot change it). */
		d.sock_stats = a->cluster->telemetry.sock_stats;
		want.sock_stats = d.sock_stats;
		nm_probe_choose(&feat, &want, &chosen);
		d.sock_stats = chosen.sock_stats;
		d.events_transport = chosen.events_perfbuf ? NM_EVENTS_PERFBUF :
							     NM_EVENTS_RINGBUF;
		if (!nm_probe_state_path(NULL, a->instance, feat_path, sizeof(feat_path)))
			nm_probe_save(feat_path, &feat, &chosen, getpid());
		keep_caps = nm_probe_keep_caps(&feat);
		if (nm_daemon_datapath_start(&d))
			goto out;
		bpf_events_open(&d);
		/* Source preservation: nft mark and policy routing now, while
		 * the agent may still change the netns; IP_TRANSPARENT on each
		 * upstream socket and the clean-up at exit need CAP_NET_ADMIN
		 * (CAP_NET_RAW would allow the option but not the clean-up),
		 * the one capability kept for it, and only while active. */
		nm_srcaddr_setup(&a->srcaddr, a->cluster->mesh.preserve_src);
		if (a->srcaddr.active)
			keep_caps |= 1ull << CAP_NET_ADMIN;
	} else {
		snprintf(a->srcaddr.reason, sizeof(a->srcaddr.reason),
			 "no node datapath (forwards only)");
	}
	/* The relay mode of plain-plain flows; loads its BPF program (if
	 * any) now, while the agent still may. */
	nm_zc_setup(a, a->cluster->mesh.relay);
	/* Issue 14's tunnel fast paths, chosen once (mesh/ktls.h, relay.h). */
	nm_ktls_probe(a->cluster->mesh.ktls_off ? NM_KTLS_OFF : NM_KTLS_AUTO,
		      &a->paths.ktls);
	pr_info("msg=\"kernel TLS\" mode=%s reason=\"%s\"", a->paths.ktls.mode,
		a->paths.ktls.reason);
	nm_records_choose(a->cluster->mesh.tls_records_openssl, &a->paths);
	if (nm_relay_busy_poll_setup(&a->paths, a->cluster->mesh.busy_poll_us))
		keep_caps |= 1ull << CAP_NET_ADMIN; /* raising SO_BUSY_POLL */
	nm_loop_set_spin(a->loop, a->cluster->mesh.busy_poll_us);
	if (a->cluster->mesh.busy_poll_us)
		pr_info("msg=\"busy polling\" active=%s reason=\"%s\"",
			a->paths.busy_poll.active ? "yes" : "no",
			a->paths.busy_poll.reason);
	if (nm_proxy_listen(a))
		goto out;
	health_open(&d);
	if (feat.kernel_release[0]) /* probed: this agent has a datapath */
		nm_tel_set_features(a->tel, &feat, &chosen);
	if (nm_tel_start(a->tel))
		goto out;
	/* Set-up is done. The agent marks nothing (its sockets are told
	 * apart by cgroup), so it needs no capability from here on, except
	 * CAP_BPF on kernels that check it on every bpf() call (before 5.19
	 * with unprivileged BPF disabled) for map operations on the fds it
	 * holds; nm_probe_keep_caps() says when; and CAP_NET_ADMIN while
	 * source preservation is active (above). Listening on a new port
	 * below 1024 after a reload is refused for want of
	 * CAP_NET_BIND_SERVICE, and named in the log. */
	ret = nm_caps_restrict(keep_caps);
	if (ret)
		pr_warn("msg=\"cannot drop capabilities\" err=\"%s\"", strerror(-ret));
	nm_srcaddr_probe(&a->srcaddr);
	a->sweep_timer = nm_loop_add_timer(a->loop, 500, on_sweep, &d);
	a->heartbeat_timer = nm_loop_add_timer(a->loop, 0, on_heartbeat, a);
	d.reload_timer = nm_loop_add_timer(a->loop, 2000, on_reload_check, &d);
	nm_daemon_policies_publish(&d);
	nm_daemon_certs_watch(&d);
	nm_runstate_write(a);
	nm_health_set_ready(d.health, true);
	pr_info("msg=\"ready\" node=%s instance=%s identities=%u",
		a->state->self ? a->state->self->cfg->name : "-",
		a->instance, nm_tls_identity_count(a->tls));
	ret = nm_loop_run(a->loop);
	if (ret) {
		pr_warn("msg=\"event loop failed\" err=\"%s\"", strerror(-ret));
		goto out;
	}
	rc = 0;
out:
	if (k8s_src && a->loop)
		nm_loop_del(a->loop, nm_k8s_fd(k8s_src));
	nm_k8s_stop(k8s_src);
	k8s_src = NULL;
	nm_health_close(d.health);
	nm_daemon_certs_stop(&d);
	if (d.events) {
		nm_loop_del(a->loop, nm_events_fd(d.events));
		nm_events_close(d.events);
	}
	nm_proxy_stop_listening(a);
	nm_proxy_close_all(a, false);
	nm_zc_teardown(a);
	nm_tel_free(a->tel); /* after the flows: their records are flushed */
	a->tel = NULL;
	a->authz.tel = NULL;
	if (feat_path[0])
		unlink(feat_path);
	nm_policydir_unpublish(a->instance);
	/* Last of the run directory's files (nm_k8s_stop() removed the
	 * Kubernetes policy copy): it removes the directory too, which fails
	 * while anything above is still in it. */
	nm_runstate_remove(a);
	if (d.policy_fd >= 0)
		close(d.policy_fd);
	nm_srcaddr_teardown(&a->srcaddr);
	nm_datapath_close(a->dp);
	nm_tls_free(a->tls);
	nm_ecmeth_teardown();
	if (a->loop)
		nm_loop_free(a->loop);
	if (d.sigfd >= 0)
		close(d.sigfd);
	nm_bufpool_drain(&a->pool);
	nm_state_free(a->state);
	nm_authz_free(&a->authz); /* after the state that points at its set */
	nm_ids_free(a->ids);
	nm_cluster_free(a->cluster);
	if (rc == 0)
		pr_info("msg=\"stopped\"");
	return rc;
}
