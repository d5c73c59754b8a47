/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nft.h - the one nftables table the agent owns, through libnftables:
 * source preservation's reply mark (mesh/srcaddr.c, docs/architecture.md).
 */
#ifndef NM_NFT_H
#define NM_NFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NM_NFT_TABLE "nodemesh"

/*
 * add: (re)creates table inet nodemesh whose prerouting chain ORs mark into
 * every TCP packet that belongs to a transparent socket of this network
 * namespace (`socket transparent 1`, nft_socket), i.e. the pods' replies to
 * the agent's connections made from a client's address. add false deletes
 * the table (absent is fine). 0 or -errno; err[len] gets nft's message.
 */
int nm_nft_tproxy_mark(bool add, uint32_t mark, char *err, size_t len);

#endif
