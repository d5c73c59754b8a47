/* SPDX-License-Identifier: Apache-2.0 */
/*
 * load.h - between the loader (load.c: files, JSON and YAML documents, the
 * set) and the converter (convert.c: one object). Inside agent/policy only.
 */
#ifndef NM_POLICY_LOAD_H
#define NM_POLICY_LOAD_H

#include <stddef.h>
#include <jansson.h>

#include "policy/internal.h"

/* Zeroed memory that lives as long as ps; NULL when out of memory. */
void *nm_pol_alloc(struct nm_policy_set *ps, size_t n);
/* s[0, n) NUL-terminated, in ps. */
char *nm_pol_strdup(struct nm_policy_set *ps, const char *s, size_t n);
/* A new zeroed policy at the end of ps->pols; NULL when out of memory. */
struct nm_pol *nm_pol_new(struct nm_policy_set *ps);
/* Appends a formatted warning; 0 or -ENOMEM. */
int nm_pol_add_warning(struct nm_policy_set *ps, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Object number index (0-based) of file: checked and added to ps. 0, or
 * -EINVAL / -ENOMEM with "FILE: policy NS/NAME: path: what" in err.
 */
int nm_pol_convert(struct nm_policy_set *ps, const json_t *obj,
		   const char *file, unsigned int index, char *err, size_t errlen);

/*
 * YAML (one or many documents) into a JSON array of the documents' values,
 * typed as Kubernetes reads YAML (sigs.k8s.io/yaml: YAML 1.1 scalars).
 * Empty documents are left out. NULL with "FILE: line L, column C: what".
 */
json_t *nm_pol_yaml_load(const char *buf, size_t len, const char *file,
			 char *err, size_t errlen);

#endif
