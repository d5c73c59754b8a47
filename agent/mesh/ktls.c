// SPDX-License-Identifier: Apache-2.0
/*
 * ktls.c - kernel TLS for tunnel sockets: the start-up probe, the per-SSL
 * bookkeeping (both traffic secrets, the records read and written under
 * them), the RX switch and the switch to the agent's own records
 * (mesh/records.h). See ktls.h for the order of things.
 *
 * Why the record count is exact: the message callback sees every record
 * OpenSSL decrypts (SSL3_RT_INNER_CONTENT_TYPE) and every handshake message
 * it parses. Records decrypted after the peer's Finished are under the
 * peer's application key: NewSessionTicket (client side, when resumption
 * is on) and application data. Read-ahead is off until the switch, so
 * OpenSSL never holds a record it has not decrypted, and the switch only
 * runs when SSL_has_pending() says nothing decrypted waits either. A
 * KeyUpdate from the peer (never sent by nodemesh) rules the switch out.
 * The records this side writes are counted the same way: OpenSSL reports
 * each one's inner type before the handshake message it carries, so its
 * own Finished is not counted and the server's tickets after it are.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <linux/tls.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>

#include "lib/log.h"
#include "mesh/ktls.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#define SECRET_MAX 48
#define REC_ALERT 21
#define REC_HANDSHAKE 22
#define REC_APPDATA 23
#define HS_FINISHED 20
#define HS_KEY_UPDATE 24

struct kt_conn {
	uint8_t secret[SECRET_MAX]; /* the peer's traffic secret 0 */
	uint8_t secret_len;
	uint8_t own[SECRET_MAX];    /* this side's traffic secret 0 */
	uint8_t own_len;
	bool peer_finished;         /* records from here on: application key */
	bool own_finished;          /* the same for the records written */
	bool key_update;            /* the peer rotated: no switch */
	bool done;                  /* switched or given up */
	bool agent;                 /* the agent's record layer, not the kernel's */
	uint64_t rx_seq;            /* records read under the application key */
	uint64_t tx_seq;            /* records written under it */
};

static int kt_idx = -1;

static void kt_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
		    long argl, void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	if (ptr)
		OPENSSL_clear_free(ptr, sizeof(struct kt_conn));
}

static struct kt_conn *kt_of(const SSL *ssl)
{
	return kt_idx < 0 ? NULL : SSL_get_ex_data(ssl, kt_idx);
}

/* --- probe ---------------------------------------------------------------- */

static void crypto_info_dummy(struct tls12_crypto_info_aes_gcm_128 *ci)
{
	memset(ci, 0, sizeof(*ci));
	ci->info.version = TLS_1_3_VERSION;
	ci->info.cipher_type = TLS_CIPHER_AES_GCM_128;
}

/* A connected loopback TCP pair: c (connecting side) and *acc. */
static int loopback_pair(int *c, int *acc)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int l, err = 0;

	*c = *acc = -1;
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return -errno;
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sa, &len))
		goto fail;
	*c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*c < 0 || connect(*c, (struct sockaddr *)&sa, sizeof(sa)))
		goto fail;
	*acc = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (*acc < 0)
		goto fail;
	close(l);
	return 0;
fail:
	err = -errno;
	close(l);
	if (*c >= 0)
		close(*c);
	*c = -1;
	return err ? err : -EIO;
}

