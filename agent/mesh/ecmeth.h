/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ecmeth.h - certificate keys through OpenSSL's built-in EC code instead of
 * the provider decoders, on OpenSSL 3.0 (issue 14, "handshakes off the
 * connect path": what a full handshake costs).
 *
 * OpenSSL 3.0 decodes the public key of every certificate it parses
 * (d2i_X509, so both peers' leaves on every full mutual handshake) with
 * OSSL_DECODER_CTX_new_for_pkey(), which lists every decoder and key
 * manager of every loaded provider each time it is called: 27 % of an
 * in-memory P-256 mutual handshake's CPU here, more than the signatures.
 * 3.0 keeps its 1.1.1 code (the EC ASN.1 and EVP_PKEY methods; the same
 * curve arithmetic, nistz256 for P-256) and takes it whenever an ENGINE is
 * the default for EC keys. nm_ecmeth_setup() registers such an engine: it
 * implements nothing itself and hands back OpenSSL's own built-in EC
 * method, so only the dispatch changes. Signing, verification, key checks
 * and certificate rules stay OpenSSL's code; provider-loaded keys (our
 * private keys) keep working through it.
 *
 * Process-wide and chosen once, before the first certificate is parsed;
 * mesh.tlsEcMethods "provider" leaves OpenSSL alone. Only on 3.0.x: later
 * releases were not measured, and OpenSSL may drop the engine tables.
 */
#ifndef NM_MESH_ECMETH_H
#define NM_MESH_ECMETH_H

#include <stdbool.h>
#include <openssl/ssl.h>

#include "mesh/fastpath.h"

/* Registers the engine unless provider is set or this is not OpenSSL 3.0;
 * fills st (mode "builtin", or "provider" and why). 0 or -errno (the
 * engine could not be registered; OpenSSL is left as it was). */
int nm_ecmeth_setup(bool provider, struct nm_path_state *st);

/* Unregisters and frees the engine (agent exit, tests). */
void nm_ecmeth_teardown(void);

/* True when the peer's certificate key of this handshaken SSL was decoded
 * by the built-in code. */
bool nm_ecmeth_peer_builtin(const SSL *ssl);

/* After a successful handshake: a full one whose peer key took the
 * built-in code counts in st->flows. */
static inline void nm_ecmeth_count(struct nm_path_state *st, const SSL *ssl)
{
	if (st->active && !SSL_session_reused(ssl) && nm_ecmeth_peer_builtin(ssl))
		st->flows++;
}

#endif
