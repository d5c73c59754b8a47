/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certdir.h - the watched certificate directory (DESIGN §6,
 * docs/certificates.md): a worker thread watches certDir with inotify,
 * waits until writes settle, builds a new nm_tls from the files
 * (nm_tls_reload(): a bad file is refused naming it and its identity keeps
 * the last good credential) and hands it to the event loop through an
 * eventfd. The event loop only swaps the pointer used for new handshakes;
 * established connections keep the nm_tls they were made with (reference
 * counted), so none is dropped.
 *
 * Watched: certDir itself and every directory one and two levels below it
 * (<ns>, <ns>/<sa>), following symbolic links, so all of these are seen:
 * files replaced by rename (nodemesh ca issue, cert-manager's CSI driver),
 * written in place, new <ns>/<sa> folders, and Kubernetes' atomic writer
 * swapping a "..data" symlink (at certDir or inside an <ns>/<sa> folder).
 * The watches are set again before every rebuild, so folders that appear
 * or are swapped away are followed; a change during a rebuild triggers
 * another.
 *
 * The worker also warns ahead of expiry (nm_certdir_warn_threshold()) and
 * again every quarter of that window (at least 1 min, at most 6 h apart)
 * for as long as the same certificate stays.
 */
#ifndef NM_MESH_CERTDIR_H
#define NM_MESH_CERTDIR_H

#include <stdbool.h>
#include <stdint.h>

#include "mesh/tls.h"

/* Quiet time after the last change before a rebuild; writers (nodemesh
 * ca issue, kubelet) touch three files within a few ms. */
#define NM_CERTDIR_DEBOUNCE_MS 100
/* A directory that never goes quiet is still read this often. */
#define NM_CERTDIR_MAX_WAIT_MS 1000
/* Expiry warning when mesh.certExpiryWarning is absent: a day, but never
 * more than a fifth of the certificate's lifetime, so short-lived
 * certificates rotated on time (cert-manager renews at a third left)
 * do not warn all the time. */
#define NM_CERTDIR_WARN_DEFAULT_S 86400

struct nm_certdir;

struct nm_certdir_opts {
	const char *dir;           /* certDir */
	const char *trust_domain;
	struct nm_tls *current;    /* the set in force (a reference is taken) */
	unsigned int debounce_ms;  /* 0: NM_CERTDIR_DEBOUNCE_MS */
	int64_t expiry_warning;    /* seconds; < 0: default, 0: never warn */
};

/* Starts the worker. 0 or -errno. */
int nm_certdir_start(const struct nm_certdir_opts *o, struct nm_certdir **out);
/* Stops and joins the worker, drops every reference it holds. NULL-safe. */
void nm_certdir_stop(struct nm_certdir *w);
/* Readable (an eventfd) when a new set is ready for nm_certdir_take(). */
int nm_certdir_fd(const struct nm_certdir *w);
/*
 * The newest set built since the last call (the caller's reference), or
 * NULL. *change_ms (may be NULL): monotonic ms of the first change it
 * answers, for the rotation log. Drains the eventfd.
 */
struct nm_tls *nm_certdir_take(struct nm_certdir *w, int64_t *change_ms);
/* Whether w watches dir for trust_domain (a reload may move either). */
bool nm_certdir_watches(const struct nm_certdir *w, const char *dir,
			const char *trust_domain);
/* mesh.certExpiryWarning changed (seconds; < 0 default, 0 off). */
void nm_certdir_set_expiry_warning(struct nm_certdir *w, int64_t secs);

/* --- pure, for the tests ---------------------------------------------- */

/* Seconds before notAfter at which a certificate valid from not_before to
 * not_after warns, given the setting; 0: never. */
int64_t nm_certdir_warn_threshold(int64_t setting, int64_t not_before,
				  int64_t not_after);
/* Seconds between repeated warnings for one certificate. */
int64_t nm_certdir_rewarn_interval(int64_t threshold);

#endif