bool nm_ktls_probe(enum nm_ktls_mode mode, struct nm_path_state *p)
{
	struct tls12_crypto_info_aes_gcm_128 ci;
	char why[96];
	int c, acc, err;

	if (mode == NM_KTLS_OFF) {
		nm_path_set(p, false, "off", "mesh.ktls is off");
		return false;
	}
#ifdef OPENSSL_NO_KTLS
	nm_path_set(p, false, "off", "OpenSSL built without kTLS");
	return false;
#endif
	err = loopback_pair(&c, &acc);
	if (err) {
		snprintf(why, sizeof(why), "probe: loopback TCP pair: %s",
			 strerror(-err));
		nm_path_set(p, false, "off", why);
		return false;
	}
	crypto_info_dummy(&ci);
	if (setsockopt(c, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls"))) {
		if (errno == ENOENT)
			snprintf(why, sizeof(why), "no tls ULP in this kernel");
		else
			snprintf(why, sizeof(why), "tls ULP: %s", strerror(errno));
	} else if (setsockopt(c, SOL_TLS, TLS_TX, &ci, sizeof(ci))) {
		snprintf(why, sizeof(why), "kernel TLS_TX (AES-GCM-128, TLS 1.3): %s",
			 strerror(errno));
	} else if (setsockopt(c, SOL_TLS, TLS_RX, &ci, sizeof(ci))) {
		snprintf(why, sizeof(why), "kernel TLS_RX (AES-GCM-128, TLS 1.3): %s",
			 strerror(errno));
	} else {
		why[0] = 0;
	}
	OPENSSL_cleanse(&ci, sizeof(ci));
	close(c);
	close(acc);
	nm_path_set(p, !why[0], why[0] ? "off" : "tx+rx", why);
	return p->active;
}

/* --- per-connection bookkeeping ----------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The secret of "<LABEL> <client random hex> <secret hex>" into out. */
static uint8_t secret_of(const char *line, size_t label_len, uint8_t *out)
{
	const char *hex = strchr(line + label_len, ' ');
	size_t n = 0;

	if (!hex)
		return 0;
	for (hex++; hex[0] && hex[1] && n < SECRET_MAX; hex += 2) {
		int hi = hexval(hex[0]), lo = hexval(hex[1]);

		if (hi < 0 || lo < 0)
			break;
		out[n++] = (uint8_t)(hi << 4 | lo);
	}
	return (uint8_t)n;
}

/* Keeps the peer's application traffic secret 0 and this side's. */
static void keylog_cb(const SSL *ssl, const char *line)
{
	static const char client[] = "CLIENT_TRAFFIC_SECRET_0 ";
	static const char server[] = "SERVER_TRAFFIC_SECRET_0 ";
	struct kt_conn *k = kt_of(ssl);
	bool is_server = SSL_is_server(ssl);

	if (!k)
		return;
	if (!strncmp(line, client, sizeof(client) - 1)) {
		if (is_server)
			k->secret_len = secret_of(line, sizeof(client) - 1, k->secret);
		else
			k->own_len = secret_of(line, sizeof(client) - 1, k->own);
	} else if (!strncmp(line, server, sizeof(server) - 1)) {
		if (is_server)
			k->own_len = secret_of(line, sizeof(server) - 1, k->own);
		else
			k->secret_len = secret_of(line, sizeof(server) - 1, k->secret);
	}
}

static void msg_cb(int write_p, int version, int content_type, const void *buf,
		   size_t len, SSL *ssl, void *arg)
{
	struct kt_conn *k = kt_of(ssl);
	const uint8_t *b = buf;

	(void)version, (void)arg;
	if (!k || !len)
		return;
	if (write_p) {
		/* The same count for the records this side writes: OpenSSL
		 * reports a record's inner type before the message in it. */
		if (content_type == SSL3_RT_INNER_CONTENT_TYPE && k->own_finished)
			k->tx_seq++;
		else if (content_type == REC_HANDSHAKE && b[0] == HS_FINISHED)
			k->own_finished = true;
		return;
	}
	if (content_type == SSL3_RT_INNER_CONTENT_TYPE) {
		/* One decrypted record; the Finished's own record was counted
		 * before its message set peer_finished. */
		if (k->peer_finished)
			k->rx_seq++;
	} else if (content_type == REC_HANDSHAKE) {
		if (b[0] == HS_FINISHED)
			k->peer_finished = true;
		else if (b[0] == HS_KEY_UPDATE)
			k->key_update = true;
	}
}

/* The bookkeeping both switches need: secrets, record counts, and reads
 * of one record at a time so OpenSSL never holds bytes past the switch. */
static int kt_attach(SSL *ssl, bool agent)
{
	struct kt_conn *k;

	if (kt_idx < 0) {
		kt_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, kt_free);
		if (kt_idx < 0)
			return -ENOMEM;
	}
	k = OPENSSL_zalloc(sizeof(*k));
	if (!k)
		return -ENOMEM;
	if (!SSL_set_ex_data(ssl, kt_idx, k)) {
		OPENSSL_free(k);
		return -ENOMEM;
	}
	k->agent = agent;
	/* Set on the context each time: idempotent, and the contexts of a
	 * reloaded nm_tls get it with their first such connection. */
	SSL_CTX_set_keylog_callback(SSL_get_SSL_CTX(ssl), keylog_cb);
	SSL_set_msg_callback(ssl, msg_cb);
	SSL_set_read_ahead(ssl, 0);
	return 0;
}

