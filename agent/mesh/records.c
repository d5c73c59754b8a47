// SPDX-License-Identifier: Apache-2.0
/*
 * records.c - TLS 1.3 records on a tunnel socket, sealed and opened by the
 * agent (records.h): the buffering, the socket calls and what each record
 * type means after the handshake.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/crypto.h>

#include "lib/log.h"
#include "mesh/records.h"

#define HS_NEW_SESSION_TICKET 4
#define ALERT_CLOSE_NOTIFY 0

/* What an output buffer must still hold to take one more record. */
#define SEAL_ROOM(n) ((n) + NM_TLSREC_HDR + 1 + NM_TLSREC_TAG)
/* Kept free by writes: the close_notify always fits behind them. */
#define CLOSE_ROOM SEAL_ROOM(2)

int nm_records_new(struct nm_bufpool *pool, const struct nm_ktls_params *tx,
		   const struct nm_ktls_params *rx, struct nm_records **out)
{
	struct nm_records *r = calloc(1, sizeof(*r));
	int err;

	*out = NULL;
	if (!r)
		return -ENOMEM;
	err = nm_tlsrec_init(&r->tx, tx, true);
	if (!err) {
		err = nm_tlsrec_init(&r->rx, rx, false);
		if (err)
			nm_tlsrec_free(&r->tx);
	}
	if (err) {
		free(r);
		return err;
	}
	r->pool = pool;
	*out = r;
	return 0;
}

void nm_records_free(struct nm_records *r)
{
	if (!r)
		return;
	nm_tlsrec_free(&r->tx);
	nm_tlsrec_free(&r->rx);
	if (r->in.data)
		OPENSSL_cleanse(r->in.data, NM_BUF_ALLOC);
	nm_buf_put(r->pool, &r->in);
	nm_buf_put(r->pool, &r->out);
	free(r);
}

bool nm_records_pending(const struct nm_records *r)
{
	ssize_t n;

	/* Opened bytes, or an end already read (close_notify, an error held
	 * behind bytes): the socket will not say so again. */
	if (r->plain_off < r->plain_len || r->eof || r->err)
		return true;
	if (!r->in.data || r->in.off >= r->in.len)
		return false;
	n = nm_tlsrec_frame(r->in.data + r->in.off, r->in.len - r->in.off);
	/* A whole record, or a header already known bad: either way the
	 * next read answers without the socket. */
	return n != -EAGAIN && (n < 0 || (size_t)n <= r->in.len - r->in.off);
}

/*
 * One opened record: application data counts, a ticket is skipped (the
 * peer may send one; resumption does not use it after the switch), a
 * close_notify ends the stream, anything else is the end of the flow.
 */
static int record_meaning(struct nm_records *r, uint8_t type, const uint8_t *p,
			  size_t len)
{
	switch (type) {
	case NM_TLSREC_APPDATA:
		return 0;
	case NM_TLSREC_ALERT:
		if (len == 2 && p[1] == ALERT_CLOSE_NOTIFY) {
			r->eof = true;
			return 1;
		}
		pr_debug("msg=\"TLS alert from peer\" level=%u description=%u",
			 len > 0 ? p[0] : 0, len > 1 ? p[1] : 0);
		return -EPROTO;
	case NM_TLSREC_HANDSHAKE:
		if (len >= 4 && p[0] == HS_NEW_SESSION_TICKET)
			return 1;
		/* A KeyUpdate: nodemesh rotates by new connections, never
		 * by updating keys (issue 14), so a peer that does is not
		 * followed. */
		pr_debug("msg=\"TLS handshake message after the switch\" type=%u",
			 len ? p[0] : 0);
		return -EPROTO;
	default:
		return -EPROTO;
	}
}

/* Opens the whole record at the head of r->in into buf (or in place when
 * buf is too small); returns bytes of application data put in buf, or
 * -errno. Sets *stop when opened bytes wait in place. */
static ssize_t open_one(struct nm_records *r, size_t reclen, uint8_t *buf,
			size_t room, bool *stop)
{
	uint8_t *rec = r->in.data + r->in.off;
	size_t ct = reclen - NM_TLSREC_HDR - NM_TLSREC_TAG, len = 0, n;
	bool direct = room >= ct;
	uint8_t *out = direct ? buf : rec + NM_TLSREC_HDR, type = 0;
	int err;

	err = nm_tlsrec_open(&r->rx, rec, reclen, out, direct ? room : ct,
			     &type, &len);
	if (err)
		return err;
	err = record_meaning(r, type, out, len);
	if (err < 0)
		return err;
	if (err > 0)
		len = 0;
	if (direct) {
		r->in.off += (uint32_t)reclen;
		return (ssize_t)len;
	}
	/* In place: hand out what fits, keep the rest in the buffer (the
	 * record stays at its head until then). */
	n = len < room ? len : room;
	memcpy(buf, out, n);
	if (n < len) {
		r->plain = out;
		r->plain_off = (uint32_t)n;
		r->plain_len = (uint32_t)len;
		r->plain_next = r->in.off + (uint32_t)reclen;
		*stop = true;
	} else {
		r->in.off += (uint32_t)reclen;
	}
	return (ssize_t)n;
}

/* The rest of a record opened in place. */
static size_t take_plain(struct nm_records *r, uint8_t *buf, size_t room)
{
	size_t n = r->plain_len - r->plain_off;

	if (n > room)
		n = room;
	memcpy(buf, r->plain + r->plain_off, n);
	r->plain_off += (uint32_t)n;
	if (r->plain_off == r->plain_len) {
		r->in.off = r->plain_next;
		r->plain = NULL;
		r->plain_off = r->plain_len = 0;
	}
	return n;
}

