// SPDX-License-Identifier: Apache-2.0
/*
 * fields.c - typed values of the cluster file (fields.h). Names follow the
 * Kubernetes rules so a file that loads here would also be a valid set of
 * Kubernetes objects; SPIFFE IDs go through the one validator in lib/.
 * Nothing is truncated to fit a fixed buffer: a value that does not fit is
 * an error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/fields.h"
#include "lib/addr.h"
#include "lib/spiffe.h"

/* --- name rules ---------------------------------------------------------- */

static bool is_lower_alnum(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static bool is_alnum(char ch)
{
	return is_lower_alnum(ch) || (ch >= 'A' && ch <= 'Z');
}

bool nm_cfg_dns_label_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 63)
		return false;
	if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

bool nm_cfg_dns_subdomain_ok(const char *s, size_t n, size_t max)
{
	size_t start = 0, i;

	if (n == 0 || n > max)
		return false;
	for (i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (!nm_cfg_dns_label_ok(s + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

/* Label name part: [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?, <= 63. */
static bool label_name_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 63)
		return false;
	if (!is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

/* Label key: [prefix/]name, prefix a DNS subdomain. */
static bool label_key_ok(const char *s)
{
	const char *slash = strchr(s, '/');

	if (!slash)
		return label_name_ok(s, strlen(s));
	return nm_cfg_dns_subdomain_ok(s, (size_t)(slash - s), 253) &&
	       label_name_ok(slash + 1, strlen(slash + 1));
}

static bool label_value_ok(const char *s)
{
	return *s == '\0' || label_name_ok(s, strlen(s));
}

/*
 * Lowercase letters, digits, '.', '-', '_' (the SPIFFE spec's set), starting
 * and ending with a letter or digit, no empty part. Stricter than what
 * nm_spiffe_parse() takes in a peer's ID (which allows a leading '-' or
 * '_'): the trust domain is also the suffix of every SNI name we send.
 */
bool nm_cfg_trust_domain_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 63 || !is_lower_alnum(s[0]) ||
	    !is_lower_alnum(s[n - 1]))
		return false;
	for (i = 0; i < n; i++) {
		char ch = s[i];

		if (!is_lower_alnum(ch) && ch != '.' && ch != '-' && ch != '_')
			return false;
		if (ch == '.' && s[i + 1] == '.')
			return false;
	}
	return true;
}

/* --- getters ------------------------------------------------------------- */

int nm_cfg_get_name(struct nm_cfg_parser *p, const json_t *obj,
		    const char *parent, const char *key, char *dst)
{
	struct nm_jw_field f;
	char q[NM_JW_SHOW_BUF];
	int ret = nm_jw_get_str(&p->j, obj, parent, key, true, dst, NM_NAME_MAX, &f);

	if (ret < 0)
		return ret;
	if (!nm_cfg_dns_label_ok(dst, strlen(dst)))
		return nm_jw_fail(&p->j, f.path,
				  "%s is not a valid name (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63)",
				  nm_jw_show(dst, q));
	return 0;
}

int nm_cfg_get_port(struct nm_cfg_parser *p, const json_t *obj,
		    const char *parent, const char *key, bool required,
		    uint16_t *out)
{
	long long v;
	int ret = nm_jw_get_int(&p->j, obj, parent, key, required, 1, 65535,
				"a port number (1..65535)", &v);

	if (ret == 1)
		*out = (uint16_t)v;
	return ret;
}

static bool ip_is_zero(const struct nm_addr *ip, size_t from)
{
	size_t i;

	for (i = from; i < sizeof(ip->a); i++)
		if (ip->a[i])
			return false;
	return true;
}

/* Addresses a node, pod or VIP can never have. NULL when usable. */
static const char *ip_unusable(const struct nm_addr *ip)
{
	if (nm_addr_is_v4(ip)) {
		if (ip_is_zero(ip, 12))
			return "the unspecified address";
		if ((ip->a[12] & 0xf0) == 0xe0)
			return "a multicast address";
		if (ip->a[12] == 255 && ip->a[13] == 255 && ip->a[14] == 255 &&
		    ip->a[15] == 255)
			return "the broadcast address";
		return NULL;
	}
	if (ip_is_zero(ip, 0))
		return "the unspecified address";
	if (ip->a[0] == 0xff)
		return "a multicast address";
	return NULL;
}

int nm_cfg_get_ip(struct nm_cfg_parser *p, const json_t *obj,
		  const char *parent, const char *key, bool want_v6,
		  bool required, struct nm_addr *out)
{
	struct nm_jw_field f;
	char q[NM_JW_SHOW_BUF];
	const char *s, *why;
	bool v6;
	int ret = nm_jw_field(&p->j, obj, parent, key, JSON_STRING, required, &f);

	if (ret <= 0)
		return ret;
	s = json_string_value(f.v);
	if (nm_addr_parse(s, out, &v6) || v6 != want_v6 ||
	    (want_v6 && nm_addr_is_v4(out)))
		return nm_jw_fail(&p->j, f.path, "%s is not an %s address",
				  nm_jw_show(s, q), want_v6 ? "IPv6" : "IPv4");
	why = ip_unusable(out);
	if (why)
		return nm_jw_fail(&p->j, f.path, "%s cannot be used here (%s)",
				  nm_jw_show(s, q), why);
	return 1;
}

int nm_cfg_get_ip_pair(struct nm_cfg_parser *p, const json_t *obj,
		       const char *parent, const char *key, struct nm_addr *ip,
		       struct nm_addr *ip6, bool *has_ip6)
{
	char key6[NM_JW_SHOW_MAX];
	int ret;

	if (nm_cfg_get_ip(p, obj, parent, key, false, true, ip) < 0)
		return -EINVAL;
	snprintf(key6, sizeof(key6), "%s6", key);
	ret = nm_cfg_get_ip(p, obj, parent, key6, true, false, ip6);
	if (ret < 0)
		return ret;
	*has_ip6 = ret == 1;
	return 0;
}

/* cgroup paths stay as written; only catch what can never be right. */
int nm_cfg_get_cgroup(struct nm_cfg_parser *p, const json_t *obj,
		      const char *parent, const char *key, char *dst)
{
	struct nm_jw_field f;
	char q[NM_JW_SHOW_BUF];
	const char *s;
	int ret = nm_jw_get_str(&p->j, obj, parent, key, false, dst,
				NM_PATH_MAX, &f);

	if (ret <= 0)
		return ret;
	if (!*dst)
		return nm_jw_fail(&p->j, f.path,
				  "must not be empty (leave the field out instead)");
	for (s = dst; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return nm_jw_fail(&p->j, f.path,
					  "%s contains a control character",
					  nm_jw_show(dst, q));
	}
	/* ".." would let a path climb out of the cgroup v2 mount. */
	for (s = dst; *s;) {
		size_t n = strcspn(s, "/");

		if (n == 2 && s[0] == '.' && s[1] == '.')
			return nm_jw_fail(&p->j, f.path, "%s must not contain \"..\"",
					  nm_jw_show(dst, q));
		s += n;
		if (*s == '/')
			s++;
	}
	return 1;
}

int nm_cfg_get_labels(struct nm_cfg_parser *p, const json_t *obj,
		      const char *parent, const char *key, bool required,
		      struct nm_label *labels, unsigned int *n)
{
	struct nm_jw_field f;
	const char *k;
	json_t *v;
	size_t size;
	int ret = nm_jw_field(&p->j, obj, parent, key, JSON_OBJECT, required, &f);

	*n = 0;
	if (ret <= 0)
		return ret;
	size = json_object_size(f.v);
	if (size > NM_MAX_LABELS)
		return nm_jw_fail(&p->j, f.path, "too many labels (%zu, at most %d)",
				  size, NM_MAX_LABELS);
	if (required && size == 0)
		return nm_jw_fail(&p->j, f.path, "must name at least one label");
	json_object_foreach((json_t *)f.v, k, v) {
		struct nm_label *l = &labels[*n];
		char path[NM_JW_PATH_MAX], q[NM_JW_SHOW_BUF];
		const char *val;

		nm_jw_path_key(path, f.path, k);
		if (!json_is_string(v))
			return nm_jw_fail(&p->j, path, "expected a string, got %s",
					  nm_jw_type_name(v));
		if (strlen(k) >= sizeof(l->key))
			return nm_jw_fail(&p->j, path,
					  "label key %s is too long (%zu bytes, at most %zu)",
					  nm_jw_show(k, q), strlen(k), sizeof(l->key) - 1);
		if (!label_key_ok(k))
			return nm_jw_fail(&p->j, path,
					  "%s is not a valid label key ([prefix/]name; name is letters, digits, '-', '_', '.', starting and ending with a letter or digit)",
					  nm_jw_show(k, q));
		val = json_string_value(v);
		ret = nm_jw_copy_str(&p->j, path, val, l->value, sizeof(l->value));
		if (ret)
			return ret;
		if (!label_value_ok(val))
			return nm_jw_fail(&p->j, path,
					  "%s is not a valid label value (empty, or letters, digits, '-', '_', '.', starting and ending with a letter or digit)",
					  nm_jw_show(val, q));
		memcpy(l->key, k, strlen(k) + 1);
		(*n)++;
	}
	return 1;
}

int nm_cfg_get_sockaddr(struct nm_cfg_parser *p, const json_t *obj,
			const char *parent, const char *key, bool required,
			bool may_be_any, struct sockaddr_storage *out)
{
	struct nm_jw_field f;
	char q[NM_JW_SHOW_BUF];
	const char *s;
	bool any;
	int ret = nm_jw_field(&p->j, obj, parent, key, JSON_STRING, required, &f);

	if (ret <= 0)
		return ret;
	s = json_string_value(f.v);
	if (nm_sockaddr_parse(s, out))
		return nm_jw_fail(&p->j, f.path,
				  "%s is not an address:port (like \"127.0.0.1:8080\" or \"[::1]:8080\")",
				  nm_jw_show(s, q));
	if (out->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)out;

		if (sin->sin_port == 0)
			goto port_zero;
		any = sin->sin_addr.s_addr == htonl(INADDR_ANY);
	} else {
		const struct sockaddr_in6 *sin6 = (const void *)out;

		if (sin6->sin6_port == 0)
			goto port_zero;
		any = IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
	}
	if (any && !may_be_any)
		return nm_jw_fail(&p->j, f.path,
				  "%s: cannot connect to the unspecified address",
				  nm_jw_show(s, q));
	return 1;

port_zero:
	return nm_jw_fail(&p->j, f.path, "%s: port 0 is not allowed",
			  nm_jw_show(s, q));
}

int nm_cfg_get_spiffe(struct nm_cfg_parser *p, const char *path,
		      const json_t *v, char *dst)
{
	char q[NM_JW_SHOW_BUF], got[NM_JW_SHOW_BUF], want[NM_JW_SHOW_BUF];
	struct nm_spiffe_id id;
	const char *why = NULL;
	int ret;

	if (!json_is_string(v))
		return nm_jw_fail(&p->j, path, "expected a string, got %s",
				  nm_jw_type_name(v));
	ret = nm_jw_copy_str(&p->j, path, json_string_value(v), dst,
			     NM_SPIFFE_MAX);
	if (ret)
		return ret;
	if (nm_spiffe_parse(dst, &id, &why))
		return nm_jw_fail(&p->j, path,
				  "%s is not a SPIFFE ID of the form spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT (%s)",
				  nm_jw_show(dst, q), why ? why : "malformed");
	if (strcmp(id.trust_domain, p->c->trust_domain) != 0)
		return nm_jw_fail(&p->j, path, "%s is in trust domain %s, not %s",
				  nm_jw_show(dst, q), nm_jw_show(id.trust_domain, got),
				  nm_jw_show(p->c->trust_domain, want));
	return 0;
}
