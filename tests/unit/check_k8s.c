// SPDX-License-Identifier: Apache-2.0
/*
 * check_k8s.c - the Kubernetes source's pure parts (agent/k8s): list pages
 * and watch event lines as the API sends them (tests/fixtures/k8s: paged
 * lists, ADDED/MODIFIED/BOOKMARK/DELETED, a line cut mid-event, ERROR 410),
 * the snapshot built from them (which pods are workloads, identities,
 * services and named targetPorts, policies), pods whose cgroup appears
 * late, and pod cgroup resolution over a table of real kubelet layouts in
 * a temporary tree.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "k8s/k8s.h"
#include "lib/file.h"
#include "nm_check.h"
#include "state/state.h"

#define FIX "tests/fixtures/k8s/"
#define UID_CLIENT "11111111-2222-4333-8444-000000000101"
#define UID_LOCAL_ECHO "11111111-2222-4333-8444-000000000102"
#define UID_ECHO2 "11111111-2222-4333-8444-000000000105"

static char *slurp(const char *path, size_t *len)
{
	char *buf = NULL;
	size_t l;

	ck_assert_int_eq(nm_file_read(path, 0, &buf, &l, NULL), 0);
	if (len)
		*len = l;
	return buf;
}

/* A temporary folder standing in for the cgroup v2 mount. */
static char tmp[64];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static void tmp_setup(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/check_k8s.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static void tmp_teardown(void)
{
	nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void mkdirs(const char *rel)
{
	char p[1024], *s;

	snprintf(p, sizeof(p), "%s/%s", tmp, rel);
	for (s = p + strlen(tmp) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		mkdir(p, 0755);
		*s = '/';
	}
	ck_assert(mkdir(p, 0755) == 0 || errno == EEXIST);
}

/* --- decoding ------------------------------------------------------------- */

START_TEST(test_page)
{
	struct nm_k8s_page pg;
	char err[256], *b;
	json_t *root;
	size_t len;

	b = slurp(FIX "pods-page1.json", &len);
	ck_assert_int_eq(nm_k8s_page_parse(b, len, &root, &pg, err, sizeof(err)), 0);
	ck_assert_uint_eq(json_array_size(pg.items), 3);
	ck_assert_str_eq(pg.rv, "1300");
	ck_assert(strncmp(pg.cont, "eyJ2Ijoib", 9) == 0);
	/* managedFields are dropped on the way in */
	ck_assert_ptr_null(json_object_get(json_object_get(json_array_get(pg.items, 0),
							    "metadata"), "managedFields"));
	json_decref(root);
	free(b);
	b = slurp(FIX "pods-page2.json", &len);
	ck_assert_int_eq(nm_k8s_page_parse(b, len, &root, &pg, err, sizeof(err)), 0);
	ck_assert_str_eq(pg.cont, "");
	json_decref(root);
	free(b);
	/* not a list */
	b = slurp(FIX "status-410.json", &len);
	ck_assert_int_eq(nm_k8s_page_parse(b, len, &root, &pg, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(root);
	ck_assert_ptr_nonnull(strstr(err, "Status"));
	ck_assert_int_eq(nm_k8s_status_code(b, len), 410);
	ck_assert_int_eq(nm_k8s_status_code("{\"kind\":\"PodList\"}", 18), 0);
	free(b);
	/* "items": null is an empty list */
	ck_assert_int_eq(nm_k8s_page_parse("{\"kind\":\"PodList\",\"items\":null,\"metadata\":{\"resourceVersion\":\"5\"}}",
					   66, &root, &pg, err, sizeof(err)), 0);
	ck_assert_uint_eq(json_array_size(pg.items), 0);
	json_decref(root);
}
END_TEST

struct collected {
	struct nm_k8s_event ev[8];
	unsigned int n;
	json_t *map;
};

static int collect(const char *line, size_t len, void *arg)
{
	struct collected *c = arg;
	char err[256];

	ck_assert_uint_lt(c->n, 8);
	ck_assert_msg(nm_k8s_event_parse(line, len, &c->ev[c->n], err, sizeof(err)) == 0,
		      "%s", err);
	if (c->map)
		ck_assert_int_ge(nm_k8s_store_apply(c->map, &c->ev[c->n]), 0);
	c->n++;
	return 0;
}

START_TEST(test_watch_lines)
{
	/* Chunk sizes that cut lines and even the JSON anywhere. */
	static const size_t chunks[] = { 1, 7, 100, 4096, 1 << 20 };
	size_t len, off, step = chunks[_i];
	char *b = slurp(FIX "watch-pods.jsonl", &len);
	struct nm_k8s_lines lb = { 0 };
	struct collected c = { .map = json_object() };

	for (off = 0; off < len; off += step)
		ck_assert_int_eq(nm_k8s_lines_feed(&lb, b + off,
						   len - off < step ? len - off : step,
						   collect, &c), 0);
	/* Four complete events; the cut fifth waits (and is then dropped). */
	ck_assert_uint_eq(c.n, 4);
	ck_assert_uint_gt(lb.len, 0);
	ck_assert(memmem(lb.buf, lb.len, "\"cut\"", 5) != NULL);
	ck_assert_int_eq(c.ev[0].type, NM_K8S_EV_ADDED);
	ck_assert_str_eq(c.ev[0].rv, "1301");
	ck_assert_int_eq(c.ev[1].type, NM_K8S_EV_MODIFIED);
	ck_assert_int_eq(c.ev[2].type, NM_K8S_EV_BOOKMARK);
	ck_assert_str_eq(c.ev[2].rv, "1350");
	ck_assert_int_eq(c.ev[3].type, NM_K8S_EV_DELETED);
	ck_assert_str_eq(c.ev[3].rv, "1351");
	/* The map holds echo-2 as last modified; the delete of an object it
	 * never had changed nothing. */
	ck_assert_uint_eq(json_object_size(c.map), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(
				 json_object_get(c.map, "default/echo-2"), "status"), "phase")),
			 "Running");
	nm_k8s_lines_reset(&lb);
	ck_assert_uint_eq(lb.len, 0);
	for (unsigned int i = 0; i < c.n; i++)
		nm_k8s_event_clear(&c.ev[i]);
	nm_k8s_lines_free(&lb);
	json_decref(c.map);
	free(b);
}
END_TEST

START_TEST(test_watch_error)
{
	size_t len;
	char *b = slurp(FIX "watch-410.jsonl", &len), err[256];
	struct nm_k8s_event ev;

	ck_assert_int_eq(nm_k8s_event_parse(b, len, &ev, err, sizeof(err)), 0);
	ck_assert_int_eq(ev.type, NM_K8S_EV_ERROR);
	ck_assert_int_eq(ev.code, 410);
	nm_k8s_event_clear(&ev);
	free(b);
	/* What is refused, and said so. */
	ck_assert_int_eq(nm_k8s_event_parse("{\"type\":\"ADDED\"", 15, &ev, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "not JSON"));
	ck_assert_int_eq(nm_k8s_event_parse("{\"type\":\"SYNC\",\"object\":{}}", 27, &ev, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "unknown type"));
	ck_assert_int_eq(nm_k8s_event_parse("{\"type\":\"ADDED\",\"object\":{\"metadata\":{}}}", 41, &ev, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "metadata.name"));
	ck_assert_int_eq(nm_k8s_event_parse("{\"type\":\"ADDED\",\"object\":[]}", 28, &ev, err, sizeof(err)), -EINVAL);
}
END_TEST

/* --- snapshot ----------------------------------------------------------------- */

static struct nm_k8s_store st;
static struct nm_cluster *base;
static char root[1024], pdir[1024];

static void load_list(enum nm_k8s_kind k, const char *file)
{
	struct nm_k8s_page pg;
	char err[256], *b, key[512];
	json_t *r, *it;
	size_t len, i;

	b = slurp(file, &len);
	ck_assert_msg(nm_k8s_page_parse(b, len, &r, &pg, err, sizeof(err)) == 0, "%s", err);
	json_array_foreach(pg.items, i, it) {
		ck_assert_int_eq(nm_k8s_obj_key(it, key, sizeof(key)), 0);
		json_object_set(st.objs[k], key, it);
	}
	json_decref(r);
	free(b);
}

static void snap_setup(void)
{
	static const char cfg[] = "{\"trustDomain\":\"cluster.local\",\"certDir\":\"/etc/nodemesh/certs\","
				  "\"mesh\":{\"failMode\":\"open\"},\"policy\":{\"applyToExisting\":true}}";
	char err[512];

	tmp_setup();
	ck_assert_int_eq(nm_cluster_load_buf(cfg, strlen(cfg), "mesh.json", &base, err,
					     sizeof(err)), 0);
	ck_assert_int_eq(nm_k8s_store_init(&st), 0);
	load_list(NM_K8S_NODES, FIX "nodes.json");
	load_list(NM_K8S_NAMESPACES, FIX "namespaces.json");
	load_list(NM_K8S_PODS, FIX "pods-page1.json");
	load_list(NM_K8S_PODS, FIX "pods-page2.json");
	load_list(NM_K8S_SERVICES, FIX "services.json");
	load_list(NM_K8S_SLICES, FIX "endpointslices.json");
	load_list(NM_K8S_POLICIES, FIX "authorizationpolicies.json");
	st.policies_present = true;
	mkdirs("kubepods/besteffort/pod" UID_CLIENT);
	mkdirs("kubepods/pod" UID_LOCAL_ECHO);
	snprintf(root, sizeof(root), "%s/kubepods", tmp);
	snprintf(pdir, sizeof(pdir), "%s/policies", tmp);
}

static void snap_teardown(void)
{
	nm_k8s_store_free(&st);
	nm_cluster_free(base);
	tmp_teardown();
}

static struct nm_cluster *build(struct nm_k8s_build_info *info)
{
	struct nm_k8s_build_opts o = { .base = base, .node = "node-1",
				       .cgroup_root = root, .policy_dir = pdir };
	struct nm_cluster *c = NULL;

	ck_assert_int_eq(nm_k8s_build(&st, &o, &c, info), 0);
	return c;
}

static const struct nm_workload_cfg *wl(const struct nm_cluster *c, const char *ns,
					const char *name)
{
	int i = nm_cluster_find_workload(c, ns, name);

	return i < 0 ? NULL : &c->workloads[i];
}

static const struct nm_service_cfg *svc(const struct nm_cluster *c, const char *name)
{
	for (unsigned int i = 0; i < c->n_services; i++)
		if (!strcmp(c->services[i].name, name))
			return &c->services[i];
	return NULL;
}

START_TEST(test_snapshot)
{
	struct nm_k8s_build_info info;
	struct nm_cluster *c = build(&info);
	const struct nm_workload_cfg *w;
	const struct nm_service_cfg *s;
	char ip[64];

	/* Settings come from the file. */
	ck_assert_str_eq(c->trust_domain, "cluster.local");
	ck_assert_str_eq(c->cert_dir, "/etc/nodemesh/certs");
	ck_assert_int_eq(c->mesh.fail_mode, NM_CFG_FAIL_OPEN);
	ck_assert(c->policy_apply_to_existing);
	ck_assert_str_eq(c->policy_dir, pdir);
	/* Nodes: node-3 has no InternalIP. */
	ck_assert_uint_eq(c->n_nodes, 2);
	ck_assert_str_eq(c->nodes[0].name, "node-1");
	/* Only the topology labels travel (locality for load balancing). */
	ck_assert_uint_eq(c->nodes[0].n_labels, 1);
	ck_assert_str_eq(c->nodes[0].labels[0].key, "topology.kubernetes.io/zone");
	ck_assert_str_eq(c->nodes[0].labels[0].value, "zone-a");
	ck_assert_str_eq(c->nodes[0].cgroup_root, root);
	ck_assert_str_eq(c->nodes[1].cgroup_root, "");
	nm_addr_format(&c->nodes[1].addr, ip, sizeof(ip));
	ck_assert_str_eq(ip, "198.18.0.2");
	ck_assert(c->nodes[1].has_addr6);
	/* Workloads: meshed, Running, with an IP, not hostNetwork. */
	ck_assert_uint_eq(c->n_workloads, 4);
	ck_assert_ptr_null(wl(c, "default", "pending"));
	ck_assert_ptr_null(wl(c, "default", "hostnet"));
	ck_assert_ptr_null(wl(c, "plain", "unmeshed"));
	w = wl(c, "default", "client");
	ck_assert_ptr_nonnull(w);
	ck_assert_str_eq(w->sa, "client");
	ck_assert_str_eq(c->nodes[w->node].name, "node-1");
	ck_assert_ptr_nonnull(strstr(w->cgroup, "/kubepods/besteffort/pod" UID_CLIENT));
	ck_assert_uint_eq(w->n_labels, 1);
	ck_assert_str_eq(w->labels[0].key, "app");
	w = wl(c, "default", "local-echo");
	ck_assert_ptr_nonnull(w);
	ck_assert_str_eq(w->sa, "default"); /* no serviceAccountName */
	ck_assert_ptr_nonnull(strstr(w->cgroup, "/kubepods/pod" UID_LOCAL_ECHO));
	w = wl(c, "default", "echo");
	ck_assert_ptr_nonnull(w);
	ck_assert_str_eq(w->cgroup, ""); /* remote: no cgroup here */
	ck_assert(w->has_ip6);
	nm_addr_format(&w->ip, ip, sizeof(ip));
	ck_assert_str_eq(ip, "198.18.2.11");
	w = wl(c, "plain", "annotated"); /* the pod annotation meshes it */
	ck_assert_ptr_nonnull(w);
	ck_assert_str_eq(w->sa, "a");
	/* Services: named targetPorts resolved, UDP dropped. */
	ck_assert_uint_eq(c->n_services, 2);
	s = svc(c, "echo");
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->n_ports, 2);
	ck_assert_uint_eq(s->ports[0].port, 80);
	ck_assert_uint_eq(s->ports[0].target_port, 8080); /* from the EndpointSlice */
	ck_assert_uint_eq(s->ports[1].port, 8081);
	ck_assert_uint_eq(s->ports[1].target_port, 8080);
	ck_assert_uint_eq(s->n_selector, 1);
	s = svc(c, "echo-local");
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->ports[0].target_port, 9090); /* the pod's port "web" */
	ck_assert_ptr_null(svc(c, "headless"));
	ck_assert_ptr_null(svc(c, "kubernetes"));
	ck_assert_ptr_null(svc(c, "ext"));
	/* Policies: the valid one kept, the one Istio would refuse left out. */
	ck_assert_uint_eq(info.policies, 1);
	ck_assert_ptr_nonnull(strstr(info.policies_json, "echo-allow-client"));
	ck_assert_ptr_null(strstr(info.policies_json, "\"broken\""));
	ck_assert_uint_eq(info.waiting_cgroup, 0);
	free(info.policies_json);
	nm_cluster_free(c);
}
END_TEST

