// SPDX-License-Identifier: Apache-2.0
/* nft.c - the agent's nftables table (nft.h) through libnftables. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <nftables/libnftables.h>

#include "datapath/nft.h"

/*
 * libnftables calls exit() when it cannot open its netlink socket (a
 * kernel without nfnetlink, or nf_tables as a module nobody can load, as
 * in the VM's initramfs): open one first, so the caller gets an error and
 * falls back instead of the agent dying.
 */
static int nfnetlink_usable(char *err, size_t len)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);

	if (fd < 0) {
		int ret = -errno;

		if (err && len)
			snprintf(err, len, "no nfnetlink socket: %s", strerror(-ret));
		return ret;
	}
	close(fd);
	return 0;
}

static int run(const char *cmd, char *err, size_t len)
{
	struct nft_ctx *ctx;
	const char *msg;
	int rc;

	rc = nfnetlink_usable(err, len);
	if (rc)
		return rc;
	ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!ctx)
		return -ENOMEM;
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	rc = nft_run_cmd_from_buffer(ctx, cmd);
	msg = nft_ctx_get_error_buffer(ctx);
	if (rc && err && len) {
		snprintf(err, len, "%s", msg && *msg ? msg : "nft failed");
		/* one line for key=value logs */
		for (char *p = err; *p; p++)
			if (*p == '\n' || *p == '"')
				*p = ' ';
	}
	nft_ctx_free(ctx);
	return rc ? -EIO : 0;
}

int nm_nft_tproxy_mark(bool add, uint32_t mark, char *err, size_t len)
{
	char cmd[512];

	/* "add" then "delete" in one transaction: a table left by a crashed
	 * run goes, a missing one is no error, and the new one is whole. */
	if (!add)
		return run("add table inet " NM_NFT_TABLE "\n"
			   "delete table inet " NM_NFT_TABLE "\n", err, len);
	snprintf(cmd, sizeof(cmd),
		 "add table inet " NM_NFT_TABLE "\n"
		 "delete table inet " NM_NFT_TABLE "\n"
		 "table inet " NM_NFT_TABLE " {\n"
		 " chain prerouting {\n"
		 "  type filter hook prerouting priority mangle; policy accept;\n"
		 "  meta l4proto tcp socket transparent 1 meta mark set meta mark | 0x%x\n"
		 " }\n"
		 "}\n", mark);
	return run(cmd, err, len);
}
