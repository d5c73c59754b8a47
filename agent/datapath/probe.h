/* SPDX-License-Identifier: Apache-2.0 */
/*
 * probe.h - what the running kernel can do for nodemesh, found at start-up.
 *
 * Every feature is detected by asking the kernel, never by comparing version
 * numbers (distributions backport): libbpf's libbpf_probe_bpf_* loads tiny
 * programs and maps, the cgroup bpf_link is tried for real on a temporary
 * cgroup the probe creates and removes (never the root cgroup), and kTLS is
 * tried on a connected loopback TCP socket.
 *
 * The agent refuses to start without the required features
 * (nm_probe_required_missing() names the first one missing and the kernel
 * that brought it); the optional ones each have a fallback that
 * nm_probe_choose() applies and `nodemesh status` reports. docs/kernels.md
 * lists both per kernel.
 */
#ifndef NM_PROBE_H
#define NM_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct nm_features {
	/* optional: each has a fallback */
	bool ringbuf;      /* BPF_MAP_TYPE_RINGBUF (5.8): flow events */
	bool sk_storage;   /* sk_storage map + helper in sockops: per-socket stats */
	bool cgroup_link;  /* bpf_link for cgroup hooks (5.7) -- required */
	bool sockops;      /* BPF_PROG_TYPE_SOCK_OPS attachable -- required */
	bool netns_cookie; /* bpf_get_netns_cookie() in sock_addr programs (5.7) */
	bool ktls;         /* TCP_ULP "tls" accepted (CONFIG_TLS, module tls) */
	bool sockmap;      /* sockmap + sk_skb programs: in-kernel splice */
	char kernel_release[64];
	/* added after the first contract, all required */
	bool sock_addr;     /* cgroup connect4/connect6 programs (4.17) */
	bool lru_hash;      /* BPF_MAP_TYPE_LRU_HASH (4.10) */
	bool socket_cookie; /* bpf_get_socket_cookie() in sock_addr (5.7) */
	/* kTLS record layer: an AES-128-GCM TLS 1.3 TX key could be installed
	 * (needs the kernel's gcm(aes) crypto, often modules too). */
	bool ktls_crypto;
	/* true when cgroup_link/sockops were checked by attaching to a
	 * temporary cgroup, false when only the syscall was probed */
	bool attach_tested;
	/* Map lookups/updates through an fd work without CAP_BPF/SYS_ADMIN.
	 * Before 5.19, kernel.unprivileged_bpf_disabled (on by default in
	 * Debian) gates every bpf() command, so an agent that drops its
	 * capabilities after set-up gets EPERM on its own map fds. */
	bool map_fd_unpriv;
};

/*
 * Fills f. Needs CAP_BPF/CAP_SYS_ADMIN for the BPF probes (without them the
 * BPF features read false). Returns 0, or -errno when the probe itself could
 * not run (then f holds what was found).
 */
int nm_probe_features(struct nm_features *f);

/*
 * NULL when every required feature is present, else a static message naming
 * the first missing one and the minimum kernel, e.g.
 * "kernel lacks bpf_link for cgroup programs (needs Linux >= 5.7)".
 */
const char *nm_probe_required_missing(const struct nm_features *f);

/*
 * Capabilities (bit n = capability n) the agent must keep after set-up for
 * its map fds to keep working: 0 when map_fd_unpriv, else CAP_BPF, or
 * CAP_SYS_ADMIN on kernels that predate CAP_BPF (< 5.8).
 */
uint64_t nm_probe_keep_caps(const struct nm_features *f);

/* One row per feature, in display order; for status output and docs. */
struct nm_feature_info {
	const char *name;        /* JSON key, e.g. "ringbuf" */
	const char *min_kernel;  /* "5.8" */
	bool required;
	const char *use;         /* what nodemesh does with it */
	const char *fallback;    /* what happens without it; NULL if required */
};
const struct nm_feature_info *nm_probe_info(size_t *n);
/* The value of the feature named info->name in f (false for unknown names). */
bool nm_probe_get(const struct nm_features *f, const char *name);

/*
 * The sockmap relay's stream verdict this kernel takes (bpf/nm_relay.bpf.c,
 * by kernel release), run without a stream parser, where the kernel hands
 * it whole skbs, so it cuts the bytes overlapping retransmissions repeat,
 * reading each skb's sequence: "nm_relay_verdict" through
 * bpf_cast_to_kern_ctx (6.2+), "nm_relay_verdict_probe" through
 * bpf_probe_read_kernel on 5.13-6.1 (loads only with CAP_PERFMON). NULL
 * before 5.13: the relay is not offered there and the agent splices. On
 * 5.10 a socket taken out of nm_relay_src keeps running the verdict (with
 * or without a stream parser), so a direction the agent paused still
 * redirects and the bytes it meant to read itself go on behind its back
 * (tests/bpf/test_relay pause and tail fail there).
 */
const char *nm_probe_relay_verdict(void);
/* Short enough for paths.relay.reason after "sockmap unavailable: ". */
#define NM_PROBE_RELAY_TOO_OLD \
	"kernel before 5.13: a socket out of the source map keeps its verdict"
/* Whether nm_relay.bpf.o's program named prog loads on this kernel: the
 * verdict above (none before 5.13). */
bool nm_probe_relay_loads(const char *prog);

/*
 * The agent's choices given the kernel: each acceleration is on only when
 * asked for (want) and supported. want == NULL asks for everything.
 */
struct nm_choices {
	bool flow_events; /* BPF flow events (nm_events) */
	bool sock_stats;  /* per-socket TCP stats in sk_storage */
	bool ktls;        /* TLS record layer in the kernel */
	bool sockmap;     /* plaintext relay spliced in the kernel */
	/* flow events through a perf event array: the kernel has no ring
	 * buffer (saved as choices.events "ringbuf" or "perfbuf") */
	bool events_perfbuf;
};
void nm_probe_choose(const struct nm_features *f, const struct nm_choices *want,
		     struct nm_choices *out);

/*
 * Where a running agent records what it probed and chose, so that
 * `nodemesh status` can report it: <run_dir>/<instance>/features.json
 * (run_dir NULL = NM_RUN_DIR). 0 or -ENAMETOOLONG.
 */
#include "lib/pins.h"
int nm_probe_state_path(const char *run_dir, const char *instance, char *buf,
			size_t len);
/* Writes the state file atomically (creating its directory); 0 or -errno. */
int nm_probe_save(const char *path, const struct nm_features *f,
		  const struct nm_choices *c, pid_t pid);
/* Reads it back; 0, -ENOENT, or -EINVAL for a malformed file. */
int nm_probe_load(const char *path, struct nm_features *f,
		  struct nm_choices *c, pid_t *pid);

#endif
