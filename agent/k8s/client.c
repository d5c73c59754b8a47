// SPDX-License-Identifier: Apache-2.0
/*
 * client.c - the Kubernetes source's thread (k8s.h): six list-then-watch
 * streams on one curl multi handle (HTTP/2 multiplexed over one connection
 * where the server offers h2 through ALPN, HTTP/1.1 otherwise), the store
 * they fill, and the snapshots built from it.
 *
 * Per stream: a paged list (limit=500, continue) into a fresh map that
 * replaces the stream's objects only when the last page arrived (a failed
 * relist keeps the last good objects); then a watch from the list's
 * resourceVersion with allowWatchBookmarks. A watch that ends (the server's
 * timeoutSeconds, a cut connection, a line cut mid-event: the partial line
 * is dropped) is resumed from the last complete event's resourceVersion.
 * 410 Gone (HTTP, or an ERROR event whose Status has code 410) relists.
 * Errors back off exponentially (200 ms to 30 s) with jitter, so agents of
 * a whole cluster do not come back in step. 401 re-reads the token.
 * AuthorizationPolicies: 404 (no CRD) or 403 (not granted) on the list
 * means none, re-checked every 60 s.
 *
 * Nothing is published until every stream has listed once; then a change
 * is built at most every 100 ms (events coalesce), and handed over only
 * when the snapshot differs from the last one. Local pods waiting for
 * their cgroup are re-checked every 200 ms.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "k8s/curl_dl.h"
#include "k8s/internal.h"
#include "lib/log.h"
#include "lib/mountinfo.h"

#define BUILD_MIN_MS 100
#define CGROUP_RECHECK_MS 200
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 30000
#define ABSENT_RECHECK_MS 60000
#define LIST_LIMIT 500
#define BODY_MAX (512u << 20)

enum phase { PH_LIST, PH_WATCH };

struct stream {
	struct nm_k8s *k;
	enum nm_k8s_kind kind;
	const char *name;       /* for logs */
	const char *path;       /* /api/v1/pods */
	bool optional;          /* the CRD may be absent */
	enum phase phase;
	bool synced;            /* listed at least once (or absent) */
	char rv[64];
	char cont[1024];
	json_t *listing;        /* objects of the list in progress */
	CURL *easy;
	struct curl_slist *hdrs;
	int64_t next_at;        /* ms; when to start the next request */
	int64_t backoff;
	char *body;             /* list or error body */
	size_t body_len, body_cap;
	struct nm_k8s_lines lines;
	bool relist;            /* set by an ERROR 410 event */
	bool bad;               /* a watch line did not decode */
	unsigned int events;
};

struct nm_k8s {
	struct nm_k8s_conf conf;
	char node[NM_NAME_MAX];
	char cgroup_parent[NM_PATH_MAX];
	char cgroup_root[NM_PATH_MAX];
	char policy_dir[NM_PATH_MAX];
	struct nm_k8s_store store;
	struct stream streams[NM_K8S_KIND_MAX];
	CURLM *multi;
	pthread_t thread;
	bool thread_started;
	int efd;
	pthread_mutex_t mu;
	struct nm_cluster *base;       /* under mu */
	bool base_changed;             /* under mu */
	struct nm_cluster *pending;    /* under mu: the newest snapshot */
	atomic_bool stop;
	/* thread only */
	struct nm_cluster *cur_base;
	struct nm_cluster *last;       /* last published */
	char *last_policies;
	bool dirty;
	int64_t last_build;
	int64_t recheck_at;
	bool warned_node, warned_cgroup;
	unsigned int seed;
};

