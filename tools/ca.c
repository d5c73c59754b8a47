// SPDX-License-Identifier: Apache-2.0
/*
 * ca.c - `nodemesh ca init|issue`: the built-in development CA (agent/ca.h).
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
#include "config/config.h"

/* Exit status for a command line we cannot use (as nodemesh main uses). */
#define EXIT_USAGE 2
/* parse_opts() result when --help was printed. */
#define HELP_SHOWN 3

struct ca_opts {
	const char *dir;
	const char *out;
	const char *ns;
	const char *sa;
	const char *trust_domain;
	int days;
	bool force;
	bool json;
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

static int parse_days(const char *cmd, const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > NM_CA_MAX_DAYS) {
		fprintf(stderr, "nodemesh ca %s: --days: \"%s\" is not a number of days within 1..%d\n",
			cmd, s, NM_CA_MAX_DAYS);
		return EXIT_USAGE;
	}
	*out = (int)v;
	return 0;
}

static int parse_opts(const char *cmd, int argc, char **argv,
		      struct ca_opts *o)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "out", required_argument, NULL, 'o' },
		{ "ns", required_argument, NULL, 'n' },
		{ "sa", required_argument, NULL, 's' },
		{ "trust-domain", required_argument, NULL, 't' },
		{ "days", required_argument, NULL, 'D' },
		{ "force", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	/* optind = 0 makes glibc start over: main may have parsed already. */
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:o:n:s:t:D:fjh", longopts,
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
			if (parse_days(cmd, optarg, &o->days))
				return EXIT_USAGE;
			break;
		case 'f':
			o->force = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			ca_usage(stdout);
			return HELP_SHOWN;
		case ':':
			fprintf(stderr, "nodemesh ca %s: %s needs a value\n", cmd,
				argv[optind - 1]);
			return EXIT_USAGE;
		default:
			fprintf(stderr, "nodemesh ca %s: unknown option %s\n", cmd,
				argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "nodemesh ca %s: unexpected argument \"%s\"\n",
			cmd, argv[optind]);
		return EXIT_USAGE;
	}
	return 0;
}

static int require(const char *cmd, const char *name, const char *value)
{
	if (value && *value)
		return 0;
	fprintf(stderr, "nodemesh ca %s: --%s is required\n", cmd, name);
	return EXIT_USAGE;
}

static int print_result(bool json, const char *what, const char *path,
			const char *spiffe_id)
{
	json_t *obj;
	char *s;

	if (!json) {
		printf("%s %s (%s)\n", what, path, spiffe_id);
		return 0;
	}
	obj = json_pack("{s:s, s:s}", "path", path, "spiffe_id", spiffe_id);
	s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	json_decref(obj);
	if (!s)
		return -ENOMEM;
	printf("%s\n", s);
	free(s);
	return 0;
}

static int cmd_init(int argc, char **argv)
{
	struct ca_opts o = {
		.trust_domain = NM_CA_DEFAULT_TRUST_DOMAIN,
		.days = NM_CA_DEFAULT_DAYS,
	};
	char path[NM_PATH_MAX], err[NM_ERRMSG_MAX], id[NM_SPIFFE_MAX];
	int ret;

	ret = parse_opts("init", argc, argv, &o);
	if (ret)
		return ret == HELP_SHOWN ? 0 : ret;
	if (o.out || o.ns || o.sa) {
		fprintf(stderr, "nodemesh ca init: --out, --ns and --sa belong to \"ca issue\"\n");
		return EXIT_USAGE;
	}
	ret = require("init", "dir", o.dir);
	if (ret)
		return ret;
	ret = nm_ca_init(o.dir, o.trust_domain, o.days, o.force, path,
			 sizeof(path), err, sizeof(err));
	if (ret) {
		fprintf(stderr, "nodemesh ca init: %s\n", err);
		return ret;
	}
	snprintf(id, sizeof(id), "spiffe://%s", o.trust_domain);
	return print_result(o.json, "created CA", path, id);
}

static int cmd_issue(int argc, char **argv)
{
	struct ca_opts o = { .days = NM_CA_LEAF_DEFAULT_DAYS };
	char path[NM_PATH_MAX], err[NM_ERRMSG_MAX], id[NM_SPIFFE_MAX];
	struct nm_spiffe_id sid = { 0 };
	struct nm_ca ca;
	int ret;

	ret = parse_opts("issue", argc, argv, &o);
	if (ret)
		return ret == HELP_SHOWN ? 0 : ret;
	if (o.trust_domain || o.force) {
		fprintf(stderr, "nodemesh ca issue: the trust domain comes from the CA; --trust-domain and --force belong to \"ca init\"\n");
		return EXIT_USAGE;
	}
	if ((ret = require("issue", "dir", o.dir)) ||
	    (ret = require("issue", "out", o.out)) ||
	    (ret = require("issue", "ns", o.ns)) ||
	    (ret = require("issue", "sa", o.sa)))
		return ret;
	ret = nm_ca_load(o.dir, &ca, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "nodemesh ca issue: %s\n", err);
		return ret;
	}
	ret = nm_ca_issue(&ca, o.out, o.ns, o.sa, o.days, path, sizeof(path),
			  err, sizeof(err));
	if (ret) {
		fprintf(stderr, "nodemesh ca issue: %s\n", err);
		goto out;
	}
	snprintf(sid.trust_domain, sizeof(sid.trust_domain), "%s",
		 ca.trust_domain);
	snprintf(sid.ns, sizeof(sid.ns), "%s", o.ns);
	snprintf(sid.sa, sizeof(sid.sa), "%s", o.sa);
	ret = nm_spiffe_format(&sid, id, sizeof(id));
	if (!ret)
		ret = print_result(o.json, "issued", path, id);
out:
	nm_ca_release(&ca);
	return ret;
}

/* Subcommands return 0, EXIT_USAGE or -errno; the CLI wants a status. */
static int exit_status(int ret)
{
	if (ret == EXIT_USAGE || ret == 0)
		return ret;
	return 1;
}

int nm_cmd_ca(int argc, char **argv)
{
	if (argc > 0 && strcmp(argv[0], "ca") == 0) {
		argc--;
		argv++;
	}
	if (argc < 1) {
		ca_usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[0], "init") == 0)
		return exit_status(cmd_init(argc, argv));
	if (strcmp(argv[0], "issue") == 0)
		return exit_status(cmd_issue(argc, argv));
	if (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0 ||
	    strcmp(argv[0], "-h") == 0) {
		ca_usage(stdout);
		return 0;
	}
	fprintf(stderr, "nodemesh ca: unknown command \"%s\"\n", argv[0]);
	ca_usage(stderr);
	return EXIT_USAGE;
}
