// SPDX-License-Identifier: Apache-2.0
/*
 * ca.c - `nodemesh ca init|issue`: the built-in development CA (devca.h).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "devca.h"
#include "commands.h"

/* Room for the dev CA's "FILE: what is wrong" messages. */
#define CA_ERR_MAX 512
/* parse_opts() result when --help was printed. */
#define HELP_SHOWN -1

struct ca_opts {
	const char *dir;
	const char *out;
	const char *ns;
	const char *sa;
	const char *trust_domain;
	int days;
	bool force;
};

static void ca_usage(FILE *f)
{
	fprintf(f,
		 "Usage: nodemesh ca init  --dir DIR [--trust-domain TD] [--days N] [--force] [--json]\n"
		 "       nodemesh ca issue --dir DIR --out CERTDIR --ns NS --sa SA [--days N] [--json]\n"
		 "\n"
		 "init   creates DIR/ca.crt, DIR/ca.key (0600) and DIR/trust-domain: an ECDSA\n"
		 "       P-256 root for TD (default %s), valid N days (default %d).\n"
		 "issue  creates CERTDIR/NS/SA/{cert.pem,key.pem (0600),bundle.pem}: a leaf\n"
		 "       for spiffe://TD/ns/NS/sa/SA signed by the CA in DIR, valid N days\n"
		 "       (default %d). Reissuing replaces the files atomically.\n",
		 NM_CA_DEFAULT_TRUST_DOMAIN, NM_CA_DEFAULT_DAYS,
		 NM_CA_LEAF_DEFAULT_DAYS);
}

static int parse_days(const struct nm_cli *cli, const char *cmd, const char *s,
		      int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > NM_CA_MAX_DAYS)
		return nm_cli_usage_error(cli, NULL,
					  "ca %s: --days: \"%s\" is not a number of days within 1..%d",
					  cmd, s, NM_CA_MAX_DAYS);
	*out = (int)v;
	return 0;
}

/* 0, NM_EXIT_USAGE, or HELP_SHOWN. */
static int parse_opts(const struct nm_cli *cli, const char *cmd, int argc,
		      char **argv, struct ca_opts *o)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "out", required_argument, NULL, 'o' },
		{ "ns", required_argument, NULL, 'n' },
		{ "sa", required_argument, NULL, 's' },
		{ "trust-domain", required_argument, NULL, 't' },
		{ "days", required_argument, NULL, 'D' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	/* optind = 0 makes glibc start over. */
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:o:n:s:t:D:fh", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'd':
			o->dir = optarg;
			break;
		case 'o':
			o->out = optarg;
			break;
		case 'n':
			o->ns = optarg;
			break;
		case 's':
			o->sa = optarg;
			break;
		case 't':
			o->trust_domain = optarg;
			break;
		case 'D':
			if (parse_days(cli, cmd, optarg, &o->days))
				return NM_EXIT_USAGE;
			break;
		case 'f':
			o->force = true;
			break;
		case 'h':
			ca_usage(stdout);
			return HELP_SHOWN;
		default:
			return nm_cli_getopt_error(cli, NULL, c, argv);
		}
	}
	if (optind < argc)
		return nm_cli_usage_error(cli, NULL, "ca %s: unexpected argument \"%s\"",
					  cmd, argv[optind]);
	return 0;
}

static int require(const struct nm_cli *cli, const char *cmd, const char *name,
		   const char *value)
{
	if (value && *value)
		return 0;
	return nm_cli_usage_error(cli, NULL, "ca %s: --%s is required", cmd, name);
}

static int print_result(const struct nm_cli *cli, const char *what,
			const char *path, const char *spiffe_id)
{
	if (!cli->json) {
		printf("%s %s (%s)\n", what, path, spiffe_id);
		return NM_EXIT_OK;
	}
	return nm_cli_print_json(cli, json_pack("{s:s, s:s}", "path", path,
						"spiffe_id", spiffe_id));
}

