// SPDX-License-Identifier: Apache-2.0
/*
 * forwards.c - the "forwards" section: static forwarding listeners
 * (docs/config.md, "forwards"; struct nm_forward_cfg in state/cluster.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "config/list.h"
#include "config/sections.h"

static int forward_name_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct nm_forward_cfg *f = ctx;

	return strcmp(f[a].name, f[b].name);
}

static int sockaddr_cmp(const struct sockaddr_storage *a,
			const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return a->ss_family < b->ss_family ? -1 : 1;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		int r = memcmp(&x->sin_addr, &y->sin_addr, sizeof(x->sin_addr));

		return r ? r : memcmp(&x->sin_port, &y->sin_port, 2);
	} else {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		int r = memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));

		return r ? r : memcmp(&x->sin6_port, &y->sin6_port, 2);
	}
}

static int forward_listen_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct nm_forward_cfg *f = ctx;

	return sockaddr_cmp(&f[a].listen, &f[b].listen);
}

/* "namespace/serviceAccount", two DNS labels. */
static int parse_identity(struct nm_cfg_parser *p, const json_t *v,
			  const char *path, struct nm_forward_cfg *fw)
{
	char id[2 * NM_NAME_MAX], q[NM_JW_SHOW_BUF];
	struct nm_jw_field f;
	const char *slash;
	int ret;

	ret = nm_jw_get_str(&p->j, v, path, "identity", true, id, sizeof(id), &f);
	if (ret < 0)
		return ret;
	slash = strchr(id, '/');
	if (!slash || !nm_cfg_dns_label_ok(id, (size_t)(slash - id)) ||
	    !nm_cfg_dns_label_ok(slash + 1, strlen(slash + 1)) ||
	    (size_t)(slash - id) >= sizeof(fw->id_ns) ||
	    strlen(slash + 1) >= sizeof(fw->id_sa))
		return nm_jw_fail(&p->j, f.path,
				  "%s is not \"namespace/serviceAccount\" (two DNS labels)",
				  nm_jw_show(id, q));
	memcpy(fw->id_ns, id, (size_t)(slash - id));
	fw->id_ns[slash - id] = '\0';
	memcpy(fw->id_sa, slash + 1, strlen(slash + 1) + 1);
	return 0;
}

/* Outbound: the one peerIdentity. Inbound: the optional allowedPeers. */
static int parse_peers(struct nm_cfg_parser *p, const json_t *v,
		       const char *path, struct nm_forward_cfg *fw)
{
	char q[NM_JW_SHOW_BUF];
	struct nm_jw_field f;
	size_t i, k;
	int ret;

	nm_jw_path_key(f.path, path, "peerIdentity");
	f.v = json_object_get(v, "peerIdentity");
	if (fw->mode == NM_FWD_OUTBOUND) {
		if (!f.v)
			return nm_jw_fail(&p->j, f.path, "missing required field");
		ret = nm_cfg_get_spiffe(p, f.path, f.v, fw->peer_identity);
		if (ret)
			return ret;
	} else if (f.v) {
		return nm_jw_fail(&p->j, f.path,
				  "only outbound forwards have a peerIdentity (inbound ones use allowedPeers)");
	}

	ret = nm_jw_field(&p->j, v, path, "allowedPeers", JSON_ARRAY, false, &f);
	if (ret <= 0)
		return ret;
	if (fw->mode == NM_FWD_OUTBOUND)
		return nm_jw_fail(&p->j, f.path,
				  "only inbound forwards have allowedPeers (outbound ones use peerIdentity)");
	if (json_array_size(f.v) > NM_MAX_ALLOWED_PEERS)
		return nm_jw_fail(&p->j, f.path, "too many peers (%zu, at most %d)",
				  json_array_size(f.v), NM_MAX_ALLOWED_PEERS);
	for (i = 0; i < json_array_size(f.v); i++) {
		char ppath[NM_JW_PATH_MAX];

		nm_jw_path_idx(ppath, f.path, i);
		ret = nm_cfg_get_spiffe(p, ppath, json_array_get(f.v, i),
					fw->allowed_peers[i]);
		if (ret)
			return ret;
		for (k = 0; k < i; k++) {
			if (strcmp(fw->allowed_peers[k], fw->allowed_peers[i]) == 0)
				return nm_jw_fail(&p->j, ppath,
						  "%s is already listed in allowedPeers[%zu]",
						  nm_jw_show(fw->allowed_peers[i], q), k);
		}
		fw->n_allowed_peers++;
	}
	return 0;
}

static int parse_forward(struct nm_cfg_parser *p, const json_t *v,
			 const char *path, void *item)
{
	static const char *const keys[] = { "name", "mode", "listen", "peer",
					    "destination", "identity",
					    "peerIdentity", "allowedPeers", NULL };
	struct nm_forward_cfg *fw = item;
	char q[NM_JW_SHOW_BUF];
	struct nm_jw_field f;
	const char *s;
	int ret;

	ret = nm_jw_check_object(&p->j, v, path, keys);
	if (ret)
		return ret;
	if (nm_cfg_get_name(p, v, path, "name", fw->name))
		return -EINVAL;
	ret = nm_jw_field(&p->j, v, path, "mode", JSON_STRING, true, &f);
	if (ret < 0)
		return ret;
	s = json_string_value(f.v);
	if (strcmp(s, "outbound") == 0)
		fw->mode = NM_FWD_OUTBOUND;
	else if (strcmp(s, "inbound") == 0)
		fw->mode = NM_FWD_INBOUND;
	else
		return nm_jw_fail(&p->j, f.path,
				  "%s is not \"outbound\" or \"inbound\"",
				  nm_jw_show(s, q));

	if (nm_cfg_get_sockaddr(p, v, path, "listen", true, true, &fw->listen) < 0)
		return -EINVAL;
	if (fw->mode == NM_FWD_OUTBOUND) {
		if (nm_cfg_get_sockaddr(p, v, path, "peer", true, false,
					&fw->peer) < 0)
			return -EINVAL;
	} else if (json_object_get(v, "peer")) {
		nm_jw_path_key(f.path, path, "peer");
		return nm_jw_fail(&p->j, f.path, "only outbound forwards have a peer");
	}
	if (nm_cfg_get_sockaddr(p, v, path, "destination", true, false,
				&fw->destination) < 0)
		return -EINVAL;
	ret = parse_identity(p, v, path, fw);
	if (ret)
		return ret;
	return parse_peers(p, v, path, fw);
}

int nm_cfg_parse_forwards(struct nm_cfg_parser *p, const json_t *root)
{
	static const struct nm_cfg_list s = {
		.key = "forwards", .max = NM_MAX_FORWARDS,
		.size = sizeof(struct nm_forward_cfg), .parse = parse_forward,
		.unique = { { "name", forward_name_cmp, .quote = true },
			    { "listen", forward_listen_cmp } },
	};
	void *arr = NULL;
	int ret = nm_cfg_parse_list(p, root, &s, &arr, &p->c->n_forwards, NULL);

	p->c->forwards = arr;
	return ret;
}