int nm_ktls_prepare(SSL *ssl, int fd)
{
	int err;

	/* The kernel must take the keys OpenSSL hands it (TX); an existing
	 * ULP (OpenSSL sets it on sockets it wraps) is fine. */
	if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) &&
	    errno != EEXIST)
		return -errno;
	err = kt_attach(ssl, false);
	if (!err)
		SSL_set_options(ssl, SSL_OP_ENABLE_KTLS);
	return err;
}

int nm_ktls_prepare_agent(SSL *ssl)
{
	return kt_attach(ssl, true);
}

bool nm_ktls_agent(const SSL *ssl)
{
	const struct kt_conn *k = ssl ? kt_of(ssl) : NULL;

	return k && k->agent;
}

bool nm_ktls_prepared(const SSL *ssl)
{
	const struct kt_conn *k = ssl ? kt_of(ssl) : NULL;

	return k && !k->done;
}

/* --- keys ------------------------------------------------------------------ */

/* HKDF-Expand-Label(secret, label, "", len) of RFC 8446 §7.1. */
static int expand_label(const char *md, const uint8_t *secret, size_t slen,
			const char *label, uint8_t *out, size_t olen)
{
	uint8_t info[2 + 1 + 6 + 8 + 1];
	size_t ll = strlen(label), n = 0;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, ret;
	OSSL_PARAM params[5];
	EVP_KDF_CTX *kctx;
	EVP_KDF *kdf;

	if (ll > 8)
		return -EINVAL;
	info[n++] = (uint8_t)(olen >> 8);
	info[n++] = (uint8_t)olen;
	info[n++] = (uint8_t)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	n += 6;
	memcpy(info + n, label, ll);
	n += ll;
	info[n++] = 0;
	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	EVP_KDF_free(kdf);
	if (!kctx)
		return -ENOMEM;
	params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
						     (char *)md, 0);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
						      (void *)secret, slen);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
						      info, n);
	params[4] = OSSL_PARAM_construct_end();
	ret = EVP_KDF_derive(kctx, out, olen, params) > 0 ? 0 : -EIO;
	EVP_KDF_CTX_free(kctx);
	return ret;
}

/* The key, IV and next sequence number of one direction. */
static int params_of(SSL *ssl, bool own, struct nm_ktls_params *p)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	struct kt_conn *k = kt_of(ssl);
	const char *md = "SHA256";
	const uint8_t *secret;
	size_t secret_len;
	int ret;

	memset(p, 0, sizeof(*p));
	if (!k || !c || SSL_version(ssl) != TLS1_3_VERSION ||
	    !(own ? k->own_finished : k->peer_finished))
		return -EAGAIN;
	/* A KeyUpdate either way: OpenSSL's keys moved on past secret 0. */
	if (k->key_update)
		return -EKEYREJECTED;
	secret = own ? k->own : k->secret;
	secret_len = own ? k->own_len : k->secret_len;
	switch (SSL_CIPHER_get_id(c) & 0xffff) {
	case 0x1301:
		p->cipher = TLS_CIPHER_AES_GCM_128;
		p->key_len = 16;
		break;
	case 0x1302:
		p->cipher = TLS_CIPHER_AES_GCM_256;
		p->key_len = 32;
		md = "SHA384";
		break;
	case 0x1303:
		p->cipher = TLS_CIPHER_CHACHA20_POLY1305;
		p->key_len = 32;
		break;
	default:
		return -EOPNOTSUPP;
	}
	if (secret_len != (md[3] == '3' ? 48u : 32u))
		return -ENOKEY;
	ret = expand_label(md, secret, secret_len, "key", p->key, p->key_len);
	if (!ret)
		ret = expand_label(md, secret, secret_len, "iv", p->iv, 12);
	p->seq = own ? k->tx_seq : k->rx_seq;
	return ret;
}