/* More ciphertext behind what waits: > 0 bytes, 0 FIN, -EAGAIN, -errno. */
static ssize_t fill(struct nm_records *r, int fd)
{
	struct nm_buf *b = &r->in;
	ssize_t n;

	if (!b->data && nm_buf_get(r->pool, b))
		return -ENOMEM;
	if (b->off) {
		/* Less than a record: move it to the front. */
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	do
		n = recv(fd, b->data + b->len, NM_BUF_ALLOC - b->len, 0);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		b->len += (uint32_t)n;
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return -EAGAIN;
	return errno == EPIPE ? -ECONNRESET : -errno;
}

ssize_t nm_records_read(struct nm_records *r, int fd, uint8_t *buf, size_t len,
			bool *drained)
{
	size_t total = 0;
	bool stop = false;
	ssize_t n = 0;

	*drained = false;
	if (r->err)
		return r->err;
	while (total < len && !stop) {
		size_t avail;

		if (r->plain) {
			total += take_plain(r, buf + total, len - total);
			continue;
		}
		if (r->eof)
			break;
		avail = r->in.data ? r->in.len - r->in.off : 0;
		n = avail ? nm_tlsrec_frame(r->in.data + r->in.off, avail) : -EAGAIN;
		if (n > 0 && (size_t)n <= avail) {
			n = open_one(r, (size_t)n, buf + total, len - total, &stop);
			if (n < 0)
				break;
			total += (size_t)n;
			continue;
		}
		if (n != -EAGAIN && n <= 0)
			break; /* a header no record of ours has */
		if (*drained)
			break;
		n = fill(r, fd);
		if (n == 0) {
			/* FIN without close_notify, maybe inside a record:
			 * never a clean end. */
			n = -ECONNRESET;
			break;
		}
		if (n == -EAGAIN || (n > 0 && (size_t)n < NM_BUF_ALLOC - avail))
			*drained = true;
		if (n < 0 && n != -EAGAIN)
			break;
	}
	if (r->in.data && r->in.off == r->in.len && !r->plain)
		nm_buf_put(r->pool, &r->in);
	if (n < 0 && n != -EAGAIN) {
		if (!total)
			return n;
		r->err = (int)n; /* after the bytes before it */
	}
	if (total)
		return (ssize_t)total;
	return r->eof ? 0 : -EAGAIN;
}

bool nm_records_wpending(const struct nm_records *r)
{
	return r->out.data && r->out.off < r->out.len;
}

int nm_records_flush(struct nm_records *r, int fd)
{
	struct nm_buf *b = &r->out;
	ssize_t n;

	while (b->data && b->off < b->len) {
		n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
		if (n > 0) {
			b->off += (uint32_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -EAGAIN;
		return n == 0 || errno == EPIPE ? -ECONNRESET : -errno;
	}
	nm_buf_put(r->pool, b);
	return 0;
}

/* Seals one record of type behind what waits in r->out. */
static ssize_t seal_one(struct nm_records *r, uint8_t type, const uint8_t *p,
			size_t len)
{
	struct nm_buf *b = &r->out;
	ssize_t n;

	if (!b->data && nm_buf_get(r->pool, b))
		return -ENOMEM;
	n = nm_tlsrec_seal(&r->tx, type, p, len, b->data + b->len,
			   NM_BUF_ALLOC - b->len);
	if (n > 0)
		b->len += (uint32_t)n;
	return n;
}

ssize_t nm_records_write(struct nm_records *r, int fd, const uint8_t *buf,
			 size_t len)
{
	size_t total = 0;
	int err;

	if (nm_records_wpending(r)) {
		err = nm_records_flush(r, fd);
		if (err)
			return err;
	}
	while (total < len) {
		size_t n = len - total;
		ssize_t k;

		if (n > NM_TLSREC_PLAIN_MAX)
			n = NM_TLSREC_PLAIN_MAX;
		if (r->out.data && NM_BUF_ALLOC - r->out.len < SEAL_ROOM(n) + CLOSE_ROOM)
			break;
		k = seal_one(r, NM_TLSREC_APPDATA, buf + total, n);
		if (k < 0)
			return k;
		total += n;
	}
	err = nm_records_flush(r, fd);
	if (err && err != -EAGAIN)
		return err;
	return (ssize_t)total;
}

int nm_records_close_notify(struct nm_records *r, int fd)
{
	static const uint8_t close_notify[2] = { 1, ALERT_CLOSE_NOTIFY };
	ssize_t k;
	int err;

	/* Room is always left for it: writes stop a record short of full. */
	k = seal_one(r, NM_TLSREC_ALERT, close_notify, sizeof(close_notify));
	if (k < 0)
		return (int)k;
	err = nm_records_flush(r, fd);
	return err == -EAGAIN ? 0 : err;
}

void nm_records_choose(bool openssl, struct nm_fastpaths *fp)
{
	if (fp->ktls.active)
		nm_path_set(&fp->agent_records, false, "off",
			    "kernel TLS carries the records");
	else if (openssl)
		nm_path_set(&fp->agent_records, false, "openssl",
			    "mesh.tlsRecords is openssl");
	else
		nm_path_set(&fp->agent_records, true, "agent", "");
}
