// SPDX-License-Identifier: Apache-2.0
/*
 * convert.c - one AuthorizationPolicy object (a JSON tree, whether it came
 * from JSON or YAML) checked the way the Kubernetes API and Istio's
 * validation would check it, then turned into the form istiod sends
 * ztunnel (internal.h). Refusals name the file, the policy and the field;
 * what Istio stores but ztunnel narrows or ignores becomes a warning and is
 * evaluated the way ztunnel evaluates it.
 *
 * What is refused: the CRD schema (types, unknown fields, the action enum,
 * required keys, item limits, its CEL rules: selector xor targetRef(s),
 * serviceAccounts not with principals/namespaces, no wildcard in labels)
 * and the values istiod's webhook refuses and could not convert anyway
 * (ports that are not 0..65535, addresses that are not an IP or CIDR,
 * empty values, empty from/to/source/operation, malformed serviceAccounts,
 * unknown `when` keys, `provider` without CUSTOM). Such values would be
 * dropped silently on the way to ztunnel, which for a DENY means fail-open.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jsonwalk.h"
#include "policy/load.h"

#define MAX_RULES 512      /* CRD: rules, rules[].from maxItems */
#define MAX_TARGET_REFS 16 /* CRD: targetRefs maxItems */
#define MAX_SAS 16         /* CRD: serviceAccounts maxItems */
#define MAX_SA_LEN 320     /* CRD: serviceAccounts[] maxLength */
#define MAX_LABEL_VALUE 63 /* CRD: matchLabels values maxLength */
#define MAX_OBJ_NAME 253   /* Kubernetes: DNS-1123 subdomain */
#define MAX_NS_NAME 63     /* Kubernetes: DNS-1123 label */

struct conv {
	struct nm_policy_set *ps;
	struct nm_jw j;
	char label[NM_PATH_MAX + 2 * 256 + 32]; /* "FILE: policy NS/NAME" */
	const char *ns;        /* the policy's namespace (serviceAccounts "sa") */
	bool l7;               /* the current rule names an L7 attribute */
	char l7_names[256];    /* which, for the warning */
};

/* --- small helpers --------------------------------------------------------- */

static int warn(struct conv *cv, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int warn(struct conv *cv, const char *path, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (path && *path)
		return nm_pol_add_warning(cv->ps, "%s: %s: %s", cv->label, path, msg);
	return nm_pol_add_warning(cv->ps, "%s: %s", cv->label, msg);
}

static void note_l7(struct conv *cv, const char *what)
{
	size_t n = strlen(cv->l7_names);

	cv->l7 = true;
	if (strstr(cv->l7_names, what))
		return;
	snprintf(cv->l7_names + n, sizeof(cv->l7_names) - n, "%s%s",
		 n ? ", " : "", what);
}

static int nomem(struct conv *cv)
{
	return nm_jw_fail_nomem(&cv->j);
}

/* An optional array of strings at obj.key: 1 (into *arr), 0 absent, <0. */
static int str_array(struct conv *cv, const json_t *obj, const char *parent,
		     const char *key, struct nm_jw_field *f, bool allow_empty_values)
{
	size_t i;
	json_t *v;
	int ret;

	ret = nm_jw_field(&cv->j, obj, parent, key, JSON_ARRAY, false, f);
	if (ret <= 0)
		return ret;
	json_array_foreach(f->v, i, v) {
		char p[NM_JW_PATH_MAX];

		nm_jw_path_idx(p, f->path, i);
		if (!json_is_string(v)) {
			if (json_is_integer(v))
				return nm_jw_fail(&cv->j, p, "expected a string, got an integer (quote it: \"%lld\")",
						  (long long)json_integer_value(v));
			return nm_jw_fail(&cv->j, p, "expected a string, got %s",
					  nm_jw_type_name(v));
		}
		if (!allow_empty_values && !*json_string_value(v))
			return nm_jw_fail(&cv->j, p, "empty value");
	}
	return 1;
}

/* "abc", "abc*", "*abc", "*" the way istiod's stringToMatch reads them. */
static int to_str_matches(struct conv *cv, const json_t *arr,
			  const struct nm_pol_str **out, unsigned int *n)
{
	struct nm_pol_str *m;
	size_t i, cnt = json_array_size(arr);
	json_t *v;

	*out = NULL;
	*n = 0;
	if (!cnt)
		return 0;
	m = nm_pol_alloc(cv->ps, cnt * sizeof(*m));
	if (!m)
		return nomem(cv);
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);
		size_t len = strlen(s);

		if (!strcmp(s, "*")) {
			m[i].kind = NM_PSTR_PRESENCE;
			m[i].s = "";
		} else if (s[0] == '*') {
			m[i].kind = NM_PSTR_SUFFIX;
			m[i].s = nm_pol_strdup(cv->ps, s + 1, len - 1);
		} else if (len && s[len - 1] == '*') {
			m[i].kind = NM_PSTR_PREFIX;
			m[i].s = nm_pol_strdup(cv->ps, s, len - 1);
		} else {
			m[i].kind = NM_PSTR_EXACT;
			m[i].s = nm_pol_strdup(cv->ps, s, len);
		}
		if (!m[i].s)
			return nomem(cv);
	}
	*out = m;
	*n = (unsigned int)cnt;
	return 0;
}

