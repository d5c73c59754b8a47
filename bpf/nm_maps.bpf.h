/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nm_maps.bpf.h - every map nodemesh's BPF programs share, declared once.
 *
 * Each BPF object includes this header, so each object carries the same map
 * definitions. All are pinned by name (LIBBPF_PIN_BY_NAME): the loader sets
 * pin_root_path to /sys/fs/bpf/nodemesh/<instance>, the first object creates
 * and pins the maps and the next ones reuse the pins, so connect4/6 and
 * sockops see the same records. Names start with nm_; keys and values come
 * from nm_abi.h so the maps carry BTF and `bpftool map dump pinned` prints
 * typed records. The kernel keeps 15 characters of a map name, so
 * nm_orig_cookie and nm_orig_tuple show as nm_orig_by_cook and
 * nm_orig_by_tupl in `bpftool map list`; their pins carry the full names.
 */
#ifndef NM_MAPS_BPF_H
#define NM_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "nm_abi.h"
#include "nm_events.h"

/* cgroup id -> workload; written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_WORKLOADS);
	__type(key, __u64);
	__type(value, struct nm_workload);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_workloads SEC(".maps");

/* VIP, port, proto -> service; written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_SERVICES);
	__type(key, struct nm_svc_key);
	__type(value, struct nm_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_services SEC(".maps");

/* service id, slot -> backend; written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_BACKENDS);
	__type(key, struct nm_backend_key);
	__type(value, struct nm_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_backends SEC(".maps");

/* pod address -> endpoint; written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_ENDPOINTS);
	__type(key, struct nm_addr);
	__type(value, struct nm_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_endpoints SEC(".maps");

/*
 * socket cookie -> original destination; written by connect4/6, moved by
 * sockops. LRU so connects that never establish (agent down, RST) age out
 * instead of filling the map.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NM_MAX_ORIG);
	__type(key, __u64);
	__type(value, struct nm_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_orig_cookie SEC(".maps");

/*
 * client address, port -> original destination; written by sockops, read and
 * deleted by the agent on accept(). LRU for clients the agent never accepts.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NM_MAX_ORIG);
	__type(key, struct nm_tuple_key);
	__type(value, struct nm_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_orig_tuple SEC(".maps");

/*
 * source workload, destination workload, backend port -> verdict; compiled by
 * the agent from the AuthorizationPolicy set (agent/policy/compile.h,
 * docs/policy-maps.md). No entry: the destination agent decides.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_POLICY_RECS);
	__type(key, struct nm_policy_key);
	__type(value, struct nm_policy_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_policy SEC(".maps");

/*
 * Load balancing (nm_abi.h, nm_lb.bpf.h). nm_lb_sets and nm_maglev are
 * written by the agent; nm_maglev holds many small tables, so it allocates
 * on demand. nm_lb_rr, nm_lb_active and nm_lb_conn are the kernel's own:
 * LRU, so entries of services and endpoints that went away age out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_SERVICES * 4);
	__type(key, struct nm_backend_key);
	__type(value, struct nm_lb_set);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_lb_sets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_MAGLEV_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nm_maglev_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_maglev SEC(".maps");

/* round_robin: per CPU, so the hot path needs no atomics (fairness: each
 * CPU cycles on its own; docs/load-balancing.md). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, NM_MAX_SERVICES * 4);
	__type(key, struct nm_backend_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_lb_rr SEC(".maps");

/* least_request: open connections per endpoint (workload id). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NM_MAX_LB_ACTIVE);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_lb_active SEC(".maps");

/* least_request: socket cookie -> the workload id it is counted on. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NM_MAX_ORIG);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_lb_conn SEC(".maps");

/* key 0: the agent's listener addresses, heartbeat and fail mode. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nm_agent_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_agent_state SEC(".maps");

/*
 * Strict inbound (nm_ingress.bpf.h): the 4-tuples admitted into STRICT
 * workloads. The agent writes and deletes its own connections to its pods;
 * sockops those of kernel-path clients (NM_MESH_CONN_KERNEL). LRU for
 * either that never cleans up.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NM_MAX_MESH_CONNS);
	__type(key, struct nm_conn_key);
	__type(value, struct nm_mesh_conn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_mesh_conns SEC(".maps");

/* workload id -> counters, per CPU so the hot path needs no atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, NM_MAX_WORKLOADS);
	__type(key, __u32);
	__type(value, struct nm_wl_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_wl_stats SEC(".maps");

/*
 * Telemetry (nm_telemetry.bpf.h, include/nm_events.h). nm_sock_stats: per
 * tracked socket, freed with the socket. nm_events: a ring buffer, turned
 * into a perf event array by the loader where the kernel has no ring buffer
 * (the programs then take the perf branch, nm_cfg_perfbuf). nm_map_errors:
 * failed updates per map (enum nm_map_id), per CPU.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct nm_sock_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_sock_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, NM_EVENTS_RINGBUF_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NM_MAP_ID_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_map_errors SEC(".maps");

#define NM_EEXIST 17

static __always_inline void nm_map_error(__u32 id)
{
	__u64 *n = bpf_map_lookup_elem(&nm_map_errors, &id);

	if (n)
		(*n)++;
}

/*
 * bpf_map_update_elem() that counts its failures in nm_map_errors[id]. An
 * EEXIST from a BPF_NOEXIST insert means another CPU (or an earlier call)
 * made the entry: the caller wanted it to exist, so it is no failure.
 */
static __always_inline long nm_map_update(void *map, __u32 id, const void *key,
					  const void *val, __u64 flags)
{
	long ret = bpf_map_update_elem(map, key, val, flags);

	if (ret && ret != -NM_EEXIST)
		nm_map_error(id);
	return ret;
}

#endif /* NM_MAPS_BPF_H */
