// SPDX-License-Identifier: Apache-2.0
/*
 * kubeconfig.c - where the API server is and how to authenticate (k8s/
 * internal.h): in-cluster (the service account's token and CA,
 * KUBERNETES_SERVICE_HOST/PORT) or a kubeconfig file's current context
 * (server, certificate-authority(-data), insecure-skip-tls-verify, token,
 * tokenFile, client-certificate(-data)/client-key(-data)). Kubeconfig files
 * are YAML; they are read with the policy loader's YAML reader, which types
 * scalars as Kubernetes does. Relative paths are relative to the file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <openssl/evp.h>

#include "k8s/internal.h"
#include "lib/file.h"
#include "lib/log.h"
#include "policy/load.h"

#define KUBECONFIG_MAX (4u << 20)

static int b64_decode(const char *in, char **out, size_t *len)
{
	size_t n = strlen(in), pad = 0;
	unsigned char *buf = malloc(n / 4 * 3 + 4);
	int r;

	if (!buf)
		return -ENOMEM;
	r = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)n);
	if (r < 0) {
		free(buf);
		return -EINVAL;
	}
	while (n && in[n - 1] == '=') {
		pad++;
		n--;
	}
	*len = (size_t)r - (pad > 2 ? 2 : pad);
	buf[*len] = '\0';
	*out = (char *)buf;
	return 0;
}

static void rel_path(const char *file, const char *p, char *out, size_t len)
{
	const char *slash = strrchr(file, '/');

	if (p[0] == '/' || !slash)
		snprintf(out, len, "%s", p);
	else
		snprintf(out, len, "%.*s/%s", (int)(slash - file), file, p);
}

/* The entry of list (clusters, users, contexts) named name: its inner. */
static const json_t *named(const json_t *root, const char *list,
			   const char *inner, const char *name)
{
	const json_t *e;
	size_t i;

	json_array_foreach(json_object_get(root, list), i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));

		if (n && name && !strcmp(n, name))
			return json_object_get(e, inner);
	}
	return NULL;
}

static int blob_or_file(const json_t *o, const char *data_key,
			const char *file_key, const char *kcfg, char **blob,
			size_t *blen, char *path, size_t plen)
{
	const char *d = json_string_value(json_object_get(o, data_key));
	const char *f = json_string_value(json_object_get(o, file_key));

	if (d)
		return b64_decode(d, blob, blen);
	if (f)
		rel_path(kcfg, f, path, plen);
	return 0;
}

