/* SPDX-License-Identifier: Apache-2.0 */
/*
 * policydir.h - the policy-directory source: the agent watches policyDir
 * (inotify) so a policy change applies to new connections within a second,
 * and publishes the files of the set in force under
 * /run/nodemesh/<instance>/policies/ so `nodemesh policy check|list` can
 * answer from what the agent enforces, not from what is on disk (a file
 * the agent refused is not there). Parsing is policy/policy.h's.
 */
#ifndef NM_CONFIG_POLICYDIR_H
#define NM_CONFIG_POLICYDIR_H

#include <stdbool.h>

/* An inotify fd (non-blocking) watching dir, or -errno. */
int nm_policydir_watch(const char *dir);
/* Reads every pending event; true when there was any. */
bool nm_policydir_drain(int fd);
/* *.yaml, *.yml or *.json, not hidden: what nm_policy_load_dir() reads. */
bool nm_policydir_is_policy_file(const char *name);
/* Copies dir's policy files to the run directory (replacing what was
 * there; dir NULL/"": leaves it empty). 0 or -errno. */
int nm_policydir_publish(const char *instance, const char *dir);
void nm_policydir_unpublish(const char *instance);

#endif
