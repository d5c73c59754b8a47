/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sockmap.h - the sockmap relay's BPF side (bpf/nm_relay.bpf.h): loads the
 * sk_skb programs, attaches them to nm_relay_src and manages the sockets
 * and per-direction records of the flows it carries. The flow logic lives
 * in mesh/zerocopy.c.
 *
 * Kernels: sockhash, sk_skb stream verdict and bpf_sk_redirect_hash exist
 * since 4.18, the ring buffer the signals use since 5.8. The agent runs the
 * verdict without a stream parser from 5.13 and offers the relay nowhere
 * before (NM_PROBE_RELAY_TOO_OLD). The verdict reads each skb's sequence
 * through bpf_cast_to_kern_ctx from 6.2, bpf_probe_read_kernel before
 * (datapath/probe.h, nm_probe_relay_verdict).
 */
#ifndef NM_DATAPATH_SOCKMAP_H
#define NM_DATAPATH_SOCKMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nm_abi.h"

struct nm_sockmap;

/* Called per signal: the source socket's cookie. */
typedef void (*nm_sockmap_sig_fn)(uint64_t cookie, void *arg);

/* What tests change; all zero (or opts NULL) is the normal load. */
struct nm_sockmap_opts {
	/* A verdict of bpf/nm_relay.bpf.c other than this kernel's pick
	 * (nm_probe_relay_verdict), loaded on any kernel; NULL: the pick. */
	const char *verdict;
	/* The verdict may cut nothing (nm_relay_trim_calls 0), so any skb
	 * that repeats bytes faults: the path that resets a flow. */
	bool no_trim;
};

/* Loads and attaches; 0 or -errno with err filled. opts may be NULL. */
int nm_sockmap_open(struct nm_sockmap **out, const struct nm_sockmap_opts *opts,
		    nm_sockmap_sig_fn fn, void *arg, char *err, size_t errlen);
void nm_sockmap_close(struct nm_sockmap *sm);
/* The signal ring's descriptor (readable when signals wait). */
int nm_sockmap_sig_fd(const struct nm_sockmap *sm);
/* Runs fn for each waiting signal. */
void nm_sockmap_sig_poll(struct nm_sockmap *sm);

/* fd may receive redirected skbs (nm_relay_dst). 0 or -errno. */
int nm_sockmap_add_dst(struct nm_sockmap *sm, int fd, uint64_t cookie);
/* Records the direction cookie -> peer (nm_relay_dirs). 0 or -errno. */
int nm_sockmap_add_dir(struct nm_sockmap *sm, uint64_t cookie, uint64_t peer,
		       uint64_t high);
/* Starts (again) redirecting fd's incoming skbs (nm_relay_src). */
int nm_sockmap_start(struct nm_sockmap *sm, int fd, uint64_t cookie);
/* Stops redirecting them: they stay in fd's receive queue. */
int nm_sockmap_stop(struct nm_sockmap *sm, uint64_t cookie);
int nm_sockmap_get_dir(struct nm_sockmap *sm, uint64_t cookie,
		       struct nm_relay_dir *out);
/* Publishes how much of the redirected bytes reached the peer and re-arms
 * the signal. */
int nm_sockmap_set_sent(struct nm_sockmap *sm, uint64_t cookie, uint64_t sent,
			uint64_t high);
/* From now on the verdict passes cookie's skbs to its own socket (SK_PASS:
 * psock ingress, read with recv() in order) instead of redirecting them;
 * for good. 0 or -errno. */
int nm_sockmap_park(struct nm_sockmap *sm, uint64_t cookie);
/* Forgets cookie everywhere (stop first, then the record and dst entry). */
void nm_sockmap_forget(struct nm_sockmap *sm, uint64_t cookie);

#endif
