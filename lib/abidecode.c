// SPDX-License-Identifier: Apache-2.0
/* abidecode.c - nm_abi.h records as JSON (abidecode.h). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>

#include "nm_abi.h"
#include "lib/abidecode.h"
#include "lib/addr.h"

enum kind {
	K_U32, K_U64, K_WL_ID, K_WL, K_SVC_KEY, K_SVC, K_BE_KEY, K_BE, K_ADDR, K_EP,
	K_ORIG, K_TUPLE, K_POL_KEY, K_POL, K_LB_SET, K_MG_KEY, K_STATE, K_WL_STATS,
	K_CONN_KEY, K_MESH_CONN, K_STRICT_STATS, K_MAP_ID,
};

struct map_desc {
	const char *name;
	enum kind key, val;
};

static const struct map_desc maps[] = {
	{ "nm_workloads", K_U64, K_WL },
	{ "nm_services", K_SVC_KEY, K_SVC },
	{ "nm_backends", K_BE_KEY, K_BE },
	{ "nm_endpoints", K_ADDR, K_EP },
	{ "nm_orig_cookie", K_U64, K_ORIG },
	{ "nm_orig_tuple", K_TUPLE, K_ORIG },
	{ "nm_policy", K_POL_KEY, K_POL },
	{ "nm_lb_sets", K_BE_KEY, K_LB_SET },
	{ "nm_maglev", K_MG_KEY, K_U32 },
	{ "nm_lb_rr", K_BE_KEY, K_U32 },
	{ "nm_lb_active", K_WL_ID, K_U64 },
	{ "nm_lb_conn", K_U64, K_WL_ID },
	{ "nm_agent_state", K_U32, K_STATE },
	{ "nm_wl_stats", K_WL_ID, K_WL_STATS },
	{ "nm_mesh_conns", K_CONN_KEY, K_MESH_CONN },
	{ "nm_probers", K_ADDR, K_U32 },
	{ "nm_strict_drops", K_WL_ID, K_STRICT_STATS },
	{ "nm_map_errors", K_MAP_ID, K_U64 },
};

static size_t kind_size(enum kind k)
{
	switch (k) {
	case K_U32: return 4;
	case K_WL_ID: return 4;
	case K_U64: return 8;
	case K_WL: return sizeof(struct nm_workload);
	case K_SVC_KEY: return sizeof(struct nm_svc_key);
	case K_SVC: return sizeof(struct nm_service);
	case K_BE_KEY: return sizeof(struct nm_backend_key);
	case K_BE: return sizeof(struct nm_backend);
	case K_ADDR: return sizeof(struct nm_addr);
	case K_EP: return sizeof(struct nm_endpoint);
	case K_ORIG: return sizeof(struct nm_orig);
	case K_TUPLE: return sizeof(struct nm_tuple_key);
	case K_POL_KEY: return sizeof(struct nm_policy_key);
	case K_POL: return sizeof(struct nm_policy_val);
	case K_LB_SET: return sizeof(struct nm_lb_set);
	case K_MG_KEY: return sizeof(struct nm_maglev_key);
	case K_STATE: return sizeof(struct nm_agent_state);
	case K_WL_STATS: return sizeof(struct nm_wl_stats);
	case K_CONN_KEY: return sizeof(struct nm_conn_key);
	case K_MESH_CONN: return sizeof(struct nm_mesh_conn);
	case K_STRICT_STATS: return sizeof(struct nm_strict_stats);
	case K_MAP_ID: return 4;
	}
	return 0;
}

static const struct map_desc *find(const char *map)
{
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		if (!strcmp(maps[i].name, map))
			return &maps[i];
	return NULL;
}

bool nm_abi_map_known(const char *map, size_t key_size, size_t value_size)
{
	const struct map_desc *d = find(map);

	return d && kind_size(d->key) == key_size && kind_size(d->val) == value_size;
}

json_t *nm_abi_hex_json(const void *p, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *b = p;
	char buf[2 * 512 + 1];
	size_t n = len > 512 ? 512 : len;

	for (size_t i = 0; i < n; i++) {
		buf[2 * i] = hex[b[i] >> 4];
		buf[2 * i + 1] = hex[b[i] & 15];
	}
	buf[2 * n] = '\0';
	return json_string(buf);
}

const char *nm_abi_map_name(unsigned int id)
{
	static const char *const names[] = {
#define NM_MAP_ID_NAME(id, name) #name,
		NM_MAP_IDS(NM_MAP_ID_NAME)
#undef NM_MAP_ID_NAME
	};

	return id < sizeof(names) / sizeof(names[0]) ? names[id] : NULL;
}

const char *nm_abi_lb_algo_name(unsigned int algo)
{
	static const char *const n[] = { "random", "round_robin", "least_request",
					 "maglev" };

	return algo < 4 ? n[algo] : "unknown";
}

const char *nm_abi_locality_name(unsigned int loc)
{
	static const char *const n[] = { "failover", "strict", "none" };

	return loc < 3 ? n[loc] : "unknown";
}

static void flag_names(unsigned int flags, const char *const *names,
		       unsigned int nnames, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned int i = 0; i < nnames; i++) {
		if (!(flags & (1u << i)))
			continue;
		off += snprintf(buf + off, off < len ? len - off : 0, "%s%s",
				off ? "|" : "", names[i]);
		flags &= ~(1u << i);
	}
	if (flags)
		off += snprintf(buf + off, off < len ? len - off : 0, "%s0x%x",
				off ? "|" : "", flags);
	if (!off)
		snprintf(buf, len, "-");
}

void nm_abi_wl_flags(unsigned int flags, char *buf, size_t len)
{
	static const char *const n[] = { "MESHED", "STRICT" };

	flag_names(flags, n, 2, buf, len);
}

void nm_abi_ep_flags(unsigned int flags, char *buf, size_t len)
{
	static const char *const n[] = { "LOCAL", "EJECTED", "STRICT" };

	flag_names(flags, n, 3, buf, len);
}

void nm_abi_orig_flags(unsigned int flags, char *buf, size_t len)
{
	static const char *const n[] = { "SERVICE", "ENDPOINT", "LOCAL", "V6",
					 "LB_COUNT", "KERNEL", "DST_STRICT" };

	flag_names(flags, n, 7, buf, len);
}

void nm_abi_addr_port(const void *addr16, unsigned int port, char *buf, size_t len)
{
	struct nm_addr a;
	char host[64];

	memcpy(&a, addr16, sizeof(a));
	nm_addr_format(&a, host, sizeof(host));
	nm_abi_hostport(host, port, buf, len);
}

void nm_abi_hostport(const char *host, unsigned int port, char *buf, size_t len)
{
	snprintf(buf, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

static json_t *nm_json_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *addr_json(const struct nm_addr *a)
{
	char buf[64];

	nm_addr_format(a, buf, sizeof(buf));
	return json_string(buf);
}

/* {"port", "v6", "k"} of a backend slot (NM_BACKEND_SLOT). */
static json_t *slot_json(uint32_t slot)
{
	return json_pack("{s:i, s:b, s:i}", "port", (int)(slot >> 16),
			 "v6", (slot & 0x8000u) != 0, "k", (int)(slot & 0x7fffu));
}