static const struct {
	const char *name, *path;
	bool optional;
} kinds[NM_K8S_KIND_MAX] = {
	[NM_K8S_PODS] = { "pods", "/api/v1/pods", false },
	[NM_K8S_SERVICES] = { "services", "/api/v1/services", false },
	[NM_K8S_SLICES] = { "endpointslices", "/apis/discovery.k8s.io/v1/endpointslices", false },
	[NM_K8S_NODES] = { "nodes", "/api/v1/nodes", false },
	[NM_K8S_NAMESPACES] = { "namespaces", "/api/v1/namespaces", false },
	[NM_K8S_POLICIES] = { "authorizationpolicies",
			      "/apis/security.istio.io/v1/authorizationpolicies", true },
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- snapshots --------------------------------------------------------------- */

static void *memdup(const void *p, size_t n)
{
	void *q = malloc(n ? n : 1);

	if (q && n)
		memcpy(q, p, n);
	return q;
}

static struct nm_cluster *cluster_dup(const struct nm_cluster *c)
{
	struct nm_cluster *d = memdup(c, sizeof(*c));

	if (!d)
		return NULL;
	d->nodes = memdup(c->nodes, c->n_nodes * sizeof(*c->nodes));
	d->workloads = memdup(c->workloads, c->n_workloads * sizeof(*c->workloads));
	d->services = memdup(c->services, c->n_services * sizeof(*c->services));
	d->forwards = memdup(c->forwards, c->n_forwards * sizeof(*c->forwards));
	if (!d->nodes || !d->workloads || !d->services || !d->forwards) {
		nm_cluster_free(d);
		return NULL;
	}
	return d;
}

/* The policy List into policy_dir/kubernetes.json (atomically). */
static int write_policies(struct nm_k8s *k, const char *json)
{
	char path[NM_PATH_MAX + 32], tmp[NM_PATH_MAX + 40];
	size_t n = strlen(json);
	int fd, ret = 0;

	if (k->last_policies && !strcmp(k->last_policies, json))
		return 0;
	mkdir(k->policy_dir, 0755);
	snprintf(path, sizeof(path), "%s/kubernetes.json", k->policy_dir);
	snprintf(tmp, sizeof(tmp), "%s/.kubernetes.json.tmp", k->policy_dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, json, n) != (ssize_t)n)
		ret = -EIO;
	close(fd);
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		unlink(tmp);
		return ret;
	}
	free(k->last_policies);
	k->last_policies = strdup(json);
	return 0;
}

