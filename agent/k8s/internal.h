/* SPDX-License-Identifier: Apache-2.0 */
/*
 * internal.h - what the files of agent/k8s share and nothing else uses:
 * the connection settings (kubeconfig.c) the client (client.c) uses.
 */
#ifndef NM_K8S_INTERNAL_H
#define NM_K8S_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "k8s/k8s.h"

struct nm_k8s_token {
	char path[NM_PATH_MAX];   /* "" when the token is fixed */
	char value[8192];
	struct timespec mtime;
	ino_t ino;
	off_t size;
};

struct nm_k8s_conf {
	char server[NM_PATH_MAX];   /* https://host:port, no trailing '/' */
	char ca_path[NM_PATH_MAX];
	char *ca_blob;
	size_t ca_blob_len;
	char cert_path[NM_PATH_MAX];
	char *cert_blob;
	size_t cert_blob_len;
	char key_path[NM_PATH_MAX];
	char *key_blob;
	size_t key_blob_len;
	bool insecure;              /* insecure-skip-tls-verify (tests) */
	struct nm_k8s_token token;
};

/* In-cluster when kubeconfig is NULL. 0 or -errno (logged). */
int nm_k8s_conf_load(struct nm_k8s_conf *cf, const char *kubeconfig,
		     const char *sa_dir);
void nm_k8s_conf_free(struct nm_k8s_conf *cf);
/* Re-reads the token file when it changed (or always with force). */
int nm_k8s_token_refresh(struct nm_k8s_token *t, bool force);

#endif
