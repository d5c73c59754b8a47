// SPDX-License-Identifier: Apache-2.0
/*
 * curl_dl.c - loads libcurl on first use (curl_dl.h says why).
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>

#include "k8s/curl_dl.h"

struct nm_curl_api nm_curl;

/* libcurl's SONAME since 7.16 (curl 8 kept it). */
#define NM_CURL_SONAME "libcurl.so.4"

int nm_curl_load(char *err, size_t len)
{
	static const struct {
		const char *name;
		size_t off;
	} syms[] = {
#define SYM(field, name) { name, offsetof(struct nm_curl_api, field) }
		SYM(global_init, "curl_global_init"),
		SYM(easy_init, "curl_easy_init"),
		SYM(easy_setopt, "curl_easy_setopt"),
		SYM(easy_getinfo, "curl_easy_getinfo"),
		SYM(easy_cleanup, "curl_easy_cleanup"),
		SYM(easy_strerror, "curl_easy_strerror"),
		SYM(easy_escape, "curl_easy_escape"),
		SYM(free, "curl_free"),
		SYM(slist_append, "curl_slist_append"),
		SYM(slist_free_all, "curl_slist_free_all"),
		SYM(multi_init, "curl_multi_init"),
		SYM(multi_setopt, "curl_multi_setopt"),
		SYM(multi_add_handle, "curl_multi_add_handle"),
		SYM(multi_remove_handle, "curl_multi_remove_handle"),
		SYM(multi_perform, "curl_multi_perform"),
		SYM(multi_poll, "curl_multi_poll"),
		SYM(multi_wakeup, "curl_multi_wakeup"),
		SYM(multi_info_read, "curl_multi_info_read"),
		SYM(multi_cleanup, "curl_multi_cleanup"),
#undef SYM
	};
	static void *lib;
	struct nm_curl_api api;
	void *h;

	if (lib)
		return 0;
	h = dlopen(NM_CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, len, "cannot load %s: %s", NM_CURL_SONAME, dlerror());
		return -ENOENT;
	}
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		void *p = dlsym(h, syms[i].name);

		if (!p) {
			snprintf(err, len, "%s has no %s", NM_CURL_SONAME, syms[i].name);
			dlclose(h);
			return -ENOSYS;
		}
		/* POSIX: a data pointer from dlsym converts to a function
		 * pointer; the table's members are all function pointers. */
		*(void **)((char *)&api + syms[i].off) = p;
	}
	nm_curl = api;
	lib = h;
	return 0;
}