static void publish(struct nm_k8s *k)
{
	struct nm_k8s_build_opts o = {
		.base = k->cur_base, .node = k->node,
		.cgroup_root = k->cgroup_root, .policy_dir = k->policy_dir,
	};
	struct nm_k8s_build_info info;
	struct nm_cluster *c = NULL, *copy;
	uint64_t one = 1;
	int ret;

	k->dirty = false;
	k->last_build = now_ms();
	if (!k->cgroup_root[0]) {
		char mnt[NM_PATH_MAX];

		if (!nm_cgroup2_mount_point(mnt, sizeof(mnt)) &&
		    !nm_k8s_cgroup_root(mnt, k->cgroup_parent, k->cgroup_root,
					sizeof(k->cgroup_root)))
			pr_info("msg=\"kubepods cgroup found\" cgroup_root=%s", k->cgroup_root);
		else if (!k->warned_cgroup) {
			k->warned_cgroup = true;
			pr_warn("msg=\"no kubepods cgroup (kubepods.slice or kubepods) yet; local pods are not meshed until it appears\" parent=%s",
				k->cgroup_parent[0] ? k->cgroup_parent : "/");
		}
		if (!k->cgroup_root[0])
			k->recheck_at = k->last_build + CGROUP_RECHECK_MS;
	}
	ret = nm_k8s_build(&k->store, &o, &c, &info);
	if (ret == -ENOENT) {
		if (!k->warned_node)
			pr_warn("msg=\"this node is not among the API's Nodes (or has no InternalIP) yet\" node=%s",
				k->node);
		k->warned_node = true;
		return;
	}
	if (ret) {
		pr_warn("msg=\"cannot build a snapshot from the API objects\" err=\"%s\"",
			strerror(-ret));
		k->dirty = true;
		return;
	}
	if (info.waiting_cgroup)
		k->recheck_at = k->last_build + CGROUP_RECHECK_MS;
	/* The node's forwards come from the file, as in standalone mode. */
	free(c->forwards);
	c->forwards = memdup(k->cur_base->forwards,
			     k->cur_base->n_forwards * sizeof(*c->forwards));
	c->n_forwards = c->forwards ? k->cur_base->n_forwards : 0;
	if (info.policies_json && (ret = write_policies(k, info.policies_json)))
		pr_warn("msg=\"cannot write the AuthorizationPolicies for the loader\" dir=%s err=\"%s\"",
			k->policy_dir, strerror(-ret));
	free(info.policies_json);
	if (k->last && nm_k8s_cluster_equal(k->last, c) &&
	    c->n_forwards == k->last->n_forwards) {
		nm_cluster_free(c);
		return;
	}
	copy = cluster_dup(c);
	if (!copy) {
		nm_cluster_free(c);
		k->dirty = true;
		return;
	}
	nm_cluster_free(k->last);
	k->last = c;
	pr_debug("msg=\"kubernetes snapshot\" nodes=%u workloads=%u services=%u policies=%u waiting_cgroup=%u skipped=%u",
		 c->n_nodes, c->n_workloads, c->n_services, info.policies,
		 info.waiting_cgroup, info.skipped);
	pthread_mutex_lock(&k->mu);
	nm_cluster_free(k->pending);
	k->pending = copy;
	pthread_mutex_unlock(&k->mu);
	if (write(k->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("msg=\"cannot signal a new snapshot\" err=\"%s\"", strerror(errno));
}

/* --- requests --------------------------------------------------------------- */

static void backoff(struct stream *s)
{
	int64_t b = s->backoff ? s->backoff * 2 : BACKOFF_MIN_MS;

	if (b > BACKOFF_MAX_MS)
		b = BACKOFF_MAX_MS;
	s->backoff = b;
	/* Half fixed, half random. */
	s->next_at = now_ms() + b / 2 + rand_r(&s->k->seed) % (b / 2 + 1);
}

static size_t on_body(char *p, size_t sz, size_t nm, void *arg);

static int on_line(const char *line, size_t len, void *arg)
{
	struct stream *s = arg;
	struct nm_k8s_event ev;
	char err[256];
	int ret;

	ret = nm_k8s_event_parse(line, len, &ev, err, sizeof(err));
	if (ret) {
		pr_warn("msg=\"bad watch event, relisting\" kind=%s err=\"%s\"", s->name, err);
		s->bad = true;
		return ret;
	}
	s->events++;
	switch (ev.type) {
	case NM_K8S_EV_ERROR:
		if (ev.code == 410) {
			pr_info("msg=\"watch expired (410 Gone), relisting\" kind=%s", s->name);
		} else {
			pr_warn("msg=\"watch error event, relisting\" kind=%s code=%d", s->name, ev.code);
			s->bad = true;
		}
		s->relist = true;
		nm_k8s_event_clear(&ev);
		return -ECANCELED;
	case NM_K8S_EV_BOOKMARK:
		break;
	default:
		ret = nm_k8s_store_apply(s->k->store.objs[s->kind], &ev);
		if (ret > 0)
			s->k->dirty = true;
		pr_debug("msg=\"watch event\" kind=%s type=%d rv=%s changed=%d", s->name,
			 ev.type, ev.rv, ret > 0);
		break;
	}
	if (ev.rv[0])
		snprintf(s->rv, sizeof(s->rv), "%s", ev.rv);
	nm_k8s_event_clear(&ev);
	return 0;
}

static int start(struct stream *s)
{
	struct nm_k8s *k = s->k;
	struct nm_k8s_conf *cf = &k->conf;
	char url[NM_PATH_MAX + 2048], auth[8300];
	CURL *e;

	nm_k8s_token_refresh(&cf->token, false);
	e = curl_easy_init();
	if (!e)
		return -ENOMEM;
	if (s->phase == PH_LIST) {
		char *c = s->cont[0] ? curl_easy_escape(e, s->cont, 0) : NULL;

		snprintf(url, sizeof(url), "%s%s?limit=%d%s%s", cf->server, s->path,
			 LIST_LIMIT, c ? "&continue=" : "", c ? c : "");
		curl_free(c);
		curl_easy_setopt(e, CURLOPT_TIMEOUT, 120L);
	} else {
		/* client-go's spread: 5 to 10 minutes, so watches of many
		 * agents do not end together. */
		long t = 300 + rand_r(&k->seed) % 300;
		char *rv = curl_easy_escape(e, s->rv, 0);

		snprintf(url, sizeof(url),
			 "%s%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%ld",
			 cf->server, s->path, rv ? rv : "", t);
		curl_free(rv);
		curl_easy_setopt(e, CURLOPT_TIMEOUT, t + 30);
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(e, CURLOPT_PRIVATE, s);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "nodemeshd");
	if (cf->ca_blob) {
		struct curl_blob b = { cf->ca_blob, cf->ca_blob_len, CURL_BLOB_NOCOPY };

		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
	} else if (cf->ca_path[0]) {
		curl_easy_setopt(e, CURLOPT_CAINFO, cf->ca_path);
	}
	if (cf->insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (cf->cert_blob) {
		struct curl_blob b = { cf->cert_blob, cf->cert_blob_len, CURL_BLOB_NOCOPY };

		curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b);
		curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
	} else if (cf->cert_path[0]) {
		curl_easy_setopt(e, CURLOPT_SSLCERT, cf->cert_path);
	}
	if (cf->key_blob) {
		struct curl_blob b = { cf->key_blob, cf->key_blob_len, CURL_BLOB_NOCOPY };

		curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b);
		curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
	} else if (cf->key_path[0]) {
		curl_easy_setopt(e, CURLOPT_SSLKEY, cf->key_path);
	}
	s->hdrs = curl_slist_append(NULL, "Accept: application/json");
	if (cf->token.value[0]) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", cf->token.value);
		s->hdrs = curl_slist_append(s->hdrs, auth);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->hdrs);
	s->body_len = 0;
	s->relist = s->bad = false;
	s->events = 0;
	nm_k8s_lines_reset(&s->lines);
	s->easy = e;
	if (curl_multi_add_handle(k->multi, e)) {
		curl_easy_cleanup(e);
		curl_slist_free_all(s->hdrs);
		s->hdrs = NULL;
		s->easy = NULL;
		return -EIO;
	}
	pr_debug("msg=\"kubernetes request\" kind=%s phase=%s rv=%s", s->name,
		 s->phase == PH_LIST ? "list" : "watch", s->rv);
	return 0;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
	struct stream *s = arg;
	size_t n = sz * nm;
	long code = 0;

	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
	if (s->phase == PH_WATCH && code == 200)
		return nm_k8s_lines_feed(&s->lines, p, n, on_line, s) ? 0 : n;
	if (s->body_len + n + 1 > s->body_cap) {
		size_t cap = s->body_cap ? s->body_cap : 65536;
		char *nb;

		while (cap < s->body_len + n + 1)
			cap *= 2;
		if (cap > BODY_MAX || !(nb = realloc(s->body, cap)))
			return 0;
		s->body = nb;
		s->body_cap = cap;
	}
	memcpy(s->body + s->body_len, p, n);
	s->body_len += n;
	s->body[s->body_len] = '\0';
	return n;
}

