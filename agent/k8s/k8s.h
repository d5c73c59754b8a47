/* SPDX-License-Identifier: Apache-2.0 */
/*
 * k8s.h - the Kubernetes source (DESIGN §8): list-then-watch of Pods,
 * Services, EndpointSlices, Nodes, Namespaces and Istio
 * AuthorizationPolicies, turned into the same snapshot the cluster file
 * gives (state/cluster.h) and applied through nm_daemon_apply().
 *
 * Threading: one thread does all API I/O (a curl multi handle driving the
 * six streams at once, blocking in curl_multi_poll) and builds complete
 * snapshots; the event loop only reads an eventfd and takes the newest
 * snapshot (nm_k8s_take). Why not curl multi on the agent's loop: the loop
 * is the proxy's hot path, and a relist of a large cluster means megabytes
 * of JSON to parse and a snapshot to build; in a thread that costs the
 * proxy nothing, and the only shared state is one pointer under a mutex.
 * The loop still never blocks, and the snapshot is applied whole on the
 * loop, as a cluster-file reload is.
 *
 * One all-pods watch, not two: the snapshot needs every meshed pod (remote
 * pods are endpoints with identities) and the local ones are a subset of
 * the same objects; a second, field-selected watch would carry the same
 * pods again under its own resourceVersion and could disagree with the
 * first for a moment. The local node's pods are picked by spec.nodeName.
 *
 * The pure parts (event decoding, the object store, the snapshot builder,
 * cgroup resolution) are declared here too, for the unit tests and the
 * fuzz target.
 */
#ifndef NM_K8S_H
#define NM_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "state/cluster.h"

#define NM_K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define NM_K8S_MESH_LABEL "nodemesh.io/mesh"
/* Pod annotation: inbound mode STRICT|PERMISSIVE (docs/strict.md). */
#define NM_K8S_MODE_ANNOTATION "nodemesh.io/mode"

/* --- object kinds and the store ------------------------------------------ */

enum nm_k8s_kind {
	NM_K8S_PODS,
	NM_K8S_SERVICES,
	NM_K8S_SLICES,    /* discovery.k8s.io/v1 EndpointSlices */
	NM_K8S_NODES,
	NM_K8S_NAMESPACES,
	NM_K8S_POLICIES,  /* security.istio.io/v1 AuthorizationPolicies */
	NM_K8S_KIND_MAX,
};

/* The objects of every kind, keyed "namespace/name" (or "name"). */
struct nm_k8s_store {
	json_t *objs[NM_K8S_KIND_MAX];
	bool policies_present; /* the CRD exists */
};

int nm_k8s_store_init(struct nm_k8s_store *st);
void nm_k8s_store_free(struct nm_k8s_store *st);
/* The key of obj ("ns/name" or "name") into buf; -EINVAL without a name. */
int nm_k8s_obj_key(const json_t *obj, char *buf, size_t len);

/* --- watch events and list pages ------------------------------------------ */

enum nm_k8s_ev_type {
	NM_K8S_EV_ADDED,
	NM_K8S_EV_MODIFIED,
	NM_K8S_EV_DELETED,
	NM_K8S_EV_BOOKMARK,
	NM_K8S_EV_ERROR,
};

struct nm_k8s_event {
	enum nm_k8s_ev_type type;
	json_t *object;          /* owned by the event (nm_k8s_event_clear) */
	char rv[64];             /* object's metadata.resourceVersion ("" none) */
	int code;                /* ERROR: the Status object's code */
};

/*
 * One watch event line (a JSON object {"type":..,"object":..}, no
 * newline needed). 0, or -EINVAL naming what is wrong in err.
 */
int nm_k8s_event_parse(const char *line, size_t len, struct nm_k8s_event *ev,
		       char *err, size_t errlen);
void nm_k8s_event_clear(struct nm_k8s_event *ev);
/* Applies an ADDED/MODIFIED/DELETED event to the kind's map: 1 when the
 * map changed, 0 when not, -errno. */
int nm_k8s_store_apply(json_t *map, const struct nm_k8s_event *ev);

/*
 * A watch body arrives in pieces that end anywhere, one event per line.
 * Feed appends; complete lines go to fn; what is left waits for more.
 * A partial line at the end of a stream is dropped (nm_k8s_lines_reset).
 */