/* An IP or CIDR as istiod's stringToIP/ValidateIPs read it. */
static int parse_cidr(const char *s, struct nm_pol_cidr *out)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	unsigned long bits;
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned int max, i;
	char *end;
	bool v6;

	if (alen >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (nm_addr_parse(buf, &out->addr, &v6))
		return -EINVAL;
	out->v6 = v6;
	max = v6 ? 128 : 32;
	bits = max;
	if (slash) {
		/* netip.ParsePrefix: decimal, no sign, no leading zeros */
		if (!slash[1] || slash[1] < '0' || slash[1] > '9' ||
		    (slash[1] == '0' && slash[2]))
			return -EINVAL;
		bits = strtoul(slash + 1, &end, 10);
		if (*end || bits > max)
			return -EINVAL;
	}
	out->len = (uint8_t)bits;
	/* mask host bits: ztunnel's IpNet::contains ignores them too */
	for (i = (unsigned int)bits; i < max; i++) {
		unsigned int pos = (v6 ? 0 : 96) + i;

		out->addr.a[pos / 8] &= (uint8_t)~(0x80u >> (pos % 8));
	}
	return 0;
}

static int to_cidrs(struct conv *cv, const struct nm_jw_field *f,
		    const struct nm_pol_cidr **out, unsigned int *n)
{
	struct nm_pol_cidr *m;
	size_t i, cnt;
	json_t *v;

	*out = NULL;
	*n = 0;
	if (!f->v || !(cnt = json_array_size(f->v)))
		return 0;
	m = nm_pol_alloc(cv->ps, cnt * sizeof(*m));
	if (!m)
		return nomem(cv);
	json_array_foreach(f->v, i, v) {
		char p[NM_JW_PATH_MAX], q[NM_JW_SHOW_BUF];

		if (parse_cidr(json_string_value(v), &m[i])) {
			nm_jw_path_idx(p, f->path, i);
			return nm_jw_fail(&cv->j, p, "%s is not an IP address or CIDR range",
					  nm_jw_show(json_string_value(v), q));
		}
	}
	*out = m;
	*n = (unsigned int)cnt;
	return 0;
}

/* Ports are strings in Istio; strconv.ParseUint(s, 10, 32) <= 65535. */
static int to_ports(struct conv *cv, const struct nm_jw_field *f,
		    const uint16_t **out, unsigned int *n)
{
	uint16_t *m;
	size_t i, cnt;
	json_t *v;

	*out = NULL;
	*n = 0;
	if (!f->v || !(cnt = json_array_size(f->v)))
		return 0;
	m = nm_pol_alloc(cv->ps, cnt * sizeof(*m));
	if (!m)
		return nomem(cv);
	json_array_foreach(f->v, i, v) {
		const char *s = json_string_value(v);
		unsigned long p = 0;
		size_t k;

		for (k = 0; s[k] >= '0' && s[k] <= '9' && p <= 65535; k++)
			p = p * 10 + (unsigned long)(s[k] - '0');
		if (!k || s[k] || p > 65535) {
			char path[NM_JW_PATH_MAX], q[NM_JW_SHOW_BUF];

			nm_jw_path_idx(path, f->path, i);
			return nm_jw_fail(&cv->j, path, "%s is not a port (0-65535)",
					  nm_jw_show(s, q));
		}
		m[i] = (uint16_t)p;
	}
	*out = m;
	*n = (unsigned int)cnt;
	return 0;
}

/* "ns/sa" or "sa" (the policy's namespace), as istiod and its webhook. */
static int to_sas(struct conv *cv, const struct nm_jw_field *f,
		  const struct nm_pol_sa **out, unsigned int *n)
{
	struct nm_pol_sa *m;
	size_t i, cnt;
	json_t *v;

	*out = NULL;
	*n = 0;
	if (!f->v || !(cnt = json_array_size(f->v)))
		return 0;
	if (cnt > MAX_SAS)
		return nm_jw_fail(&cv->j, f->path, "%zu values, at most %d", cnt, MAX_SAS);
	m = nm_pol_alloc(cv->ps, cnt * sizeof(*m));
	if (!m)
		return nomem(cv);
	json_array_foreach(f->v, i, v) {
		const char *s = json_string_value(v), *slash = strchr(s, '/');
		char p[NM_JW_PATH_MAX], q[NM_JW_SHOW_BUF];
		const char *why = NULL;

		nm_jw_path_idx(p, f->path, i);
		if (strlen(s) > MAX_SA_LEN)
			why = "is longer than 320 bytes";
		else if (strchr(s, '*'))
			why = "has a wildcard (not allowed in serviceAccounts)";
		else if (slash && (strchr(slash + 1, '/') || slash == s || !slash[1]))
			why = "is not \"serviceAccount\" or \"namespace/serviceAccount\"";
		if (why)
			return nm_jw_fail(&cv->j, p, "%s %s", nm_jw_show(s, q), why);
		if (slash) {
			m[i].ns = nm_pol_strdup(cv->ps, s, (size_t)(slash - s));
			m[i].sa = nm_pol_strdup(cv->ps, slash + 1, strlen(slash + 1));
		} else {
			m[i].ns = cv->ns;
			m[i].sa = nm_pol_strdup(cv->ps, s, strlen(s));
		}
		if (!m[i].ns || !m[i].sa)
			return nomem(cv);
	}
	*out = m;
	*n = (unsigned int)cnt;
	return 0;
}

static bool match_empty(const struct nm_pol_match *m)
{
	return !(m->n_namespaces || m->n_not_namespaces || m->n_sas ||
		 m->n_not_sas || m->n_principals || m->n_not_principals ||
		 m->n_src_ips || m->n_not_src_ips || m->n_dst_ips ||
		 m->n_not_dst_ips || m->n_ports || m->n_not_ports);
}