int nm_ktls_rx_params(SSL *ssl, struct nm_ktls_params *p)
{
	return params_of(ssl, false, p);
}

int nm_ktls_tx_params(SSL *ssl, struct nm_ktls_params *p)
{
	return params_of(ssl, true, p);
}

/* The kernel's crypto_info for p; returns its size. */
static size_t rx_info(const struct nm_ktls_params *p, void *out)
{
	uint8_t seq[8];

	for (int i = 0; i < 8; i++)
		seq[i] = (uint8_t)(p->seq >> (56 - 8 * i));
	switch (p->cipher) {
	case TLS_CIPHER_AES_GCM_128: {
		struct tls12_crypto_info_aes_gcm_128 *ci = out;

		memset(ci, 0, sizeof(*ci));
		ci->info.version = TLS_1_3_VERSION;
		ci->info.cipher_type = p->cipher;
		memcpy(ci->key, p->key, sizeof(ci->key));
		memcpy(ci->salt, p->iv, sizeof(ci->salt));
		memcpy(ci->iv, p->iv + sizeof(ci->salt), sizeof(ci->iv));
		memcpy(ci->rec_seq, seq, sizeof(ci->rec_seq));
		return sizeof(*ci);
	}
	case TLS_CIPHER_AES_GCM_256: {
		struct tls12_crypto_info_aes_gcm_256 *ci = out;

		memset(ci, 0, sizeof(*ci));
		ci->info.version = TLS_1_3_VERSION;
		ci->info.cipher_type = p->cipher;
		memcpy(ci->key, p->key, sizeof(ci->key));
		memcpy(ci->salt, p->iv, sizeof(ci->salt));
		memcpy(ci->iv, p->iv + sizeof(ci->salt), sizeof(ci->iv));
		memcpy(ci->rec_seq, seq, sizeof(ci->rec_seq));
		return sizeof(*ci);
	}
	default: {
		struct tls12_crypto_info_chacha20_poly1305 *ci = out;

		/* ChaCha20: no salt, the whole 12-byte IV. */
		memset(ci, 0, sizeof(*ci));
		ci->info.version = TLS_1_3_VERSION;
		ci->info.cipher_type = p->cipher;
		memcpy(ci->key, p->key, sizeof(ci->key));
		memcpy(ci->iv, p->iv, sizeof(ci->iv));
		memcpy(ci->rec_seq, seq, sizeof(ci->rec_seq));
		return sizeof(*ci);
	}
	}
}

int nm_ktls_switch(SSL *ssl, int fd)
{
	union {
		struct tls12_crypto_info_aes_gcm_128 g128;
		struct tls12_crypto_info_aes_gcm_256 g256;
		struct tls12_crypto_info_chacha20_poly1305 cc;
	} info;
	struct kt_conn *k = kt_of(ssl);
	struct nm_ktls_params p;
	size_t len;
	int ret;

	if (!k || k->done)
		return -1;
	if (SSL_has_pending(ssl) || !SSL_is_init_finished(ssl))
		return 0; /* not yet: asked again after the next read */
	k->done = true;
	/* Only with the sending side in the kernel: a socket whose TX stayed
	 * in OpenSSL keeps OpenSSL's records both ways. */
	if (!BIO_get_ktls_send(SSL_get_wbio(ssl)))
		return -1;
	ret = nm_ktls_rx_params(ssl, &p);
	OPENSSL_cleanse(k->secret, sizeof(k->secret));
	OPENSSL_cleanse(k->own, sizeof(k->own));
	if (ret) {
		OPENSSL_cleanse(&p, sizeof(p));
		return -1;
	}
	len = rx_info(&p, &info);
	ret = setsockopt(fd, SOL_TLS, TLS_RX, &info, len);
	pr_debug("msg=\"kTLS receive switch\" fd=%d seq=%llu server=%d result=\"%s\"",
		 fd, p.seq, SSL_is_server(ssl), ret ? strerror(errno) : "ok");
	OPENSSL_cleanse(&p, sizeof(p));
	OPENSSL_cleanse(&info, sizeof(info));
	/* A refused TLS_RX leaves the socket as it was: OpenSSL decrypts. */
	return ret ? -1 : 1;
}

