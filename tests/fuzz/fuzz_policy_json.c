// SPDX-License-Identifier: Apache-2.0
// fuzz-sources: agent/policy/load.c agent/policy/convert.c agent/policy/yaml.c agent/policy/evaluate.c lib/jsonwalk.c lib/file.c lib/errbuf.c lib/addr.c lib/log.c
/*
 * fuzz_policy_json.c - libFuzzer target for AuthorizationPolicy files in
 * JSON (agent/policy). The YAML twin is fuzz_policy_yaml.c; both share
 * fuzz_policy.h, which checks the loader's promises: a refusal leaves *out
 * NULL with a message naming the file; a set evaluates any connection to a
 * verdict whose policy and rule indices exist, and every warning names the
 * file.
 *
 *   make fuzz && build/tests/fuzz/fuzz_policy_json -max_total_time=60 \
 *       tests/fuzz/corpus/policy_json
 */
#define FUZZ_NAME "fuzz/p.json"
#include "fuzz_policy.h"
