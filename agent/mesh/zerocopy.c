// SPDX-License-Identifier: Apache-2.0
/*
 * zerocopy.c - the relay phase of plain-plain flows in the kernel: splice(2)
 * through a pipe per direction, or sockmap redirection (sockmap.c), with
 * the copy relay's semantics (zerocopy.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "lib/log.h"
#include "mesh/flow.h"
#include "mesh/proxy.h"
#include "mesh/zerocopy.h"

/*
 * A pipe of 256 KiB (64 slots): one splice call moves up to that much, and
 * a socket's skbs often fill a slot with less than a page, so the default
 * 16 slots would cap a call well below it. Pages are held only while bytes
 * are in the pipe. Best effort: the default size works too.
 */
#define ZC_PIPE_SIZE (256 * 1024)

struct nm_zc_flow {
	enum nm_relay_mode mode;
	int pipe[2][2];        /* direction i (side i -> side 1-i): [0] read end */
	uint32_t in_pipe[2];   /* bytes of direction i in its pipe */
	uint32_t pipe_cap[2];
};

const char *nm_relay_mode_name(enum nm_relay_mode m)
{
	switch (m) {
	case NM_RELAY_AUTO:
		return "auto";
	case NM_RELAY_SOCKMAP:
		return "sockmap";
	case NM_RELAY_SPLICE:
		return "splice";
	case NM_RELAY_COPY:
		return "copy";
	}
	return "?";
}

/* ------------------------------------------------------------- choosing */

static void zc_report(struct nm_agent *a, const char *reason)
{
	struct nm_path_state *p = &a->paths.relay;

	nm_path_set(p, a->zc.mode != NM_RELAY_COPY, nm_relay_mode_name(a->zc.mode),
		    reason);
}

void nm_zc_setup(struct nm_agent *a, enum nm_relay_mode wanted)
{
	const char *why = "";

	a->zc.mode = wanted == NM_RELAY_AUTO ? NM_RELAY_SPLICE : wanted;
	if (wanted == NM_RELAY_COPY)
		why = "mesh.relay is copy";
	if (a->zc.mode == NM_RELAY_SOCKMAP) {
		/* The sockmap relay is not in this build yet. */
		a->zc.mode = NM_RELAY_SPLICE;
		why = "sockmap relay not in this build";
	}
	zc_report(a, why);
	pr_info("msg=\"relay mode\" wanted=%s mode=%s", nm_relay_mode_name(wanted),
		nm_relay_mode_name(a->zc.mode));
}

void nm_zc_teardown(struct nm_agent *a)
{
	(void)a;
}

/* --------------------------------------------------------------- splice */

static void zc_close_pipes(struct nm_zc_flow *z)
{
	for (int i = 0; i < 2; i++)
		for (int e = 0; e < 2; e++)
			if (z->pipe[i][e] >= 0) {
				close(z->pipe[i][e]);
				z->pipe[i][e] = -1;
			}
}

static int zc_open_pipes(struct nm_zc_flow *z)
{
	for (int i = 0; i < 2; i++) {
		int sz;

		if (pipe2(z->pipe[i], O_NONBLOCK | O_CLOEXEC))
			return -errno;
		sz = fcntl(z->pipe[i][1], F_SETPIPE_SZ, ZC_PIPE_SIZE);
		if (sz < 0)
			sz = fcntl(z->pipe[i][1], F_GETPIPE_SZ);
		z->pipe_cap[i] = sz > 0 ? (uint32_t)sz : 65536;
	}
	return 0;
}

static int splice_err(int err)
{
	return err == EPIPE ? -ECONNRESET : -err;
}

