// SPDX-License-Identifier: Apache-2.0
/*
 * flowlog.c - buffered JSON-lines flow log with size rotation (flowlog.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "telemetry/flowlog.h"

struct nm_flowlog {
	struct nm_flowlog_cfg cfg;
	int fd;
	bool is_stdout;
	char *buf;
	size_t len, cap;
	uint64_t rng;
	struct nm_flowlog_stats st;
	struct nm_ratelimit rl;
};

static int open_file(struct nm_flowlog *l, bool truncate)
{
	struct stat sb;
	int fd;

	if (l->is_stdout) {
		/* A new open file description of stdout, so O_NONBLOCK does
		 * not change the one the agent's other output shares. */
		fd = open("/proc/self/fd/1", O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			fd = dup(1); /* no /proc: blocking, still correct */
	} else {
		fd = open(l->cfg.file, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK |
			  O_CLOEXEC | (truncate ? O_TRUNC : 0), 0640);
	}
	if (fd < 0)
		return -errno;
	l->fd = fd;
	l->st.bytes = !l->is_stdout && !fstat(fd, &sb) ? (uint64_t)sb.st_size : 0;
	return 0;
}

int nm_flowlog_open(const struct nm_flowlog_cfg *cfg, struct nm_flowlog **out)
{
	struct nm_flowlog *l;
	struct timespec ts;
	int ret;

	*out = NULL;
	if (cfg->mode == NM_FLOWLOG_OFF)
		return 0;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->cfg = *cfg;
	l->is_stdout = !cfg->file[0];
	clock_gettime(CLOCK_REALTIME, &ts);
	l->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid() ^
		 0x9e3779b97f4a7c15ull;
	ret = open_file(l, false);
	if (ret) {
		free(l);
		return ret;
	}
	*out = l;
	return 0;
}

void nm_flowlog_close(struct nm_flowlog *l)
{
	if (!l)
		return;
	nm_flowlog_flush(l);
	close(l->fd);
	free(l->buf);
	free(l);
}

/* xorshift64*: sampling needs no crypto, only independence per flow. */
static double next_unit(struct nm_flowlog *l)
{
	l->rng ^= l->rng >> 12;
	l->rng ^= l->rng << 25;
	l->rng ^= l->rng >> 27;
	return (double)((l->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

bool nm_flowlog_wants(struct nm_flowlog *l)
{
	if (!l)
		return false;
	if (l->cfg.mode == NM_FLOWLOG_FULL)
		return true;
	if (next_unit(l) < l->cfg.sample_rate)
		return true;
	l->st.sampled_out++;
	return false;
}

void nm_flowlog_append(struct nm_flowlog *l, const char *line, size_t len)
{
	size_t need;

	if (!l)
		return;
	need = l->len + len + 1;
	if (need > NM_FLOWLOG_BUF_MAX) {
		l->st.dropped++;
		return;
	}
	if (need > l->cap) {
		size_t cap = l->cap ? l->cap : 65536;
		char *p;

		while (cap < need)
			cap *= 2;
		p = realloc(l->buf, cap);
		if (!p) {
			l->st.dropped++;
			return;
		}
		l->buf = p;
		l->cap = cap;
	}
	memcpy(l->buf + l->len, line, len);
	l->buf[l->len + len] = '\n';
	l->len += len + 1;
}

/* FILE -> FILE.1 -> ... -> FILE.keep (dropped); keep 0: truncate. */
static int rotate(struct nm_flowlog *l)
{
	char from[NM_PATH_MAX + 16], to[NM_PATH_MAX + 16];

	close(l->fd);
	l->fd = -1;
	if (l->cfg.keep) {
		for (unsigned int i = l->cfg.keep; i > 1; i--) {
			snprintf(from, sizeof(from), "%s.%u", l->cfg.file, i - 1);
			snprintf(to, sizeof(to), "%s.%u", l->cfg.file, i);
			if (rename(from, to) && errno != ENOENT)
				pr_warn_ratelimited(&l->rl, "msg=\"flow log rotation failed\" from=%s err=\"%s\"",
						    from, strerror(errno));
		}
		snprintf(to, sizeof(to), "%s.1", l->cfg.file);
		if (rename(l->cfg.file, to) && errno != ENOENT)
			pr_warn_ratelimited(&l->rl, "msg=\"flow log rotation failed\" from=%s err=\"%s\"",
					    l->cfg.file, strerror(errno));
	}
	l->st.rotations++;
	return open_file(l, true);
}

/* Count of whole lines in buf[0, len). */
static uint64_t count_lines(const char *buf, size_t len)
{
	uint64_t n = 0;

	for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + len - p))); p++)
		n++;
	return n;
}

/* The longest prefix of whole lines of at most room bytes (0: none). */
static size_t fit_lines(const char *buf, size_t len, uint64_t room)
{
	size_t best = 0;

	for (size_t i = 0; i < len && i < room; i++)
		if (buf[i] == '\n')
			best = i + 1;
	return best;
}

int nm_flowlog_flush(struct nm_flowlog *l)
{
	size_t off = 0;
	int err = 0;

	if (!l || l->fd < 0)
		return l ? -EBADF : 0;
	while (off < l->len) {
		size_t chunk = l->len - off;
		ssize_t n;

		if (!l->is_stdout && l->st.bytes + chunk > l->cfg.max_bytes) {
			uint64_t room = l->cfg.max_bytes > l->st.bytes ?
						l->cfg.max_bytes - l->st.bytes : 0;

			chunk = fit_lines(l->buf + off, l->len - off, room);
			if (!chunk) {
				if (l->st.bytes) {
					err = rotate(l);
					if (err)
						break;
					continue;
				}
				/* One line larger than the file may be: alone. */
				chunk = fit_lines(l->buf + off, l->len - off, l->len - off);
			}
		}
		n = write(l->fd, l->buf + off, chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break; /* a slow reader: keep the rest for the next tick */
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			l->st.write_errors++;
			l->st.dropped += count_lines(l->buf + off, l->len - off);
			pr_warn_ratelimited(&l->rl, "msg=\"flow log write failed, records dropped\" file=%s err=\"%s\"",
					    l->is_stdout ? "-" : l->cfg.file, strerror(-err));
			off = l->len;
			break;
		}
		l->st.records += count_lines(l->buf + off, (size_t)n);
		l->st.bytes += (uint64_t)n;
		off += (size_t)n;
	}
	if (off) {
		memmove(l->buf, l->buf + off, l->len - off);
		l->len -= off;
	}
	return err;
}

void nm_flowlog_get_stats(const struct nm_flowlog *l, struct nm_flowlog_stats *s)
{
	if (l)
		*s = l->st;
	else
		*s = (struct nm_flowlog_stats){ 0 };
}
