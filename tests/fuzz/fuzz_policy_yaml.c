// SPDX-License-Identifier: Apache-2.0
// fuzz-sources: agent/policy/load.c agent/policy/convert.c agent/policy/yaml.c agent/policy/evaluate.c lib/jsonwalk.c lib/file.c lib/errbuf.c lib/addr.c lib/log.c
/*
 * fuzz_policy_yaml.c - libFuzzer target for AuthorizationPolicy files in
 * YAML (libyaml, anchors, documents, Kubernetes' scalar typing); the
 * promises checked are fuzz_policy.h's.
 *
 *   make fuzz && build/tests/fuzz/fuzz_policy_yaml -max_total_time=60 \
 *       tests/fuzz/corpus/policy_yaml
 */
#define FUZZ_NAME "fuzz/p.yaml"
#include "fuzz_policy.h"