/* --- from / to / when ------------------------------------------------------ */

static const char *const source_keys[] = {
	"principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals",
	"namespaces", "notNamespaces", "ipBlocks", "notIpBlocks",
	"remoteIpBlocks", "notRemoteIpBlocks", "serviceAccounts",
	"notServiceAccounts", "trustDomains", "notTrustDomains", NULL,
};
static const char *const source_l7[] = {
	"requestPrincipals", "notRequestPrincipals", "remoteIpBlocks",
	"notRemoteIpBlocks", NULL,
};

static int conv_source(struct conv *cv, const json_t *src, const char *path,
		       struct nm_pol_match *m)
{
	struct nm_jw_field f[14];
	unsigned int i, present = 0;
	int ret;

	ret = nm_jw_check_object(&cv->j, src, path, source_keys);
	if (ret)
		return ret;
	for (i = 0; source_keys[i]; i++) {
		/* trustDomains take "*"-patterns; empty values refused everywhere */
		ret = str_array(cv, src, path, source_keys[i], &f[i], false);
		if (ret < 0)
			return ret;
		f[i].v = ret ? f[i].v : NULL;
		if (f[i].v && json_array_size(f[i].v))
			present |= 1u << i;
	}
	if (!present)
		return nm_jw_fail(&cv->j, path, "must not be empty");
	/* CRD rule: serviceAccounts exclude principals and namespaces */
	if ((present & (3u << 10)) && (present & ((3u << 0) | (3u << 4))))
		return nm_jw_fail(&cv->j, path,
				  "cannot set serviceAccounts with namespaces or principals");
	for (i = 0; source_l7[i]; i++) {
		unsigned int k;

		for (k = 0; source_keys[k]; k++)
			if (!strcmp(source_keys[k], source_l7[i]) && f[k].v &&
			    json_array_size(f[k].v))
				note_l7(cv, source_l7[i]);
	}
	for (i = 8; i <= 9; i++) {
		/* remoteIpBlocks never reach ztunnel, but must be addresses */
		const struct nm_pol_cidr *c;
		unsigned int n;

		ret = to_cidrs(cv, &f[i], &c, &n);
		if (ret)
			return ret;
	}
	if (f[12].v || f[13].v) {
		const char *k = f[12].v ? "trustDomains" : "notTrustDomains";

		warn(cv, path, "%s: ignored: istiod does not send trust domains to ztunnel",
		     k);
	}
	if ((ret = to_str_matches(cv, f[0].v, &m->principals, &m->n_principals)) ||
	    (ret = to_str_matches(cv, f[1].v, &m->not_principals, &m->n_not_principals)) ||
	    (ret = to_str_matches(cv, f[4].v, &m->namespaces, &m->n_namespaces)) ||
	    (ret = to_str_matches(cv, f[5].v, &m->not_namespaces, &m->n_not_namespaces)) ||
	    (ret = to_cidrs(cv, &f[6], &m->src_ips, &m->n_src_ips)) ||
	    (ret = to_cidrs(cv, &f[7], &m->not_src_ips, &m->n_not_src_ips)) ||
	    (ret = to_sas(cv, &f[10], &m->sas, &m->n_sas)) ||
	    (ret = to_sas(cv, &f[11], &m->not_sas, &m->n_not_sas)))
		return ret;
	return 0;
}

static const char *const operation_keys[] = {
	"ports", "notPorts", "hosts", "notHosts", "methods", "notMethods",
	"paths", "notPaths", NULL,
};

static int conv_operation(struct conv *cv, const json_t *op, const char *path,
			  struct nm_pol_match *m)
{
	struct nm_jw_field f[8];
	unsigned int i;
	bool any = false;
	int ret;

	ret = nm_jw_check_object(&cv->j, op, path, operation_keys);
	if (ret)
		return ret;
	for (i = 0; operation_keys[i]; i++) {
		ret = str_array(cv, op, path, operation_keys[i], &f[i], false);
		if (ret < 0)
			return ret;
		f[i].v = ret ? f[i].v : NULL;
		if (f[i].v && json_array_size(f[i].v)) {
			any = true;
			if (i >= 2)
				note_l7(cv, operation_keys[i]);
		}
	}
	if (!any)
		return nm_jw_fail(&cv->j, path, "must not be empty");
	if ((ret = to_ports(cv, &f[0], &m->ports, &m->n_ports)) ||
	    (ret = to_ports(cv, &f[1], &m->not_ports, &m->n_not_ports)))
		return ret;
	return 0;
}

/* Istio's attribute names: the L4 ones ztunnel gets, and the rest. */
static const char *const when_l4[] = {
	"source.ip", "source.namespace", "source.principal", "destination.ip",
	"destination.port", NULL,
};
static const char *const when_l7[] = {
	"remote.ip", "source.serviceAccount", "source.trustDomain",
	"request.auth.principal", "request.auth.audiences",
	"request.auth.presenter", "connection.sni", NULL,
};
static const char *const when_l7_map[] = { /* key[...] forms */
	"request.headers", "request.auth.claims", "experimental.envoy.filters.", NULL,
};

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(s, *list))
			return true;
	return false;
}

static bool map_key_form(const char *key)
{
	const char *open = strchr(key, '[');
	size_t len = strlen(key);
	unsigned int i;

	for (i = 0; when_l7_map[i]; i++)
		if (!strncmp(key, when_l7_map[i], strlen(when_l7_map[i])))
			break;
	if (!when_l7_map[i])
		return false;
	/* istio's validateMapKey: "a[b]" with something inside */
	return open && open > key && len >= 2 && key[len - 1] == ']' &&
	       (size_t)(open - key) < len - 2;
}

