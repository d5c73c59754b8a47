// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_tlsrec.c - libFuzzer target for the agent's TLS 1.3 record layer
 * (agent/mesh/tlsrec.c, records.c): what a peer agent, or anything on the
 * path between nodes, may put on a tunnel after the handshake.
 *
 * Two halves per input:
 *  - the input as raw ciphertext: nm_tlsrec_frame() and nm_tlsrec_open()
 *    walk it record by record and answer only documented values; nothing
 *    forged opens, and the sequence number moves only on success;
 *  - the input as a script of records a real peer seals (type and length
 *    from the input, bytes from it too), some of them damaged: written to
 *    a socketpair and read back through nm_records_read() with read sizes
 *    from the input. The bytes returned must be exactly the application
 *    data sealed before the first record that ends the stream, and the
 *    end must be the one that record means (0 for close_notify, an error
 *    for a damaged record, an alert or a KeyUpdate).
 */
// fuzz-sources: agent/mesh/tlsrec.c agent/mesh/records.c agent/mesh/bufpool.c lib/log.c
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/tls.h>

#include "mesh/records.h"
#include "mesh/tlsrec.h"

#define CHECK(c)                      \
	do {                          \
		if (!(c))             \
			abort();      \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void params(struct nm_ktls_params *p, int cipher)
{
	memset(p, 0, sizeof(*p));
	p->cipher = cipher;
	p->key_len = cipher == TLS_CIPHER_AES_GCM_128 ? 16 : 32;
	memset(p->key, 0x5a, p->key_len);
	memset(p->iv, 0xa5, sizeof(p->iv));
}

static void raw_walk(const uint8_t *data, size_t size)
{
	static uint8_t out[NM_TLSREC_IN_MAX];
	struct nm_ktls_params p;
	struct nm_tlsrec rx;
	size_t off = 0;

	params(&p, TLS_CIPHER_AES_GCM_128);
	CHECK(nm_tlsrec_init(&rx, &p, false) == 0);
	while (off < size) {
		ssize_t n = nm_tlsrec_frame(data + off, size - off);
		uint64_t seq = rx.seq;
		uint8_t type = 0;
		size_t len = 0;
		int r;

		CHECK(n > 0 || n == -EAGAIN || n == -EPROTO || n == -EMSGSIZE);
		if (n <= 0 || (size_t)n > size - off)
			break;
		CHECK((size_t)n <= NM_TLSREC_IN_MAX && (size_t)n >= NM_TLSREC_HDR + 17);
		r = nm_tlsrec_open(&rx, data + off, (size_t)n, out, sizeof(out), &type, &len);
		/* Without the key nothing authenticates. */
		CHECK(r == -EBADMSG);
		CHECK(rx.seq == seq);
		off += (size_t)n;
	}
	nm_tlsrec_free(&rx);
}

/* What the reader must see: application data up to the first record that
 * ends the stream, and how it ends. */
struct expect {
	uint8_t *bytes;
	size_t len;
	int end; /* 0 close_notify, -EBADMSG, -EPROTO, -ECONNRESET (no end) */
};

static size_t script(const uint8_t *data, size_t size, struct nm_tlsrec *tx,
		     uint8_t *wire, size_t cap, struct expect *e)
{
	size_t off = 0, w = 0;
	bool ended = false;

	e->len = 0;
	e->end = -ECONNRESET; /* a FIN after the last record */
	while (off + 2 <= size && w + NM_TLSREC_SEALED_MAX <= cap) {
		uint8_t op = data[off], type = NM_TLSREC_APPDATA;
		size_t len = data[off + 1] * 67u % (NM_TLSREC_PLAIN_MAX + 1);
		const uint8_t *body;
		int end = 1; /* 1: the stream goes on */
		ssize_t n;

		off += 2;
		if (len > size - off)
			len = size - off;
		body = data + off;
		off += len;
		switch (op % 8) {
		case 5: /* close_notify */
			type = NM_TLSREC_ALERT;
			body = (const uint8_t *)"\1\0";
			len = 2;
			end = 0;
			break;
		case 6: /* another alert, a KeyUpdate, or a ticket (skipped) */
			type = op & 8 ? NM_TLSREC_ALERT : NM_TLSREC_HANDSHAKE;
			if (type == NM_TLSREC_HANDSHAKE && len >= 4 && body[0] == 4)
				end = 1;
			else if (type == NM_TLSREC_ALERT && len == 2 && body[1] == 0)
				end = 0;
			else
				end = -EPROTO;
			break;
		default:
			break;
		}
		n = nm_tlsrec_seal(tx, type, body, len, wire + w, cap - w);
		CHECK(n == (ssize_t)(len + NM_TLSREC_HDR + 1 + NM_TLSREC_TAG));
		if (op % 8 == 7 && n > 0) {
			/* Damaged on the way: one bit of the record. */
			wire[w + op * 131u % (size_t)n] ^= (uint8_t)(1u << (op % 7));
			end = -EBADMSG;
		}
		w += (size_t)n;
		if (!ended) {
			if (end == 1 && type == NM_TLSREC_APPDATA) {
				memcpy(e->bytes + e->len, body, len);
				e->len += len;
			} else if (end != 1) {
				e->end = end;
				ended = true;
			}
		}
	}
	/* A damaged header may say "not a record" or "too long": still
	 * an error, which one depends on the bit. */
	return w;
}

static void through_records(const uint8_t *data, size_t size)
{
	static uint8_t wire[4 * NM_TLSREC_SEALED_MAX], want[4 * NM_TLSREC_SEALED_MAX],
		got[4 * NM_TLSREC_SEALED_MAX];
	struct nm_ktls_params p;
	struct nm_bufpool pool = { 0 };
	struct nm_records *r;
	struct nm_tlsrec tx;
	struct expect e = { .bytes = want };
	size_t w, sent = 0, have = 0, step;
	int sv[2], end = 1, cipher;

	if (size < 2)
		return;
	cipher = data[0] % 3 == 0 ? TLS_CIPHER_AES_GCM_128 :
		 data[0] % 3 == 1 ? TLS_CIPHER_AES_GCM_256 : TLS_CIPHER_CHACHA20_POLY1305;
	step = 1 + data[1] * 257u % NM_BUF_SIZE; /* the relay's read sizes */
	params(&p, cipher);
	CHECK(nm_tlsrec_init(&tx, &p, true) == 0);
	w = script(data + 2, size - 2, &tx, wire, sizeof(wire), &e);
	nm_tlsrec_free(&tx);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	CHECK(nm_records_new(&pool, &p, &p, &r) == 0);
	for (int i = 0; i < 100000 && end == 1; i++) {
		bool drained;
		ssize_t n;

		if (sent < w) {
			n = write(sv[0], wire + sent, w - sent);
			if (n > 0)
				sent += (size_t)n;
			if (sent == w)
				shutdown(sv[0], SHUT_WR);
		} else if (!w) {
			shutdown(sv[0], SHUT_WR);
		}
		n = nm_records_read(r, sv[1], got + have,
				    step < sizeof(got) - have ? step : sizeof(got) - have,
				    &drained);
		if (n > 0) {
			CHECK((size_t)n <= step);
			have += (size_t)n;
			CHECK(have <= e.len && memcmp(got, want, have) == 0);
		} else if (n != -EAGAIN) {
			end = (int)n;
		}
	}
	CHECK(have == e.len);
	if (e.end == -EBADMSG)
		/* The flipped bit may sit in the header. */
		CHECK(end == -EBADMSG || end == -EPROTO || end == -EMSGSIZE ||
		      end == -ECONNRESET);
	else
		CHECK(end == e.end);
	nm_records_free(r);
	nm_bufpool_drain(&pool);
	close(sv[0]);
	close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 3 * NM_TLSREC_SEALED_MAX)
		return 0;
	raw_walk(data, size);
	through_records(data, size);
	return 0;
}