int nm_k8s_conf_load(struct nm_k8s_conf *cf, const char *kubeconfig,
		     const char *sa_dir)
{
	char err[512], *buf = NULL;
	const char *why = NULL;
	json_t *docs = NULL, *root;
	const json_t *ctx, *cl, *user;
	const char *cur, *s;
	size_t len;
	int ret;

	memset(cf, 0, sizeof(*cf));
	if (!kubeconfig) {
		const char *host = getenv("KUBERNETES_SERVICE_HOST");
		const char *port = getenv("KUBERNETES_SERVICE_PORT");

		if (!host || !host[0]) {
			pr_warn("msg=\"not in a cluster: KUBERNETES_SERVICE_HOST is not set; pass --kubeconfig\"");
			return -ENOENT;
		}
		snprintf(cf->server, sizeof(cf->server), strchr(host, ':') ?
			 "https://[%s]:%s" : "https://%s:%s", host,
			 port && port[0] ? port : "443");
		sa_dir = sa_dir ? sa_dir : NM_K8S_SA_DIR;
		snprintf(cf->ca_path, sizeof(cf->ca_path), "%s/ca.crt", sa_dir);
		snprintf(cf->token.path, sizeof(cf->token.path), "%s/token", sa_dir);
		return nm_k8s_token_refresh(&cf->token, true);
	}
	ret = nm_file_read(kubeconfig, KUBECONFIG_MAX, &buf, &len, &why);
	if (ret) {
		pr_warn("msg=\"cannot read kubeconfig\" file=%s err=\"%s\"", kubeconfig,
			why ? why : strerror(-ret));
		return ret;
	}
	docs = nm_pol_yaml_load(buf, len, kubeconfig, err, sizeof(err));
	free(buf);
	root = json_array_get(docs, 0);
	if (!json_is_object(root)) {
		pr_warn("msg=\"kubeconfig does not parse\" file=%s err=\"%s\"", kubeconfig,
			docs ? "not a mapping" : err);
		ret = -EINVAL;
		goto cleanup;
	}
	ret = -EINVAL;
	cur = json_string_value(json_object_get(root, "current-context"));
	ctx = named(root, "contexts", "context", cur);
	cl = named(root, "clusters", "cluster",
		   json_string_value(json_object_get(ctx, "cluster")));
	user = named(root, "users", "user",
		     json_string_value(json_object_get(ctx, "user")));
	s = json_string_value(json_object_get(cl, "server"));
	if (!s || strlen(s) >= sizeof(cf->server)) {
		pr_warn("msg=\"kubeconfig: no server for the current context\" file=%s context=%s",
			kubeconfig, cur ? cur : "-");
		goto cleanup;
	}
	snprintf(cf->server, sizeof(cf->server), "%s", s);
	while (cf->server[0] && cf->server[strlen(cf->server) - 1] == '/')
		cf->server[strlen(cf->server) - 1] = '\0';
	cf->insecure = json_is_true(json_object_get(cl, "insecure-skip-tls-verify"));
	if (blob_or_file(cl, "certificate-authority-data", "certificate-authority",
			 kubeconfig, &cf->ca_blob, &cf->ca_blob_len, cf->ca_path,
			 sizeof(cf->ca_path)) ||
	    blob_or_file(user, "client-certificate-data", "client-certificate",
			 kubeconfig, &cf->cert_blob, &cf->cert_blob_len,
			 cf->cert_path, sizeof(cf->cert_path)) ||
	    blob_or_file(user, "client-key-data", "client-key", kubeconfig,
			 &cf->key_blob, &cf->key_blob_len, cf->key_path,
			 sizeof(cf->key_path))) {
		pr_warn("msg=\"kubeconfig: bad base64 data\" file=%s", kubeconfig);
		goto cleanup;
	}
	s = json_string_value(json_object_get(user, "token"));
	if (s) {
		snprintf(cf->token.value, sizeof(cf->token.value), "%s", s);
	} else if ((s = json_string_value(json_object_get(user, "tokenFile")))) {
		rel_path(kubeconfig, s, cf->token.path, sizeof(cf->token.path));
		if (nm_k8s_token_refresh(&cf->token, true))
			goto cleanup;
	}
	ret = 0;
cleanup:
	json_decref(docs);
	if (ret)
		nm_k8s_conf_free(cf);
	return ret;
}

void nm_k8s_conf_free(struct nm_k8s_conf *cf)
{
	free(cf->ca_blob);
	free(cf->cert_blob);
	free(cf->key_blob);
	cf->ca_blob = cf->cert_blob = cf->key_blob = NULL;
}

int nm_k8s_token_refresh(struct nm_k8s_token *t, bool force)
{
	struct stat st;
	char *buf = NULL;
	const char *why = NULL;
	size_t len;
	int ret;

	if (!t->path[0])
		return 0;
	if (stat(t->path, &st)) {
		ret = -errno;
		pr_warn("msg=\"cannot read the service account token\" file=%s err=\"%s\"",
			t->path, strerror(-ret));
		return ret;
	}
	/* Projected tokens are rotated by the kubelet (an atomic symlink
	 * swap): a new mtime, inode or size means a new token. */
	if (!force && st.st_mtim.tv_sec == t->mtime.tv_sec &&
	    st.st_mtim.tv_nsec == t->mtime.tv_nsec && st.st_ino == t->ino &&
	    st.st_size == t->size)
		return 0;
	ret = nm_file_read(t->path, sizeof(t->value) - 1, &buf, &len, &why);
	if (ret) {
		pr_warn("msg=\"cannot read the service account token\" file=%s err=\"%s\"",
			t->path, why ? why : strerror(-ret));
		return ret;
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
		       buf[len - 1] == ' '))
		len--;
	snprintf(t->value, sizeof(t->value), "%.*s", (int)len, buf);
	free(buf);
	t->mtime = st.st_mtim;
	t->ino = st.st_ino;
	t->size = st.st_size;
	if (!force)
		pr_info("msg=\"service account token re-read\" file=%s", t->path);
	return 0;
}