static void relist(struct stream *s)
{
	s->phase = PH_LIST;
	s->cont[0] = '\0';
	json_decref(s->listing);
	s->listing = NULL;
}

static void list_done(struct stream *s, long code)
{
	struct nm_k8s *k = s->k;
	struct nm_k8s_page pg;
	char err[256];
	json_t *root = NULL, *it;
	size_t i;

	if (code == 410) { /* the continue token expired */
		pr_info("msg=\"list continue expired (410 Gone), listing again\" kind=%s", s->name);
		relist(s);
		s->next_at = now_ms();
		return;
	}
	if (s->optional && (code == 404 || code == 403)) {
		if (k->store.policies_present || !s->synced)
			pr_info("msg=\"no AuthorizationPolicies: %s; re-checked every 60 s\" kind=%s",
				code == 404 ? "the CRD is not installed" : "not allowed to list them",
				s->name);
		if (k->store.policies_present) {
			k->store.policies_present = false;
			json_object_clear(k->store.objs[s->kind]);
			k->dirty = true;
		}
		s->synced = true;
		relist(s);
		s->next_at = now_ms() + ABSENT_RECHECK_MS;
		return;
	}
	if (code != 200 || nm_k8s_page_parse(s->body, s->body_len, &root, &pg, err,
					      sizeof(err))) {
		pr_warn("msg=\"list failed, keeping the last good objects\" kind=%s http=%ld err=\"%s\"",
			s->name, code, code == 200 ? err : "");
		if (code == 401)
			nm_k8s_token_refresh(&k->conf.token, true);
		relist(s);
		backoff(s);
		return;
	}
	if (!s->listing)
		s->listing = json_object();
	json_array_foreach(pg.items, i, it) {
		char key[2 * 256];

		if (!nm_k8s_obj_key(it, key, sizeof(key)))
			json_object_set(s->listing, key, it);
	}
	json_decref(root);
	if (pg.cont[0]) {
		snprintf(s->cont, sizeof(s->cont), "%s", pg.cont);
		s->next_at = now_ms();
		return;
	}
	/* The whole list is in: it replaces what the stream held. */
	if (!json_equal(k->store.objs[s->kind], s->listing))
		k->dirty = true;
	json_decref(k->store.objs[s->kind]);
	k->store.objs[s->kind] = s->listing;
	s->listing = NULL;
	if (s->optional && !k->store.policies_present) {
		k->store.policies_present = true;
		k->dirty = true;
	}
	snprintf(s->rv, sizeof(s->rv), "%s", pg.rv);
	s->cont[0] = '\0';
	s->phase = PH_WATCH;
	if (!s->synced)
		pr_info("msg=\"listed\" kind=%s objects=%zu rv=%s", s->name,
			json_object_size(k->store.objs[s->kind]), s->rv);
	s->synced = true;
	s->backoff = 0;
	s->next_at = now_ms();
}