static int conv_when(struct conv *cv, const json_t *w, const char *path,
		     struct nm_pol_match *m)
{
	static const char *const keys[] = { "key", "values", "notValues", NULL };
	struct nm_jw_field fk, fv, fn;
	char q[NM_JW_SHOW_BUF];
	const char *key;
	int ret;

	ret = nm_jw_check_object(&cv->j, w, path, keys);
	if (ret)
		return ret;
	ret = nm_jw_field(&cv->j, w, path, "key", JSON_STRING, true, &fk);
	if (ret < 0)
		return ret;
	key = json_string_value(fk.v);
	if ((ret = str_array(cv, w, path, "values", &fv, false)) < 0)
		return ret;
	if (!ret)
		fv.v = NULL;
	if ((ret = str_array(cv, w, path, "notValues", &fn, false)) < 0)
		return ret;
	if (!ret)
		fn.v = NULL;
	if (!*key)
		return nm_jw_fail(&cv->j, fk.path, "must not be empty");
	if (!json_array_size(fv.v) && !json_array_size(fn.v))
		return nm_jw_fail(&cv->j, path,
				  "at least one of values or notValues must be set for key %s",
				  nm_jw_show(key, q));
	if (!strcmp(key, "destination.namespace") ||
	    !strncmp(key, "destination.labels", 18) ||
	    !strcmp(key, "destination.name") || !strcmp(key, "destination.user"))
		return nm_jw_fail(&cv->j, fk.path,
				  "%s is not supported by Istio (use metadata.namespace or the selector)",
				  nm_jw_show(key, q));
	if (!in_list(key, when_l4)) {
		if (!in_list(key, when_l7) && !map_key_form(key))
			return nm_jw_fail(&cv->j, fk.path, "unknown attribute %s",
					  nm_jw_show(key, q));
		note_l7(cv, key);
		return 0; /* an empty match: istiod sends nothing for it */
	}
	if (!strcmp(key, "source.namespace")) {
		if ((ret = to_str_matches(cv, fv.v, &m->namespaces, &m->n_namespaces)) ||
		    (ret = to_str_matches(cv, fn.v, &m->not_namespaces, &m->n_not_namespaces)))
			return ret;
	} else if (!strcmp(key, "source.principal")) {
		if ((ret = to_str_matches(cv, fv.v, &m->principals, &m->n_principals)) ||
		    (ret = to_str_matches(cv, fn.v, &m->not_principals, &m->n_not_principals)))
			return ret;
	} else if (!strcmp(key, "source.ip")) {
		if ((ret = to_cidrs(cv, &fv, &m->src_ips, &m->n_src_ips)) ||
		    (ret = to_cidrs(cv, &fn, &m->not_src_ips, &m->n_not_src_ips)))
			return ret;
	} else if (!strcmp(key, "destination.ip")) {
		if ((ret = to_cidrs(cv, &fv, &m->dst_ips, &m->n_dst_ips)) ||
		    (ret = to_cidrs(cv, &fn, &m->not_dst_ips, &m->n_not_dst_ips)))
			return ret;
	} else { /* destination.port */
		if ((ret = to_ports(cv, &fv, &m->ports, &m->n_ports)) ||
		    (ret = to_ports(cv, &fn, &m->not_ports, &m->n_not_ports)))
			return ret;
	}
	return 0;
}

/*
 * One clause from a from/to list: one match per entry, wrapped in
 * "source"/"operation".
 */
static int conv_list(struct conv *cv, const json_t *rule, const char *rpath,
		     const char *key, const char *inner,
		     struct nm_pol_clause *cl, bool *present)
{
	static const char *const from_keys[] = { "source", NULL };
	static const char *const to_keys[] = { "operation", NULL };
	struct nm_jw_field f;
	struct nm_pol_match *m;
	size_t i, n;
	json_t *e;
	int ret;

	*present = false;
	ret = nm_jw_field(&cv->j, rule, rpath, key, JSON_ARRAY, false, &f);
	if (ret <= 0)
		return ret;
	n = json_array_size(f.v);
	if (!n)
		return nm_jw_fail(&cv->j, f.path, "must not be empty");
	if (n > MAX_RULES)
		return nm_jw_fail(&cv->j, f.path, "%zu entries, at most %d", n, MAX_RULES);
	m = nm_pol_alloc(cv->ps, n * sizeof(*m));
	if (!m)
		return nomem(cv);
	json_array_foreach(f.v, i, e) {
		char p[NM_JW_PATH_MAX];
		struct nm_jw_field fi;

		nm_jw_path_idx(p, f.path, i);
		ret = nm_jw_check_object(&cv->j, e, p,
					 !strcmp(inner, "source") ? from_keys : to_keys);
		if (ret)
			return ret;
		ret = nm_jw_field(&cv->j, e, p, inner, JSON_OBJECT, true, &fi);
		if (ret < 0)
			return ret;
		ret = !strcmp(inner, "source") ? conv_source(cv, fi.v, fi.path, &m[i]) :
						 conv_operation(cv, fi.v, fi.path, &m[i]);
		if (ret)
			return ret;
	}
	cl->matches = m;
	cl->n_matches = (unsigned int)n;
	*present = true;
	return 0;
}

