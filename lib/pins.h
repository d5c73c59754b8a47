/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pins.h - where an agent instance keeps what outlives it, shared by the
 * agent (which writes) and the CLI (which reads):
 *
 *   /sys/fs/bpf/nodemesh/<instance>/   pinned maps (nm_*) and links (link_*)
 *   /run/nodemesh/<instance>/          agent.json (core/runstate.c) and
 *                                      features.json (datapath/probe.c)
 *
 * Instance names become directory names, so they are kept to [A-Za-z0-9._-],
 * at most NM_INSTANCE_MAX bytes, never "." or "..".
 */
#ifndef NM_LIB_PINS_H
#define NM_LIB_PINS_H

#include <stdbool.h>
#include <stddef.h>

#define NM_PIN_BASE "/sys/fs/bpf/nodemesh"
#define NM_RUN_DIR "/run/nodemesh"
#define NM_INSTANCE_DEFAULT "default"
#define NM_INSTANCE_MAX 64

/* Names inside the directories above. */
#define NM_RUN_AGENT_FILE "agent.json"
#define NM_RUN_FEATURES_FILE "features.json"
#define NM_PIN_MAP_PREFIX "nm_"
#define NM_PIN_LINK_PREFIX "link_"
#define NM_PIN_AGENT_STATE "nm_agent_state"

/* true when name is a usable instance name (see above). */
bool nm_instance_valid(const char *name);

/*
 * <base>/<instance>, or <base>/<instance>/<file> when file is not NULL.
 * base NULL means NM_PIN_BASE (nm_pin_path) or NM_RUN_DIR (nm_run_path),
 * instance NULL means NM_INSTANCE_DEFAULT. 0, -EINVAL for a bad instance
 * name or file name (empty, or containing '/'), -ENAMETOOLONG.
 */
int nm_pin_path(const char *base, const char *instance, const char *file,
		char *buf, size_t len);
int nm_run_path(const char *base, const char *instance, const char *file,
		char *buf, size_t len);

/*
 * Removes an instance's pin directory: links first (each detached from its
 * cgroup with BPF_LINK_DETACH before its pin goes, so the hook stops at
 * once), then maps, then the directory. base NULL = NM_PIN_BASE. 0 when the
 * directory is gone (also when it never existed), else the first -errno.
 */
int nm_pins_remove(const char *base, const char *instance);

#endif