/* Moves direction i as far as it goes; sets *progress. 0 or -errno. */
static int splice_dir(struct nm_flow *f, int i, bool *progress)
{
	struct nm_zc_flow *z = f->zc;
	struct nm_side *src = &f->side[i], *dst = &f->side[1 - i];
	ssize_t n;

	if (z->in_pipe[i] && dst->writable) {
		n = splice(z->pipe[i][0], NULL, dst->fd, NULL, z->in_pipe[i],
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			z->in_pipe[i] -= n;
			f->written[i] += n;
			*progress = true;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (errno == EAGAIN)
				dst->writable = false;
		} else {
			return n < 0 ? splice_err(errno) : -EIO;
		}
	}
	/* Read only into an empty pipe: a partly full one may be full by
	 * slots, and its EAGAIN would look like an empty socket. */
	if (!z->in_pipe[i] && !src->rd_eof && src->readable) {
		n = splice(src->fd, NULL, z->pipe[i][1], NULL, z->pipe_cap[i],
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			z->in_pipe[i] = n;
			src->bytes_read += n;
			*progress = true;
		} else if (n == 0) {
			src->rd_eof = true;
			*progress = true;
		} else if (errno == EAGAIN) {
			src->readable = false;
		} else if (errno != EINTR) {
			return splice_err(errno);
		}
	}
	/* FIN only once every byte of the direction went out, as flow_pump. */
	if (src->rd_eof && !z->in_pipe[i] && !dst->wr_shut) {
		int r = nm_side_shutdown(dst);

		if (r == 0) {
			dst->wr_shut = true;
			*progress = true;
		} else if (r != -EAGAIN) {
			return r;
		}
	}
	return 0;
}

static int splice_pump(struct nm_flow *f)
{
	bool progress, moved = false;
	int err;

	do {
		progress = false;
		for (int i = 0; i < 2; i++) {
			err = splice_dir(f, i, &progress);
			if (err)
				return err;
		}
		moved |= progress;
	} while (progress);
	if (moved && f->res.idle_timeout_ms)
		f->res.last_io_ms = nm_loop_now_ms();
	return 0;
}

static unsigned int splice_mask(const struct nm_flow *f, int i)
{
	const struct nm_zc_flow *z = f->zc;
	const struct nm_side *s = &f->side[i], *o = &f->side[1 - i];
	unsigned int m = 0;

	if (!s->readable && !s->rd_eof && !z->in_pipe[i])
		m |= NM_EV_READ;
	if (!s->writable && (z->in_pipe[1 - i] || (o->rd_eof && !s->wr_shut)))
		m |= NM_EV_WRITE;
	return m;
}

/* ---------------------------------------------------------------- flows */

/* Both legs plain TCP at the socket level. (kTLS sockets will qualify
 * too: after the switch they read and write plaintext.) */
static bool zc_eligible(const struct nm_flow *f)
{
	for (int i = 0; i < 2; i++)
		if (f->side[i].fd < 0 || f->side[i].ssl)
			return false;
	return f->phase == NM_PH_RELAY && !f->buf[0].data && !f->buf[1].data;
}

bool nm_zc_begin(struct nm_flow *f)
{
	struct nm_agent *a = f->agent;
	struct nm_zc_flow *z;
	int err;

	if (f->zc || f->zc_tried || a->zc.mode == NM_RELAY_COPY ||
	    !zc_eligible(f))
		return false;
	f->zc_tried = true; /* one attempt: a refusal is not retried per event */
	z = calloc(1, sizeof(*z));
	if (!z)
		goto fallback;
	memset(z->pipe, -1, sizeof(z->pipe));
	z->mode = NM_RELAY_SPLICE;
	err = zc_open_pipes(z);
	if (err) {
		pr_debug("msg=\"relay stays on copy\" flow=%llu err=\"%s\"",
			 (unsigned long long)f->id, strerror(-err));
		zc_close_pipes(z);
		free(z);
		goto fallback;
	}
	f->zc = z;
	a->paths.relay.flows++;
	return true;
fallback:
	a->zc.fallbacks++;
	return false;
}

int nm_zc_pump(struct nm_flow *f)
{
	return splice_pump(f);
}

unsigned int nm_zc_mask(const struct nm_flow *f, int i)
{
	return splice_mask(f, i);
}

void nm_zc_sync(struct nm_flow *f)
{
	(void)f; /* splice counts every byte as it moves */
}

void nm_zc_end(struct nm_flow *f)
{
	struct nm_zc_flow *z = f->zc;

	if (!z)
		return;
	nm_zc_sync(f);
	zc_close_pipes(z);
	free(z);
	f->zc = NULL;
}
