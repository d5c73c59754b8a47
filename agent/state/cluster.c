// SPDX-License-Identifier: Apache-2.0
/*
 * cluster.c - what the snapshot types (cluster.h) mean on their own, shared
 * by every source and by the state.
 */
#include <string.h>

#include "state/cluster.h"

/*
 * An empty selector selects nothing, as in Kubernetes (a Service without a
 * selector gets no automatic endpoints). The parser never produces one.
 */
bool nm_service_selects(const struct nm_service_cfg *svc,
			const struct nm_workload_cfg *wl)
{
	unsigned int i, j;

	if (!svc || !wl || svc->n_selector == 0 || strcmp(svc->ns, wl->ns) != 0)
		return false;
	for (i = 0; i < svc->n_selector; i++) {
		bool found = false;

		for (j = 0; j < wl->n_labels && !found; j++)
			found = strcmp(svc->selector[i].key, wl->labels[j].key) == 0 &&
				strcmp(svc->selector[i].value, wl->labels[j].value) == 0;
		if (!found)
			return false;
	}
	return true;
}
