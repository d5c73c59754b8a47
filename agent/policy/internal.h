/* SPDX-License-Identifier: Apache-2.0 */
/*
 * internal.h - the policy set as the parser leaves it, for the files of
 * agent/policy only (parse, evaluate, compile). It is the form istiod sends
 * ztunnel (istio pilot/pkg/serviceregistry/ambient/authorization.go ->
 * ztunnel src/rbac.rs), so the evaluator is a direct reading of ztunnel's:
 *
 *   policy  -> rules[]     OR   (a policy without rules matches nothing)
 *   rule    -> clauses[]   AND  (a rule without clauses matches everything)
 *   clause  -> matches[]   OR   (a clause without matches is true; an empty
 *                                match is skipped, i.e. never true)
 *   match   -> fields      AND  (each field: any positive value, and none of
 *                                the negative values)
 *
 * One clause per `to` list, one per `from` list and one per `when` entry,
 * in that order (istiod's handleRule). An ALLOW rule that names an L7
 * attribute never matches (istiod drops it); in a DENY rule the L7 parts
 * are simply absent from the matches.
 */
#ifndef NM_POLICY_INTERNAL_H
#define NM_POLICY_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/addr.h"
#include "policy/policy.h"

enum nm_pol_str_kind {
	NM_PSTR_EXACT,    /* "abc" */
	NM_PSTR_PREFIX,   /* "abc*" */
	NM_PSTR_SUFFIX,   /* "*abc" */
	NM_PSTR_PRESENCE, /* "*": any non-empty value */
};

struct nm_pol_str {
	enum nm_pol_str_kind kind;
	const char *s;    /* without the '*'; "" for PRESENCE */
};

struct nm_pol_cidr {
	struct nm_addr addr; /* IPv4-mapped for v4, masked to len */
	bool v6;
	uint8_t len;         /* bits of its own family: 0..32 or 0..128 */
};

struct nm_pol_sa {
	const char *ns;   /* "ns/sa", or the policy's namespace for "sa" */
	const char *sa;
};

/* One ztunnel Match: fields AND-ed, values of one field OR-ed. */
struct nm_pol_match {
	const struct nm_pol_str *namespaces, *not_namespaces;
	unsigned int n_namespaces, n_not_namespaces;
	const struct nm_pol_sa *sas, *not_sas;
	unsigned int n_sas, n_not_sas;
	const struct nm_pol_str *principals, *not_principals;
	unsigned int n_principals, n_not_principals;
	const struct nm_pol_cidr *src_ips, *not_src_ips;
	unsigned int n_src_ips, n_not_src_ips;
	const struct nm_pol_cidr *dst_ips, *not_dst_ips;
	unsigned int n_dst_ips, n_not_dst_ips;
	const uint16_t *ports, *not_ports;
	unsigned int n_ports, n_not_ports;
};

struct nm_pol_clause {
	const struct nm_pol_match *matches;
	unsigned int n_matches;
};

struct nm_pol_rule {
	bool never;       /* ALLOW rule with L7 attributes: never matches */
	const struct nm_pol_clause *clauses;
	unsigned int n_clauses;
};

enum nm_pol_scope {
	NM_PSCOPE_GLOBAL,    /* root namespace, no selector */
	NM_PSCOPE_NAMESPACE, /* no selector */
	NM_PSCOPE_SELECTOR,  /* selector: same namespace, or any from root */
};

struct nm_pol {
	const char *ns, *name, *file;
	enum nm_policy_action action;
	enum nm_pol_scope scope;
	/*
	 * false: never applies (AUDIT, CUSTOM, targetRef(s): istiod sends
	 * ztunnel nothing for them). Dry-run policies stay enforced=true and
	 * are kept apart by dry_run.
	 */
	bool enforced;
	bool dry_run;
	struct nm_label *labels;   /* selector.matchLabels */
	unsigned int n_labels;
	const struct nm_pol_rule *rules;
	unsigned int n_rules;
};

struct nm_policy_set {
	char *root_ns;
	struct nm_pol *pols;       /* sorted by namespace, then name */
	unsigned int n_pols;
	char **warnings;
	unsigned int n_warnings;
	struct nm_pol_chunk *arena; /* every string and array above */
};

/* Policy i of ps (i < ps->n_pols), for compile.c. */
static inline const struct nm_pol *nm_policy_at(const struct nm_policy_set *ps,
						unsigned int i)
{
	return &ps->pols[i];
}

/* Does match m hold for c? (ztunnel's inner loop.) */
bool nm_pol_match_holds(const struct nm_pol_match *m,
			const struct nm_policy_conn *c);
/* Does rule r of a policy match c? */
bool nm_pol_rule_matches(const struct nm_pol_rule *r,
			 const struct nm_policy_conn *c);

#endif
