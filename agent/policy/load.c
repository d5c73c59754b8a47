// SPDX-License-Identifier: Apache-2.0
/*
 * load.c - policy files into a policy set (policy.h): the directory, each
 * file's documents (JSON: an object, an array or a List; YAML: documents),
 * the set's memory (one arena, freed at once) and its order (namespace,
 * then name, whatever the files' order), and the checks across objects
 * (a namespace/name defined twice is refused, as the API would).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/jsonwalk.h"
#include "lib/errbuf.h"
#include "lib/file.h"
#include "policy/load.h"

#define MAX_FILES 4096
#define MAX_POLICIES 65536
#define MAX_WARNINGS 1024

struct nm_pol_chunk {
	struct nm_pol_chunk *next;
	size_t used, cap;
	_Alignas(max_align_t) unsigned char data[];
};

/* --- memory -------------------------------------------------------------------- */

void *nm_pol_alloc(struct nm_policy_set *ps, size_t n)
{
	struct nm_pol_chunk *c = ps->arena;
	size_t need = (n + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
	void *p;

	if (!need)
		need = _Alignof(max_align_t);
	if (!c || c->cap - c->used < need) {
		size_t cap = need > 16384 ? need : 16384;

		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		c->next = ps->arena;
		ps->arena = c;
	}
	p = c->data + c->used;
	c->used += need;
	memset(p, 0, n);
	return p;
}

char *nm_pol_strdup(struct nm_policy_set *ps, const char *s, size_t n)
{
	char *d = nm_pol_alloc(ps, n + 1);

	if (d)
		memcpy(d, s, n);
	return d;
}

struct nm_pol *nm_pol_new(struct nm_policy_set *ps)
{
	struct nm_pol *p;

	if (ps->n_pols >= MAX_POLICIES)
		return NULL;
	p = realloc(ps->pols, (ps->n_pols + 1) * sizeof(*p));
	if (!p)
		return NULL;
	ps->pols = p;
	p = &ps->pols[ps->n_pols++];
	memset(p, 0, sizeof(*p));
	return p;
}

int nm_pol_add_warning(struct nm_policy_set *ps, const char *fmt, ...)
{
	char **w, *s;
	va_list ap;
	int n;

	if (ps->n_warnings >= MAX_WARNINGS)
		return 0; /* the first thousand say enough */
	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	w = realloc(ps->warnings, (ps->n_warnings + 1) * sizeof(*w));
	if (!w) {
		free(s);
		return -ENOMEM;
	}
	ps->warnings = w;
	w[ps->n_warnings++] = s;
	return 0;
}

static struct nm_policy_set *set_new(const char *root_ns)
{
	struct nm_policy_set *ps = calloc(1, sizeof(*ps));

	if (!ps)
		return NULL;
	ps->root_ns = strdup(root_ns && *root_ns ? root_ns : NM_POLICY_ROOT_NS_DEFAULT);
	if (!ps->root_ns) {
		free(ps);
		return NULL;
	}
	return ps;
}

void nm_policy_set_free(struct nm_policy_set *ps)
{
	struct nm_pol_chunk *c, *next;
	unsigned int i;

	if (!ps)
		return;
	for (c = ps->arena; c; c = next) {
		next = c->next;
		free(c);
	}
	for (i = 0; i < ps->n_warnings; i++)
		free(ps->warnings[i]);
	free(ps->warnings);
	free(ps->pols);
	free(ps->root_ns);
	free(ps);
}

/* --- one file ------------------------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n > k && !strcmp(s + n - k, suffix);
}

static bool looks_json(const char *name, const char *buf, size_t len)
{
	size_t i;

	if (ends_with(name, ".json"))
		return true;
	if (ends_with(name, ".yaml") || ends_with(name, ".yml"))
		return false;
	for (i = 0; i < len && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\t' ||
				buf[i] == '\r'); i++)
		;
	return i < len && (buf[i] == '{' || buf[i] == '[');
}

/* A Kubernetes List ("kind": "List", "items": [...]), checked. */
static int list_items(const json_t *v, const char *name, const json_t **items,
		      char *err, size_t errlen)
{
	static const char *const keys[] = { "apiVersion", "kind", "items", "metadata", NULL };
	struct nm_jw j = { .name = name, .err = err, .errlen = errlen };
	const json_t *kind = json_object_get(v, "kind");
	struct nm_jw_field f;
	int ret;

	*items = NULL;
	if (!json_is_string(kind) || strcmp(json_string_value(kind), "List"))
		return 0;
	if ((ret = nm_jw_check_keys(&j, v, "", keys)))
		return ret;
	ret = nm_jw_field(&j, v, "", "items", JSON_ARRAY, true, &f);
	if (ret < 0)
		return ret;
	*items = f.v;
	return 0;
}

static int add_doc(struct nm_policy_set *ps, const json_t *doc, const char *name,
		   unsigned int *index, char *err, size_t errlen)
{
	const json_t *items = NULL, *e;
	size_t i;
	int ret;

	if (json_is_object(doc)) {
		ret = list_items(doc, name, &items, err, errlen);
		if (ret)
			return ret;
		if (!items)
			return nm_pol_convert(ps, doc, name, (*index)++, err, errlen);
	} else if (json_is_array(doc)) {
		items = doc;
	} else {
		return nm_pol_convert(ps, doc, name, (*index)++, err, errlen);
	}
	json_array_foreach(items, i, e) {
		ret = nm_pol_convert(ps, e, name, (*index)++, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

static int load_one(struct nm_policy_set *ps, const char *buf, size_t len,
		    const char *name, char *err, size_t errlen)
{
	unsigned int index = 0;
	json_t *docs;
	size_t i;
	int ret = 0;

	if (looks_json(name, buf, len)) {
		struct nm_jw j = { .name = name, .err = err, .errlen = errlen };
		json_t *root = nm_jw_load(&j, buf, len, NM_FILE_MAX);

		if (!root)
			return -EINVAL;
		ret = add_doc(ps, root, name, &index, err, errlen);
		json_decref(root);
		return ret;
	}
	if (len > NM_FILE_MAX) {
		nm_set_err(err, errlen, "%s: file is too large (%zu bytes, at most %u MiB)",
			   name, len, NM_FILE_MAX >> 20);
		return -EINVAL;
	}
	docs = nm_pol_yaml_load(buf ? buf : "", len, name, err, errlen);
	if (!docs)
		return -EINVAL;
	for (i = 0; i < json_array_size(docs) && !ret; i++)
		ret = add_doc(ps, json_array_get(docs, i), name, &index, err, errlen);
	json_decref(docs);
	return ret;
}

/* --- the set ------------------------------------------------------------------- */

static int cmp_pol(const void *a, const void *b)
{
	const struct nm_pol *x = a, *y = b;
	int c = strcmp(x->ns, y->ns);

	return c ? c : strcmp(x->name, y->name);
}

static int finish(struct nm_policy_set *ps, char *err, size_t errlen)
{
	unsigned int i;

	if (ps->n_pols)
		qsort(ps->pols, ps->n_pols, sizeof(ps->pols[0]), cmp_pol);
	for (i = 1; i < ps->n_pols; i++) {
		const struct nm_pol *a = &ps->pols[i - 1], *b = &ps->pols[i];

		if (!cmp_pol(a, b)) {
			nm_set_err(err, errlen, "%s: policy %s/%s: metadata.name: "
				   "already defined%s%s", b->file, b->ns, b->name,
				   strcmp(a->file, b->file) ? " in " : " earlier in this file",
				   strcmp(a->file, b->file) ? a->file : "");
			return -EINVAL;
		}
	}
	return 0;
}

int nm_policy_load_buf(const char *buf, size_t len, const char *name,
		       const char *root_ns, struct nm_policy_set **out,
		       char *err, size_t errlen)
{
	struct nm_policy_set *ps;
	int ret;

	*out = NULL;
	ps = set_new(root_ns);
	if (!ps) {
		nm_set_err(err, errlen, "%s: out of memory", name);
		return -ENOMEM;
	}
	ret = load_one(ps, buf, len, name, err, errlen);
	if (!ret)
		ret = finish(ps, err, errlen);
	if (ret) {
		nm_policy_set_free(ps);
		return ret;
	}
	*out = ps;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool policy_file_name(const char *n)
{
	/* dot files: editors' swap files, ConfigMap mounts' ..data links */
	return n[0] != '.' &&
	       (ends_with(n, ".yaml") || ends_with(n, ".yml") || ends_with(n, ".json"));
}

int nm_policy_load_dir(const char *dir, const char *root_ns,
		       struct nm_policy_set **out, char *err, size_t errlen)
{
	struct nm_policy_set *ps = NULL;
	char **names = NULL, path[PATH_MAX];
	unsigned int n = 0, i;
	struct dirent *de;
	DIR *d;
	int ret = 0;

	*out = NULL;
	d = opendir(dir);
	if (!d) {
		ret = -errno;
		nm_set_err(err, errlen, "%s: %s", dir, strerror(errno));
		return ret;
	}
	while ((de = readdir(d))) {
		char **nn;

		if (!policy_file_name(de->d_name))
			continue;
		if (n >= MAX_FILES) {
			nm_set_err(err, errlen, "%s: more than %d policy files", dir, MAX_FILES);
			ret = -E2BIG;
			goto out;
		}
		nn = realloc(names, (n + 1) * sizeof(*nn));
		if (!nn || !(nn[n] = strdup(de->d_name))) {
			if (nn)
				names = nn;
			ret = -ENOMEM;
			nm_set_err(err, errlen, "%s: out of memory", dir);
			goto out;
		}
		names = nn;
		n++;
	}
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	ps = set_new(root_ns);
	if (!ps) {
		ret = -ENOMEM;
		nm_set_err(err, errlen, "%s: out of memory", dir);
		goto out;
	}
	for (i = 0; i < n; i++) {
		const char *why = NULL;
		struct stat st;
		size_t len;
		char *buf;

		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path)) {
			ret = -ENAMETOOLONG;
			nm_set_err(err, errlen, "%s/%s: path too long", dir, names[i]);
			goto out;
		}
		/* a directory named like a policy file is not one */
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			continue;
		ret = nm_file_read(path, 0, &buf, &len, &why);
		if (ret) {
			nm_set_err(err, errlen, "%s: %s", path, why ? why : strerror(-ret));
			goto out;
		}
		ret = load_one(ps, buf, len, path, err, errlen);
		free(buf);
		if (ret)
			goto out;
	}
	ret = finish(ps, err, errlen);
out:
	closedir(d);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (ret) {
		nm_policy_set_free(ps);
		return ret;
	}
	*out = ps;
	return 0;
}

const char *const *nm_policy_set_warnings(const struct nm_policy_set *ps,
					  unsigned int *n)
{
	*n = ps ? ps->n_warnings : 0;
	return ps ? (const char *const *)ps->warnings : NULL;
}

unsigned int nm_policy_count(const struct nm_policy_set *ps)
{
	return ps ? ps->n_pols : 0;
}
