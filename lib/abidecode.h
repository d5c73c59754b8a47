/* SPDX-License-Identifier: Apache-2.0 */
/*
 * abidecode.h - pinned map entries as JSON, decoded by the nm_abi.h record
 * types (`nodemesh maps dump`). Addresses print as text, ports in host
 * order, flags and enums by name, IDs as numbers under their nm_abi.h field
 * names ("workload_id", "src_identity_id", ...) so the CLI can add names.
 * Pure: bytes in, JSON out; a map this ABI does not know, or whose sizes do
 * not match its records, decodes as hex.
 */
#ifndef NM_LIB_ABIDECODE_H
#define NM_LIB_ABIDECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/* True when map (a pin name) has records here and these sizes fit them. */
bool nm_abi_map_known(const char *map, size_t key_size, size_t value_size);
/* The key of one entry. */
json_t *nm_abi_key_json(const char *map, const void *key, size_t key_size);
/*
 * The value of one entry; for per-CPU maps val holds ncpus values, each
 * value_size rounded up to 8 bytes (as the bpf() syscall returns them):
 * counters (nm_wl_stats, nm_strict_drops, nm_map_errors) are summed,
 * other values listed per CPU.
 */
json_t *nm_abi_value_json(const char *map, const void *val, size_t value_size,
			  unsigned int ncpus, bool percpu);
/* "a1b2..." of len bytes. */
json_t *nm_abi_hex_json(const void *p, size_t len);

/* Names of nm_abi.h enums and flag sets (static strings / into buf). */
/* The pin name of an enum nm_map_id (nm_map_errors' index); NULL past them. */
const char *nm_abi_map_name(unsigned int id);
const char *nm_abi_lb_algo_name(unsigned int algo);
const char *nm_abi_locality_name(unsigned int loc);
/* "MESHED|STRICT", "-" for none; unknown bits as 0x%x. */
void nm_abi_wl_flags(unsigned int flags, char *buf, size_t len);
void nm_abi_ep_flags(unsigned int flags, char *buf, size_t len);
void nm_abi_orig_flags(unsigned int flags, char *buf, size_t len);
/* "198.19.0.10:80" / "[fd00::1]:80" (port in host order). */
void nm_abi_addr_port(const void *nm_addr16, unsigned int port, char *buf,
		      size_t len);

/* "host:port", or "[host]:port" when host is an IPv6 literal. */
void nm_abi_hostport(const char *host, unsigned int port, char *buf, size_t len);

#endif
