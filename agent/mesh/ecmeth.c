// SPDX-License-Identifier: Apache-2.0
/*
 * ecmeth.c - OpenSSL 3.0's built-in EC methods for certificate keys
 * (ecmeth.h says why).
 *
 * How 3.0 chooses (crypto/x509/x_pubkey.c, crypto/evp/pmeth_lib.c): a
 * SubjectPublicKeyInfo is decoded by the key type's built-in ASN.1 method
 * when ENGINE_get_pkey_meth_engine() names an engine for the type, else by
 * the provider decoders; an EVP_PKEY_CTX for an EC key takes that engine's
 * EVP_PKEY_METHOD, else the provider's. The engine below answers for
 * EVP_PKEY_EC only (X25519 key shares and everything else stay on the
 * providers) with EVP_PKEY_meth_find(EVP_PKEY_EC): OpenSSL's own method.
 *
 * ENGINE and EVP_PKEY_METHOD are deprecated in 3.0 but built and supported
 * in every 3.x release; the deprecation warnings are silenced here only.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "lib/log.h"
#include "mesh/ecmeth.h"

#define NM_ECMETH_ENGINE_ID "nodemesh-ec-builtin"

/* Process-wide like the ENGINE table it sits in: one per process. */
static ENGINE *ec_engine;

static const int ec_nids[] = { EVP_PKEY_EC };

/* ENGINE_PKEY_METHS_PTR: with meth NULL, list the types; else the method
 * for nid (1) or none (0). */
static int ec_pkey_meths(ENGINE *e, EVP_PKEY_METHOD **meth, const int **nids,
			 int nid)
{
	(void)e;
	if (!meth) {
		*nids = ec_nids;
		return 1;
	}
	if (nid == EVP_PKEY_EC) {
		*meth = (EVP_PKEY_METHOD *)EVP_PKEY_meth_find(EVP_PKEY_EC);
		return *meth != NULL;
	}
	*meth = NULL;
	return 0;
}

static bool is_openssl_30(void)
{
	unsigned long v = OpenSSL_version_num();

	return v >= 0x30000000UL && v < 0x30100000UL;
}

int nm_ecmeth_setup(bool provider, struct nm_path_state *st)
{
	ENGINE *e;

	if (provider) {
		nm_path_set(st, false, "provider", "mesh.tlsEcMethods is provider");
		return 0;
	}
	if (!is_openssl_30()) {
		nm_path_set(st, false, "provider",
			    "not OpenSSL 3.0 (only measured there)");
		return 0;
	}
	if (ec_engine) {
		nm_path_set(st, true, "builtin", "");
		return 0;
	}
	if (!EVP_PKEY_meth_find(EVP_PKEY_EC)) {
		nm_path_set(st, false, "provider",
			    "OpenSSL has no built-in EC method");
		return 0;
	}
	e = ENGINE_new();
	if (!e)
		goto fail;
	if (!ENGINE_set_id(e, NM_ECMETH_ENGINE_ID) ||
	    !ENGINE_set_name(e, "OpenSSL's built-in EC methods (nodemesh)") ||
	    !ENGINE_set_pkey_meths(e, ec_pkey_meths) ||
	    !ENGINE_set_default_pkey_meths(e)) {
		ENGINE_free(e);
		goto fail;
	}
	ec_engine = e;
	nm_path_set(st, true, "builtin", "");
	return 0;
fail:
	ERR_clear_error();
	nm_path_set(st, false, "provider",
		    "OpenSSL refused the EC method engine");
	return -ENOMEM;
}

void nm_ecmeth_teardown(void)
{
	if (!ec_engine)
		return;
	ENGINE_unregister_pkey_meths(ec_engine);
	ENGINE_free(ec_engine);
	ec_engine = NULL;
}

bool nm_ecmeth_peer_builtin(const SSL *ssl)
{
	X509 *peer = SSL_get0_peer_certificate(ssl);
	EVP_PKEY *key = peer ? X509_get0_pubkey(peer) : NULL;

	/* A key decoded by a provider names it; a built-in one has none. */
	return key && EVP_PKEY_get_base_id(key) == EVP_PKEY_EC &&
	       !EVP_PKEY_get0_provider(key);
}