int nm_ktls_switch_agent(SSL *ssl, struct nm_ktls_params *tx,
			 struct nm_ktls_params *rx)
{
	struct kt_conn *k = kt_of(ssl);
	int ret;

	if (!k || k->done || !k->agent)
		return -1;
	if (SSL_has_pending(ssl) || !SSL_is_init_finished(ssl) ||
	    !k->own_finished || !k->peer_finished)
		return 0;
	k->done = true;
	ret = nm_ktls_tx_params(ssl, tx);
	if (!ret)
		ret = nm_ktls_rx_params(ssl, rx);
	OPENSSL_cleanse(k->secret, sizeof(k->secret));
	OPENSSL_cleanse(k->own, sizeof(k->own));
	pr_debug("msg=\"agent record layer switch\" tx_seq=%llu rx_seq=%llu server=%d result=%d",
		 (unsigned long long)k->tx_seq, (unsigned long long)k->rx_seq,
		 SSL_is_server(ssl), ret);
	if (ret) {
		OPENSSL_cleanse(tx, sizeof(*tx));
		OPENSSL_cleanse(rx, sizeof(*rx));
		return -1;
	}
	return 1;
}

ssize_t nm_ktls_recv(int fd, void *buf, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(unsigned char))];
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	ssize_t n;

	n = recvmsg(fd, &m, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return -EAGAIN;
		pr_debug("msg=\"kTLS receive failed\" fd=%d err=\"%s\"", fd,
			 strerror(errno));
		if (errno == ECONNRESET || errno == EPIPE)
			return -ECONNRESET;
		/* EBADMSG (a record failed to authenticate) and the rest. */
		return errno == EBADMSG ? -EPROTO : -errno;
	}
	if (m.msg_flags & MSG_CTRUNC) {
		pr_debug("msg=\"kTLS record type truncated\" fd=%d", fd);
		return -EPROTO;
	}
	cm = CMSG_FIRSTHDR(&m);
	if (cm && cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE) {
		unsigned char type = *CMSG_DATA(cm);
		const uint8_t *b = buf;

		if (type == REC_ALERT && n >= 2 && b[1] == 0)
			return 0; /* close_notify: the clean end */
		if (type != REC_APPDATA) {
			/* another alert, a KeyUpdate, a ticket */
			pr_debug("msg=\"kTLS control record\" fd=%d type=%u len=%zd b0=%u b1=%u",
				 fd, type, n, n > 0 ? b[0] : 0, n > 1 ? b[1] : 0);
			return -EPROTO;
		}
	}
	/* A FIN without close_notify is a truncated stream, as in OpenSSL's
	 * path (relay.c): never a clean end. */
	if (n == 0)
		pr_debug("msg=\"kTLS FIN without close_notify\" fd=%d len=%zu", fd, len);
	return n == 0 ? -ECONNRESET : n;
}

int nm_ktls_push(int fd)
{
	char cbuf[CMSG_SPACE(sizeof(unsigned char))];
	struct msghdr m = { .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;

	memset(cbuf, 0, sizeof(cbuf));
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
	*CMSG_DATA(cm) = REC_APPDATA;
	if (sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return 0;
}

int nm_ktls_tcp_push(int fd)
{
	int unsent = 0, queued = 0, one = 1;

	if (ioctl(fd, SIOCOUTQNSD, &unsent))
		return -errno;
	if (unsent > 0 &&
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		return -errno;
	if (ioctl(fd, SIOCOUTQ, &queued))
		return -errno;
	return queued;
}
