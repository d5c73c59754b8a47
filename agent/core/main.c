// SPDX-License-Identifier: Apache-2.0
/*
 * nodemeshd - the nodemesh node agent.
 *
 *   nodemeshd --config FILE [--node NAME] [--instance NAME] [--log-level L]
 *
 * Reads the cluster file, keeps its node's part, loads and attaches the BPF
 * datapath at the node's cgroup root, fills the maps, and proxies redirected
 * pod connections over mTLS (NMTP) to the destination node's agent. SIGHUP
 * (or a change of the file) reloads the configuration; a file that does not
 * parse keeps the last good state. SIGTERM stops listening, closes flows and
 * exits 0; pinned maps and links stay, so pods fail fast while it is down.
 */
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
#include "core/caps.h"
#include "lib/log.h"
#include "datapath/model.h"
#include "datapath/netlink.h"
#include "datapath/probe.h"
#include "core/runstate.h"

struct nm_daemon {
	struct nm_agent agent;
	uint64_t agent_cgroup_id;
	char node_buf[NM_NAME_MAX]; /* node_name outlives any one snapshot */
	const char *config_path;
	const char *node_name;
	bool tls_resumption;
	struct timespec config_mtime;
	uint64_t flows_high;      /* most live flows since the last trim */
	int sigfd;
	uint64_t reload_timer;
	int policy_fd;                     /* inotify on policyDir, -1: none */
	char policy_watched[NM_PATH_MAX];  /* the folder policy_fd watches */
	uint64_t policy_timer;             /* debounce after a change */
};

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
		"                   reuse TLS 1.3 sessions for new tunnels (default on)\n");
}

