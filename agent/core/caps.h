/* SPDX-License-Identifier: Apache-2.0 */
/*
 * caps.h - shed privileges after set-up. Once the BPF programs are attached
 * and the maps are open, the agent needs no capability, except CAP_BPF on
 * kernels that check it on every bpf() call (5.10 with
 * kernel.unprivileged_bpf_disabled set) for map lookups and updates through
 * the fds it holds, and CAP_NET_ADMIN while source preservation is active
 * (mesh/srcaddr.h: IP_TRANSPARENT on every upstream socket to a pod, and
 * removing its nft table and routing rules at exit). Everything else
 * (CAP_SYS_ADMIN, DAC overrides...) is dropped.
 */
#ifndef NM_CAPS_H
#define NM_CAPS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Keeps only the capabilities in keep_mask (bit n = capability n) in the
 * effective, permitted and bounding sets, clears inheritable and ambient,
 * and sets no_new_privs. 0 or -errno.
 */
int nm_caps_restrict(uint64_t keep_mask);
/* Effective capability mask of this process (for tests and status). */
int nm_caps_effective(uint64_t *mask);

#endif