static void watch_done(struct stream *s, CURLcode res, long code)
{
	if (s->relist) {
		relist(s);
		if (s->bad)
			backoff(s);
		else
			s->next_at = now_ms();
		return;
	}
	if (s->bad) {
		relist(s);
		backoff(s);
		return;
	}
	if (code == 410 || (code != 200 && nm_k8s_status_code(s->body, s->body_len) == 410)) {
		pr_info("msg=\"watch expired (410 Gone), relisting\" kind=%s", s->name);
		relist(s);
		/* The server answered: it is back, so an outage's back-off
		 * must not slow the relist down. */
		s->backoff = 0;
		s->next_at = now_ms();
		return;
	}
	if (code != 200) {
		pr_warn("msg=\"watch refused, retrying\" kind=%s http=%ld", s->name, code);
		if (code == 401)
			nm_k8s_token_refresh(&s->k->conf.token, true);
		backoff(s);
		return;
	}
	if (res != CURLE_OK) {
		/* Cut: resume from the last complete event. */
		pr_info("msg=\"watch cut, resuming\" kind=%s rv=%s err=\"%s\" partial_bytes=%zu",
			s->name, s->rv, curl_easy_strerror(res), s->lines.len);
		if (s->events)
			s->backoff = 0;
		backoff(s);
		return;
	}
	/* The server's timeoutSeconds: go on at once. */
	s->backoff = 0;
	s->next_at = now_ms();
}

