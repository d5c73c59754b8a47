/* SPDX-License-Identifier: Apache-2.0 */
/*
 * version.h - the release both binaries report: `nodemesh version` prints it
 * and nodemeshd writes it to its run state, so the CLI can tell a user that
 * it and the running agent differ.
 */
#ifndef NM_LIB_VERSION_H
#define NM_LIB_VERSION_H

#define NM_VERSION "0.1.0"

#endif
