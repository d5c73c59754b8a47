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
#include <openssl/err.h>

#include "mesh/relay.h"

int nm_buf_get(struct nm_bufpool *pool, struct nm_buf *b)
{
	if (b->data)
		return 0;
	if (pool->n_free)
		b->data = pool->free[--pool->n_free];
	else
		b->data = malloc(NM_BUF_SIZE);
	if (!b->data)
		return -ENOMEM;
	b->off = b->len = 0;
	pool->in_use++;
	return 0;
}

void nm_buf_put(struct nm_bufpool *pool, struct nm_buf *b)
{
	if (!b->data)
		return;
	pool->in_use--;
	if (!pool->free)
		pool->free = calloc(NM_BUFPOOL_KEEP, sizeof(*pool->free));
	if (pool->free && pool->n_free < NM_BUFPOOL_KEEP)
		pool->free[pool->n_free++] = b->data;
	else
		free(b->data);
	b->data = NULL;
	b->off = b->len = 0;
}

void nm_bufpool_drain(struct nm_bufpool *pool)
{
	while (pool->n_free)
		free(pool->free[--pool->n_free]);
	free(pool->free);
	pool->free = NULL;
}

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

int nm_side_read(struct nm_side *s, uint8_t *buf, size_t len)
{
	ssize_t n;

	if (s->ssl) {
		size_t got = 0;
		int ret;

		ERR_clear_error();
		s->rd_want_write = false;
		ret = SSL_read_ex(s->ssl, buf, len, &got);
		if (ret > 0) {
			/* As for plain sockets: a short read that left nothing
			 * buffered inside OpenSSL (read-ahead may hold a whole
			 * record) means the socket is drained. */
			if (got < len && !SSL_has_pending(s->ssl))
				s->readable = false;
			s->bytes_read += got;
			return (int)got;
		}
		return ssl_result(s, ret, true);
	}
	n = recv(s->fd, buf, len, 0);
	if (n > 0) {
		/* A short read means the socket is drained; level-triggered
		 * epoll reports it again if more arrived meanwhile. */
		if ((size_t)n < len)
			s->readable = false;
		s->bytes_read += n;
		return (int)n;
	}
	if (n == 0)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		s->readable = false;
		return -EAGAIN;
	}
	if (errno == EINTR)
		return -EAGAIN;
	return errno == EPIPE ? -ECONNRESET : -errno;
}

int nm_side_write(struct nm_side *s, const uint8_t *buf, size_t len)
{
	ssize_t n;

	if (s->ssl) {
		size_t put = 0;
		int ret;

		ERR_clear_error();
		s->wr_want_read = false;
		ret = SSL_write_ex(s->ssl, buf, len, &put);
		if (ret > 0)
			return (int)put;
		ret = ssl_result(s, ret, false);
		return ret == 0 ? -ECONNRESET : ret;
	}
	n = send(s->fd, buf, len, MSG_NOSIGNAL);
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
	if (s->ssl) {
		int ret;

		ERR_clear_error();
		ret = SSL_shutdown(s->ssl);
		if (ret >= 0)
			return 0; /* close_notify sent; reading goes on (TLS 1.3) */
		ret = ssl_result(s, ret, false);
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
	return s->ssl && SSL_has_pending(s->ssl);
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
