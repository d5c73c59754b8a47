// SPDX-License-Identifier: Apache-2.0
/*
 * relay.c - non-blocking reads, writes and half-closes on one side of a
 * proxied connection, plain or TLS, and the buffer pool.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "lib/log.h"
#include "mesh/ktls.h"
#include "mesh/records.h"
#include "mesh/relay.h"

const char *nm_ssl_error_string(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (!e)
		snprintf(buf, len, "%s", errno ? strerror(errno) : "connection closed");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

static int ssl_result(struct nm_side *s, int ret, bool reading)
{
	int err = SSL_get_error(s->ssl, ret);

	switch (err) {
	case SSL_ERROR_WANT_READ:
		s->readable = false;
		if (!reading)
			s->wr_want_read = true;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		s->writable = false;
		if (reading)
			s->rd_want_write = true;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		/* The peer reset or vanished without close_notify: treat as an
		 * RST so a truncated stream is never mistaken for a clean end. */
		return errno == EAGAIN ? -EAGAIN : -ECONNRESET;
	default:
		return -EPROTO;
	}
}

/* The agent's records take over from OpenSSL's: 1, 0 not yet, -1 never. */
static int records_switch(struct nm_side *s)
{
	struct nm_ktls_params tx, rx;
	int r = nm_ktls_switch_agent(s->ssl, &tx, &rx);

	if (r <= 0)
		return r;
	/* Failing here leaves OpenSSL's state as it was: it carries on. */
	r = nm_records_new(s->bufpool, &tx, &rx, &s->recs) ? -1 : 1;
	OPENSSL_cleanse(&tx, sizeof(tx));
	OPENSSL_cleanse(&rx, sizeof(rx));
	return r;
}

/*
 * After application data, with nothing left inside OpenSSL: the kernel
 * (mesh/ktls.h) or the agent (mesh/records.h) takes over the records, or
 * this side stays on OpenSSL for good and gets its read-ahead back.
 */
static void tls_try_switch(struct nm_side *s)
{
	bool agent = nm_ktls_agent(s->ssl);
	int r;

	/* A record OpenSSL began to send must be finished by OpenSSL (the
	 * kernel, or the peer, already has part of it): switch after a
	 * later read. */
	if (s->ssl_wpend)
		return;
	r = agent ? records_switch(s) : nm_ktls_switch(s->ssl, s->fd);
	if (r == 0)
		return;
	s->ktls_want = false;
	if (r > 0) {
		s->ktls = !agent;
		if (s->paths)
			(agent ? &s->paths->agent_records : &s->paths->ktls)->flows++;
	} else {
		SSL_set_read_ahead(s->ssl, 1);
	}
}

/*
 * Reads up to len decrypted bytes: record after record while OpenSSL holds
 * more (the 64 KiB read-ahead holds up to four), so the other side gets
 * them in one write. An error after some bytes waits in rd_err for the
 * next call, so the bytes before it still go out.
 */
static int tls_read(struct nm_side *s, uint8_t *buf, size_t len)
{
	size_t total = 0;

	if (s->rd_err)
		return s->rd_err;
	s->rd_want_write = false;
	while (total < len) {
		size_t got = 0;
		int ret, r;

		ERR_clear_error();
		ret = SSL_read_ex(s->ssl, buf + total, len - total, &got);
		if (ret > 0) {
			total += got;
			/* Nothing left inside OpenSSL: the socket is drained
			 * as far as one recv() could tell. */
			if (!SSL_has_pending(s->ssl)) {
				if (total < len)
					s->readable = false;
				break;
			}
			continue;
		}
		r = ssl_result(s, ret, true);
		if (!total)
			return r;
		if (r != -EAGAIN && r != 0)
			s->rd_err = r;
		break;
	}
	s->bytes_read += total;
	if (s->ktls_want && !SSL_has_pending(s->ssl))
		tls_try_switch(s);
	return (int)total;
}

