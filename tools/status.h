/* SPDX-License-Identifier: Apache-2.0 */
/*
 * status.h - `nodemesh status`: what this kernel supports (probe.h) and, for
 * each agent instance that recorded its start-up choices, what it chose.
 *
 *   nodemesh status [--json] [--instance NAME] [--run-dir DIR]
 */
#ifndef NM_STATUS_H
#define NM_STATUS_H

/* Exit status: 0, 1 when a required feature is missing, 2 on bad usage. */
int nm_cmd_status(int argc, char **argv);

#endif