/* istiod's hasEffectiveRules for one rule: every clause can be true. */
static bool rule_effective(const struct nm_pol_rule *r)
{
	unsigned int i, k;

	for (i = 0; i < r->n_clauses; i++) {
		for (k = 0; k < r->clauses[i].n_matches; k++)
			if (!match_empty(&r->clauses[i].matches[k]))
				break;
		if (k == r->clauses[i].n_matches)
			return false;
	}
	return true;
}

static int conv_rule(struct conv *cv, struct nm_pol *p, const json_t *rule,
		     const char *rpath, unsigned int idx, struct nm_pol_rule *r)
{
	static const char *const rule_keys[] = { "from", "to", "when", NULL };
	struct nm_pol_clause *cl;
	struct nm_jw_field fw;
	size_t n_when = 0, i;
	bool has_to, has_from;
	unsigned int n = 0;
	json_t *w;
	int ret;

	cv->l7 = false;
	cv->l7_names[0] = '\0';
	ret = nm_jw_check_object(&cv->j, rule, rpath, rule_keys);
	if (ret)
		return ret;
	ret = nm_jw_field(&cv->j, rule, rpath, "when", JSON_ARRAY, false, &fw);
	if (ret < 0)
		return ret;
	if (ret)
		n_when = json_array_size(fw.v);
	cl = nm_pol_alloc(cv->ps, (2 + n_when) * sizeof(*cl));
	if (!cl)
		return nomem(cv);
	/* istiod's order: the to clause, the from clause, one per when */
	ret = conv_list(cv, rule, rpath, "to", "operation", &cl[n], &has_to);
	if (ret)
		return ret;
	n += has_to;
	ret = conv_list(cv, rule, rpath, "from", "source", &cl[n], &has_from);
	if (ret)
		return ret;
	n += has_from;
	for (i = 0; i < n_when; i++) {
		struct nm_pol_match *m = nm_pol_alloc(cv->ps, sizeof(*m));
		char wp[NM_JW_PATH_MAX];

		if (!m)
			return nomem(cv);
		w = json_array_get(fw.v, i);
		nm_jw_path_idx(wp, fw.path, i);
		ret = conv_when(cv, w, wp, m);
		if (ret)
			return ret;
		cl[n].matches = m;
		cl[n].n_matches = 1;
		n++;
	}
	r->clauses = cl;
	r->n_clauses = n;
	if (!n && p->action == NM_POLICY_ALLOW && p->enforced)
		warn(cv, rpath, "empty rule: matches every connection");
	else if (!n && p->action == NM_POLICY_DENY && p->enforced)
		warn(cv, rpath, "empty rule: denies every connection");
	if (!cv->l7)
		return 0;
	if (p->action == NM_POLICY_ALLOW) {
		/* istiod drops the whole rule: it can never allow anything */
		r->never = true;
		warn(cv, rpath,
		     "rule %u names HTTP attributes (%s) that ztunnel cannot see: "
		     "as in Istio ambient this ALLOW rule never matches "
		     "(more restrictive than written; a waypoint enforces HTTP rules)",
		     idx, cv->l7_names);
	} else if (p->action == NM_POLICY_DENY) {
		if (rule_effective(r))
			warn(cv, rpath,
			     "rule %u names HTTP attributes (%s) that ztunnel cannot see: "
			     "as in Istio ambient they are left out and this DENY rule "
			     "applies to everything its L4 fields match (more restrictive than written)",
			     idx, cv->l7_names);
		else
			warn(cv, rpath,
			     "rule %u names HTTP attributes (%s) that ztunnel cannot see: "
			     "as in Istio ambient they are left out, and what remains "
			     "can never match: this DENY rule has no effect",
			     idx, cv->l7_names);
	}
	return 0;
}

/* --- selector, targetRef, metadata --------------------------------------- */

static int conv_labels_map(struct conv *cv, const json_t *obj, const char *path,
			   bool selector, struct nm_label **out, unsigned int *n)
{
	struct nm_label *l = NULL;
	const char *k;
	size_t cnt = json_object_size(obj), i = 0;
	json_t *v;

	*out = NULL;
	*n = 0;
	if (selector && cnt > NM_MAX_LABELS)
		return nm_jw_fail(&cv->j, path, "%zu labels, nodemesh supports at most %d",
				  cnt, NM_MAX_LABELS);
	if (selector && cnt) {
		l = nm_pol_alloc(cv->ps, cnt * sizeof(*l));
		if (!l)
			return nomem(cv);
	}
	json_object_foreach((json_t *)obj, k, v) {
		char p[NM_JW_PATH_MAX];
		int ret;

		nm_jw_path_key(p, path, k);
		if (!json_is_string(v))
			return nm_jw_fail(&cv->j, p, "expected a string, got %s",
					  nm_jw_type_name(v));
		if (!selector)
			continue;
		if (!*k)
			return nm_jw_fail(&cv->j, path, "key must not be empty");
		if (strchr(k, '*'))
			return nm_jw_fail(&cv->j, p, "wildcard not allowed in label key match");
		if (strchr(json_string_value(v), '*'))
			return nm_jw_fail(&cv->j, p, "wildcard not allowed in label value match");
		if (strlen(json_string_value(v)) > MAX_LABEL_VALUE)
			return nm_jw_fail(&cv->j, p, "longer than %d bytes", MAX_LABEL_VALUE);
		ret = nm_jw_copy_str(&cv->j, p, k, l[i].key, sizeof(l[i].key));
		if (!ret)
			ret = nm_jw_copy_str(&cv->j, p, json_string_value(v), l[i].value,
					     sizeof(l[i].value));
		if (ret)
			return ret;
		i++;
	}
	*out = l;
	*n = (unsigned int)i;
	return 0;
}