/* Through the agent's records: no copy but the cipher's. */
static int records_read(struct nm_side *s, uint8_t *buf, size_t len)
{
	bool drained;
	ssize_t n = nm_records_read(s->recs, s->fd, buf, len, &drained);

	if (drained || n == -EAGAIN)
		s->readable = false;
	if (n > 0)
		s->bytes_read += (uint64_t)n;
	return (int)n;
}

int nm_side_read(struct nm_side *s, uint8_t *buf, size_t len)
{
	ssize_t n;

	if (s->recs)
		return records_read(s, buf, len);
	if (s->ssl && !s->ktls)
		return tls_read(s, buf, len);
	if (s->ktls) {
		n = nm_ktls_recv(s->fd, buf, len);
		if (n == -EAGAIN)
			s->readable = false;
		if (n <= 0)
			return (int)n;
		if ((size_t)n < len)
			s->readable = false;
		s->bytes_read += n;
		return (int)n;
	}
	n = recv(s->fd, buf, len, 0);
	if (n > 0) {
		/* A short read means the socket is drained; level-triggered
		 * epoll reports it again if more arrived meanwhile. A full
		 * one may have stopped inside an skb (zerocopy.c's switch
		 * must then wait for an empty queue). */
		s->rd_split = (size_t)n == len;
		if (!s->rd_split)
			s->readable = false;
		s->bytes_read += n;
		return (int)n;
	}
	if (n == 0)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		s->readable = false;
		s->rd_split = false;
		return -EAGAIN;
	}
	if (errno == EINTR)
		return -EAGAIN;
	return errno == EPIPE ? -ECONNRESET : -errno;
}

/* Maps a failed BIO_flush of the buffering write BIO. */
static int flush_result(struct nm_side *s)
{
	BIO *w = SSL_get_wbio(s->ssl);

	if (BIO_should_retry(w)) {
		s->writable = false;
		return -EAGAIN;
	}
	return errno == EPIPE || !errno ? -ECONNRESET : -errno;
}

int nm_side_flush(struct nm_side *s)
{
	BIO *w;

	if (s->recs) {
		int r = nm_records_flush(s->recs, s->fd);

		if (r == -EAGAIN)
			s->writable = false;
		return r;
	}
	if (!s->ssl || !(w = SSL_get_wbio(s->ssl)) || !BIO_wpending(w))
		return 0;
	errno = 0;
	if (BIO_flush(w) > 0)
		return 0;
	return flush_result(s);
}

bool nm_side_wpending(const struct nm_side *s)
{
	BIO *w;

	if (s->recs)
		return nm_records_wpending(s->recs);
	w = s->ssl ? SSL_get_wbio(s->ssl) : NULL;
	return w && BIO_wpending(w) > 0;
}

/*
 * Encrypts as much of buf as fits: one record per SSL_write (partial-write
 * mode), all of them gathered in the write BIO, then one flush. Bytes
 * accepted count as written even if the flush must wait for EPOLLOUT
 * (nm_side_wpending()).
 */
static int tls_write(struct nm_side *s, const uint8_t *buf, size_t len)
{
	size_t total = 0;
	int r = 0;

	s->wr_want_read = false;
	while (total < len) {
		size_t put = 0;
		int ret;

		ERR_clear_error();
		ret = SSL_write_ex(s->ssl, buf + total, len - total, &put);
		if (ret <= 0) {
			r = ssl_result(s, ret, false);
			if (r == 0)
				r = -ECONNRESET;
			/* OpenSSL holds part of a record: it must finish it
			 * before the socket may be written directly. */
			s->ssl_wpend = r == -EAGAIN;
			break;
		}
		s->ssl_wpend = false;
		total += put;
	}
	if (total) {
		int fr = nm_side_flush(s);

		if (fr && fr != -EAGAIN)
			return fr;
		return (int)total;
	}
	return r;
}

