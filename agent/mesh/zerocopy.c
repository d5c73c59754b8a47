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
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <linux/tcp.h> /* tcp_info with the byte counters glibc's lacks */

#include "core/loop.h"
#include "datapath/sockmap.h"
#include "lib/log.h"
#include "mesh/flow.h"
#include "mesh/ktls.h"
#include "mesh/proxy.h"
#include "mesh/zerocopy.h"

/*
 * A pipe of 256 KiB (64 slots): one splice call moves up to that much, and
 * a socket's skbs often fill a slot with less than a page, so the default
 * 16 slots would cap a call well below it. Pages are held only while bytes
 * are in the pipe. Best effort: the default size works too.
 */
#define ZC_PIPE_SIZE (256 * 1024)

/*
 * Sockmap: bytes of one direction waiting in the peer's psock queue (the
 * kernel queues them there without bound) above which its source is
 * parked (sm_park()); how often the agent looks while a direction's end or
 * a parked direction waits for that queue to empty (nothing signals the
 * agent when it does); and the buffer a parked direction is copied
 * through.
 */
#define ZC_SM_HIGH (1024 * 1024)
#define ZC_SM_POLL_MS 2
#define ZC_PARK_BUF (64 * 1024)

struct nm_zc_flow {
	enum nm_relay_mode mode;
	/* splice: direction i is side i -> side 1-i */
	int pipe[2][2];        /* [0] read end, [1] write end */
	uint32_t in_pipe[2];   /* bytes of direction i in its pipe */
	uint32_t pipe_cap[2];
	/* sockmap */
	uint64_t cookie[2];    /* side i's socket */
	uint64_t base[2];      /* bytes written into side 1-i before the switch */
	uint64_t written0[2];  /* f->written[i] at the switch */
	bool running[2];       /* side i's skbs are redirected */
	bool peeked[2];        /* side i held bytes the verdict had not taken */
	bool parked[2];        /* side i's skbs pass to it; copied (sm_parked) */
	bool flushed[2];       /* parked, and every redirected byte arrived */
	uint8_t *cbuf[2];      /* parked direction i's copy buffer */
	uint32_t clen[2], coff[2];
	bool signalled;        /* sockmap: a ring signal came (sm_check_fault) */
	uint64_t timer;        /* sockmap: sm_on_timer; splice: ktls_tx_watch */
	int64_t ktls_tx_ms;    /* splice: last bytes into a kTLS side */
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

static void zc_on_signal(uint64_t cookie, void *arg);

static void zc_on_ring(struct nm_loop *loop, int fd, unsigned int events,
		       void *data)
{
	struct nm_agent *a = data;

	nm_sockmap_sig_poll(a->zc.sm);
}

/* Loads the sockmap relay; 0, or -errno with why filled. */
static int zc_sockmap_open(struct nm_agent *a, char *why, size_t len)
{
	struct nm_sockmap_opts opts = { 0 };
	char err[160];
	int ret;

	/* For tests: behave as a kernel without the sockmap relay. */
	if (getenv("NODEMESH_NO_SOCKMAP")) {
		snprintf(why, len, "sockmap unavailable (NODEMESH_NO_SOCKMAP)");
		return -EOPNOTSUPP;
	}
	/* For tests: a verdict that may cut nothing, so a retransmission
	 * that repeats bytes resets its flow (test_36 sockmap-fault). */
	opts.no_trim = getenv("NODEMESH_SOCKMAP_NO_TRIM") != NULL;
	if (opts.no_trim)
		pr_warn("msg=\"sockmap relay cuts no repeated bytes (NODEMESH_SOCKMAP_NO_TRIM): flows that meet them reset\"");
	ret = nm_sockmap_open(&a->zc.sm, &opts, zc_on_signal, a, err, sizeof(err));
	if (ret) {
		snprintf(why, len, "sockmap unavailable: %.74s", err);
		return ret;
	}
	ret = nm_loop_add(a->loop, nm_sockmap_sig_fd(a->zc.sm), NM_EV_READ,
			  zc_on_ring, a);
	if (ret) {
		snprintf(why, len, "sockmap unavailable: %s", strerror(-ret));
		nm_sockmap_close(a->zc.sm);
		a->zc.sm = NULL;
	}
	return ret;
}

void nm_zc_setup(struct nm_agent *a, enum nm_relay_mode wanted)
{
	char why[96] = "";

	/*
	 * auto: splice on every kernel. sockmap has the lowest latency but
	 * is slower for bulk streams: a receiver more than ZC_SM_HIGH behind
	 * parks the direction, which then goes through the agent's copy
	 * (bench/RESULTS.md, "Relay modes against their ceiling"). So it
	 * runs only when asked for.
	 */
	a->zc.mode = wanted == NM_RELAY_AUTO ? NM_RELAY_SPLICE : wanted;
	if (wanted == NM_RELAY_COPY)
		snprintf(why, sizeof(why), "mesh.relay is copy");
	if (wanted == NM_RELAY_AUTO)
		snprintf(why, sizeof(why), "auto is splice: sockmap is slower for bulk streams");
	if (a->zc.mode == NM_RELAY_SOCKMAP) {
		if (zc_sockmap_open(a, why, sizeof(why))) {
			pr_warn("msg=\"sockmap relay unavailable, using splice\" reason=\"%s\"", why);
			a->zc.mode = NM_RELAY_SPLICE;
		} else {
			snprintf(why, sizeof(why), "opt-in: lowest latency, slower for bulk streams");
		}
	}
	zc_report(a, why);
	pr_info("msg=\"relay mode\" wanted=%s mode=%s", nm_relay_mode_name(wanted),
		nm_relay_mode_name(a->zc.mode));
}

void nm_zc_teardown(struct nm_agent *a)
{
	if (!a->zc.sm)
		return;
	if (a->loop)
		nm_loop_del(a->loop, nm_sockmap_sig_fd(a->zc.sm));
	nm_sockmap_close(a->zc.sm);
	a->zc.sm = NULL;
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

/*
 * A kTLS source whose next record is not application data: splice refuses
 * it (EINVAL, the record stays at the head; EIO is what a plain read says,
 * taken the same way), a recvmsg takes it with its type or the socket's
 * real error. close_notify ends the direction; any other alert or record
 * type resets the flow, as on the copy relay. The pipe is empty here, so
 * bytes (none are expected: a recvmsg returns one record type) go into it.
 */
static int splice_ktls_control(struct nm_flow *f, int i, bool *progress)
{
	struct nm_zc_flow *z = f->zc;
	struct nm_side *src = &f->side[i];
	uint8_t rec[256];
	ssize_t n = nm_ktls_recv(src->fd, rec, sizeof(rec));

	pr_debug("msg=\"kTLS splice met a control record\" flow=%llu side=%d result=%zd",
		 (unsigned long long)f->id, i, n);
	if (n == -EAGAIN) {
		src->readable = false;
		return 0;
	}
	if (n < 0)
		return (int)n;
	*progress = true;
	if (n == 0) {
		src->rd_eof = true;
		return 0;
	}
	if (write(z->pipe[i][1], rec, (size_t)n) != n)
		return -EIO;
	z->in_pipe[i] = (uint32_t)n;
	src->bytes_read += n;
	return 0;
}

/*
 * kTLS hands splice one record per call (16 KiB of plaintext at most):
 * after a first record, take more while the pipe has room for another
 * with slots to spare (half its capacity), so one wake-up moves about what
 * the copy relay's 64 KiB read does. It stops at anything but bytes: the
 * next pass meets that again with an empty pipe, where EAGAIN may clear
 * readable (a partly full pipe's EAGAIN could mean a pipe out of slots).
 */
#define ZC_TLS_RECORD 16384

/*
 * The tail TCP may hold unsent after a splice into kTLS (nm_ktls_tcp_push):
 * while a kTLS side the relay spliced into still has bytes queued, or was
 * written in the last ZC_KTLS_WATCH_MS (the TLS layer's tx work can hand
 * TCP a record after the queue emptied), look every ZC_KTLS_POLL_MS and
 * push. A stalled tail costs at most that poll.
 */
#define ZC_KTLS_POLL_MS 5
#define ZC_KTLS_WATCH_MS 200

static int64_t ktls_tx_watch(struct nm_loop *loop, uint64_t id, void *data)
{
	struct nm_flow *f = data;
	struct nm_zc_flow *z = f->zc;
	bool again = nm_loop_now_ms() - z->ktls_tx_ms < ZC_KTLS_WATCH_MS;

	(void)loop;
	(void)id;
	for (int i = 0; i < 2; i++)
		if (nm_side_ktls(&f->side[i]) && nm_ktls_tcp_push(f->side[i].fd) > 0)
			again = true;
	if (again)
		return ZC_KTLS_POLL_MS;
	z->timer = 0;
	return NM_TIMER_STOP;
}

static void ktls_tx_wrote(struct nm_flow *f)
{
	struct nm_zc_flow *z = f->zc;

	z->ktls_tx_ms = nm_loop_now_ms();
	if (!z->timer)
		z->timer = nm_loop_add_timer(f->agent->loop, ZC_KTLS_POLL_MS,
					     ktls_tx_watch, f);
}

static void splice_ktls_more(struct nm_flow *f, int i)
{
	struct nm_zc_flow *z = f->zc;
	struct nm_side *src = &f->side[i];
	ssize_t n;

	while (z->in_pipe[i] + ZC_TLS_RECORD <= z->pipe_cap[i] / 2) {
		n = splice(src->fd, NULL, z->pipe[i][1], NULL,
			   z->pipe_cap[i] - z->in_pipe[i],
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n <= 0)
			return;
		z->in_pipe[i] += (uint32_t)n;
		src->bytes_read += n;
	}
}

/* Moves direction i as far as it goes; sets *progress. 0 or -errno. */
static int splice_dir(struct nm_flow *f, int i, bool *progress)
{
	struct nm_zc_flow *z = f->zc;
	struct nm_side *src = &f->side[i], *dst = &f->side[1 - i];
	ssize_t n;

	if (z->in_pipe[i] && dst->writable) {
		uint32_t want = z->in_pipe[i];

		n = splice(z->pipe[i][0], NULL, dst->fd, NULL, want,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			z->in_pipe[i] -= n;
			f->written[i] += n;
			*progress = true;
			if (nm_side_ktls(dst))
				ktls_tx_wrote(f);
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (errno == EAGAIN)
				dst->writable = false;
		} else {
			return n < 0 ? splice_err(errno) : -EIO;
		}
		/* kTLS: a short splice can leave the record open (ktls.h) */
		if (nm_side_ktls(dst) && n < (ssize_t)want) {
			int r = nm_ktls_push(dst->fd);

			if (r && r != -EAGAIN)
				return r == -EPIPE ? -ECONNRESET : r;
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
			if (nm_side_ktls(src))
				splice_ktls_more(f, i);
		} else if (n == 0) {
			/* kTLS: a FIN without close_notify truncates the
			 * stream, a reset as on every TLS path. */
			if (nm_side_ktls(src))
				return -ECONNRESET;
			src->rd_eof = true;
			*progress = true;
		} else if (errno == EAGAIN) {
			src->readable = false;
		} else if ((errno == EINVAL || errno == EIO) && nm_side_ktls(src)) {
			int err = splice_ktls_control(f, i, progress);

			if (err)
				return err;
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


/* -------------------------------------------------------------- sockmap */

/*
 * Bytes ever written into fd's socket: acked + still queued. Read in that
 * order, an ACK between the two reads makes the sum low, never high (the
 * drain waits a poll longer rather than sending FIN early).
 */
static int sock_tcp_info(int fd, struct tcp_info *ti)
{
	socklen_t len = sizeof(*ti);

	memset(ti, 0, sizeof(*ti));
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len) ? -errno : 0;
}

static int sock_written(int fd, uint64_t *out)
{
	struct tcp_info ti;
	int outq = 0, err;

	err = sock_tcp_info(fd, &ti);
	if (err)
		return err;
	if (ioctl(fd, SIOCOUTQ, &outq))
		return -errno;
	*out = ti.tcpi_bytes_acked + (uint64_t)outq;
	return 0;
}

/* Payload bytes TCP ever received on fd, in order (and a FIN's 1). */
static int sock_received(int fd, uint64_t *out)
{
	struct tcp_info ti;
	int err = sock_tcp_info(fd, &ti);

	if (!err)
		*out = ti.tcpi_bytes_received;
	return err;
}

static int sock_inq(int fd)
{
	int n = 0;

	return ioctl(fd, SIOCINQ, &n) ? -errno : n;
}

/* Makes the verdict take what waits in fd's receive queue: setting
 * SO_RCVLOWAT runs the socket's data_ready when bytes are there. */
static void sock_kick(int fd)
{
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
}

/*
 * Direction i's bytes redirected but not yet in side 1-i's socket (the
 * peer's psock queue), and the bytes that did reach it. 0 or -errno.
 */
static int sm_backlog(struct nm_flow *f, int i, uint64_t *queued,
		      uint64_t *arrived)
{
	struct nm_zc_flow *z = f->zc;
	struct nm_relay_dir d;
	uint64_t w;
	int err;

	err = nm_sockmap_get_dir(f->agent->zc.sm, z->cookie[i], &d);
	if (!err)
		err = sock_written(f->side[1 - i].fd, &w);
	if (err)
		return err;
	w = w > z->base[i] ? w - z->base[i] : 0;
	*arrived = w < d.redirected ? w : d.redirected;
	*queued = d.redirected - *arrived;
	return 0;
}

/* Counts what reached the other side (telemetry, idle clock). */
static void sm_count(struct nm_flow *f, int i, uint64_t arrived)
{
	struct nm_zc_flow *z = f->zc;
	uint64_t w = z->written0[i] + arrived;

	if (w != f->written[i]) {
		f->written[i] = w;
		if (f->res.idle_timeout_ms)
			f->res.last_io_ms = nm_loop_now_ms();
	}
}

/* End of stream or an error on side i, read without taking bytes the
 * verdict has not taken yet. 0, or -errno for the flow. */
static int sm_peek(struct nm_flow *f, int i)
{
	struct nm_side *s = &f->side[i];
	uint8_t c;
	ssize_t n;

	n = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0) {
		s->rd_eof = true;
		return 0;
	}
	if (n > 0) {
		/* Queued before the switch: the verdict
		 * takes them on the next data_ready. */
		f->zc->peeked[i] = true;
		sock_kick(s->fd);
		s->readable = false;
		return 0;
	}
	if (errno == EAGAIN || errno == EINTR) {
		s->readable = false;
		return 0;
	}
	return errno == EPIPE ? -ECONNRESET : -errno;
}

static int64_t sm_on_timer(struct nm_loop *loop, uint64_t id, void *data);

static void sm_remove(struct nm_flow *f);

/* Side i: its end of stream or an error, without taking bytes. */
static int sm_watch(struct nm_flow *f, int i)
{
	struct nm_side *s = &f->side[i];

	/* A parked source is read for real (sm_parked()). */
	if (!s->readable || s->rd_eof || f->zc->parked[i])
		return 0;
	if (f->zc->running[i])
		return sm_peek(f, i);
	s->readable = false;
	return 0;
}

/*
 * A slow receiver: direction i's bytes pile up in side 1-i's psock queue.
 * Its source is parked: the verdict passes its skbs to its own socket from
 * now on (psock ingress, charged to its receive buffer: its window closes
 * and TCP holds the sender), and the agent copies them in order once every
 * byte redirected before has reached side 1-i (sm_parked()). It is for
 * good: going back to redirection could pass a parked byte.
 *
 * The source stays in nm_relay_src: taking it out while its peer sends can
 * lose an skb (the kernel drops one that meets no verdict, or purges a
 * late redirect with the peer's psock).
 */
static int sm_park(struct nm_flow *f, int i, uint64_t queued)
{
	struct nm_zc_flow *z = f->zc;
	int err;

	z->cbuf[i] = malloc(ZC_PARK_BUF);
	if (!z->cbuf[i])
		return -ENOMEM;
	err = nm_sockmap_park(f->agent->zc.sm, z->cookie[i]);
	if (err) {
		free(z->cbuf[i]);
		z->cbuf[i] = NULL;
		return err;
	}
	z->parked[i] = true;
	z->running[i] = false;
	z->clen[i] = z->coff[i] = 0;
	pr_debug("msg=\"sockmap relay parked a direction\" flow=%llu dir=%d queued=%llu",
		 (unsigned long long)f->id, i, (unsigned long long)queued);
	/* What already waits in its receive queue meets the parked verdict. */
	f->side[i].readable = true;
	sock_kick(f->side[i].fd);
	return 0;
}

/*
 * A parked source's end: recv() says 0 once its psock's message queue is
 * empty and the FIN came, but a passed skb can still wait in the psock's
 * skb queue (behind the other direction's redirected skbs, when those
 * fill side i's send buffer) for the kernel's worker to move it. Every
 * byte TCP received on side i is one the agent read (before the switch
 * or parked) or one the verdict redirected; the end is real only when
 * those add up. *done false: look again shortly.
 */
static int sm_parked_end(struct nm_flow *f, int i, bool *done)
{
	struct nm_relay_dir d;
	uint64_t got = 0;
	int err;

	err = nm_sockmap_get_dir(f->agent->zc.sm, f->zc->cookie[i], &d);
	if (!err)
		err = sock_received(f->side[i].fd, &got);
	if (err)
		return err;
	/* bytes_received counts the FIN's sequence number too: recv() said
	 * 0, so it came. */
	*done = got <= f->side[i].bytes_read + d.redirected + 1;
	return 0;
}

/*
 * A parked direction: read side i (recv returns the passed skbs in order),
 * write side 1-i. No byte goes out before every redirected one arrived;
 * that count is final once a parked byte or the end was read (the source's
 * skbs meet the verdict one at a time under its socket lock, which the
 * read takes too). Sets *drain while it waits for them. 0 or -errno.
 */
static int sm_parked(struct nm_flow *f, int i, bool *drain)
{
	struct nm_zc_flow *z = f->zc;
	struct nm_side *src = &f->side[i], *dst = &f->side[1 - i];
	uint64_t queued, arrived;
	bool progress;
	int n, err;

	do {
		progress = false;
		if (z->coff[i] == z->clen[i] && !src->rd_eof && src->readable) {
			n = nm_side_read(src, z->cbuf[i], ZC_PARK_BUF);
			if (n > 0) {
				z->clen[i] = (uint32_t)n;
				z->coff[i] = 0;
				progress = true;
			} else if (n == 0) {
				bool done;

				err = sm_parked_end(f, i, &done);
				if (err)
					return err;
				if (!done) {
					*drain = true;
					return 0;
				}
				src->rd_eof = true;
				progress = true;
			} else if (n != -EAGAIN) {
				return n;
			}
		}
		if (!z->flushed[i]) {
			if (z->coff[i] == z->clen[i] && !src->rd_eof)
				return 0; /* nothing passed yet: epoll says */
			err = sm_backlog(f, i, &queued, &arrived);
			if (err)
				return err;
			sm_count(f, i, arrived);
			if (queued) {
				*drain = true;
				return 0;
			}
			z->flushed[i] = true;
		}
		if (z->coff[i] < z->clen[i] && dst->writable) {
			n = nm_side_write(dst, z->cbuf[i] + z->coff[i],
					  z->clen[i] - z->coff[i]);
			if (n > 0) {
				z->coff[i] += (uint32_t)n;
				f->written[i] += (uint64_t)n;
				if (f->res.idle_timeout_ms)
					f->res.last_io_ms = nm_loop_now_ms();
				progress = true;
			} else if (n != -EAGAIN) {
				return n;
			}
		}
		if (src->rd_eof && z->coff[i] == z->clen[i] && !dst->wr_shut) {
			err = nm_side_shutdown(dst);
			if (!err)
				dst->wr_shut = true;
			else if (err != -EAGAIN)
				return err;
		}
	} while (progress);
	return 0;
}

/* Direction i: park its source above ZC_SM_HIGH waiting, forward its end,
 * copy it once parked. Sets *drain while bytes it waits for are on their
 * way. */
static int sm_dir(struct nm_flow *f, int i, bool *drain)
{
	struct nm_zc_flow *z = f->zc;
	uint64_t queued, arrived;
	int err;

	if (z->parked[i])
		return sm_parked(f, i, drain);
	err = sm_backlog(f, i, &queued, &arrived);
	if (err)
		return err;
	sm_count(f, i, arrived);
	/*
	 * Its FIN came while it ran: the end is forwarded inside the maps:
	 * once every byte it redirected is in side 1-i's socket, side 1-i
	 * sends its FIN behind them, as the copy relay does. The sources
	 * stay in the map until both ends came (sm_remove() at the flow's
	 * end), for the reason sm_park() gives. *drain while the bytes are
	 * on their way.
	 */
	if (f->side[i].rd_eof) {
		struct nm_side *dst = &f->side[1 - i];

		if (dst->wr_shut)
			return 0;
		err = queued ? -EAGAIN : nm_side_shutdown(dst);
		if (err == -EAGAIN) {
			*drain = true;
			return 0;
		}
		if (!err)
			dst->wr_shut = true;
		return err;
	}
	if (!z->running[i])
		return 0;
	if (queued > ZC_SM_HIGH) {
		err = sm_park(f, i, queued);
		return err ? err : sm_parked(f, i, drain);
	}
	/* Re-arms the signal from what really waits. */
	return nm_sockmap_set_sent(f->agent->zc.sm, z->cookie[i], arrived, ZC_SM_HIGH);
}

/*
 * The verdict met an skb that repeats bytes it could neither send whole
 * nor cut (bpf/nm_relay.bpf.h, nm_relay_trim): it dropped it and
 * signalled (so this looks only after a signal, beside the ZC_SM_HIGH
 * ones). The stream has a hole there, so the flow ends with a reset on
 * both legs rather than go on without those bytes.
 */
static int sm_check_fault(struct nm_flow *f)
{
	struct nm_relay_dir d;

	for (int i = 0; i < 2; i++)
		if (!nm_sockmap_get_dir(f->agent->zc.sm, f->zc->cookie[i], &d) && d.fault) {
			pr_warn("msg=\"sockmap relay could not cut a repeated skb, resetting the flow\" flow=%llu side=%d",
				(unsigned long long)f->id, i);
			return -EPROTO;
		}
	return 0;
}

/* Bytes the verdict cut off retransmissions that repeated earlier ones. */
static void sm_log_trimmed(const struct nm_flow *f)
{
	struct nm_relay_dir d[2];

	if (nm_log_get_level() < NM_LOG_DEBUG)
		return;
	for (int i = 0; i < 2; i++)
		if (nm_sockmap_get_dir(f->agent->zc.sm, f->zc->cookie[i], &d[i]))
			return;
	if (d[0].trimmed || d[1].trimmed)
		pr_debug("msg=\"sockmap relay cut repeated bytes\" flow=%llu up=%llu down=%llu",
			 (unsigned long long)f->id, (unsigned long long)d[0].trimmed,
			 (unsigned long long)d[1].trimmed);
}

static int sm_pump(struct nm_flow *f)
{
	struct nm_zc_flow *z = f->zc;
	bool busy, drain = false;
	int err;

	if (z->signalled) {
		z->signalled = false;
		err = sm_check_fault(f);
		if (err)
			return err;
	}
	for (int i = 0; i < 2; i++) {
		err = sm_watch(f, i);
		if (err) {
			pr_debug("msg=\"sockmap relay leg error\" flow=%llu side=%d running=%d err=\"%s\"",
				 (unsigned long long)f->id, i, z->running[i], strerror(-err));
			return err;
		}
	}
	for (int i = 0; i < 2; i++) {
		err = sm_dir(f, i, &drain);
		if (err)
			return err;
	}
	/* Waiting for a queue to empty, or bytes the verdict has not taken:
	 * nothing wakes the agent for those, so it looks again shortly. */
	busy = drain || z->peeked[0] || z->peeked[1];
	z->peeked[0] = z->peeked[1] = false;
	if (busy && !z->timer)
		z->timer = nm_loop_add_timer(f->agent->loop, ZC_SM_POLL_MS,
					     sm_on_timer, f);
	else if (!busy && z->timer) {
		nm_loop_del_timer(f->agent->loop, z->timer);
		z->timer = 0;
	}
	return 0;
}

static int64_t sm_on_timer(struct nm_loop *loop, uint64_t id, void *data)
{
	struct nm_flow *f = data;

	/* The flow may end in there (and delete this timer). */
	f->zc->timer = 0;
	nm_flow_advance(f);
	return NM_TIMER_STOP;
}

static void zc_on_signal(uint64_t cookie, void *arg)
{
	struct nm_agent *a = arg;

	/* Signals come once per ZC_SM_HIGH bytes of a direction: a scan of
	 * the flows is cheap next to them. */
	for (struct nm_flow *f = a->flows; f; f = f->next) {
		if (!f->zc || f->zc->mode != NM_RELAY_SOCKMAP ||
		    (f->zc->cookie[0] != cookie && f->zc->cookie[1] != cookie))
			continue;
		f->zc->signalled = true;
		nm_flow_advance(f);
		return;
	}
}

static unsigned int sm_mask(const struct nm_flow *f, int i)
{
	const struct nm_zc_flow *z = f->zc;
	const struct nm_side *s = &f->side[i], *o = &f->side[1 - i];
	unsigned int m = 0;

	/* Readable means an end, an error or bytes the verdict has not taken
	 * yet: never the relayed bytes themselves. A parked source is read
	 * while its copy buffer is empty. */
	if (!s->readable && !s->rd_eof &&
	    (z->running[i] || (z->parked[i] && z->coff[i] == z->clen[i])))
		m |= NM_EV_READ;
	/* Side i takes the parked direction 1-i's copied bytes, then its end. */
	if (!s->writable && z->flushed[1 - i] &&
	    (z->coff[1 - i] < z->clen[1 - i] || (o->rd_eof && !s->wr_shut)))
		m |= NM_EV_WRITE;
	return m;
}

static void sm_remove(struct nm_flow *f)
{
	struct nm_zc_flow *z = f->zc;
	struct nm_sockmap *sm = f->agent->zc.sm;

	if (z->timer)
		nm_loop_del_timer(f->agent->loop, z->timer);
	z->timer = 0;
	/* Both sources first: no skb is redirected to a missing peer. */
	for (int i = 0; i < 2; i++)
		if (z->cookie[i])
			nm_sockmap_stop(sm, z->cookie[i]);
	for (int i = 0; i < 2; i++)
		if (z->cookie[i])
			nm_sockmap_forget(sm, z->cookie[i]);
}

/* Puts both sides in the maps. 0, -EAGAIN (bytes wait: not now), -errno. */
static int sm_begin(struct nm_flow *f, struct nm_zc_flow *z)
{
	struct nm_sockmap *sm = f->agent->zc.sm;
	int err;

	/* Bytes waiting in a receive queue are the verdict's (the switch
	 * kicks them to it; it counts them as redirected, against bases
	 * taken once the copy relay wrote its last), but only as whole skbs:
	 * the verdict takes an skb from its start, so one the copy relay
	 * left half read (its last read filled the buffer) would be sent
	 * twice in part. Such a side waits for an empty queue. A busy
	 * stream rarely shows one, so the rule is not "empty queues". */
	for (int i = 0; i < 2; i++)
		if (!f->side[i].rd_eof && f->side[i].rd_split &&
		    sock_inq(f->side[i].fd) != 0)
			return -EAGAIN;
	for (int i = 0; i < 2; i++) {
		socklen_t len = sizeof(z->cookie[i]);

		if (getsockopt(f->side[i].fd, SOL_SOCKET, SO_COOKIE, &z->cookie[i], &len))
			return -errno;
	}
	for (int i = 0; i < 2; i++) {
		err = sock_written(f->side[1 - i].fd, &z->base[i]);
		if (err)
			return err;
		z->written0[i] = f->written[i];
	}
	for (int i = 0; i < 2; i++) {
		err = nm_sockmap_add_dst(sm, f->side[i].fd, z->cookie[i]);
		if (!err)
			err = nm_sockmap_add_dir(sm, z->cookie[i], z->cookie[1 - i],
						 ZC_SM_HIGH);
		if (err)
			return err;
	}
	for (int i = 0; i < 2; i++) {
		if (f->side[i].rd_eof)
			continue;
		err = nm_sockmap_start(sm, f->side[i].fd, z->cookie[i]);
		if (err)
			return err;
		z->running[i] = true;
	}
	for (int i = 0; i < 2; i++)
		if (z->running[i])
			sock_kick(f->side[i].fd);
	return 0;
}

/* ---------------------------------------------------------------- flows */

/*
 * Each leg a plain byte stream at the socket level: plain TCP, or a tunnel
 * whose records the kernel handles both ways (kTLS) with nothing held in
 * OpenSSL (it switched with nothing unread, and writes nothing itself
 * until the end's close_notify). A kTLS leg goes to splice only: sockmap's
 * verdict would see its encrypted skbs, and a socket with the tls ULP is
 * not a sockmap member on every kernel this agent supports.
 */
static bool zc_side_eligible(const struct nm_side *s)
{
	if (s->fd < 0)
		return false;
	return !s->ssl || (nm_side_ktls(s) && !s->ssl_wpend && !s->rd_err &&
			   !nm_side_wpending(s));
}

static bool zc_eligible(const struct nm_flow *f)
{
	return f->phase == NM_PH_RELAY && !f->buf[0].data && !f->buf[1].data &&
	       zc_side_eligible(&f->side[0]) && zc_side_eligible(&f->side[1]);
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
	z->mode = a->zc.mode;
	if (z->mode == NM_RELAY_SOCKMAP && (f->side[0].ssl || f->side[1].ssl))
		z->mode = NM_RELAY_SPLICE; /* a kTLS leg (zc_side_eligible) */
	if (z->mode == NM_RELAY_SOCKMAP) {
		f->zc = z;
		err = sm_begin(f, z);
		if (!err) {
			a->paths.relay.flows++;
			f->relayed = nm_relay_mode_name(z->mode);
			return true;
		}
		sm_remove(f);
		f->zc = NULL;
		memset(z, 0, sizeof(*z));
		memset(z->pipe, -1, sizeof(z->pipe));
		if (err == -EAGAIN) {
			/* Bytes wait in a queue: the copy relay takes them,
			 * the next event tries again. */
			f->zc_tried = false;
			free(z);
			return false;
		}
		pr_debug("msg=\"sockmap relay refused flow, splicing\" flow=%llu err=\"%s\"",
			 (unsigned long long)f->id, strerror(-err));
		z->mode = NM_RELAY_SPLICE;
	}
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
	f->relayed = nm_relay_mode_name(z->mode);
	return true;
fallback:
	a->zc.fallbacks++;
	return false;
}

int nm_zc_pump(struct nm_flow *f)
{
	int err = f->zc->mode == NM_RELAY_SOCKMAP ? sm_pump(f) : splice_pump(f);

	if (err && nm_log_get_level() >= NM_LOG_DEBUG) {
		int soerr[2] = { 0, 0 };
		socklen_t len = sizeof(int);

		for (int i = 0; i < 2; i++)
			getsockopt(f->side[i].fd, SOL_SOCKET, SO_ERROR, &soerr[i], &len);
		pr_debug("msg=\"kernel relay ends flow\" flow=%llu mode=%s err=\"%s\" so_error=%d,%d",
			 (unsigned long long)f->id, nm_relay_mode_name(f->zc->mode),
			 strerror(-err), soerr[0], soerr[1]);
	}
	return err;
}

unsigned int nm_zc_mask(const struct nm_flow *f, int i)
{
	return f->zc->mode == NM_RELAY_SOCKMAP ? sm_mask(f, i) : splice_mask(f, i);
}

void nm_zc_sync(struct nm_flow *f)
{
	uint64_t queued, arrived;

	/* splice counts every byte as it moves; the kernel moves sockmap's */
	if (f->zc->mode != NM_RELAY_SOCKMAP)
		return;
	for (int i = 0; i < 2; i++)
		if (!f->zc->flushed[i] && !sm_backlog(f, i, &queued, &arrived))
			sm_count(f, i, arrived); /* flushed: sm_parked() counts */
}

void nm_zc_end(struct nm_flow *f)
{
	struct nm_zc_flow *z = f->zc;

	if (!z)
		return;
	nm_zc_sync(f);
	if (z->mode == NM_RELAY_SOCKMAP) {
		sm_log_trimmed(f);
		sm_remove(f);
	}
	if (z->timer)
		nm_loop_del_timer(f->agent->loop, z->timer);
	zc_close_pipes(z);
	free(z->cbuf[0]);
	free(z->cbuf[1]);
	free(z);
	f->zc = NULL;
}