static void on_done(struct nm_k8s *k, CURL *e, CURLcode res)
{
	struct stream *s = NULL;
	long code = 0;

	curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(k->multi, e);
	curl_easy_cleanup(e);
	curl_slist_free_all(s->hdrs);
	s->hdrs = NULL;
	s->easy = NULL;
	if (s->phase == PH_LIST) {
		if (res != CURLE_OK) {
			pr_warn("msg=\"list failed, keeping the last good objects\" kind=%s err=\"%s\"",
				s->name, curl_easy_strerror(res));
			relist(s);
			backoff(s);
			return;
		}
		list_done(s, code);
	} else {
		watch_done(s, res, code);
	}
	nm_k8s_lines_reset(&s->lines);
}

static bool all_synced(const struct nm_k8s *k)
{
	for (int i = 0; i < NM_K8S_KIND_MAX; i++)
		if (!k->streams[i].synced)
			return false;
	return true;
}

static void *run(void *arg)
{
	struct nm_k8s *k = arg;

	while (!k->stop) {
		int64_t now = now_ms(), wake = now + 1000;
		CURLMsg *m;
		int running, left;

		pthread_mutex_lock(&k->mu);
		if (k->base_changed) {
			nm_cluster_free(k->cur_base);
			k->cur_base = k->base;
			k->base = NULL;
			k->base_changed = false;
			k->dirty = true;
		}
		pthread_mutex_unlock(&k->mu);
		for (int i = 0; i < NM_K8S_KIND_MAX; i++) {
			struct stream *s = &k->streams[i];

			if (!s->easy && now >= s->next_at && start(s))
				backoff(s);
			if (!s->easy && s->next_at < wake)
				wake = s->next_at;
		}
		curl_multi_perform(k->multi, &running);
		while ((m = curl_multi_info_read(k->multi, &left)))
			if (m->msg == CURLMSG_DONE)
				on_done(k, m->easy_handle, m->data.result);
		now = now_ms();
		if (k->recheck_at && now >= k->recheck_at) {
			k->recheck_at = 0;
			k->dirty = true;
		}
		if (k->dirty && all_synced(k)) {
			if (now - k->last_build >= BUILD_MIN_MS)
				publish(k);
			else if (k->last_build + BUILD_MIN_MS < wake)
				wake = k->last_build + BUILD_MIN_MS;
		}
		if (k->dirty && all_synced(k) && k->last_build + BUILD_MIN_MS < wake)
			wake = k->last_build + BUILD_MIN_MS;
		if (k->recheck_at && k->recheck_at < wake)
			wake = k->recheck_at;
		for (int i = 0; i < NM_K8S_KIND_MAX; i++)
			if (!k->streams[i].easy && k->streams[i].next_at < wake)
				wake = k->streams[i].next_at;
		now = now_ms();
		curl_multi_poll(k->multi, NULL, 0,
				wake > now ? (int)(wake - now) : 0, NULL);
	}
	return NULL;
}

/* --- API ----------------------------------------------------------------------- */

int nm_k8s_start(const struct nm_k8s_opts *o, const struct nm_cluster *base,
		 struct nm_k8s **out)
{
	sigset_t all, old_mask;
	char why[160];
	struct nm_k8s *k;
	int ret;

