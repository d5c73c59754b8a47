/* SPDX-License-Identifier: Apache-2.0 */
/*
 * curl_dl.h - libcurl for the Kubernetes source, loaded when that source
 * starts (nm_curl_load()), not when the agent does.
 *
 * Why: libcurl brings GnuTLS, p11-kit, Kerberos, LDAP and a dozen more
 * libraries whose constructors and relocations cost an agent that never
 * talks to an API server about 3 MB of RSS (bench/RESULTS.md, "agent idle
 * RSS"). client.c includes this header instead of <curl/curl.h> and calls
 * the usual names; they resolve through the table below, filled once. The
 * agent binary then has no reference to libcurl and the linker's
 * --as-needed leaves it out of its NEEDED entries.
 */
#ifndef NM_K8S_CURL_DL_H
#define NM_K8S_CURL_DL_H

#include <stddef.h>

/* The table's variadic setopt/getinfo take any argument type: curl's own
 * gcc type-check macros would wrap the names redefined below. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

struct nm_curl_api {
	CURLcode (*global_init)(long flags);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
	CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
	void (*easy_cleanup)(CURL *h);
	const char *(*easy_strerror)(CURLcode code);
	char *(*easy_escape)(CURL *h, const char *s, int len);
	void (*free)(void *p);
	struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
	void (*slist_free_all)(struct curl_slist *l);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_setopt)(CURLM *m, CURLMoption opt, ...);
	CURLMcode (*multi_add_handle)(CURLM *m, CURL *h);
	CURLMcode (*multi_remove_handle)(CURLM *m, CURL *h);
	CURLMcode (*multi_perform)(CURLM *m, int *running);
	CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd *fds, unsigned int n,
				int timeout_ms, int *numfds);
	CURLMcode (*multi_wakeup)(CURLM *m);
	CURLMsg *(*multi_info_read)(CURLM *m, int *left);
	CURLMcode (*multi_cleanup)(CURLM *m);
};

/* The process's one copy of the library: filled by nm_curl_load(), never
 * unloaded (its dependencies keep global state of their own). */
extern struct nm_curl_api nm_curl;

/*
 * Loads libcurl and fills nm_curl; idempotent, and only ever called from
 * the thread that starts the Kubernetes source. 0, or -ENOENT / -ENOSYS
 * with why (the library or a symbol missing) in err.
 */
int nm_curl_load(char *err, size_t len);

/* curl.h defines these three as plain macros of themselves. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt

#define curl_global_init nm_curl.global_init
#define curl_easy_init nm_curl.easy_init
#define curl_easy_setopt nm_curl.easy_setopt
#define curl_easy_getinfo nm_curl.easy_getinfo
#define curl_easy_cleanup nm_curl.easy_cleanup
#define curl_easy_strerror nm_curl.easy_strerror
#define curl_easy_escape nm_curl.easy_escape
#define curl_free nm_curl.free
#define curl_slist_append nm_curl.slist_append
#define curl_slist_free_all nm_curl.slist_free_all
#define curl_multi_init nm_curl.multi_init
#define curl_multi_setopt nm_curl.multi_setopt
#define curl_multi_add_handle nm_curl.multi_add_handle
#define curl_multi_remove_handle nm_curl.multi_remove_handle
#define curl_multi_perform nm_curl.multi_perform
#define curl_multi_poll nm_curl.multi_poll
#define curl_multi_wakeup nm_curl.multi_wakeup
#define curl_multi_info_read nm_curl.multi_info_read
#define curl_multi_cleanup nm_curl.multi_cleanup

#endif
