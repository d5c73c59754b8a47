/* SPDX-License-Identifier: Apache-2.0 */
/*
 * file.h - reading configuration and credential files without ever blocking
 * the event loop: opened with O_NONBLOCK (a FIFO or device in place of the
 * file must not stall open() until a writer appears), refused unless a
 * regular file, and bounded in size.
 */
#ifndef NM_LIB_FILE_H
#define NM_LIB_FILE_H

#include <stddef.h>

/* Largest cluster file, policy file or PEM bundle read (4 MiB). */
#define NM_FILE_MAX (4u << 20)

/*
 * Reads all of path into a NUL-terminated heap buffer (*out, free()), at
 * most max bytes (0 = NM_FILE_MAX). 0 or -errno:
 *   -EINVAL  not a regular file (FIFO, socket, device, directory)
 *   -EFBIG   larger than max
 *   others   from open/fstat/read
 * why (may be NULL) gets a short reason for messages.
 */
int nm_file_read(const char *path, size_t max, char **out, size_t *len,
		 const char **why);

#endif