	*out = NULL;
	if (!o->node || !o->node[0] || strlen(o->node) >= NM_NAME_MAX) {
		pr_warn("msg=\"--kubernetes needs this node's name: set NODE_NAME or pass --node\"");
		return -EINVAL;
	}
	ret = nm_curl_load(why, sizeof(why));
	if (ret) {
		pr_warn("msg=\"kubernetes source needs libcurl\" err=\"%s\"", why);
		return ret;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->efd = -1;
	pthread_mutex_init(&k->mu, NULL);
	ret = nm_k8s_conf_load(&k->conf, o->kubeconfig, o->sa_dir);
	if (ret)
		goto fail;
	snprintf(k->node, sizeof(k->node), "%s", o->node);
	snprintf(k->cgroup_parent, sizeof(k->cgroup_parent), "%s",
		 o->cgroup_parent ? o->cgroup_parent : "");
	snprintf(k->policy_dir, sizeof(k->policy_dir), "%s",
		 o->policy_dir ? o->policy_dir : "");
	k->seed = (unsigned int)now_ms() ^ (unsigned int)getpid();
	ret = -ENOMEM;
	if (nm_k8s_store_init(&k->store) || !(k->cur_base = cluster_dup(base)))
		goto fail;
	for (int i = 0; i < NM_K8S_KIND_MAX; i++) {
		struct stream *s = &k->streams[i];

		s->k = k;
		s->kind = (enum nm_k8s_kind)i;
		s->name = kinds[i].name;
		s->path = kinds[i].path;
		s->optional = kinds[i].optional;
	}
	k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (k->efd < 0) {
		ret = -errno;
		goto fail;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	k->multi = curl_multi_init();
	if (!k->multi)
		goto fail;
	curl_multi_setopt(k->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	/* The thread takes no process signal: it is created before the main
	 * thread blocks SIGTERM for its signalfd, and a thread that inherited
	 * an open mask would take the kubelet's SIGTERM and die of it, with
	 * no shutdown (connections, pins, run state). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old_mask);
	ret = -pthread_create(&k->thread, NULL, run, k);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	if (ret)
		goto fail;
	k->thread_started = true;
	pr_info("msg=\"kubernetes source started\" server=%s node=%s auth=%s",
		k->conf.server, k->node,
		k->conf.token.value[0] ? "token" :
		(k->conf.cert_blob || k->conf.cert_path[0]) ? "client-certificate" : "none");
	*out = k;
	return 0;
fail:
	nm_k8s_stop(k);
	return ret;
}

int nm_k8s_fd(const struct nm_k8s *k)
{
	return k->efd;
}

struct nm_cluster *nm_k8s_take(struct nm_k8s *k)
{
	struct nm_cluster *c;
	uint64_t v;

	if (read(k->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pr_debug("msg=\"eventfd read\" err=\"%s\"", strerror(errno));
	pthread_mutex_lock(&k->mu);
	c = k->pending;
	k->pending = NULL;
	pthread_mutex_unlock(&k->mu);
	return c;
}

void nm_k8s_set_base(struct nm_k8s *k, const struct nm_cluster *base)
{
	struct nm_cluster *b = cluster_dup(base);

	if (!b)
		return;
	pthread_mutex_lock(&k->mu);
	nm_cluster_free(k->base);
	k->base = b;
	k->base_changed = true;
	pthread_mutex_unlock(&k->mu);
	curl_multi_wakeup(k->multi);
}

/* What write_policies() wrote is a copy of what the API served, not a
 * cache (the next start waits for a fresh snapshot): it goes with the
 * source. */
static void remove_policies(const struct nm_k8s *k)
{
	char path[NM_PATH_MAX + 32];

	if (!k->policy_dir[0])
		return;
	snprintf(path, sizeof(path), "%s/kubernetes.json", k->policy_dir);
	unlink(path);
	rmdir(k->policy_dir);
}

void nm_k8s_stop(struct nm_k8s *k)
{
	if (!k)
		return;
	if (k->thread_started) {
		k->stop = true;
		curl_multi_wakeup(k->multi);
		pthread_join(k->thread, NULL);
	}
	remove_policies(k);
	for (int i = 0; i < NM_K8S_KIND_MAX; i++) {
		struct stream *s = &k->streams[i];

		if (s->easy) {
			curl_multi_remove_handle(k->multi, s->easy);
			curl_easy_cleanup(s->easy);
		}
		curl_slist_free_all(s->hdrs);
		json_decref(s->listing);
		free(s->body);
		nm_k8s_lines_free(&s->lines);
	}
	if (k->multi)
		curl_multi_cleanup(k->multi);
	if (k->efd >= 0)
		close(k->efd);
	nm_k8s_store_free(&k->store);
	nm_k8s_conf_free(&k->conf);
	nm_cluster_free(k->base);
	nm_cluster_free(k->cur_base);
	nm_cluster_free(k->pending);
	nm_cluster_free(k->last);
	free(k->last_policies);
	pthread_mutex_destroy(&k->mu);
	free(k);
}