static int cmd_init(const struct nm_cli *cli, int argc, char **argv)
{
	struct ca_opts o = {
		.trust_domain = NM_CA_DEFAULT_TRUST_DOMAIN,
		.days = NM_CA_DEFAULT_DAYS,
	};
	char path[NM_PATH_MAX], err[CA_ERR_MAX], id[NM_SPIFFE_MAX];
	int ret;

	ret = parse_opts(cli, "init", argc, argv, &o);
	if (ret)
		return ret == HELP_SHOWN ? NM_EXIT_OK : ret;
	if (o.out || o.ns || o.sa)
		return nm_cli_usage_error(cli, NULL,
					  "ca init: --out, --ns and --sa belong to \"ca issue\"");
	ret = require(cli, "init", "dir", o.dir);
	if (ret)
		return ret;
	ret = nm_ca_init(o.dir, o.trust_domain, o.days, o.force, path,
			 sizeof(path), err, sizeof(err));
	if (ret)
		return nm_cli_fail(cli, NM_EXIT_FAIL, "ca init: %s", err);
	snprintf(id, sizeof(id), "spiffe://%s", o.trust_domain);
	return print_result(cli, "created CA", path, id);
}

static int cmd_issue(const struct nm_cli *cli, int argc, char **argv)
{
	struct ca_opts o = { .days = NM_CA_LEAF_DEFAULT_DAYS };
	char path[NM_PATH_MAX], err[CA_ERR_MAX], id[NM_SPIFFE_MAX];
	struct nm_spiffe_id sid = { 0 };
	struct nm_ca ca;
	int ret;

	ret = parse_opts(cli, "issue", argc, argv, &o);
	if (ret)
		return ret == HELP_SHOWN ? NM_EXIT_OK : ret;
	if (o.trust_domain || o.force)
		return nm_cli_usage_error(cli, NULL,
					  "ca issue: the trust domain comes from the CA; --trust-domain and --force belong to \"ca init\"");
	if ((ret = require(cli, "issue", "dir", o.dir)) ||
	    (ret = require(cli, "issue", "out", o.out)) ||
	    (ret = require(cli, "issue", "ns", o.ns)) ||
	    (ret = require(cli, "issue", "sa", o.sa)))
		return ret;
	ret = nm_ca_load(o.dir, &ca, err, sizeof(err));
	if (ret)
		return nm_cli_fail(cli, NM_EXIT_FAIL, "ca issue: %s", err);
	ret = nm_ca_issue(&ca, o.out, o.ns, o.sa, o.days, path, sizeof(path),
			  err, sizeof(err));
	if (ret) {
		ret = nm_cli_fail(cli, NM_EXIT_FAIL, "ca issue: %s", err);
		goto out;
	}
	snprintf(sid.trust_domain, sizeof(sid.trust_domain), "%s",
		 ca.trust_domain);
	snprintf(sid.ns, sizeof(sid.ns), "%s", o.ns);
	snprintf(sid.sa, sizeof(sid.sa), "%s", o.sa);
	ret = nm_spiffe_format(&sid, id, sizeof(id));
	if (ret)
		ret = nm_cli_fail(cli, NM_EXIT_FAIL, "ca issue: %s", strerror(-ret));
	else
		ret = print_result(cli, "issued", path, id);
out:
	nm_ca_release(&ca);
	return ret;
}

int nm_cmd_ca(const struct nm_cli *cli, int argc, char **argv)
{
	if (argc > 0 && strcmp(argv[0], "ca") == 0) {
		argc--;
		argv++;
	}
	if (argc < 1) {
		nm_cli_usage_error(cli, NULL, "ca: init or issue expected");
		ca_usage(stderr);
		return NM_EXIT_USAGE;
	}
	if (strcmp(argv[0], "init") == 0)
		return cmd_init(cli, argc, argv);
	if (strcmp(argv[0], "issue") == 0)
		return cmd_issue(cli, argc, argv);
	if (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0 ||
	    strcmp(argv[0], "-h") == 0) {
		ca_usage(stdout);
		return NM_EXIT_OK;
	}
	nm_cli_usage_error(cli, NULL, "ca: unknown command \"%s\"", argv[0]);
	ca_usage(stderr);
	return NM_EXIT_USAGE;
}