static json_t *flags_json(void (*fn)(unsigned int, char *, size_t), unsigned int f)
{
	char buf[128];

	fn(f, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *decode_strict(enum kind k, const void *p);

static json_t *decode(enum kind k, const void *p)
{
	char buf[96];

	switch (k) {
	case K_U32: {
		uint32_t v;

		memcpy(&v, p, sizeof(v));
		return json_integer(v);
	}
	case K_WL_ID: {
		uint32_t v;

		/* An object, so the CLI can name the workload next to it. */
		memcpy(&v, p, sizeof(v));
		return json_pack("{s:I}", "workload_id", (json_int_t)v);
	}
	case K_U64: {
		uint64_t v;

		memcpy(&v, p, sizeof(v));
		return json_integer((json_int_t)v);
	}
	case K_WL: {
		struct nm_workload w;

		memcpy(&w, p, sizeof(w));
		return json_pack("{s:I, s:I, s:I, s:o, s:o}",
				 "workload_id", (json_int_t)w.workload_id,
				 "identity_id", (json_int_t)w.identity_id,
				 "namespace_id", (json_int_t)w.namespace_id,
				 "flags", flags_json(nm_abi_wl_flags, w.flags),
				 "address", addr_json(&w.addr));
	}
	case K_SVC_KEY: {
		struct nm_svc_key s;

		memcpy(&s, p, sizeof(s));
		nm_abi_addr_port(&s.vip, ntohs(s.port), buf, sizeof(buf));
		return json_pack("{s:o, s:i, s:i, s:s}", "vip", addr_json(&s.vip),
				 "port", ntohs(s.port), "proto", s.proto, "vip_port", buf);
	}
	case K_SVC: {
		struct nm_service s;

		memcpy(&s, p, sizeof(s));
		return json_pack("{s:I, s:I, s:s, s:I}",
				 "service_id", (json_int_t)s.service_id,
				 "backend_count", (json_int_t)s.backend_count,
				 "lb", nm_abi_lb_algo_name(s.lb_algo),
				 "flags", (json_int_t)s.flags);
	}
	case K_BE_KEY: {
		struct nm_backend_key b;

		memcpy(&b, p, sizeof(b));
		return json_pack("{s:I, s:I, s:o}", "service_id", (json_int_t)b.service_id,
				 "slot", (json_int_t)b.slot, "slot_fields", slot_json(b.slot));
	}
	case K_BE: {
		struct nm_backend b;

		memcpy(&b, p, sizeof(b));
		return json_pack("{s:o, s:i, s:i, s:o, s:I, s:I}",
				 "address", addr_json(&b.addr), "port", ntohs(b.port),
				 "weight", b.weight,
				 "flags", flags_json(nm_abi_ep_flags, b.flags),
				 "workload_id", (json_int_t)b.workload_id,
				 "identity_id", (json_int_t)b.identity_id);
	}
	case K_ADDR: {
		struct nm_addr a;

		memcpy(&a, p, sizeof(a));
		return addr_json(&a);
	}
	case K_EP: {
		struct nm_endpoint e;

		memcpy(&e, p, sizeof(e));
		return json_pack("{s:I, s:I, s:I, s:o}",
				 "workload_id", (json_int_t)e.workload_id,
				 "identity_id", (json_int_t)e.identity_id,
				 "node_id", (json_int_t)e.node_id,
				 "flags", flags_json(nm_abi_ep_flags, e.flags));
	}
	case K_ORIG: {
		struct nm_orig o;

		memcpy(&o, p, sizeof(o));
		return json_pack("{s:o, s:i, s:o, s:i, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:I}",
				 "orig_dst", addr_json(&o.orig_dst), "orig_port", ntohs(o.orig_port),
				 "backend", addr_json(&o.backend), "backend_port", ntohs(o.backend_port),
				 "src_workload_id", (json_int_t)o.src_workload_id,
				 "src_identity_id", (json_int_t)o.src_identity_id,
				 "service_id", (json_int_t)o.service_id,
				 "dst_workload_id", (json_int_t)o.dst_workload_id,
				 "dst_identity_id", (json_int_t)o.dst_identity_id,
				 "flags", flags_json(nm_abi_orig_flags, o.flags),
				 "generation", (json_int_t)o.generation,
				 "cookie", (json_int_t)o.cookie,
				 "stamp_ns", (json_int_t)o.stamp_ns);
	}
	case K_TUPLE: {
		struct nm_tuple_key t;

		memcpy(&t, p, sizeof(t));
		return json_pack("{s:o, s:i}", "address", addr_json(&t.addr),
				 "port", ntohs(t.port));
	}
	case K_POL_KEY: {
		struct nm_policy_key k2;

		memcpy(&k2, p, sizeof(k2));
		return json_pack("{s:I, s:I, s:i}",
				 "src_workload_id", (json_int_t)k2.src_workload_id,
				 "dst_workload_id", (json_int_t)k2.dst_workload_id,
				 "port", ntohs(k2.port));
	}
	case K_POL: {
		struct nm_policy_val v;

		memcpy(&v, p, sizeof(v));
		return json_pack("{s:s, s:I}",
				 "verdict", v.verdict == NM_PV_ALLOW ? "allow" :
					    v.verdict == NM_PV_DENY ? "deny" : "unknown",
				 "policy_id", (json_int_t)v.policy_id);
	}
	case K_LB_SET: {
		struct nm_lb_set s;
		json_t *subs = json_array();

		memcpy(&s, p, sizeof(s));
		for (uint32_t i = 0; i < s.n_subsets && i < NM_LB_MAX_SUBSETS; i++) {
			const struct nm_lb_subset *u = &s.subsets[i];

			json_array_append_new(subs, json_pack("{s:I, s:i, s:[iii], s:I}",
				"weight_end", (json_int_t)u->weight_end, "start", u->start,
				"tiers", u->n[0], u->n[1], u->n[2],
				"maglev_size", (json_int_t)u->maglev_size));
		}
		return json_pack("{s:I, s:I, s:s, s:o}",
				 "n_subsets", (json_int_t)s.n_subsets,
				 "total_weight", (json_int_t)s.total_weight,
				 "locality", nm_abi_locality_name(s.locality),
				 "subsets", subs);
	}
	case K_MG_KEY: {
		struct nm_maglev_key m;

		memcpy(&m, p, sizeof(m));
		return json_pack("{s:I, s:I, s:I}", "service_id", (json_int_t)m.service_id,
				 "set", (json_int_t)m.set, "idx", (json_int_t)m.idx);
	}
	case K_STATE: {
		struct nm_agent_state s;

		memcpy(&s, p, sizeof(s));
		return json_pack("{s:I, s:I, s:s, s:o, s:o, s:i, s:i, s:b, s:I}",
				 "heartbeat_ns", (json_int_t)s.heartbeat_ns,
				 "config_generation", (json_int_t)s.config_generation,
				 "fail_mode", s.fail_mode == NM_FAIL_OPEN ? "open" : "closed",
				 "agent_v4", addr_json(&s.agent_v4),
				 "agent_v6", addr_json(&s.agent_v6),
				 "outbound_port", ntohs(s.outbound_port),
				 "flags", (int)s.flags,
				 "kernel_path", (s.flags & NM_AGENT_F_KERNEL_PATH) != 0,
				 "abi_version", (json_int_t)s.abi_version);
	}
	case K_CONN_KEY:
	case K_MESH_CONN:
	case K_STRICT_STATS:
		return decode_strict(k, p);
	case K_MAP_ID: {
		uint32_t v;

		memcpy(&v, p, sizeof(v));
		return json_pack("{s:I, s:o}", "map_id", (json_int_t)v,
				 "map", nm_json_or_null(nm_abi_map_name(v)));
	}
	case K_WL_STATS: {
		struct nm_wl_stats w;

		memcpy(&w, p, sizeof(w));
		return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
				 "connects", (json_int_t)w.connects,
				 "redirects", (json_int_t)w.redirects,
				 "denies", (json_int_t)w.denies,
				 "passthrough", (json_int_t)w.passthrough,
				 "bytes", (json_int_t)w.bytes,
				 "errors", (json_int_t)w.errors,
				 "kernel_flows", (json_int_t)w.kernel_flows);
	}
	}
	return json_null();
}

/* Records of strict inbound (nm_ingress). */
static json_t *decode_strict(enum kind k, const void *p)
{
	char src[96], dst[96];

	switch (k) {
	case K_CONN_KEY: {
		struct nm_conn_key c;

		memcpy(&c, p, sizeof(c));
		nm_abi_addr_port(&c.saddr, ntohs(c.sport), src, sizeof(src));
		nm_abi_addr_port(&c.daddr, ntohs(c.dport), dst, sizeof(dst));
		return json_pack("{s:s, s:s}", "src", src, "dst", dst);
	}
	case K_MESH_CONN: {
		struct nm_mesh_conn m;

		memcpy(&m, p, sizeof(m));
		return json_pack("{s:I, s:b}", "workload_id", (json_int_t)m.workload_id,
				 "kernel_path", (m.flags & NM_MESH_CONN_KERNEL) != 0);
	}
	case K_STRICT_STATS: {
		struct nm_strict_stats st;

		memcpy(&st, p, sizeof(st));
		return json_pack("{s:I, s:I, s:I, s:I}", "drops", (json_int_t)st.drops,
				 "mesh_admits", (json_int_t)st.mesh_admits,
				 "prober_admits", (json_int_t)st.prober_admits,
				 "unparsed", (json_int_t)st.unparsed);
	}
	default:
		return json_null();
	}
}

json_t *nm_abi_key_json(const char *map, const void *key, size_t key_size)
{
	const struct map_desc *d = find(map);

	if (!d || kind_size(d->key) != key_size)
		return nm_abi_hex_json(key, key_size);
	return decode(d->key, key);
}

json_t *nm_abi_value_json(const char *map, const void *val, size_t value_size,
			  unsigned int ncpus, bool percpu)
{
	const struct map_desc *d = find(map);
	size_t stride = (value_size + 7) & ~(size_t)7;
	const unsigned char *b = val;
	json_t *arr;

	if (!percpu) {
		if (!d || kind_size(d->val) != value_size)
			return nm_abi_hex_json(val, value_size);
		return decode(d->val, val);
	}
	if (d && d->val == K_WL_STATS && value_size == sizeof(struct nm_wl_stats)) {
		struct nm_wl_stats sum = { 0 }, w;

		for (unsigned int c = 0; c < ncpus; c++) {
			memcpy(&w, b + c * stride, sizeof(w));
			sum.connects += w.connects;
			sum.redirects += w.redirects;
			sum.denies += w.denies;
			sum.passthrough += w.passthrough;
			sum.bytes += w.bytes;
			sum.errors += w.errors;
			sum.kernel_flows += w.kernel_flows;
		}
		return decode(K_WL_STATS, &sum);
	}
	if (d && d->val == K_U64 && value_size == sizeof(uint64_t)) {
		uint64_t sum = 0, v;

		for (unsigned int c = 0; c < ncpus; c++) {
			memcpy(&v, b + c * stride, sizeof(v));
			sum += v;
		}
		return json_integer((json_int_t)sum);
	}
	if (d && d->val == K_STRICT_STATS && value_size == sizeof(struct nm_strict_stats)) {
		struct nm_strict_stats sum = { 0 }, st;

		for (unsigned int c = 0; c < ncpus; c++) {
			memcpy(&st, b + c * stride, sizeof(st));
			sum.drops += st.drops;
			sum.mesh_admits += st.mesh_admits;
			sum.prober_admits += st.prober_admits;
			sum.unparsed += st.unparsed;
		}
		return decode_strict(K_STRICT_STATS, &sum);
	}
	arr = json_array();
	for (unsigned int c = 0; c < ncpus; c++)
		json_array_append_new(arr, d && kind_size(d->val) == value_size ?
				      decode(d->val, b + c * stride) :
				      nm_abi_hex_json(b + c * stride, value_size));
	return json_pack("{s:o}", "per_cpu", arr);
}