static int conv_target_ref(struct conv *cv, const json_t *t, const char *path)
{
	static const char *const keys[] = { "group", "kind", "name", "namespace", NULL };
	struct nm_jw_field f;
	int ret;

	if ((ret = nm_jw_check_object(&cv->j, t, path, keys)) ||
	    (ret = nm_jw_field(&cv->j, t, path, "group", JSON_STRING, false, &f)) < 0 ||
	    (ret = nm_jw_field(&cv->j, t, path, "kind", JSON_STRING, true, &f)) < 0)
		return ret < 0 ? ret : -EINVAL;
	if (!*json_string_value(f.v))
		return nm_jw_fail(&cv->j, f.path, "must not be empty");
	ret = nm_jw_field(&cv->j, t, path, "name", JSON_STRING, true, &f);
	if (ret < 0)
		return ret;
	if (!*json_string_value(f.v))
		return nm_jw_fail(&cv->j, f.path, "must not be empty");
	ret = nm_jw_field(&cv->j, t, path, "namespace", JSON_STRING, false, &f);
	if (ret < 0)
		return ret;
	if (ret && *json_string_value(f.v))
		return nm_jw_fail(&cv->j, f.path,
				  "cross namespace referencing is not currently supported");
	return 0;
}

/* Go's strconv.ParseBool, which istiod uses for istio.io/dry-run. */
static int parse_go_bool(const char *s, bool *out)
{
	static const char *const t[] = { "1", "t", "T", "TRUE", "true", "True", NULL };
	static const char *const f[] = { "0", "f", "F", "FALSE", "false", "False", NULL };

	if (in_list(s, t))
		*out = true;
	else if (in_list(s, f))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static bool dns_label(const char *s, size_t max, bool dots)
{
	size_t i, n = strlen(s);

	if (!n || n > max)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (alnum)
			continue;
		if (c == '-' && i && i + 1 < n && s[i - 1] != '.' && s[i + 1] != '.')
			continue;
		if (dots && c == '.' && i && i + 1 < n && s[i - 1] != '.' &&
		    s[i - 1] != '-' && s[i + 1] != '-')
			continue;
		return false;
	}
	return true;
}

static int conv_metadata(struct conv *cv, struct nm_pol *p, const json_t *md)
{
	static const char *const keys[] = {
		"name", "namespace", "annotations", "labels",
		/* what `kubectl get -o yaml` adds; stored by the API, unused here */
		"uid", "resourceVersion", "generation", "creationTimestamp",
		"managedFields", "finalizers", "ownerReferences", "generateName",
		"deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", NULL,
	};
	static const struct { const char *k; json_type t; } extra[] = {
		{ "uid", JSON_STRING }, { "resourceVersion", JSON_STRING },
		{ "generation", JSON_INTEGER }, { "creationTimestamp", JSON_STRING },
		{ "managedFields", JSON_ARRAY }, { "finalizers", JSON_ARRAY },
		{ "ownerReferences", JSON_ARRAY }, { "generateName", JSON_STRING },
		{ "deletionTimestamp", JSON_STRING },
		{ "deletionGracePeriodSeconds", JSON_INTEGER }, { "selfLink", JSON_STRING },
	};
	struct nm_jw_field f;
	struct nm_label *dummy;
	unsigned int n, i;
	int ret;

	ret = nm_jw_check_keys(&cv->j, md, "metadata", keys);
	if (ret)
		return ret;
	for (i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
		if ((ret = nm_jw_field(&cv->j, md, "metadata", extra[i].k, extra[i].t,
				       false, &f)) < 0)
			return ret;
	ret = nm_jw_field(&cv->j, md, "metadata", "labels", JSON_OBJECT, false, &f);
	if (ret < 0 || (ret && (ret = conv_labels_map(cv, f.v, f.path, false, &dummy, &n))))
		return ret;
	ret = nm_jw_field(&cv->j, md, "metadata", "annotations", JSON_OBJECT, false, &f);
	if (ret < 0 || (ret && (ret = conv_labels_map(cv, f.v, f.path, false, &dummy, &n))))
		return ret;
	if (f.v) {
		const json_t *dr = json_object_get(f.v, "istio.io/dry-run");
		char q[NM_JW_SHOW_BUF];
		bool b;

		if (dr && parse_go_bool(json_string_value(dr), &b) == 0)
			p->dry_run = b;
		else if (dr)
			warn(cv, "metadata.annotations[\"istio.io/dry-run\"]",
			     "%s is not a boolean: the policy is enforced (as istiod does)",
			     nm_jw_show(json_string_value(dr), q));
	}
	return 0;
}

/* Safe to put in a message as is: short printable ASCII. */
static bool printable(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || i >= MAX_OBJ_NAME)
			return false;
	return i > 0;
}

/* --- the object ------------------------------------------------------------ */

static const char *action_name(enum nm_policy_action a)
{
	switch (a) {
	case NM_POLICY_ALLOW: return "ALLOW";
	case NM_POLICY_DENY: return "DENY";
	case NM_POLICY_AUDIT: return "AUDIT";
	default: return "CUSTOM";
	}
}

