/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tlsrec.h - TLS 1.3 record protection (RFC 8446 §5.2, §5.3) done by the
 * agent itself, for tunnels whose kernel has no kTLS (issue 14: "no extra
 * copies inside the agent").
 *
 * OpenSSL copies every byte once more than the relay needs: SSL_write()
 * copies the plaintext into its record buffer before it encrypts there, and
 * SSL_read() decrypts inside its read buffer and copies out. On the hop's
 * one core those copies were a fifth of the cycles of a bulk stream. After
 * the handshake the agent therefore seals records straight from the
 * relay's buffer into the bytes it sends, and opens them straight from the
 * bytes it received into the relay's buffer: the cipher's own pass is the
 * only one. The handshake, certificates and key schedule stay OpenSSL's;
 * this file only takes the keys (mesh/ktls.h, nm_ktls_params) and counts
 * sequence numbers, as the kernel's TLS_TX/TLS_RX would.
 *
 * No sockets here and no state but the key and the sequence number: the
 * framing and its checks are fuzzed (tests/fuzz/fuzz_tlsrec.c).
 */
#ifndef NM_MESH_TLSREC_H
#define NM_MESH_TLSREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <openssl/evp.h>

#include "mesh/ktls.h"

#define NM_TLSREC_HDR 5
#define NM_TLSREC_TAG 16
/* The most plaintext a record carries (2^14). */
#define NM_TLSREC_PLAIN_MAX 16384
/* A full record as this side seals it: header, plaintext, type, tag. */
#define NM_TLSREC_SEALED_MAX (NM_TLSREC_HDR + NM_TLSREC_PLAIN_MAX + 1 + NM_TLSREC_TAG)
/* The longest record a peer may send: 2^14 + 256 bytes after the header. */
#define NM_TLSREC_IN_MAX (NM_TLSREC_HDR + NM_TLSREC_PLAIN_MAX + 256)

#define NM_TLSREC_ALERT 21
#define NM_TLSREC_HANDSHAKE 22
#define NM_TLSREC_APPDATA 23

/* One direction's record protection. */
struct nm_tlsrec {
	EVP_CIPHER_CTX *ctx;
	uint8_t iv[12];
	uint64_t seq; /* next record's sequence number */
	bool seal;
};

/* Sets r up to seal (or open) records with p's key, IV and sequence
 * number. 0, -EOPNOTSUPP (cipher), -ENOMEM or -EIO. */
int nm_tlsrec_init(struct nm_tlsrec *r, const struct nm_ktls_params *p, bool seal);
void nm_tlsrec_free(struct nm_tlsrec *r);

/*
 * Seals len (<= NM_TLSREC_PLAIN_MAX) bytes of type into one record at out
 * (cap bytes; in and out must not overlap). Returns the record's length,
 * -EMSGSIZE (len too long or cap too small), -EOVERFLOW (the sequence
 * number would wrap: the connection must end) or -EIO.
 */
ssize_t nm_tlsrec_seal(struct nm_tlsrec *r, uint8_t type, const uint8_t *in,
		       size_t len, uint8_t *out, size_t cap);

/*
 * The length of the record that starts at in (avail bytes there), from its
 * header: > 0, -EAGAIN (fewer than 5 bytes), -EPROTO (not an
 * application_data record of TLS 1.2's legacy version, as every TLS 1.3
 * record after the handshake is, or shorter than a tag and a type) or
 * -EMSGSIZE (longer than RFC 8446 allows).
 */
ssize_t nm_tlsrec_frame(const uint8_t *in, size_t avail);

/*
 * Opens the whole record at in (its length from nm_tlsrec_frame()) into
 * out, which takes its ciphertext length minus the tag (cap bytes; out may
 * equal in + NM_TLSREC_HDR, for in place, but not overlap it otherwise).
 * On success the content sits at out, *len long, and its type in *type
 * (the padding and the inner type byte stripped). Returns 0, -EMSGSIZE
 * (cap too small), -EBADMSG (authentication failed: a forged, damaged or
 * misordered record), -EPROTO (no content type: all padding), -EOVERFLOW
 * or -EIO. The sequence number moves on only on success.
 */
int nm_tlsrec_open(struct nm_tlsrec *r, const uint8_t *in, size_t reclen,
		   uint8_t *out, size_t cap, uint8_t *type, size_t *len);

#endif
