/* SPDX-License-Identifier: Apache-2.0 */
/*
 * policy.h - Istio AuthorizationPolicy at L4 (security.istio.io/v1 and
 * v1beta1), with ztunnel's semantics (DESIGN §6, docs/policy.md): parse
 * (JSON and YAML files), evaluate one connection (pure), and compile the
 * set into the map records connect4/6 consult (policy/compile.h).
 *
 * Pure: no sockets, no maps, no TLS. The agent, `nodemesh policy check`
 * (offline, from files) and the tests all call the same evaluator, so the
 * destination agent, the kernel and the CLI cannot disagree.
 */
#ifndef NM_POLICY_H
#define NM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "state/cluster.h"

#define NM_POLICY_ROOT_NS_DEFAULT "istio-system"

enum nm_policy_action {
	NM_POLICY_ALLOW,
	NM_POLICY_DENY,
	NM_POLICY_AUDIT,   /* accepted, logged, never decides at L4 */
	NM_POLICY_CUSTOM,  /* accepted, warned about, not enforced at L4 */
};

struct nm_policy_set; /* every policy in force, opaque */

/*
 * Loads every *.yaml, *.yml and *.json file in dir (not recursive; one or
 * many objects per file; YAML "---" documents; JSON: one object, an array
 * of objects, or a Kubernetes List with "items"). A file that does not
 * parse or holds what the Kubernetes API would not store is refused as a
 * whole: the result is -EINVAL with "FILE: policy NS/NAME: json.path: what"
 * in err, and nothing is returned (the caller keeps its last good set).
 * Objects Istio stores but ztunnel narrows or ignores load with a warning
 * (nm_policy_set_warnings()). root_ns: mesh.rootNamespace.
 */
int nm_policy_load_dir(const char *dir, const char *root_ns,
		       struct nm_policy_set **out, char *err, size_t errlen);
/* The same for one file's bytes; name is used in messages. */
int nm_policy_load_buf(const char *buf, size_t len, const char *name,
		       const char *root_ns, struct nm_policy_set **out,
		       char *err, size_t errlen);
void nm_policy_set_free(struct nm_policy_set *ps);

/* Warnings gathered while loading ("FILE: policy NS/NAME: ..."), n of them. */
const char *const *nm_policy_set_warnings(const struct nm_policy_set *ps,
					  unsigned int *n);
unsigned int nm_policy_count(const struct nm_policy_set *ps);

/* One policy, for listings. */
struct nm_policy_info {
	const char *ns;
	const char *name;
	const char *file;
	enum nm_policy_action action;
	bool dry_run;          /* istio.io/dry-run: "true" */
	bool mesh_wide;        /* root namespace, no selector */
	bool has_selector;
	const struct nm_label *match_labels;
	unsigned int n_match_labels;
	/*
	 * false: never evaluated (AUDIT, CUSTOM, targetRef(s): istiod sends
	 * ztunnel nothing for them); a warning at load says so.
	 */
	bool enforced;
	unsigned int n_rules;  /* spec.rules entries */
};
int nm_policy_get(const struct nm_policy_set *ps, unsigned int i,
		  struct nm_policy_info *out);
/*
 * Does policy i's scope take in a workload of namespace ns with these
 * labels (mesh-wide, its namespace, or its selector)? Scope only: an
 * unenforced policy (info.enforced false) still answers, for listings.
 */
bool nm_policy_selects(const struct nm_policy_set *ps, unsigned int i,
		       const char *ns, const struct nm_label *labels,
		       unsigned int n_labels);

/* What the destination knows about one connection. */
struct nm_policy_conn {
	const char *dst_ns;               /* destination workload */
	const struct nm_label *dst_labels;
	unsigned int n_dst_labels;
	struct nm_addr dst_ip;
	uint16_t dst_port;                /* host order */
	/*
	 * Verified peer identity as Istio writes principals:
	 * "<trust-domain>/ns/<ns>/sa/<sa>" (no "spiffe://"); NULL when the
	 * source is unauthenticated (plaintext).
	 */
	const char *src_principal;
	struct nm_addr src_ip;
};

struct nm_policy_verdict {
	bool allow;
	int policy;        /* index of the deciding policy, -1 when none */
	int rule;          /* its rule index, -1 when none */
	const char *reason; /* static text: "denied by DENY policy", ... */
	/*
	 * Dry-run policies (istio.io/dry-run: "true") never change the
	 * verdict above; this is what it would be if they were enforced.
	 */
	bool dry_run;          /* some dry-run policy applies here */
	bool dry_run_allow;
	int dry_run_policy;    /* -1 when none decided */
	int dry_run_rule;
	const char *dry_run_reason;
};

/* Evaluates c against every policy that applies to its destination. */
void nm_policy_evaluate(const struct nm_policy_set *ps,
			const struct nm_policy_conn *c,
			struct nm_policy_verdict *v);

#endif