static int conv_spec(struct conv *cv, struct nm_pol *p, const json_t *spec)
{
	static const char *const keys[] = {
		"selector", "action", "provider", "rules", "targetRef", "targetRefs", NULL,
	};
	struct nm_jw_field f, fsel, fr;
	bool has_tr = false;
	size_t i, n;
	json_t *e;
	int ret;

	p->action = NM_POLICY_ALLOW;
	p->enforced = true;
	if (!spec) {
		warn(cv, NULL, "no spec: an ALLOW policy without rules, it denies "
		     "every connection to the workloads it selects");
		p->scope = strcmp(p->ns, cv->ps->root_ns) ? NM_PSCOPE_NAMESPACE :
							   NM_PSCOPE_GLOBAL;
		return 0;
	}
	ret = nm_jw_check_keys(&cv->j, spec, "spec", keys);
	if (ret)
		return ret;
	ret = nm_jw_field(&cv->j, spec, "spec", "action", JSON_STRING, false, &f);
	if (ret < 0)
		return ret;
	if (ret) {
		const char *a = json_string_value(f.v);
		char q[NM_JW_SHOW_BUF];

		if (!strcmp(a, "ALLOW"))
			p->action = NM_POLICY_ALLOW;
		else if (!strcmp(a, "DENY"))
			p->action = NM_POLICY_DENY;
		else if (!strcmp(a, "AUDIT"))
			p->action = NM_POLICY_AUDIT;
		else if (!strcmp(a, "CUSTOM"))
			p->action = NM_POLICY_CUSTOM;
		else
			return nm_jw_fail(&cv->j, f.path,
					  "%s is not one of ALLOW, DENY, AUDIT, CUSTOM",
					  nm_jw_show(a, q));
	}
	ret = nm_jw_field(&cv->j, spec, "spec", "provider", JSON_OBJECT, false, &f);
	if (ret < 0)
		return ret;
	if (ret) {
		static const char *const pkeys[] = { "name", NULL };
		struct nm_jw_field fn;

		if ((ret = nm_jw_check_keys(&cv->j, f.v, f.path, pkeys)) ||
		    (ret = nm_jw_field(&cv->j, f.v, f.path, "name", JSON_STRING, false, &fn)) < 0)
			return ret < 0 ? ret : -EINVAL;
		if (p->action != NM_POLICY_CUSTOM)
			return nm_jw_fail(&cv->j, f.path, "provider must not be set with action %s",
					  action_name(p->action));
	}
	/* selector, targetRef, targetRefs: at most one (CRD rule) */
	ret = nm_jw_field(&cv->j, spec, "spec", "selector", JSON_OBJECT, false, &fsel);
	if (ret < 0)
		return ret;
	fsel.v = ret ? fsel.v : NULL;
	ret = nm_jw_field(&cv->j, spec, "spec", "targetRef", JSON_OBJECT, false, &f);
	if (ret < 0)
		return ret;
	if (ret) {
		if ((ret = conv_target_ref(cv, f.v, f.path)))
			return ret;
		has_tr = true;
	}
	ret = nm_jw_field(&cv->j, spec, "spec", "targetRefs", JSON_ARRAY, false, &fr);
	if (ret < 0)
		return ret;
	if (ret) {
		if (has_tr)
			return nm_jw_fail(&cv->j, "spec", "only one of targetRefs or selector can be set");
		if (json_array_size(fr.v) > MAX_TARGET_REFS)
			return nm_jw_fail(&cv->j, fr.path, "%zu entries, at most %d",
					  json_array_size(fr.v), MAX_TARGET_REFS);
		json_array_foreach(fr.v, i, e) {
			char tp[NM_JW_PATH_MAX];

			nm_jw_path_idx(tp, fr.path, i);
			if ((ret = conv_target_ref(cv, e, tp)))
				return ret;
		}
		has_tr = json_array_size(fr.v) > 0;
	}
	if (fsel.v && (has_tr || json_object_get(spec, "targetRefs")))
		return nm_jw_fail(&cv->j, "spec", "only one of targetRefs or selector can be set");
	if (fsel.v) {
		static const char *const skeys[] = { "matchLabels", NULL };
		struct nm_jw_field fm;

		if ((ret = nm_jw_check_keys(&cv->j, fsel.v, fsel.path, skeys)) ||
		    (ret = nm_jw_field(&cv->j, fsel.v, fsel.path, "matchLabels",
				       JSON_OBJECT, false, &fm)) < 0)
			return ret < 0 ? ret : -EINVAL;
		if (ret && (ret = conv_labels_map(cv, fm.v, fm.path, true, &p->labels,
						  &p->n_labels)))
			return ret;
		p->scope = NM_PSCOPE_SELECTOR;
		if (!p->n_labels)
			warn(cv, fsel.path,
			     "a selector without matchLabels selects no workload "
			     "(istiod attaches selector policies by their labels)");
	} else {
		p->scope = strcmp(p->ns, cv->ps->root_ns) ? NM_PSCOPE_NAMESPACE :
							   NM_PSCOPE_GLOBAL;
	}

	ret = nm_jw_field(&cv->j, spec, "spec", "rules", JSON_ARRAY, false, &f);
	if (ret < 0)
		return ret;
	n = ret ? json_array_size(f.v) : 0;
	if (n > MAX_RULES)
		return nm_jw_fail(&cv->j, f.path, "%zu rules, at most %d", n, MAX_RULES);

	/* what ztunnel never receives (istiod's convertAuthorizationPolicy) */
	if (p->action == NM_POLICY_AUDIT || p->action == NM_POLICY_CUSTOM) {
		p->enforced = false;
		warn(cv, "spec.action", "%s is not enforced at L4: istiod sends ztunnel "
		     "no %s policies, so this policy is ignored", action_name(p->action),
		     action_name(p->action));
	} else if (has_tr) {
		p->enforced = false;
		warn(cv, json_object_get(spec, "targetRef") ? "spec.targetRef" : "spec.targetRefs",
		     "a policy with targetRef(s) is for a waypoint or gateway: istiod "
		     "does not send it to ztunnel, so it is ignored here");
	}
	if (p->enforced && p->dry_run)
		warn(cv, "metadata.annotations[\"istio.io/dry-run\"]",
		     "dry-run: evaluated and reported, never enforced");

	if (n) {
		struct nm_pol_rule *r = nm_pol_alloc(cv->ps, n * sizeof(*r));

		if (!r)
			return nomem(cv);
		json_array_foreach(f.v, i, e) {
			char rp[NM_JW_PATH_MAX];

			nm_jw_path_idx(rp, f.path, i);
			ret = conv_rule(cv, p, e, rp, (unsigned int)i, &r[i]);
			if (ret)
				return ret;
		}
		p->rules = r;
		p->n_rules = (unsigned int)n;
	} else if (p->enforced && p->action == NM_POLICY_ALLOW) {
		warn(cv, NULL, "ALLOW without rules matches nothing: it denies every "
		     "connection to the workloads it selects");
	} else if (p->enforced && p->action == NM_POLICY_DENY) {
		warn(cv, NULL, "DENY without rules never matches: it has no effect");
	}
	return 0;
}