int nm_side_write(struct nm_side *s, const uint8_t *buf, size_t len)
{
	ssize_t n;

	if (s->recs) {
		n = nm_records_write(s->recs, s->fd, buf, len);
		if (n == -EAGAIN || nm_records_wpending(s->recs))
			s->writable = false;
		return (int)n;
	}
	if (s->ssl && !s->ktls)
		return tls_write(s, buf, len);
	n = send(s->fd, buf, len, MSG_NOSIGNAL);
	if (n < 0 && s->ktls && errno != EAGAIN && errno != EINTR)
		pr_debug("msg=\"kTLS send failed\" fd=%d len=%zu err=\"%s\"",
			 s->fd, len, strerror(errno));
	if (n >= 0) {
		if ((size_t)n < len)
			s->writable = false;
		return (int)n;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		s->writable = false;
		return -EAGAIN;
	}
	if (errno == EINTR)
		return -EAGAIN;
	return errno == EPIPE ? -ECONNRESET : -errno;
}

int nm_side_shutdown(struct nm_side *s)
{
	if (s->recs) {
		/* close_notify, like SSL_shutdown(): the FIN comes at close. */
		int r = nm_records_close_notify(s->recs, s->fd);

		if (r == 0 && nm_records_wpending(s->recs))
			s->writable = false;
		return r;
	}
	if (s->ssl) {
		int ret;

		ERR_clear_error();
		ret = SSL_shutdown(s->ssl);
		if (ret >= 0) {
			/* close_notify is in the write BIO; if it cannot leave
			 * yet the pump flushes it on EPOLLOUT (wpending). */
			ret = nm_side_flush(s);
			return ret == -EAGAIN ? 0 : ret;
		}
		{
			char e[160];
			int en = errno;

			ret = ssl_result(s, ret, false);
			if (ret && ret != -EAGAIN)
				pr_debug("msg=\"TLS shutdown failed\" fd=%d ktls=%d err=\"%s\" errno=%d",
					 s->fd, s->ktls, nm_ssl_error_string(e, sizeof(e)), en);
		}
		return ret == 0 ? 0 : ret;
	}
	if (shutdown(s->fd, SHUT_WR) && errno != ENOTCONN)
		return -errno;
	return 0;
}

bool nm_side_pending(const struct nm_side *s)
{
	/* Decrypted bytes, or a read-ahead record not yet decrypted: both
	 * can be read without the socket becoming readable again. */
	if (s->recs)
		return nm_records_pending(s->recs);
	return s->ssl && !s->ktls && SSL_has_pending(s->ssl);
}

/*
 * Room for four full TLS 1.3 records (16 KiB + 22 bytes each) and a
 * close_notify: a full NM_BUF_SIZE leaves in one write().
 */
#define NM_TLS_WBUF_SIZE (4 * (16384 + 64) + 64)
#define NM_TLS_RBUF_SIZE (4 * (16384 + 64))

int nm_ssl_tune(SSL *ssl, int fd, const struct nm_fastpaths *fp)
{
	BIO *sock = SSL_get_wbio(ssl), *buf;

	/* Idle flows give their TLS buffers back (10k idle tunnels would
	 * otherwise pin ~35 KiB each inside OpenSSL). */
	SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
	/* kTLS: OpenSSL writes straight to the socket (its TX offload needs
	 * the socket BIO itself) and reads record by record until the
	 * switch; a failed preparation is plain OpenSSL, tuned below. */
	if (fp && fp->ktls.active && sock && !nm_ktls_prepare(ssl, fd))
		return 1;
	/* The agent's records: the same until the switch (one record per
	 * read, OpenSSL writing to the socket), which comes sooner or
	 * later on every tunnel. */
	if (fp && fp->agent_records.active && sock && !nm_ktls_prepare_agent(ssl))
		return 1;
	/* Read whole records, and up to four of them, in one recv(). */
	SSL_set_read_ahead(ssl, 1);
	SSL_set_default_read_buffer_len(ssl, NM_TLS_RBUF_SIZE);
	if (!sock)
		return 0;
	buf = BIO_new(BIO_f_buffer());
	if (!buf || !BIO_set_write_buffer_size(buf, NM_TLS_WBUF_SIZE) ||
	    !BIO_up_ref(sock)) {
		BIO_free(buf);
		return -ENOMEM;
	}
	/* The chain holds its own reference to the socket BIO, the SSL keeps
	 * it as rbio: reads stay unbuffered here (OpenSSL's read-ahead
	 * does that), only writes gather. */
	BIO_push(buf, sock);
	SSL_set0_wbio(ssl, buf);
	return 0;
}

