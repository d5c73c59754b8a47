// SPDX-License-Identifier: Apache-2.0
/* runstate.c - write and remove /run/nodemesh/<instance>/agent.json. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <jansson.h>

#include "lib/log.h"
#include "core/runstate.h"

int nm_runstate_path(const char *instance, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s/agent.json", NM_RUN_BASE, instance);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static json_t *listeners_json(const struct nm_agent *a)
{
	static const char *const kinds[] = { "outbound", "inbound",
					     "forward-outbound", "forward-inbound" };
	json_t *arr = json_array();

	for (const struct nm_listener *l = a->listeners; l; l = l->next) {
		struct nm_addr addr;
		struct nm_addr ip;
		__be16 port;
		char host[64];

		nm_addr_from_sockaddr(&l->addr, &addr, &port);
		memcpy(&ip, &addr, sizeof(ip));
		nm_addr_format(&ip, host, sizeof(host));
		json_array_append_new(arr, json_pack("{s:s, s:s, s:i, s:s?}",
			"role", kinds[l->kind], "address", host,
			"port", ntohs(port), "forward", l->fwd ? l->fwd->name : NULL));
	}
	return arr;
}

/* What the agent chose at start that `nodemesh status` reports. */
static json_t *features_json(const struct nm_agent *a)
{
	const struct nm_srcaddr *sa = &a->srcaddr;

	return json_pack("{s:s, s:s, s:{s:I, s:I, s:I, s:I}}",
			 "source_address", sa->active ? "preserved" : "agent",
			 "source_address_reason", sa->active ? "" : sa->reason,
			 "source_address_counts",
			 "preserved", (json_int_t)sa->preserved,
			 "onlink", (json_int_t)sa->onlink_pairs,
			 "bind_failed", (json_int_t)sa->bind_failed,
			 "forged_src", (json_int_t)sa->forged);
}

int nm_runstate_write(const struct nm_agent *a)
{
	char path[512], tmp[520], dir[512];
	json_t *root;
	int err = 0;

	snprintf(dir, sizeof(dir), "%s/%s", NM_RUN_BASE, a->instance);
	if ((mkdir(NM_RUN_BASE, 0755) && errno != EEXIST) ||
	    (mkdir(dir, 0755) && errno != EEXIST))
		return -errno;
	nm_runstate_path(a->instance, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	root = json_pack("{s:i, s:s, s:s, s:s, s:s, s:b, s:s, s:i, s:I, s:o, s:o}",
			 "pid", (int)getpid(),
			 "instance", a->instance,
			 "config", a->cluster->path,
			 "node", a->state->self ? a->state->self->cfg->name : "",
			 "trust_domain", a->cluster->trust_domain,
			 "datapath", a->dp != NULL,
			 "pin_dir", NM_PIN_BASE,
			 "identities", (int)nm_tls_identity_count(a->tls),
			 "generation", (json_int_t)a->state->generation,
			 "listeners", listeners_json(a),
			 "features", features_json(a));
	if (!root)
		return -ENOMEM;
	if (json_dump_file(root, tmp, JSON_INDENT(2)) || rename(tmp, path))
		err = -EIO;
	json_decref(root);
	if (err)
		pr_warn("msg=\"cannot write run state\" file=%s", path);
	return err;
}

void nm_runstate_remove(const struct nm_agent *a)
{
	char path[512], dir[512];

	if (nm_runstate_path(a->instance, path, sizeof(path)))
		return;
	unlink(path);
	snprintf(dir, sizeof(dir), "%s/%s", NM_RUN_BASE, a->instance);
	rmdir(dir);
}
