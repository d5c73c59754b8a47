// SPDX-License-Identifier: Apache-2.0
/*
 * reload.c - how the daemon applies what its sources give it (daemon.h):
 * a snapshot becomes a state, the state and the policy set become maps, a
 * new cluster file or policy folder is applied whole or not at all, with
 * listeners and TLS contexts brought along in the order that keeps traffic
 * flowing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/policydir.h"
#include "core/daemon.h"
#include "core/runstate.h"
#include "datapath/model.h"
#include "lib/log.h"

int nm_daemon_file_mtime(const char *path, struct timespec *ts)
{
	struct stat st;

	if (stat(path, &st))
		return -errno;
	*ts = st.st_mtim;
	return 0;
}


/* Builds the state of snapshot c for this agent, as generation gen. */
int nm_daemon_state_build(struct nm_daemon *d, const struct nm_cluster *c,
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
	if (s->cluster->mesh.kernel_path)
		st.flags |= NM_AGENT_F_KERNEL_PATH;
	/* What connect4/6 does from now on; which connections qualify is
	 * per pair (docs/kernel-path.md). */
	nm_path_set(&a->paths.kernel_path, s->cluster->mesh.kernel_path,
		    "rewrite",
		    s->cluster->mesh.kernel_path ? "" : "mesh.kernelPath is false");
	st.config_generation = s->generation;
	st.abi_version = NM_ABI_VERSION;
	return nm_datapath_set_state(a->dp, &st);
}

void nm_daemon_kernel_path_poll(struct nm_agent *a)
{
	struct nm_fastpaths *fp = &a->paths;
	uint64_t total;

	if (!a->dp || nm_datapath_kernel_flows(a->dp, &total))
		return;
	/* The map outlives agents and loses the counts of deleted workloads:
	 * only what it gained since the last read is this run's. */
	if (fp->kernel_map_total && total + 1 >= fp->kernel_map_total)
		fp->kernel_path.flows += total + 1 - fp->kernel_map_total;
	fp->kernel_map_total = total + 1; /* 0: not read yet */
}

/*
 * Loads the datapath, forgets every redirect record an earlier run left
 * behind, and starts this run's generations above the pinned one, so a
 * record written under an earlier run's state is refused as unknown.
 */
int nm_daemon_datapath_start(struct nm_daemon *d)
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
	opts.sock_stats = d->sock_stats;
	opts.events = d->events_transport;
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
		ret = nm_daemon_state_build(d, a->cluster, a->first_generation, &s);
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
int nm_daemon_policies_load(const struct nm_cluster *c, struct nm_policy_set **out)
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
void nm_daemon_policies_publish(struct nm_daemon *d)
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
	nm_daemon_policies_publish(d);
	if (a->policy_recheck)
		nm_proxy_recheck(a);
}

/* The policy folder changed: a new set with the same snapshot, or none. */
static void policy_reload(struct nm_daemon *d)
{
	struct nm_agent *a = &d->agent;
	struct nm_state *s = NULL, *old_state = a->state;
	struct nm_policy_set *ps = NULL;

	if (nm_daemon_policies_load(a->cluster, &ps))
		return;
	if (nm_daemon_state_build(d, a->cluster, a->state->generation + 1, &s)) {
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
void nm_daemon_reload(struct nm_daemon *d)
{
	struct nm_cluster *c = NULL;
	char err[NM_ERRMSG_MAX];
	int ret;

	nm_daemon_file_mtime(d->config_path, &d->config_mtime);
	ret = nm_cluster_load_file(d->config_path, &c, err, sizeof(err));
	if (ret) {
		pr_warn("msg=\"config rejected, keeping the last good state\" err=\"%s\"",
			err);
		return;
	}
	nm_daemon_apply(d, c);
}

int nm_daemon_apply(struct nm_daemon *d, struct nm_cluster *c)
{
	struct nm_agent *a = &d->agent;
	struct nm_state *s = NULL, *old_state = a->state;
	struct nm_policy_set *ps = NULL;
	struct nm_tls *tls = NULL;
	char field[96];
	const char *why;
	int ret;

	why = restart_field(a->state, c, field, sizeof(field));
	if (why) {
		pr_warn("msg=\"config rejected, keeping the last good state: field needs a restart\" file=%s field=%s",
			c->path, why);
		goto reject;
	}
	if (nm_daemon_state_build(d, c, a->state->generation + 1, &s))
		goto reject;
	if (nm_daemon_policies_load(c, &ps))
		goto reject;
	s->policies = ps;
	if (tls_for(d, c, &tls))
		goto reject;
	ret = nm_proxy_listen_mesh(a, s);
	if (ret) {
		pr_warn("msg=\"config rejected, keeping the last good state: cannot listen\" file=%s field=mesh.%s err=\"%s\"",
			c->path,
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
		/* Pooled tunnels present the old certificates. */
		nm_pool_flush(&a->tpool, "certificates changed");
		nm_tls_carry_stats(tls, a->tls);
		nm_tls_free(a->tls);
		a->tls = tls;
	}
	a->state = s;
	nm_state_free(old_state);
	nm_cluster_free(a->cluster);
	a->cluster = c;
	/* Limits apply live; flows already counted stay counted. */
	nm_limits_init(&a->limits, &c->mesh.limits);
	nm_pool_configure(&a->tpool, a, &c->mesh.tunnel_pool);
	nm_pool_prune(&a->tpool, s); /* peers that left the state */
	policies_commit(d, ps);
	nm_daemon_certs_watch(d);
	nm_runstate_write(a);
	pr_info("msg=\"config reloaded\" file=%s generation=%u workloads=%u services=%u",
		c->path, s->generation, c->n_workloads, c->n_services);
	return 0;
reject:
	nm_tls_free(tls);
	nm_state_free(s);
	nm_policy_set_free(ps);
	nm_cluster_free(c);
	return -EINVAL;
}
