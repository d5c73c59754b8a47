// SPDX-License-Identifier: Apache-2.0
/*
 * file.c - bounded, non-blocking reads of regular files (file.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/file.h"

int nm_file_read(const char *path, size_t max, char **out, size_t *len,
		 const char **why)
{
	const char *reason = NULL;
	char *buf = NULL;
	struct stat st;
	size_t got = 0;
	int fd, ret;

	*out = NULL;
	if (len)
		*len = 0;
	if (!max)
		max = NM_FILE_MAX;
	/* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	 * writer; O_NOCTTY: a terminal never becomes ours. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		reason = "cannot open";
		goto out;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		reason = "cannot stat";
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		reason = "not a regular file";
		goto out_close;
	}
	if ((unsigned long long)st.st_size > max) {
		ret = -EFBIG;
		reason = "file too large";
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		ret = -ENOMEM;
		reason = "out of memory";
		goto out_close;
	}
	/* Read to EOF, never past max: the file may grow while we read. */
	for (;;) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			reason = "read failed";
			goto out_free;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > (size_t)st.st_size) {
			ret = -EAGAIN;
			reason = "file changed while it was read";
			goto out_free;
		}
	}
	buf[got] = '\0';
	*out = buf;
	if (len)
		*len = got;
	close(fd);
	return 0;

out_free:
	free(buf);
out_close:
	close(fd);
out:
	if (why)
		*why = reason;
	return ret;
}