int nm_pol_convert(struct nm_policy_set *ps, const json_t *obj,
		   const char *file, unsigned int index, char *err, size_t errlen)
{
	static const char *const keys[] = {
		"apiVersion", "kind", "metadata", "spec", "status", NULL,
	};
	struct conv cv = { .ps = ps };
	struct nm_jw_field f, fm;
	const json_t *md, *name_v, *ns_v, *spec;
	struct nm_pol *p;
	const char *av, *name, *ns = "default";
	char q[NM_JW_SHOW_BUF];
	int ret;

	cv.j.name = cv.label;
	cv.j.err = err;
	cv.j.errlen = errlen;
	/* name the object in every message, as far as it can be named */
	md = json_is_object(obj) ? json_object_get(obj, "metadata") : NULL;
	name_v = json_is_object(md) ? json_object_get(md, "name") : NULL;
	ns_v = json_is_object(md) ? json_object_get(md, "namespace") : NULL;
	if (json_is_string(ns_v))
		ns = json_string_value(ns_v);
	if (json_is_string(name_v) && printable(json_string_value(name_v)) &&
	    printable(ns))
		snprintf(cv.label, sizeof(cv.label), "%s: policy %s/%s", file, ns,
			 json_string_value(name_v));
	else
		snprintf(cv.label, sizeof(cv.label), "%s: object %u", file, index + 1);

	if (!json_is_object(obj))
		return nm_jw_fail(&cv.j, NULL, "expected an object, got %s",
				  nm_jw_type_name(obj));
	ret = nm_jw_check_keys(&cv.j, obj, "", keys);
	if (ret)
		return ret;
	ret = nm_jw_field(&cv.j, obj, "", "apiVersion", JSON_STRING, true, &f);
	if (ret < 0)
		return ret;
	av = json_string_value(f.v);
	if (strcmp(av, "security.istio.io/v1") && strcmp(av, "security.istio.io/v1beta1"))
		return nm_jw_fail(&cv.j, f.path,
				  "%s: expected security.istio.io/v1 or security.istio.io/v1beta1",
				  nm_jw_show(av, q));
	ret = nm_jw_field(&cv.j, obj, "", "kind", JSON_STRING, true, &f);
	if (ret < 0)
		return ret;
	if (strcmp(json_string_value(f.v), "AuthorizationPolicy"))
		return nm_jw_fail(&cv.j, f.path, "%s: only AuthorizationPolicy is read here",
				  nm_jw_show(json_string_value(f.v), q));
	ret = nm_jw_field(&cv.j, obj, "", "metadata", JSON_OBJECT, true, &fm);
	if (ret < 0)
		return ret;
	ret = nm_jw_field(&cv.j, fm.v, "metadata", "name", JSON_STRING, true, &f);
	if (ret < 0)
		return ret;
	name = json_string_value(f.v);
	if (!dns_label(name, MAX_OBJ_NAME, true))
		return nm_jw_fail(&cv.j, f.path, "%s is not a DNS-1123 subdomain "
				  "(lower case alphanumerics, '-' and '.', at most 253)",
				  nm_jw_show(name, q));
	ret = nm_jw_field(&cv.j, fm.v, "metadata", "namespace", JSON_STRING, false, &f);
	if (ret < 0)
		return ret;
	if (ret && !dns_label(ns, MAX_NS_NAME, false))
		return nm_jw_fail(&cv.j, f.path, "%s is not a DNS-1123 label "
				  "(lower case alphanumerics and '-', at most 63)",
				  nm_jw_show(ns, q));
	ret = nm_jw_field(&cv.j, obj, "", "spec", JSON_OBJECT, false, &f);
	if (ret < 0)
		return ret;
	spec = ret ? f.v : NULL;

	p = nm_pol_new(ps);
	if (!p)
		return nomem(&cv);
	p->ns = nm_pol_strdup(ps, ns, strlen(ns));
	p->name = nm_pol_strdup(ps, name, strlen(name));
	p->file = nm_pol_strdup(ps, file, strlen(file));
	if (!p->ns || !p->name || !p->file)
		return nomem(&cv);
	cv.ns = p->ns;
	ret = conv_metadata(&cv, p, fm.v);
	if (ret)
		return ret;
	/* status is the controller's: preserved, never read */
	return conv_spec(&cv, p, spec);
}