struct nm_k8s_lines {
	char *buf;
	size_t len, cap;
};
typedef int (*nm_k8s_line_fn)(const char *line, size_t len, void *arg);
int nm_k8s_lines_feed(struct nm_k8s_lines *lb, const char *p, size_t n,
		      nm_k8s_line_fn fn, void *arg);
void nm_k8s_lines_reset(struct nm_k8s_lines *lb);
void nm_k8s_lines_free(struct nm_k8s_lines *lb);

struct nm_k8s_page {
	json_t *items;           /* borrowed from the parsed body */
	char rv[64];             /* metadata.resourceVersion */
	char cont[1024];         /* metadata.continue ("" last page) */
};
/* A list body: kind "...List" with items; *root owns the parse. */
int nm_k8s_page_parse(const char *body, size_t len, json_t **root,
		      struct nm_k8s_page *pg, char *err, size_t errlen);
/* The code of a Status body, or 0 when body is not a Status. */
int nm_k8s_status_code(const char *body, size_t len);

/* --- snapshot ------------------------------------------------------------- */

struct nm_k8s_build_opts {
	const struct nm_cluster *base; /* the --config file: settings only */
	const char *node;              /* this agent's node (NODE_NAME) */
	const char *cgroup_root;       /* absolute kubepods root, "" none */
	const char *policy_dir;        /* where AuthorizationPolicies go */
};

struct nm_k8s_build_info {
	unsigned int waiting_cgroup; /* local meshed pods left out for now */
	unsigned int skipped;        /* objects left out (logged at debug) */
	unsigned int policies;       /* AuthorizationPolicies kept */
	char *policies_json;         /* {"kind":"List","items":[..]} or NULL */
};

/*
 * The snapshot of the store: base's settings, nodes with an InternalIP,
 * meshed Running pods with an IP as workloads (local ones only once their
 * cgroup exists), ClusterIP services with a selector. *out is freed with
 * nm_cluster_free. 0, -ENOENT when this node is not known yet, -errno.
 */
int nm_k8s_build(const struct nm_k8s_store *st,
		 const struct nm_k8s_build_opts *o, struct nm_cluster **out,
		 struct nm_k8s_build_info *info);
/* Same content (the source applies only what changed). */
bool nm_k8s_cluster_equal(const struct nm_cluster *a,
			  const struct nm_cluster *b);

/* --- cgroups --------------------------------------------------------------- */

/*
 * The kubepods root under the cgroup v2 mount mnt: parent (relative to
 * mnt, "" for the mount itself) + "kubepods.slice" (systemd driver) or
 * "kubepods" (cgroupfs), or parent itself when it is one of those. The
 * absolute path into out; -ENOENT when neither exists.
 */
int nm_k8s_cgroup_root(const char *mnt, const char *parent, char *out,
		       size_t len);
/*
 * The pod's cgroup under root for uid and QoS class qos ("Guaranteed",
 * "Burstable", "BestEffort" or ""), for both drivers: cgroupfs
 * root/pod<uid>, root/burstable/pod<uid>, root/besteffort/pod<uid>;
 * systemd root/<R>-pod<u>.slice, root/<R>-burstable.slice/<R>-burstable-
 * pod<u>.slice, ... with R the root's slice name and u the uid with '_'
 * for '-'. The QoS class's layout is tried first, then the others. -ENOENT
 * when none exists (yet).
 */
int nm_k8s_cgroup_pod(const char *root, const char *uid, const char *qos,
		      char *out, size_t len);

/* --- the source ------------------------------------------------------------- */

struct nm_k8s_opts {
	const char *kubeconfig;     /* NULL: in-cluster */
	const char *sa_dir;         /* NULL: NM_K8S_SA_DIR */
	const char *node;           /* required */
	const char *cgroup_parent;  /* NULL: the v2 mount */
	const char *policy_dir;     /* folder for AuthorizationPolicies */
};

struct nm_k8s;

/* Reads the configuration and starts the thread; the base settings are
 * copied. 0 or -errno (logged). */
int nm_k8s_start(const struct nm_k8s_opts *o, const struct nm_cluster *base,
		 struct nm_k8s **out);
/* Readable when a new snapshot waits. */
int nm_k8s_fd(const struct nm_k8s *k);
/* The newest snapshot (caller owns it) or NULL; clears the fd. */
struct nm_cluster *nm_k8s_take(struct nm_k8s *k);
/* New settings from the --config file (copied); rebuilds. */
void nm_k8s_set_base(struct nm_k8s *k, const struct nm_cluster *base);
void nm_k8s_stop(struct nm_k8s *k);

#endif