static int fake_cgroup_id(const char *cg, uint64_t *id, void *arg)
{
	*id = strlen(cg) * 1000 + (unsigned char)cg[strlen(cg) - 1];
	return 0;
}

/* The snapshot is a valid cluster: the state model takes it. */
START_TEST(test_snapshot_state)
{
	struct nm_k8s_build_info info;
	struct nm_cluster *c = build(&info);
	struct nm_state_opts so = { .self_node = "node-1", .generation = 1,
				    .cgroup_id = fake_cgroup_id };
	struct nm_state *state = NULL;
	struct nm_ids *ids = NULL;
	char err[512];

	ck_assert_int_eq(nm_ids_create(&ids), 0);
	ck_assert_msg(nm_state_build(c, ids, &so, &state, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(state->n_workloads, 4);
	ck_assert_str_eq(state->self->cfg->name, "node-1");
	nm_state_free(state);
	nm_ids_free(ids);
	/* Unknown node: not built until the API knows it. */
	{
		struct nm_k8s_build_opts o = { .base = base, .node = "node-9" };
		struct nm_cluster *x = NULL;
		struct nm_k8s_build_info i2;

		ck_assert_int_eq(nm_k8s_build(&st, &o, &x, &i2), -ENOENT);
		ck_assert_ptr_null(x);
	}
	/* Same objects, same bytes. */
	{
		struct nm_k8s_build_info i2;
		struct nm_cluster *d = build(&i2);

		ck_assert(nm_k8s_cluster_equal(c, d));
		d->workloads[0].labels[0].value[0] = 'X';
		ck_assert(!nm_k8s_cluster_equal(c, d));
		free(i2.policies_json);
		nm_cluster_free(d);
	}
	free(info.policies_json);
	nm_cluster_free(c);
}
END_TEST

/* Sets metadata.annotations[key] of the stored pod `name` (NULL: removes). */
static void pod_annotate(const char *name, const char *key, const char *val)
{
	const char *k;
	json_t *pod;

	json_object_foreach(st.objs[NM_K8S_PODS], k, pod) {
		json_t *md = json_object_get(pod, "metadata"), *ann;

		if (strcmp(json_string_value(json_object_get(md, "name")), name))
			continue;
		ann = json_object_get(md, "annotations");
		if (!ann) {
			ann = json_object();
			json_object_set_new(md, "annotations", ann);
		}
		if (val)
			json_object_set_new(ann, key, json_string(val));
		else
			json_object_del(ann, key);
	}
}

/* nodemesh.io/mode: STRICT, PERMISSIVE, absent (UNSET), anything else STRICT. */
START_TEST(test_snapshot_mode)
{
	static const struct {
		const char *val;
		enum nm_inbound_mode want;
	} cases[] = {
		{ NULL, NM_MODE_UNSET },
		{ "STRICT", NM_MODE_STRICT },
		{ "PERMISSIVE", NM_MODE_PERMISSIVE },
		{ "strict", NM_MODE_STRICT }, /* unknown: fail closed */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct nm_k8s_build_info info;
		struct nm_cluster *c;

		pod_annotate("local-echo", NM_K8S_MODE_ANNOTATION, cases[i].val);
		c = build(&info);
		ck_assert_ptr_nonnull(wl(c, "default", "local-echo"));
		ck_assert_int_eq(wl(c, "default", "local-echo")->mode, cases[i].want);
		ck_assert_int_eq(wl(c, "default", "client")->mode, NM_MODE_UNSET);
		free(info.policies_json);
		nm_cluster_free(c);
	}
}
END_TEST

START_TEST(test_snapshot_cgroup_late)
{
	struct nm_k8s_build_info info;
	struct nm_cluster *c;
	struct collected col = { .map = st.objs[NM_K8S_PODS] };
	struct nm_k8s_lines lb = { 0 };
	size_t len;
	char *b = slurp(FIX "watch-pods.jsonl", &len);

	/* The watch: echo-2 added and Running on node-1, client deleted. */
	ck_assert_int_eq(nm_k8s_lines_feed(&lb, b, len, collect, &col), 0);
	ck_assert_uint_eq(col.n, 4);
	c = build(&info);
	ck_assert_ptr_null(wl(c, "default", "client"));
	/* echo-2's cgroup is not there yet: left out, counted. */
	ck_assert_ptr_null(wl(c, "default", "echo-2"));
	ck_assert_uint_eq(info.waiting_cgroup, 1);
	free(info.policies_json);
	nm_cluster_free(c);
	mkdirs("kubepods/besteffort/pod" UID_ECHO2);
	c = build(&info);
	ck_assert_ptr_nonnull(wl(c, "default", "echo-2"));
	ck_assert_str_eq(wl(c, "default", "echo-2")->sa, "echo");
	ck_assert_uint_eq(info.waiting_cgroup, 0);
	free(info.policies_json);
	nm_cluster_free(c);
	for (unsigned int i = 0; i < col.n; i++)
		nm_k8s_event_clear(&col.ev[i]);
	nm_k8s_lines_free(&lb);
	free(b);
}
END_TEST

/* --- cgroups: a table of real layouts --------------------------------------- */

static const struct layout {
	const char *what;
	const char *parent;   /* kubelet --cgroup-root, relative to the mount */
	const char *mkdir;    /* the pod's cgroup as the kubelet makes it */
	const char *root;     /* expected kubepods root */
	const char *qos;
	const char *uid;
} layouts[] = {
	{ "cgroupfs v2 burstable", "", "kubepods/burstable/pod0a1b2c3d-0000-4000-8000-000000000001",
	  "kubepods", "Burstable", "0a1b2c3d-0000-4000-8000-000000000001" },
	{ "cgroupfs v2 besteffort", "", "kubepods/besteffort/pod0a1b2c3d-0000-4000-8000-000000000002",
	  "kubepods", "BestEffort", "0a1b2c3d-0000-4000-8000-000000000002" },
	{ "cgroupfs v2 guaranteed", "", "kubepods/pod0a1b2c3d-0000-4000-8000-000000000003",
	  "kubepods", "Guaranteed", "0a1b2c3d-0000-4000-8000-000000000003" },
	{ "systemd v2 burstable", "",
	  "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_0000_4000_8000_000000000004.slice",
	  "kubepods.slice", "Burstable", "0a1b2c3d-0000-4000-8000-000000000004" },
	{ "systemd v2 besteffort", "",
	  "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b2c3d_0000_4000_8000_000000000005.slice",
	  "kubepods.slice", "BestEffort", "0a1b2c3d-0000-4000-8000-000000000005" },
	{ "systemd v2 guaranteed", "",
	  "kubepods.slice/kubepods-pod0a1b2c3d_0000_4000_8000_000000000006.slice",
	  "kubepods.slice", "Guaranteed", "0a1b2c3d-0000-4000-8000-000000000006" },
	/* Hybrid v1 hosts: the unified mount holds the same tree. */
	{ "systemd v1 hybrid unified, qosClass unknown", "",
	  "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_0000_4000_8000_000000000007.slice",
	  "kubepods.slice", "", "0a1b2c3d-0000-4000-8000-000000000007" },
	{ "cgroupfs v1 hybrid unified, qosClass wrong", "",
	  "kubepods/besteffort/pod0a1b2c3d-0000-4000-8000-000000000008",
	  "kubepods", "Burstable", "0a1b2c3d-0000-4000-8000-000000000008" },
	/* kind: --cgroup-root=/kubelet (cgroupfs) */
	{ "cgroupfs with --cgroup-root=/kubelet", "/kubelet",
	  "kubelet/kubepods/burstable/pod0a1b2c3d-0000-4000-8000-000000000009",
	  "kubelet/kubepods", "Burstable", "0a1b2c3d-0000-4000-8000-000000000009" },
	/* systemd with --cgroup-root=kubelet.slice */
	{ "systemd with --cgroup-root=kubelet.slice", "kubelet.slice",
	  "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod0a1b2c3d_0000_4000_8000_000000000010.slice",
	  "kubelet.slice/kubelet-kubepods.slice", "BestEffort", "0a1b2c3d-0000-4000-8000-000000000010" },
	/* the parent names the kubepods root itself */
	{ "parent is the root", "kubepods", "kubepods/pod0a1b2c3d-0000-4000-8000-000000000011",
	  "kubepods", "Guaranteed", "0a1b2c3d-0000-4000-8000-000000000011" },
};

START_TEST(test_cgroup_layouts)
{
	const struct layout *l = &layouts[_i];
	char r[1024], p[1024], want[1024];

	tmp_setup();
	mkdirs(l->mkdir);
	ck_assert_msg(nm_k8s_cgroup_root(tmp, l->parent, r, sizeof(r)) == 0, "%s: root", l->what);
	snprintf(want, sizeof(want), "%s/%s", tmp, l->root);
	ck_assert_msg(!strcmp(r, want), "%s: root %s, want %s", l->what, r, want);
	ck_assert_msg(nm_k8s_cgroup_pod(r, l->uid, l->qos, p, sizeof(p)) == 0, "%s: pod", l->what);
	snprintf(want, sizeof(want), "%s/%s", tmp, l->mkdir);
	ck_assert_msg(!strcmp(p, want), "%s: pod %s, want %s", l->what, p, want);
	/* Another pod is not there (yet). */
	ck_assert_int_eq(nm_k8s_cgroup_pod(r, "0a1b2c3d-0000-4000-8000-0000000000ff", l->qos,
					   p, sizeof(p)), -ENOENT);
	tmp_teardown();
}
END_TEST

START_TEST(test_cgroup_edges)
{
	char r[1024], p[1024];

	tmp_setup();
	ck_assert_int_eq(nm_k8s_cgroup_root(tmp, "", r, sizeof(r)), -ENOENT);
	mkdirs("kubepods/burstable");
	ck_assert_int_eq(nm_k8s_cgroup_root(tmp, "", r, sizeof(r)), 0);
	/* A uid that would walk out of the tree is refused. */
	ck_assert_int_eq(nm_k8s_cgroup_pod(r, "../../etc", "", p, sizeof(p)), -EINVAL);
	ck_assert_int_eq(nm_k8s_cgroup_pod(r, "", "", p, sizeof(p)), -EINVAL);
	ck_assert_int_eq(nm_k8s_cgroup_pod(r, "abc", "", p, 8), -ENAMETOOLONG);
	tmp_teardown();
}
END_TEST

static Suite *k8s_suite(void)
{
	Suite *s = suite_create("k8s");
	TCase *tc = tcase_create("decode");
	TCase *ts = tcase_create("snapshot");
	TCase *tg = tcase_create("cgroup");

	tcase_add_test(tc, test_page);
	tcase_add_loop_test(tc, test_watch_lines, 0, 5);
	tcase_add_test(tc, test_watch_error);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(ts, snap_setup, snap_teardown);
	tcase_add_test(ts, test_snapshot);
	tcase_add_test(ts, test_snapshot_state);
	tcase_add_test(ts, test_snapshot_mode);
	tcase_add_test(ts, test_snapshot_cgroup_late);
	suite_add_tcase(s, ts);
	tcase_add_loop_test(tg, test_cgroup_layouts, 0,
			    sizeof(layouts) / sizeof(layouts[0]));
	tcase_add_test(tg, test_cgroup_edges);
	suite_add_tcase(s, tg);
	return s;
}

NM_CHECK_MAIN(k8s_suite)
