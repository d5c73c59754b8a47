// SPDX-License-Identifier: Apache-2.0
// fuzz-sources: lib/jsonlines.c lib/abidecode.c lib/addr.c
/*
 * fuzz_cli.c - libFuzzer target for what the CLI reads that it did not
 * write: the admin API's /flows answer (lib/jsonlines.c) and pinned map
 * bytes decoded as nm_abi.h records (lib/abidecode.c).
 *
 * Input: byte 0 picks the map (and whether it is per CPU), the rest is the
 * /flows body and, cut at the map's sizes, a key and a value. Beyond no
 * crash, leak or UB: a parsed list holds objects only, and a decoded record
 * dumps as JSON.
 *
 *   make fuzz && build/tests/fuzz/fuzz_cli -max_total_time=60 tests/fuzz/corpus/cli
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/abidecode.h"
#include "lib/jsonlines.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const maps[] = {
	"nm_workloads", "nm_services", "nm_backends", "nm_endpoints", "nm_orig_cookie",
	"nm_orig_tuple", "nm_policy", "nm_lb_sets", "nm_maglev", "nm_lb_rr",
	"nm_lb_active", "nm_lb_conn", "nm_agent_state", "nm_wl_stats", "nm_mesh_conns",
	"nm_probers", "nm_strict_drops", "nm_map_errors", "nm_unknown",
};

static void check_dumps(json_t *j)
{
	char *s = json_dumps(j, JSON_ENCODE_ANY);

	if (!s)
		abort();
	free(s);
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *map;
	json_t *list, *v;
	size_t i, ks, vs, ncpus;
	bool percpu;

	if (size < 1)
		return 0;
	map = maps[data[0] % (sizeof(maps) / sizeof(maps[0]))];
	percpu = data[0] & 0x80;
	list = nm_json_list_parse((const char *)data + 1, size - 1, "flows");
	json_array_foreach(list, i, v)
		if (!json_is_object(v))
			abort();
	json_decref(list);

	/* Key and value cut from the rest: sizes that fit and that do not. */
	ks = size > 2 ? data[1] % 96 : 0;
	if (1 + ks > size)
		ks = size - 1;
	vs = size - 1 - ks;
	ncpus = 1 + (data[0] >> 4 & 3);
	check_dumps(nm_abi_key_json(map, data + 1, ks));
	if (percpu) {
		size_t stride = (vs / ncpus) & ~(size_t)7;

		if (stride)
			check_dumps(nm_abi_value_json(map, data + 1 + ks, stride, (unsigned)ncpus, true));
	} else {
		check_dumps(nm_abi_value_json(map, data + 1 + ks, vs, 1, false));
	}
	(void)nm_abi_map_known(map, ks, vs);
	return 0;
}