int nm_side_tls_setup(struct nm_side *s, struct nm_fastpaths *fp,
		      struct nm_bufpool *pool)
{
	int r = nm_ssl_tune(s->ssl, s->fd, fp);

	if (r < 0)
		return r;
	s->paths = fp;
	s->bufpool = pool;
	s->ktls_want = r == 1;
	return 0;
}

void nm_side_tls_adopt(struct nm_side *s, struct nm_fastpaths *fp,
		       struct nm_bufpool *pool)
{
	s->paths = fp;
	s->bufpool = pool;
	s->ktls_want = nm_ktls_prepared(s->ssl);
}

#ifndef SO_BUSY_POLL
#define SO_BUSY_POLL 46
#endif
#ifndef SO_PREFER_BUSY_POLL
#define SO_PREFER_BUSY_POLL 69
#endif

bool nm_relay_busy_poll_setup(struct nm_fastpaths *fp, uint32_t us)
{
	int fd, one = 1, v = (int)us;
	char why[sizeof(fp->busy_poll.reason)];
	bool prefer;

	fp->busy_poll_us = 0;
	if (!us) {
		nm_path_set(&fp->busy_poll, false, "off", "mesh.busyPoll is 0");
		return false;
	}
	/* The event loop's spin (core/loop.h) needs nothing from the kernel:
	 * the path is active whatever the socket option says. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &v, sizeof(v))) {
		snprintf(why, sizeof(why), "SO_BUSY_POLL: %s; event loop spins %u us",
			 strerror(errno), us);
		if (fd >= 0)
			close(fd);
		nm_path_set(&fp->busy_poll, true, "loop_spin", why);
		return false;
	}
	/* 5.11+; without it busy polling still works, just not preferred
	 * over interrupts. */
	prefer = !setsockopt(fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one,
			     sizeof(one));
	close(fd);
	snprintf(why, sizeof(why), "SO_BUSY_POLL %u us%s; event loop spins %u us",
		 us, prefer ? " + SO_PREFER_BUSY_POLL" : "", us);
	nm_path_set(&fp->busy_poll, true, prefer ? "busy_poll+prefer" : "busy_poll",
		    why);
	fp->busy_poll_us = us;
	return true;
}

void nm_side_busy_poll(const struct nm_fastpaths *fp, int fd)
{
	int one = 1, v = (int)fp->busy_poll_us;

	if (!fp->busy_poll_us || fd < 0)
		return;
	/* Best effort: a socket without it is only slower. */
	setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &v, sizeof(v));
	if (strcmp(fp->busy_poll.mode, "busy_poll+prefer") == 0)
		setsockopt(fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof(one));
}

int nm_side_arm_reset(struct nm_side *s)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (s->fd < 0)
		return -EBADF;
	if (setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)))
		return -errno;
	s->rst_armed = true;
	return 0;
}

void nm_side_close(struct nm_side *s, bool reset)
{
	nm_records_free(s->recs);
	s->recs = NULL;
	if (s->ssl) {
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	if (s->fd < 0)
		return;
	if (reset != s->rst_armed) {
		struct linger lg = { .l_onoff = reset, .l_linger = 0 };

		setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(s->fd);
	s->fd = -1;
	s->rst_armed = false;
}
