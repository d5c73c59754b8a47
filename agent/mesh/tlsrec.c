// SPDX-License-Identifier: Apache-2.0
/*
 * tlsrec.c - TLS 1.3 record protection with the traffic keys OpenSSL
 * negotiated (tlsrec.h). Every record: nonce = IV xor the 64-bit sequence
 * number, the 5-byte header as additional data, the plaintext followed by
 * its content type, a 16-byte tag (RFC 8446 §5.2, §5.3).
 */
#include <errno.h>
#include <string.h>
#include <linux/tls.h>
#include <openssl/crypto.h>

#include "mesh/tlsrec.h"

#define LEGACY_VERSION_HI 3
#define LEGACY_VERSION_LO 3

int nm_tlsrec_init(struct nm_tlsrec *r, const struct nm_ktls_params *p, bool seal)
{
	const EVP_CIPHER *c;

	memset(r, 0, sizeof(*r));
	switch (p->cipher) {
	case TLS_CIPHER_AES_GCM_128:
		c = EVP_aes_128_gcm();
		break;
	case TLS_CIPHER_AES_GCM_256:
		c = EVP_aes_256_gcm();
		break;
	case TLS_CIPHER_CHACHA20_POLY1305:
		c = EVP_chacha20_poly1305();
		break;
	default:
		return -EOPNOTSUPP;
	}
	if ((size_t)EVP_CIPHER_get_key_length(c) != p->key_len)
		return -EOPNOTSUPP;
	r->ctx = EVP_CIPHER_CTX_new();
	if (!r->ctx)
		return -ENOMEM;
	if (!EVP_CipherInit_ex(r->ctx, c, NULL, p->key, NULL, seal)) {
		nm_tlsrec_free(r);
		return -EIO;
	}
	memcpy(r->iv, p->iv, sizeof(r->iv));
	r->seq = p->seq;
	r->seal = seal;
	return 0;
}

void nm_tlsrec_free(struct nm_tlsrec *r)
{
	EVP_CIPHER_CTX_free(r->ctx);
	OPENSSL_cleanse(r, sizeof(*r));
}

/* This record's nonce; -EOVERFLOW once the sequence number is spent. */
static int nonce_of(const struct nm_tlsrec *r, uint8_t nonce[12])
{
	if (r->seq == UINT64_MAX)
		return -EOVERFLOW;
	memcpy(nonce, r->iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] ^= (uint8_t)(r->seq >> (56 - 8 * i));
	return 0;
}

ssize_t nm_tlsrec_seal(struct nm_tlsrec *r, uint8_t type, const uint8_t *in,
		       size_t len, uint8_t *out, size_t cap)
{
	size_t body = len + 1 + NM_TLSREC_TAG;
	uint8_t nonce[12];
	int n, err;

	if (!r->seal || len > NM_TLSREC_PLAIN_MAX || cap < NM_TLSREC_HDR + body)
		return -EMSGSIZE;
	err = nonce_of(r, nonce);
	if (err)
		return err;
	out[0] = NM_TLSREC_APPDATA;
	out[1] = LEGACY_VERSION_HI;
	out[2] = LEGACY_VERSION_LO;
	out[3] = (uint8_t)(body >> 8);
	out[4] = (uint8_t)body;
	if (!EVP_EncryptInit_ex(r->ctx, NULL, NULL, NULL, nonce) ||
	    !EVP_EncryptUpdate(r->ctx, NULL, &n, out, NM_TLSREC_HDR) ||
	    (len && !EVP_EncryptUpdate(r->ctx, out + NM_TLSREC_HDR, &n, in, (int)len)) ||
	    !EVP_EncryptUpdate(r->ctx, out + NM_TLSREC_HDR + len, &n, &type, 1) ||
	    !EVP_EncryptFinal_ex(r->ctx, out + NM_TLSREC_HDR + len + 1, &n) ||
	    !EVP_CIPHER_CTX_ctrl(r->ctx, EVP_CTRL_AEAD_GET_TAG, NM_TLSREC_TAG,
				 out + NM_TLSREC_HDR + len + 1))
		return -EIO;
	r->seq++;
	return (ssize_t)(NM_TLSREC_HDR + body);
}

ssize_t nm_tlsrec_frame(const uint8_t *in, size_t avail)
{
	size_t body;

	if (avail < NM_TLSREC_HDR)
		return -EAGAIN;
	/* After the handshake every record says application_data, 3.3. */
	if (in[0] != NM_TLSREC_APPDATA || in[1] != LEGACY_VERSION_HI ||
	    in[2] != LEGACY_VERSION_LO)
		return -EPROTO;
	body = (size_t)in[3] << 8 | in[4];
	if (body > NM_TLSREC_IN_MAX - NM_TLSREC_HDR)
		return -EMSGSIZE;
	if (body < 1 + NM_TLSREC_TAG)
		return -EPROTO;
	return (ssize_t)(NM_TLSREC_HDR + body);
}

int nm_tlsrec_open(struct nm_tlsrec *r, const uint8_t *in, size_t reclen,
		   uint8_t *out, size_t cap, uint8_t *type, size_t *len)
{
	ssize_t framed = nm_tlsrec_frame(in, reclen);
	size_t ct, i;
	uint8_t nonce[12];
	int n, err;

	if (framed < 0)
		return framed == -EAGAIN ? -EPROTO : (int)framed;
	if ((size_t)framed != reclen || r->seal)
		return -EPROTO;
	ct = reclen - NM_TLSREC_HDR - NM_TLSREC_TAG;
	if (cap < ct)
		return -EMSGSIZE;
	err = nonce_of(r, nonce);
	if (err)
		return err;
	if (!EVP_DecryptInit_ex(r->ctx, NULL, NULL, NULL, nonce) ||
	    !EVP_DecryptUpdate(r->ctx, NULL, &n, in, NM_TLSREC_HDR) ||
	    !EVP_DecryptUpdate(r->ctx, out, &n, in + NM_TLSREC_HDR, (int)ct) ||
	    !EVP_CIPHER_CTX_ctrl(r->ctx, EVP_CTRL_AEAD_SET_TAG, NM_TLSREC_TAG,
				 (void *)(in + NM_TLSREC_HDR + ct)))
		return -EIO;
	if (EVP_DecryptFinal_ex(r->ctx, out + ct, &n) <= 0) {
		/* Nothing of a record that failed may reach the pod. */
		OPENSSL_cleanse(out, ct);
		return -EBADMSG;
	}
	r->seq++;
	/* The content type is the last non-zero byte; zeros after it pad. */
	for (i = ct; i > 0 && out[i - 1] == 0; i--)
		;
	if (i == 0 || i - 1 > NM_TLSREC_PLAIN_MAX)
		return -EPROTO;
	*type = out[i - 1];
	*len = i - 1;
	return 0;
}