static int file_mtime(const char *path, struct timespec *ts)
{
	struct stat st;

	if (stat(path, &st))
		return -errno;
	*ts = st.st_mtim;
	return 0;
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

/* Builds the state of snapshot c for this agent, as generation gen. */
static int state_build(struct nm_daemon *d, const struct nm_cluster *c,
		       uint32_t gen, struct nm_state **out)
{
	struct nm_state_opts o = {
		.self_node = d->node_name,
		.generation = gen,
		.cgroup_id = nm_model_cgroup_id,
		.agent_cgroup_id = d->agent_cgroup_id,
	};
	char err[NM_ERRMSG_MAX];
	int ret;

	ret = nm_state_build(c, d->agent.ids, &o, out, err, sizeof(err));
	if (ret)
		pr_warn("msg=\"config rejected, keeping the last good state\" err=\"%s\"",
			err);
	return ret;
}

/* Writes the maps and nm_agent_state for state s. */
static int datapath_apply(struct nm_agent *a, const struct nm_state *s)
{
	struct nm_model model = { 0 };
	struct nm_agent_state st = { 0 };
	const struct nm_node *n = s->self->cfg;
	char err[NM_ERRMSG_MAX];
	int ret;

	ret = nm_model_build(s, &model, err, sizeof(err));
	if (ret) {
		pr_warn("msg=\"cannot build datapath model\" err=\"%s\"", err);
		return ret;
	}
	ret = nm_datapath_sync(a->dp, &model);
	nm_model_free(&model);
	if (ret) {
		pr_warn("msg=\"cannot write maps\" err=\"%s\"", strerror(-ret));
		return ret;
	}
	st.agent_v4 = n->addr;
	if (n->has_addr6)
		st.agent_v6 = n->addr6;
	st.outbound_port = htons(s->cluster->mesh.outbound_port);
	st.fail_mode = s->cluster->mesh.fail_mode == NM_CFG_FAIL_OPEN ?
			       NM_FAIL_OPEN : NM_FAIL_CLOSED;
	st.config_generation = s->generation;
	st.abi_version = NM_ABI_VERSION;
	return nm_datapath_set_state(a->dp, &st);
}

/*
 * Loads the datapath, forgets every redirect record an earlier run left
 * behind, and starts this run's generations above the pinned one, so a
 * record written under an earlier run's state is refused as unknown.
 */
static int datapath_start(struct nm_daemon *d)
{
	struct nm_agent *a = &d->agent;
	const struct nm_node *n = a->state->self->cfg;
	struct nm_datapath_opts opts = { .instance = a->instance };
	char root[NM_PATH_MAX], err[NM_ERRMSG_MAX];
	struct nm_agent_state old = { 0 };
	unsigned int flushed = 0;
	int ret;

	ret = nm_cgroup_resolve(n->cgroup_root, root, sizeof(root));
	if (ret) {
		pr_warn("msg=\"cannot resolve cgroupRoot\" file=%s node=%s cgroupRoot=%s err=\"%s\"",
			a->cluster->path, n->name, n->cgroup_root, strerror(-ret));
		return ret;
	}
	opts.cgroup_root = root;
	ret = nm_datapath_open(&opts, &a->dp, err, sizeof(err));
	if (ret) {
		pr_warn("msg=\"cannot load the BPF datapath\" err=\"%s\"", err);
		return ret;
	}
	if (!nm_datapath_get_state(a->dp, &old) && old.config_generation >= a->first_generation &&
	    old.config_generation < UINT32_MAX / 2) {
		/* Rebuild the state under a generation no earlier record has. */
		struct nm_state *s = NULL;

		a->first_generation = old.config_generation + 1;
		ret = state_build(d, a->cluster, a->first_generation, &s);
		if (ret)
			return ret;
		s->policies = a->state->policies;
		nm_state_free(a->state);
		a->state = s;
	}
	ret = nm_datapath_flush_records(a->dp, &flushed);
	if (ret) {
		pr_warn("msg=\"cannot flush redirect records\" err=\"%s\"", strerror(-ret));
		return ret;
	}
	ret = datapath_apply(a, a->state);
	if (ret)
		return ret;
	pr_info("msg=\"datapath attached\" cgroup_root=%s pins=%s/%s generation=%u records_flushed=%u",
		root, NM_PIN_BASE, a->instance, a->state->generation, flushed);
	return 0;
}

/*
 * Settings that cannot change while the agent runs; names the first that
 * did (a JSON path) or returns NULL.
 */
static const char *restart_field(const struct nm_state *cur,
				 const struct nm_cluster *c, char *buf,
				 size_t len)
{
	const struct nm_cluster *o = cur->cluster;

	if (cur->self) {
		const struct nm_node *on = cur->self->cfg, *nn = NULL;
		int i = nm_cluster_find_node(c, on->name);

		if (i < 0) {
			snprintf(buf, len, "nodes (node %s removed)", on->name);
			return buf;
		}
		nn = &c->nodes[i];
		if (memcmp(&nn->addr, &on->addr, sizeof(nn->addr)))
			snprintf(buf, len, "nodes[%d].address", i);
		else if (nn->has_addr6 != on->has_addr6 ||
			 memcmp(&nn->addr6, &on->addr6, sizeof(nn->addr6)))
			snprintf(buf, len, "nodes[%d].address6", i);
		else if (strcmp(nn->cgroup_root, on->cgroup_root))
			snprintf(buf, len, "nodes[%d].cgroupRoot", i);
		else
			buf[0] = '\0';
		if (buf[0])
			return buf;
	}
	if (c->n_forwards != o->n_forwards ||
	    (c->n_forwards && memcmp(c->forwards, o->forwards,
				     c->n_forwards * sizeof(*c->forwards)))) {
		snprintf(buf, len, "forwards");
		return buf;
	}
	return NULL;
}

/* New TLS contexts when the trust domain or certificate folder changed. */
static int tls_for(struct nm_daemon *d, const struct nm_cluster *c,
		   struct nm_tls **out)
{
	const struct nm_cluster *o = d->agent.cluster;
	char err[NM_ERRMSG_MAX];
	int ret;

	*out = NULL;
	if (!strcmp(c->trust_domain, o->trust_domain) &&
	    !strcmp(c->cert_dir, o->cert_dir))
		return 0;
	ret = nm_tls_create(c->cert_dir, c->trust_domain, out, err, sizeof(err));
	if (ret) {
		pr_warn("msg=\"config rejected, keeping the last good state: cannot load certificates\" file=%s field=%s err=\"%s\"",
			c->path, strcmp(c->trust_domain, o->trust_domain) ?
					 "trustDomain" : "certDir", err);
		return ret;
	}
	nm_tls_set_resumption(*out, d->tls_resumption);
	return 0;
}

/*
 * The policy set of snapshot c's policyDir (*out NULL: no policyDir, all
 * allowed). A file that does not load refuses the set as a whole: the log
 * names file, policy and field, and the caller keeps the last good one.
 */
static int policies_load(const struct nm_cluster *c, struct nm_policy_set **out)
{
	char err[2 * NM_ERRMSG_MAX];
	const char *const *warn;
	unsigned int n;
	int ret;

	*out = NULL;
	if (!c->policy_dir[0])
		return 0;
	ret = nm_policy_load_dir(c->policy_dir, c->mesh.root_ns, out, err,
				 sizeof(err));
	if (ret) {
		pr_warn("msg=\"policies rejected, keeping the last good set\" dir=%s err=\"%s\"",
			c->policy_dir, err);
		return ret;
	}
	warn = nm_policy_set_warnings(*out, &n);
	for (unsigned int i = 0; i < n; i++)
		pr_warn("msg=\"policy accepted with a warning\" warning=\"%s\"", warn[i]);
	return 0;
}

static void on_policy_event(struct nm_loop *loop, int fd, unsigned int events,
			    void *data);

/* Watches the snapshot's policyDir (again, when it moved). */
static void policy_watch(struct nm_daemon *d)
{
	struct nm_agent *a = &d->agent;
	const char *dir = a->cluster->policy_dir;

	if (d->policy_fd >= 0 && !strcmp(dir, d->policy_watched))
		return;
	if (d->policy_fd >= 0) {
		nm_loop_del(a->loop, d->policy_fd);
		close(d->policy_fd);
		d->policy_fd = -1;
		d->policy_watched[0] = '\0';
	}
	if (!dir[0])
		return;
	d->policy_fd = nm_policydir_watch(dir);
	if (d->policy_fd < 0) {
		pr_warn("msg=\"cannot watch the policy folder; changes apply on SIGHUP only\" dir=%s err=\"%s\"",
			dir, strerror(-d->policy_fd));
		return;
	}
	if (nm_loop_add(a->loop, d->policy_fd, NM_EV_READ, on_policy_event, d)) {
		close(d->policy_fd);
		d->policy_fd = -1;
		return;
	}
	snprintf(d->policy_watched, sizeof(d->policy_watched), "%s", dir);
}

/* The set in force, for the CLI; and the watch on its folder. */
static void policies_publish(struct nm_daemon *d)
{
	struct nm_agent *a = &d->agent;
	int ret;

	a->policy_recheck = a->cluster->policy_apply_to_existing;
	ret = nm_policydir_publish(a->instance, a->cluster->policy_dir);
	if (ret)
		pr_warn("msg=\"cannot publish the policies in force for the CLI\" err=\"%s\"",
			strerror(-ret));
	policy_watch(d);
}

/* ps is in the state in force (its maps are written): count, publish. */
static void policies_commit(struct nm_daemon *d, struct nm_policy_set *ps)
{
	struct nm_agent *a = &d->agent;

	if (nm_authz_replace(&a->authz, ps)) {
		/* Keep evaluating with ps without per-policy counts rather
		 * than enforce a set the maps no longer hold. */
		nm_policy_set_free(a->authz.policies);
		a->authz.policies = ps;
		a->authz.n_policies = 0;
	}
	policies_publish(d);
	if (a->policy_recheck)
		nm_proxy_recheck(a);
}

/* The policy folder changed: a new set with the same snapshot, or none. */
static void policy_reload(struct nm_daemon *d)
{
	struct nm_agent *a = &d->agent;
	struct nm_state *s = NULL, *old_state = a->state;
	struct nm_policy_set *ps = NULL;

	if (policies_load(a->cluster, &ps))
		return;
	if (state_build(d, a->cluster, a->state->generation + 1, &s)) {
		nm_policy_set_free(ps);
		return;
	}
	s->policies = ps;
	if (a->dp && datapath_apply(a, s)) {
		datapath_apply(a, old_state);
		nm_state_free(s);
		nm_policy_set_free(ps);
		return;
	}
	a->state = s;
	nm_state_free(old_state);
	policies_commit(d, ps);
	nm_runstate_write(a);
	pr_info("msg=\"policies reloaded\" dir=%s generation=%u policies=%u",
		a->cluster->policy_dir, s->generation, ps ? nm_policy_count(ps) : 0);
}

static int64_t on_policy_settled(struct nm_loop *loop, uint64_t id, void *data)
{
	struct nm_daemon *d = data;

	d->policy_timer = 0;
	policy_reload(d);
	return NM_TIMER_STOP;
}

/* Writers touch a file several times: wait until it settles (100 ms),
 * which keeps a change well inside the 1 s it may take to apply. */
static void on_policy_event(struct nm_loop *loop, int fd, unsigned int events,
			    void *data)
{
	struct nm_daemon *d = data;

	if (!nm_policydir_drain(fd) || d->policy_timer)
		return;
	d->policy_timer = nm_loop_add_timer(loop, 100, on_policy_settled, d);
}

/*
 * Applies a new cluster file whole, or keeps the last good state whole:
 * every field either applies live or the reload is refused naming it.
 * Order matters for traffic: new listeners are open before the maps point
 * at them; old ones close only after the maps moved on.
 */
static void daemon_reload(struct nm_daemon *d)
{
	struct nm_agent *a = &d->agent;
	struct nm_cluster *c = NULL;
	struct nm_state *s = NULL, *old_state = a->state;
	struct nm_policy_set *ps = NULL;
	struct nm_tls *tls = NULL;
	char err[NM_ERRMSG_MAX], field[96];
	const char *why;
	int ret;

	file_mtime(d->config_path, &d->config_mtime);
	ret = nm_cluster_load_file(d->config_path, &c, err, sizeof(err));
	if (ret) {
		pr_warn("msg=\"config rejected, keeping the last good state\" err=\"%s\"",
			err);
		return;
	}
	why = restart_field(a->state, c, field, sizeof(field));
	if (why) {
		pr_warn("msg=\"config rejected, keeping the last good state: field needs a restart\" file=%s field=%s",
			d->config_path, why);
		goto reject;
	}
	if (state_build(d, c, a->state->generation + 1, &s))
		goto reject;
	if (policies_load(c, &ps))
		goto reject;
	s->policies = ps;
	if (tls_for(d, c, &tls))
		goto reject;
	ret = nm_proxy_listen_mesh(a, s);
	if (ret) {
		pr_warn("msg=\"config rejected, keeping the last good state: cannot listen\" file=%s field=mesh.%s err=\"%s\"",
			d->config_path,
			c->mesh.outbound_port != a->cluster->mesh.outbound_port ?
				"outboundPort" : "inboundPort", strerror(-ret));
		nm_proxy_close_stale_mesh(a, old_state);
		goto reject;
	}
	if (a->dp && datapath_apply(a, s)) {
		datapath_apply(a, old_state);
		nm_proxy_close_stale_mesh(a, old_state);
		goto reject;
	}
	nm_proxy_close_stale_mesh(a, s);
	/* Listeners point into the forwards array (unchanged, checked
	 * above): keep the one they use. */
	{
		struct nm_forward_cfg *fw = c->forwards;

		c->forwards = a->cluster->forwards;
		a->cluster->forwards = fw;
	}
	if (tls) {
		nm_tls_free(a->tls);
		a->tls = tls;
	}
	a->state = s;
	nm_state_free(old_state);
	nm_cluster_free(a->cluster);
	a->cluster = c;
	/* Limits apply live; flows already counted stay counted. */
	nm_limits_init(&a->limits, &c->mesh.limits);
	policies_commit(d, ps);
	nm_runstate_write(a);
	pr_info("msg=\"config reloaded\" file=%s generation=%u workloads=%u services=%u",
		d->config_path, s->generation, c->n_workloads, c->n_services);
	return;
reject:
	nm_tls_free(tls);
	nm_state_free(s);
	nm_policy_set_free(ps);
	nm_cluster_free(c);
}

static void on_signal(struct nm_loop *loop, int fd, unsigned int events,
		      void *data)
{
	struct nm_daemon *d = data;
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			pr_info("msg=\"SIGHUP: reloading\"");
			daemon_reload(d);
			break;
		case SIGTERM:
		case SIGINT:
			pr_info("msg=\"stopping\" signal=%s",
				si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			d->agent.stopping = true;
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

static int64_t on_heartbeat(struct nm_loop *loop, uint64_t id, void *data)
{
	struct nm_agent *a = data;

	if (a->dp)
		nm_datapath_heartbeat(a->dp);
	return 1000;
}

static int64_t on_reload_check(struct nm_loop *loop, uint64_t id, void *data)
{
	struct nm_daemon *d = data;
	struct timespec ts;

	if (!file_mtime(d->config_path, &ts) &&
	    (ts.tv_sec != d->config_mtime.tv_sec ||
	     ts.tv_nsec != d->config_mtime.tv_nsec)) {
		pr_info("msg=\"config file changed: reloading\" file=%s",
			d->config_path);
		daemon_reload(d);
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "node", required_argument, NULL, 'n' },
		{ "instance", required_argument, NULL, 'i' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "tls-resumption", required_argument, NULL, 'r' },
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
	file_mtime(d.config_path, &d.config_mtime);
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
	if (state_build(&d, a->cluster, a->first_generation, &a->state))
		goto out;
	/* A policy folder that does not load stops the start: there is no
	 * last good set to keep yet. */
	if (policies_load(a->cluster, &ps))
		goto out;
	if (nm_authz_replace(&a->authz, ps)) {
		nm_policy_set_free(ps);
		goto out;
	}
	a->state->policies = ps;
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
	ret = setup_signals(&d);
	if (ret)
		goto out;
	nm_loop_add(a->loop, d.sigfd, NM_EV_READ, on_signal, &d);
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
		/* No acceleration is built yet: nothing is asked for, and the
		 * choice (all plain fallbacks) is recorded for `nodemesh status`. */
		nm_probe_choose(&feat, &want, &chosen);
		if (!nm_probe_state_path(NULL, a->instance, feat_path, sizeof(feat_path)))
			nm_probe_save(feat_path, &feat, &chosen, getpid());
		keep_caps = nm_probe_keep_caps(&feat);
		if (datapath_start(&d))
			goto out;
	}
	if (nm_proxy_listen(a))
		goto out;
	/* Set-up is done. The agent marks nothing (its sockets are told
	 * apart by cgroup), so it needs no capability from here on, except
	 * CAP_BPF on kernels that check it on every bpf() call (before 5.19
	 * with unprivileged BPF disabled) for map operations on the fds it
	 * holds; nm_probe_keep_caps() says when. Listening on a new port
	 * below 1024 after a reload is refused for want of
	 * CAP_NET_BIND_SERVICE, and named in the log. */
	ret = nm_caps_restrict(keep_caps);
	if (ret)
		pr_warn("msg=\"cannot drop capabilities\" err=\"%s\"", strerror(-ret));
	a->sweep_timer = nm_loop_add_timer(a->loop, 500, on_sweep, &d);
	a->heartbeat_timer = nm_loop_add_timer(a->loop, 0, on_heartbeat, a);
	d.reload_timer = nm_loop_add_timer(a->loop, 2000, on_reload_check, &d);
	policies_publish(&d);
	nm_runstate_write(a);
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
	nm_proxy_stop_listening(a);
	nm_proxy_close_all(a, false);
	if (feat_path[0])
		unlink(feat_path);
	nm_runstate_remove(a);
	nm_policydir_unpublish(a->instance);
	if (d.policy_fd >= 0)
		close(d.policy_fd);
	nm_datapath_close(a->dp);
	nm_tls_free(a->tls);
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
