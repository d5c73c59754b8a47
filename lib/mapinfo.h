/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mapinfo.h - fill and failed updates of an instance's pinned maps, read
 * from the pins alone (works while no agent runs): for the agent's metrics
 * and warnings and the CLI's `nodemesh maps`.
 */
#ifndef NM_LIB_MAPINFO_H
#define NM_LIB_MAPINFO_H

#include <stdbool.h>
#include <stdint.h>

#include "nm_abi.h"

struct nm_map_info {
	const char *name;        /* pin name (enum nm_map_id order) */
	bool present;            /* pinned */
	uint32_t type;           /* enum bpf_map_type */
	uint32_t key_size;
	uint32_t value_size;
	uint32_t max_entries;    /* ring buffer: bytes */
	int64_t entries;         /* keys found by walking the map; arrays
				  * count max_entries; -1 where there are no
				  * keys to walk (sk_storage, ring buffer,
				  * perf event array) */
	uint64_t kernel_errors;  /* nm_map_errors[id] summed over CPUs */
	uint64_t agent_errors;   /* the agent's failed writes (0 from pins) */
};

/* The pin name of a map id; NULL out of range. */
const char *nm_map_name(enum nm_map_id id);
/* The id of a pin name; -ENOENT when it is none of enum nm_map_id. */
int nm_map_id_of(const char *name);

/*
 * Fills out[0 .. NM_MAP__COUNT-1] from the pins in pin_dir (maps that are
 * not pinned read present = false). 0, or -errno when nm_map_errors could
 * not be read (the rest is filled anyway).
 */
int nm_map_info_read(const char *pin_dir, struct nm_map_info *out);

/* Keys in the map behind fd (-1 for types without keys), walking it. */
int64_t nm_map_count_entries(int fd);

#endif
