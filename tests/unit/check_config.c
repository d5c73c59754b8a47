// SPDX-License-Identifier: Apache-2.0
/*
 * check_config.c - the cluster file parser: every field round-trips, defaults
 * apply, and every class of mistake is refused with "FILE: path: problem".
 *
 * Documents are written with single quotes for readability; q() turns them
 * into JSON.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/stat.h>

#include "config/config.h"
#include "lib/spiffe.h"
#include "nm_check.h"

#define NAME "cluster.json"

static char *q(const char *s)
{
	char *out = strdup(s);

	ck_assert_ptr_nonnull(out);
	for (char *p = out; *p; p++)
		if (*p == '\'')
			*p = '"';
	return out;
}

static int load(const char *doc, struct nm_cluster **c, char *err)
{
	char *json = q(doc);
	int ret = nm_cluster_load_buf(json, strlen(json), NAME, c, err,
				      NM_ERRMSG_MAX);

	free(json);
	return ret;
}

/* Loads a document that must fail and returns the message. */
static const char *load_err(const char *doc)
{
	static char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = (void *)1;
	int ret = load(doc, &c, err);

	ck_assert_msg(ret == -EINVAL, "expected -EINVAL, got %d for %s", ret, doc);
	ck_assert_ptr_null(c);
	return err;
}

static struct nm_addr ip(const char *s)
{
	struct nm_addr a;

	ck_assert_int_eq(nm_addr_parse(s, &a, NULL), 0);
	return a;
}

#define HDR "'trustDomain':'cluster.local','certDir':'certs'"
#define NODES "'nodes':[{'name':'n1','address':'198.18.0.1'}," \
	      "{'name':'n2','address':'198.18.0.2'}]"
#define WL(name, ip, extra) "{'name':'" name "','namespace':'default'," \
	"'serviceAccount':'sa','ip':'" ip "','node':'n1'" extra "}"
#define SVC(name, vip, extra) "{'name':'" name "','namespace':'default'," \
	"'vip':'" vip "','ports':[{'port':80}],'selector':{'app':'x'}" extra "}"
#define OUT_FWD(extra) "{'name':'db','mode':'outbound'," \
	"'listen':'127.0.0.1:31041','peer':'127.0.0.1:31046'," \
	"'destination':'127.0.0.1:31001','identity':'default/client'," \
	"'peerIdentity':'spiffe://cluster.local/ns/default/sa/server'" extra "}"
#define IN_FWD(extra) "{'name':'db-in','mode':'inbound'," \
	"'listen':'127.0.0.1:31046','destination':'127.0.0.1:31001'," \
	"'identity':'default/server'" extra "}"

static const char full_doc[] =
	"{'trustDomain':'example.org','certDir':'/etc/nodemesh/certs',"
	"'mesh':{'outboundPort':16001,'inboundPort':16008,'adminPort':16000,"
	"        'failMode':'open'},"
	"'nodes':["
	" {'name':'node-a','address':'198.18.0.1','address6':'2001:2::1',"
	"  'cgroupRoot':'/sys/fs/cgroup/unified/nm/node-a'},"
	" {'name':'node-b.example','address':'198.18.0.2'}],"
	"'workloads':["
	" {'name':'client','namespace':'default','serviceAccount':'client-sa',"
	"  'labels':{'app':'client','app.kubernetes.io/part-of':'demo','empty':''},"
	"  'ip':'198.18.1.2','ip6':'2001:2::1:2','node':'node-a',"
	"  'cgroup':'nm/node-a/client'},"
	" {'name':'server','namespace':'prod','serviceAccount':'server',"
	"  'labels':{'app':'echo','tier':'backend'},'ip':'198.18.2.2',"
	"  'node':'node-b.example','cgroup':'/sys/fs/cgroup/unified/nm/node-b/server'},"
	" {'name':'server2','namespace':'default','serviceAccount':'server',"
	"  'labels':{'app':'echo'},'ip':'198.18.2.3','node':'node-b.example'}],"
	"'services':["
	" {'name':'echo','namespace':'prod','vip':'198.19.0.10',"
	"  'vip6':'2001:2:ffff::10',"
	"  'ports':[{'port':80,'targetPort':8080},{'port':443}],"
	"  'selector':{'app':'echo','tier':'backend'}},"
	" {'name':'echo','namespace':'default','vip':'198.19.0.11',"
	"  'ports':[{'port':80,'targetPort':8080}],'selector':{'app':'echo'}}],"
	"'forwards':["
	" {'name':'db','mode':'outbound','listen':'127.0.0.1:31041',"
	"  'peer':'127.0.0.1:31046','destination':'127.0.0.1:31001',"
	"  'identity':'default/client',"
	"  'peerIdentity':'spiffe://example.org/ns/default/sa/server'},"
	" {'name':'db-in','mode':'inbound','listen':'[::1]:31046',"
	"  'destination':'[2001:2::5]:31001','identity':'default/server',"
	"  'allowedPeers':['spiffe://example.org/ns/default/sa/client',"
	"                  'spiffe://example.org/ns/ops/sa/admin']}]}";

static void assert_sin(const struct sockaddr_storage *ss, const char *addr,
		       int port)
{
	const struct sockaddr_in *sin = (const void *)ss;
	char buf[INET_ADDRSTRLEN];

	ck_assert_int_eq(ss->ss_family, AF_INET);
	inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
	ck_assert_str_eq(buf, addr);
	ck_assert_int_eq(ntohs(sin->sin_port), port);
}

static void assert_sin6(const struct sockaddr_storage *ss, const char *addr,
			int port)
{
	const struct sockaddr_in6 *sin6 = (const void *)ss;
	char buf[INET6_ADDRSTRLEN];

	ck_assert_int_eq(ss->ss_family, AF_INET6);
	inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
	ck_assert_str_eq(buf, addr);
	ck_assert_int_eq(ntohs(sin6->sin6_port), port);
}

static void assert_ip(const struct nm_addr *a, const char *text)
{
	char buf[INET6_ADDRSTRLEN];

	nm_addr_format(a, buf, sizeof(buf));
	ck_assert_str_eq(buf, text);
}

START_TEST(test_full_round_trip)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	ck_assert_msg(load(full_doc, &c, err) == 0, "%s", err);
	ck_assert_str_eq(c->path, NAME);
	ck_assert_str_eq(c->trust_domain, "example.org");
	ck_assert_str_eq(c->cert_dir, "/etc/nodemesh/certs");
	ck_assert_int_eq(c->mesh.outbound_port, 16001);
	ck_assert_int_eq(c->mesh.inbound_port, 16008);
	ck_assert_int_eq(c->mesh.admin_port, 16000);
	ck_assert_int_eq(c->mesh.fail_mode, NM_CFG_FAIL_OPEN);

	ck_assert_uint_eq(c->n_nodes, 2);
	ck_assert_str_eq(c->nodes[0].name, "node-a");
	assert_ip(&c->nodes[0].addr, "198.18.0.1");
	ck_assert(nm_addr_is_v4(&c->nodes[0].addr));
	ck_assert(c->nodes[0].has_addr6);
	assert_ip(&c->nodes[0].addr6, "2001:2::1");
	ck_assert_str_eq(c->nodes[0].cgroup_root, "/sys/fs/cgroup/unified/nm/node-a");
	ck_assert_str_eq(c->nodes[1].name, "node-b.example");
	ck_assert(!c->nodes[1].has_addr6);
	ck_assert_str_eq(c->nodes[1].cgroup_root, "");

	ck_assert_uint_eq(c->n_workloads, 3);
	const struct nm_workload_cfg *w = &c->workloads[0];
	ck_assert_str_eq(w->name, "client");
	ck_assert_str_eq(w->ns, "default");
	ck_assert_str_eq(w->sa, "client-sa");
	ck_assert_uint_eq(w->n_labels, 3);
	ck_assert_str_eq(w->labels[0].key, "app");
	ck_assert_str_eq(w->labels[0].value, "client");
	ck_assert_str_eq(w->labels[1].key, "app.kubernetes.io/part-of");
	ck_assert_str_eq(w->labels[1].value, "demo");
	ck_assert_str_eq(w->labels[2].key, "empty");
	ck_assert_str_eq(w->labels[2].value, "");
	assert_ip(&w->ip, "198.18.1.2");
	ck_assert(w->has_ip6);
	assert_ip(&w->ip6, "2001:2::1:2");
	ck_assert_int_eq(w->node, 0);
	ck_assert_str_eq(w->cgroup, "nm/node-a/client");
	w = &c->workloads[1];
	ck_assert_str_eq(w->ns, "prod");
	ck_assert_int_eq(w->node, 1);
	ck_assert(!w->has_ip6);
	ck_assert_str_eq(w->cgroup, "/sys/fs/cgroup/unified/nm/node-b/server");
	ck_assert_str_eq(c->workloads[2].cgroup, "");

	ck_assert_uint_eq(c->n_services, 2);
	const struct nm_service_cfg *s = &c->services[0];
	ck_assert_str_eq(s->name, "echo");
	ck_assert_str_eq(s->ns, "prod");
	assert_ip(&s->vip, "198.19.0.10");
	ck_assert(s->has_vip6);
	assert_ip(&s->vip6, "2001:2:ffff::10");
	ck_assert_uint_eq(s->n_ports, 2);
	ck_assert_int_eq(s->ports[0].port, 80);
	ck_assert_int_eq(s->ports[0].target_port, 8080);
	ck_assert_int_eq(s->ports[1].port, 443);
	ck_assert_int_eq(s->ports[1].target_port, 443); /* defaults to port */
	ck_assert_uint_eq(s->n_selector, 2);
	ck_assert_str_eq(s->selector[1].key, "tier");
	ck_assert_str_eq(s->selector[1].value, "backend");
	ck_assert(!c->services[1].has_vip6);

	ck_assert_uint_eq(c->n_forwards, 2);
	const struct nm_forward_cfg *f = &c->forwards[0];
	ck_assert_str_eq(f->name, "db");
	ck_assert_int_eq(f->mode, NM_FWD_OUTBOUND);
	assert_sin(&f->listen, "127.0.0.1", 31041);
	assert_sin(&f->peer, "127.0.0.1", 31046);
	assert_sin(&f->destination, "127.0.0.1", 31001);
	ck_assert_str_eq(f->id_ns, "default");
	ck_assert_str_eq(f->id_sa, "client");
	ck_assert_str_eq(f->peer_identity, "spiffe://example.org/ns/default/sa/server");
	ck_assert_uint_eq(f->n_allowed_peers, 0);
	f = &c->forwards[1];
	ck_assert_str_eq(f->name, "db-in");
	ck_assert_int_eq(f->mode, NM_FWD_INBOUND);
	assert_sin6(&f->listen, "::1", 31046);
	assert_sin6(&f->destination, "2001:2::5", 31001);
	ck_assert_str_eq(f->id_ns, "default");
	ck_assert_str_eq(f->id_sa, "server");
	ck_assert_str_eq(f->peer_identity, "");
	ck_assert_uint_eq(f->n_allowed_peers, 2);
	ck_assert_str_eq(f->allowed_peers[0], "spiffe://example.org/ns/default/sa/client");
	ck_assert_str_eq(f->allowed_peers[1], "spiffe://example.org/ns/ops/sa/admin");
	nm_cluster_free(c);
}
END_TEST

START_TEST(test_defaults)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	ck_assert_msg(load("{" HDR "}", &c, err) == 0, "%s", err);
	ck_assert_int_eq(c->mesh.outbound_port, 15001);
	ck_assert_int_eq(c->mesh.inbound_port, 15008);
	ck_assert_int_eq(c->mesh.admin_port, 15000);
	ck_assert_int_eq(c->mesh.fail_mode, NM_CFG_FAIL_CLOSED);
	ck_assert_uint_eq(c->n_nodes, 0);
	ck_assert_uint_eq(c->n_workloads, 0);
	ck_assert_uint_eq(c->n_services, 0);
	ck_assert_uint_eq(c->n_forwards, 0);
	ck_assert_str_eq(c->cert_dir, "certs"); /* NAME has no folder */
	nm_cluster_free(c);

	/* A mesh object with one field keeps the other defaults. */
	ck_assert_msg(load("{" HDR ",'mesh':{'adminPort':9000}}", &c, err) == 0,
		      "%s", err);
	ck_assert_int_eq(c->mesh.outbound_port, 15001);
	ck_assert_int_eq(c->mesh.inbound_port, 15008);
	ck_assert_int_eq(c->mesh.admin_port, 9000);
	ck_assert_int_eq(c->mesh.fail_mode, NM_CFG_FAIL_CLOSED);
	nm_cluster_free(c);

	/* Empty arrays are as good as absent ones. */
	ck_assert_msg(load("{" HDR ",'nodes':[],'workloads':[],'services':[],"
			   "'forwards':[]}", &c, err) == 0, "%s", err);
	ck_assert_uint_eq(c->n_nodes + c->n_workloads + c->n_services +
			  c->n_forwards, 0);
	nm_cluster_free(c);
}
END_TEST

static void check_cert_dir(const char *name, const char *dir, const char *want)
{
	char err[NM_ERRMSG_MAX], doc[256];
	struct nm_cluster *c = NULL;

	snprintf(doc, sizeof(doc),
		 "{\"trustDomain\":\"td\",\"certDir\":\"%s\"}", dir);
	ck_assert_msg(nm_cluster_load_buf(doc, strlen(doc), name, &c, err,
					  sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(c->cert_dir, want);
	nm_cluster_free(c);
}

START_TEST(test_cert_dir_resolution)
{
	check_cert_dir("cluster.json", "certs", "certs");
	check_cert_dir("/etc/nm/cluster.json", "certs", "/etc/nm/certs");
	check_cert_dir("examples/cluster.json", "certs", "examples/certs");
	check_cert_dir("examples/cluster.json", "../pki/x", "examples/../pki/x");
	check_cert_dir("/cluster.json", "certs", "/certs");
	check_cert_dir("/etc/nm/cluster.json", "/var/lib/certs", "/var/lib/certs");
}
END_TEST

START_TEST(test_load_file)
{
	char dir[] = "/tmp/check_config.XXXXXX", path[256], want[320];
	char err[NM_ERRMSG_MAX], big[256];
	struct nm_cluster *c = NULL;
	const char doc[] = "{\"trustDomain\":\"td\",\"certDir\":\"certs\",\n"
			   " \"mesh\":{\"failMode\":\"open\"}}\n";
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/cluster.json", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
	close(fd);

	ck_assert_msg(nm_cluster_load_file(path, &c, err, sizeof(err)) == 0,
		      "%s", err);
	snprintf(want, sizeof(want), "%s/certs", dir);
	ck_assert_str_eq(c->cert_dir, want);
	ck_assert_str_eq(c->path, path);
	ck_assert_int_eq(c->mesh.fail_mode, NM_CFG_FAIL_OPEN);
	nm_cluster_free(c);

	/* Over 16 MiB is refused before anything is read or parsed. */
	snprintf(big, sizeof(big), "%s/big.json", dir);
	fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (16 << 20) + 1), 0);
	close(fd);
	c = (void *)1;
	ck_assert_int_eq(nm_cluster_load_file(big, &c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(err, big));
	ck_assert_ptr_nonnull(strstr(err, "too large"));
	ck_assert_ptr_nonnull(strstr(err, "16 MiB"));

	/* The syntax error names the file, the line and the column. */
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "{\n \"trustDomain\": \"td\",\n}", 25), 25);
	close(fd);
	ck_assert_int_eq(nm_cluster_load_file(path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s: line 3, column 1: ", path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);

	unlink(big);
	unlink(path);
	rmdir(dir);

	ck_assert_int_eq(nm_cluster_load_file(path, &c, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
	/* A NULL error buffer is allowed. */
	ck_assert_int_eq(nm_cluster_load_file(path, &c, NULL, 0), -ENOENT);
}
END_TEST

START_TEST(test_example_file)
{
	char err[NM_ERRMSG_MAX], path[512];
	struct nm_cluster *c = NULL;
	const char *self = __FILE__;
	const char *tail = strstr(self, "tests/unit/check_config.c");
	int selected[2] = { 0, 0 };

	/* The example in the repository must keep loading. */
	snprintf(path, sizeof(path), "%.*sexamples/cluster.json",
		 tail ? (int)(tail - self) : 0, self);
	ck_assert_msg(nm_cluster_load_file(path, &c, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert_uint_eq(c->n_nodes, 2);
	ck_assert_uint_eq(c->n_workloads, 4);
	ck_assert_uint_eq(c->n_services, 1);
	ck_assert_str_eq(c->services[0].name, "echo");
	ck_assert_int_eq(c->services[0].ports[0].port, 80);
	ck_assert_int_eq(c->services[0].ports[0].target_port, 8080);
	for (unsigned int i = 0; i < c->n_workloads; i++) {
		struct nm_addr a = c->workloads[i].ip;

		/* 198.18.0.0/15 for pods, the VIP in 198.19.0.0/16 */
		ck_assert(a.a[12] == 198 && (a.a[13] & 0xfe) == 18);
		if (nm_service_selects(&c->services[0], &c->workloads[i]))
			selected[c->workloads[i].node]++;
	}
	ck_assert_int_eq(selected[0], 1);
	ck_assert_int_eq(selected[1], 1);
	ck_assert(c->services[0].vip.a[12] == 198 && c->services[0].vip.a[13] == 19);
	nm_cluster_free(c);
}
END_TEST

START_TEST(test_selectors_and_find)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;
	struct nm_addr a;

	ck_assert_msg(load(full_doc, &c, err) == 0, "%s", err);
	const struct nm_service_cfg *prod = &c->services[0], *def = &c->services[1];

	/* prod/echo wants app=echo,tier=backend in prod: only server. */
	ck_assert(!nm_service_selects(prod, &c->workloads[0]));
	ck_assert(nm_service_selects(prod, &c->workloads[1]));
	ck_assert(!nm_service_selects(prod, &c->workloads[2])); /* other ns */
	/* default/echo wants app=echo in default: server2, not prod's server. */
	ck_assert(!nm_service_selects(def, &c->workloads[0]));
	ck_assert(!nm_service_selects(def, &c->workloads[1]));
	ck_assert(nm_service_selects(def, &c->workloads[2]));
	/* A label with the right key but another value does not match. */
	strcpy(c->workloads[2].labels[0].value, "echo2");
	ck_assert(!nm_service_selects(def, &c->workloads[2]));
	/* An empty selector selects nothing, as in Kubernetes. */
	struct nm_service_cfg empty = *def;
	empty.n_selector = 0;
	ck_assert(!nm_service_selects(&empty, &c->workloads[0]));

	ck_assert_int_eq(nm_cluster_find_node(c, "node-a"), 0);
	ck_assert_int_eq(nm_cluster_find_node(c, "node-b.example"), 1);
	ck_assert_int_eq(nm_cluster_find_node(c, "node-c"), -ENOENT);
	ck_assert_int_eq(nm_cluster_find_workload(c, "prod", "server"), 1);
	ck_assert_int_eq(nm_cluster_find_workload(c, "default", "server2"), 2);
	ck_assert_int_eq(nm_cluster_find_workload(c, "default", "server"), -ENOENT);
	a = ip("198.18.2.3");
	ck_assert_int_eq(nm_cluster_find_workload_by_ip(c, &a), 2);
	a = ip("2001:2::1:2");
	ck_assert_int_eq(nm_cluster_find_workload_by_ip(c, &a), 0);
	a = ip("198.19.0.10"); /* a VIP is not a workload */
	ck_assert_int_eq(nm_cluster_find_workload_by_ip(c, &a), -ENOENT);
	a = ip("::"); /* workload 1 has no ip6: its zeroed field never matches */
	ck_assert_int_eq(nm_cluster_find_workload_by_ip(c, &a), -ENOENT);
	nm_cluster_free(c);
}
END_TEST

START_TEST(test_ip_helpers)
{
	static const uint8_t mapped[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
					    0xff, 198, 18, 1, 2 };
	struct nm_addr a;
	char buf[INET6_ADDRSTRLEN], small[5];
	bool v6 = true;

	ck_assert_int_eq(nm_addr_parse("198.18.1.2", &a, &v6), 0);
	ck_assert(!v6);
	ck_assert_mem_eq(a.a, mapped, 16);
	ck_assert(nm_addr_is_v4(&a));
	nm_addr_format(&a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "198.18.1.2");
	nm_addr_format(&a, small, sizeof(small));
	ck_assert_str_eq(small, "198."); /* truncated, still terminated */

	ck_assert_int_eq(nm_addr_parse("2001:2::1", &a, &v6), 0);
	ck_assert(v6);
	ck_assert(!nm_addr_is_v4(&a));
	ck_assert_int_eq(a.a[0], 0x20);
	ck_assert_int_eq(a.a[15], 1);
	nm_addr_format(&a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2001:2::1");
	/* v6 text of a mapped address is stored the same as the v4 text. */
	ck_assert_int_eq(nm_addr_parse("::ffff:198.18.1.2", &a, &v6), 0);
	ck_assert(v6);
	ck_assert_mem_eq(a.a, mapped, 16);
	nm_addr_format(&a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "198.18.1.2");

	const char *bad[] = { "", "1.2.3", "1.2.3.4 ", "256.1.1.1", "01.2.3.4",
			      "::g", "1.2.3.4/24", "[::1]", "localhost" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(nm_addr_parse(bad[i], &a, NULL) == -EINVAL, "%s", bad[i]);
	ck_assert_int_eq(nm_addr_parse(NULL, &a, NULL), -EINVAL);
}
END_TEST

START_TEST(test_sockaddr_parse)
{
	struct sockaddr_storage ss;

	ck_assert_int_eq(nm_sockaddr_parse("1.2.3.4:80", &ss), 0);
	assert_sin(&ss, "1.2.3.4", 80);
	ck_assert_int_eq(nm_sockaddr_parse("[::1]:80", &ss), 0);
	assert_sin6(&ss, "::1", 80);
	ck_assert_int_eq(nm_sockaddr_parse("[2001:2::1]:65535", &ss), 0);
	assert_sin6(&ss, "2001:2::1", 65535);
	ck_assert_int_eq(nm_sockaddr_parse("127.0.0.1:0", &ss), 0);
	assert_sin(&ss, "127.0.0.1", 0);

	const char *bad[] = { "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536",
			      "1.2.3.4:+80", "1.2.3.4:80 ", "1.2.3.4:0080x",
			      "1.2.3.4:000080", "::1:80", "[::1]80", "[::1]:",
			      "[1.2.3.4]:80", "[::1:80", "host:80", ":80", "",
			      "1.2.3.4:80:80", "[fe80::1%eth0]:80" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(nm_sockaddr_parse(bad[i], &ss) == -EINVAL, "%s", bad[i]);
}
END_TEST

START_TEST(test_forward_only)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	ck_assert_msg(load("{" HDR ",'forwards':[" OUT_FWD("") "," IN_FWD("")
			   "]}", &c, err) == 0, "%s", err);
	ck_assert_uint_eq(c->n_nodes, 0);
	ck_assert_uint_eq(c->n_forwards, 2);
	ck_assert_int_eq(c->forwards[1].mode, NM_FWD_INBOUND);
	ck_assert_uint_eq(c->forwards[1].n_allowed_peers, 0); /* any peer in TD */
	nm_cluster_free(c);
}
END_TEST

/* --- errors: each names the file and the exact field ---------------------- */

struct err_case {
	const char *doc;
	const char *want; /* the whole message, or a prefix ending in "..." */
};

static const struct err_case err_cases[] = {
	/* unknown keys, with a hint when the typo is close */
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2", "") ","
	  WL("b", "198.18.1.3", ",'lables':{}") "]}",
	  NAME ": workloads[1].lables: unknown field (did you mean \"labels\"?)" },
	{ "{" HDR ",'colour':1}", NAME ": colour: unknown field" },
	{ "{" HDR ",'mesh':{'outboundport':1}}",
	  NAME ": mesh.outboundport: unknown field (did you mean \"outboundPort\"?)" },
	{ "{" HDR ",'services':[" SVC("s", "198.19.0.1", "") "],'forwards':[]"
	  ",'x y':1}", NAME ": [\"x y\"]: unknown field" },
	{ "{" HDR ",'services':[{'name':'s','namespace':'default',"
	  "'vip':'198.19.0.1','ports':[{'port':80,'protocol':'TCP'}],"
	  "'selector':{'app':'x'}}]}",
	  NAME ": services[0].ports[0].protocol: unknown field" },
	/* types */
	{ "[]", NAME ": expected a JSON object at the top level, got an array" },
	{ "{" HDR ",'mesh':{'outboundPort':'15001'}}",
	  NAME ": mesh.outboundPort: expected an integer, got a string" },
	{ "{" HDR ",'mesh':{'inboundPort':15008.0}}",
	  NAME ": mesh.inboundPort: expected an integer, got a number with a fraction or exponent" },
	{ "{" HDR ",'nodes':{}}", NAME ": nodes: expected an array, got an object" },
	{ "{" HDR ",'workloads':['a']}",
	  NAME ": workloads[0]: expected an object, got a string" },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2", ",'ip6':null") "]}",
	  NAME ": workloads[0].ip6: expected a string, got null" },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2",
	  ",'labels':{'app':1}") "]}",
	  NAME ": workloads[0].labels.app: expected a string, got an integer" },
	{ "{'trustDomain':true,'certDir':'c'}",
	  NAME ": trustDomain: expected a string, got a boolean" },
	/* missing required fields */
	{ "{'certDir':'certs'}", NAME ": trustDomain: missing required field" },
	{ "{'trustDomain':'td'}", NAME ": certDir: missing required field" },
	{ "{" HDR ",'nodes':[{'name':'n1'}]}",
	  NAME ": nodes[0].address: missing required field" },
	{ "{" HDR "," NODES ",'workloads':[{'name':'a','namespace':'default',"
	  "'serviceAccount':'sa','node':'n1'}]}",
	  NAME ": workloads[0].ip: missing required field" },
	{ "{" HDR "," NODES ",'workloads':[{'name':'a','namespace':'default',"
	  "'ip':'198.18.1.2','node':'n1'}]}",
	  NAME ": workloads[0].serviceAccount: missing required field" },
	{ "{" HDR ",'services':[{'name':'s','namespace':'default',"
	  "'vip':'198.19.0.1','ports':[{'port':80}]}]}",
	  NAME ": services[0].selector: missing required field" },
	{ "{" HDR ",'services':[{'name':'s','namespace':'default',"
	  "'vip':'198.19.0.1','selector':{'a':'b'}}]}",
	  NAME ": services[0].ports: missing required field" },
	/* addresses */
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.300", "") "]}",
	  NAME ": workloads[0].ip: \"198.18.1.300\" is not an IPv4 address" },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "2001:2::1", "") "]}",
	  NAME ": workloads[0].ip: \"2001:2::1\" is not an IPv4 address" },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2",
	  ",'ip6':'::ffff:198.18.1.2'") "]}",
	  NAME ": workloads[0].ip6: \"::ffff:198.18.1.2\" is not an IPv6 address" },
	{ "{" HDR ",'nodes':[{'name':'n1','address':'198.18.0.1','address6':'1.2.3.4'}]}",
	  NAME ": nodes[0].address6: \"1.2.3.4\" is not an IPv6 address" },
	{ "{" HDR ",'nodes':[{'name':'n1','address':'0.0.0.0'}]}",
	  NAME ": nodes[0].address: \"0.0.0.0\" cannot be used here (the unspecified address)" },
	{ "{" HDR ",'services':[" SVC("s", "224.0.0.1", "") "]}",
	  NAME ": services[0].vip: \"224.0.0.1\" cannot be used here (a multicast address)" },
	{ "{" HDR ",'services':[" SVC("s", "198.19.0.1", ",'vip6':'ff02::1'") "]}",
	  NAME ": services[0].vip6: \"ff02::1\" cannot be used here (a multicast address)" },
	{ "{" HDR ",'nodes':[{'name':'n1','address':'198.18.0.1\\n'}]}",
	  NAME ": nodes[0].address: \"198.18.0.1\\x0a\" is not an IPv4 address" },
	/* duplicates */
	{ "{" HDR ",'nodes':[{'name':'n1','address':'198.18.0.1'},"
	  "{'name':'n2','address':'198.18.0.2'},{'name':'n1','address':'198.18.0.3'}]}",
	  NAME ": nodes[2].name: \"n1\" is already used by nodes[0]" },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2", "") ","
	  WL("b", "198.18.1.3", "") "," WL("a", "198.18.1.4", "") "]}",
	  NAME ": workloads[2].name: default/a is already used by workloads[0]" },
	{ "{" HDR ",'services':[" SVC("s", "198.19.0.1", "") ","
	  SVC("s", "198.19.0.2", "") "]}",
	  NAME ": services[1].name: default/s is already used by services[0]" },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2", "") ","
	  WL("b", "198.18.1.2", "") "]}",
	  NAME ": workloads[1].ip: 198.18.1.2 is already used by workloads[0].ip" },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.0.2", "") "]}",
	  NAME ": workloads[0].ip: 198.18.0.2 is already used by nodes[1].address" },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2", ",'ip6':'2001:2::7'")
	  "],'services':[" SVC("s", "198.19.0.1", ",'vip6':'2001:2::7'") "]}",
	  NAME ": services[0].vip6: 2001:2::7 is already used by workloads[0].ip6" },
	{ "{" HDR ",'services':[" SVC("s", "198.19.0.1", ",'ports':[{'port':80},"
	  "{'port':81},{'port':80,'targetPort':9}]") "]}",
	  "...duplicate object key..." }, /* 'ports' twice, found by jansson */
	{ "{" HDR ",'services':[{'name':'s','namespace':'default','vip':'198.19.0.1',"
	  "'ports':[{'port':80},{'port':81},{'port':80,'targetPort':9}],"
	  "'selector':{'a':'b'}}]}",
	  NAME ": services[0].ports[2].port: 80 is already used by ports[0]" },
	{ "{" HDR ",'mesh':{'adminPort':15001}}",
	  NAME ": mesh.adminPort: 15001 is already used by mesh.outboundPort" },
	/* references */
	{ "{" HDR "," NODES ",'workloads':[{'name':'a','namespace':'default',"
	  "'serviceAccount':'sa','ip':'198.18.1.2','node':'n3'}]}",
	  NAME ": workloads[0].node: \"n3\" is not a node listed in nodes" },
	{ "{" HDR ",'workloads':[" WL("a", "198.18.1.2", "") "]}",
	  NAME ": workloads[0].node: \"n1\" is not a node listed in nodes" },
	/* ports */
	{ "{" HDR ",'services':[{'name':'s','namespace':'default','vip':'198.19.0.1',"
	  "'ports':[{'port':0}],'selector':{'a':'b'}}]}",
	  NAME ": services[0].ports[0].port: 0 is not a port number (1..65535)" },
	{ "{" HDR ",'services':[{'name':'s','namespace':'default','vip':'198.19.0.1',"
	  "'ports':[{'port':80,'targetPort':65536}],'selector':{'a':'b'}}]}",
	  NAME ": services[0].ports[0].targetPort: 65536 is not a port number (1..65535)" },
	{ "{" HDR ",'mesh':{'outboundPort':-1}}",
	  NAME ": mesh.outboundPort: -1 is not a port number (1..65535)" },
	{ "{" HDR ",'services':[{'name':'s','namespace':'default','vip':'198.19.0.1',"
	  "'ports':[],'selector':{'a':'b'}}]}",
	  NAME ": services[0].ports: must list at least one port" },
	/* names and labels */
	{ "{" HDR "," NODES ",'workloads':[" WL("Client", "198.18.1.2", "") "]}",
	  NAME ": workloads[0].name: \"Client\" is not a valid name (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63)" },
	{ "{" HDR "," NODES ",'workloads':[{'name':'a','namespace':'-x',"
	  "'serviceAccount':'sa','ip':'198.18.1.2','node':'n1'}]}",
	  NAME ": workloads[0].namespace: \"-x\" is not a valid name..." },
	{ "{" HDR "," NODES ",'workloads':[{'name':'a','namespace':'default',"
	  "'serviceAccount':'my.sa','ip':'198.18.1.2','node':'n1'}]}",
	  NAME ": workloads[0].serviceAccount: \"my.sa\" is not a valid name..." },
	{ "{" HDR ",'nodes':[{'name':'Node.1','address':'198.18.0.1'}]}",
	  NAME ": nodes[0].name: \"Node.1\" is not a valid node name..." },
	{ "{" HDR ",'services':[" SVC("", "198.19.0.1", "") "]}",
	  NAME ": services[0].name: \"\" is not a valid name..." },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2",
	  ",'labels':{'-bad':'x'}") "]}",
	  NAME ": workloads[0].labels[\"-bad\"]: \"-bad\" is not a valid label key..." },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2",
	  ",'labels':{'Example.com/app':'x'}") "]}",
	  NAME ": workloads[0].labels[\"Example.com/app\"]: \"Example.com/app\" is not a valid label key..." },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2",
	  ",'labels':{'app':'a b'}") "]}",
	  NAME ": workloads[0].labels.app: \"a b\" is not a valid label value..." },
	{ "{" HDR ",'services':[" SVC("s", "198.19.0.1", "") "],"
	  "'workloads':[],'nodes':[],'mesh':{},'forwards':[]}", NULL }, /* valid */
	{ "{" HDR ",'services':[{'name':'s','namespace':'default',"
	  "'vip':'198.19.0.1','ports':[{'port':80}],'selector':{}}]}",
	  NAME ": services[0].selector: must name at least one label" },
	{ "{'trustDomain':'Cluster.Local','certDir':'c'}",
	  NAME ": trustDomain: \"Cluster.Local\" is not a valid trust domain..." },
	{ "{'trustDomain':'a..b','certDir':'c'}",
	  NAME ": trustDomain: \"a..b\" is not a valid trust domain..." },
	{ "{'trustDomain':'td','certDir':''}", NAME ": certDir: must not be empty" },
	{ "{" HDR ",'mesh':{'failMode':'maybe'}}",
	  NAME ": mesh.failMode: \"maybe\" is not \"closed\" or \"open\"" },
	/* cgroup paths */
	{ "{" HDR ",'nodes':[{'name':'n1','address':'198.18.0.1','cgroupRoot':'a/../../b'}]}",
	  NAME ": nodes[0].cgroupRoot: \"a/../../b\" must not contain \"..\"" },
	{ "{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2", ",'cgroup':''") "]}",
	  NAME ": workloads[0].cgroup: must not be empty (leave the field out instead)" },
	/* JSON syntax, duplicate keys, NUL */
	{ "{" HDR ",}", NAME ": line 1, column ..." },
	{ "{" HDR ",'trustDomain':'x'}", "...duplicate object key..." },
	{ "{'trustDomain':'a\\u0000b','certDir':'c'}", NAME ": line 1, column ..." },
	{ "", NAME ": line 1, column 0: '[' or '{' expected near end of file" },
	/* forwards */
	{ "{" HDR ",'forwards':[{'name':'db','mode':'outbound',"
	  "'listen':'127.0.0.1:1','destination':'127.0.0.1:2','identity':'a/b',"
	  "'peerIdentity':'spiffe://cluster.local/ns/a/sa/c'}]}",
	  NAME ": forwards[0].peer: missing required field" },
	{ "{" HDR ",'forwards':[{'name':'db','mode':'outbound',"
	  "'listen':'127.0.0.1:1','peer':'127.0.0.1:3','destination':'127.0.0.1:2',"
	  "'identity':'a/b'}]}",
	  NAME ": forwards[0].peerIdentity: missing required field" },
	{ "{" HDR ",'forwards':[{'name':'db','mode':'inbound','destination':'127.0.0.1:2',"
	  "'identity':'a/b'}]}",
	  NAME ": forwards[0].listen: missing required field" },
	{ "{" HDR ",'forwards':[{'name':'db','mode':'sideways'}]}",
	  NAME ": forwards[0].mode: \"sideways\" is not \"outbound\" or \"inbound\"" },
	{ "{" HDR ",'forwards':[" IN_FWD(",'peer':'127.0.0.1:9'") "]}",
	  NAME ": forwards[0].peer: only outbound forwards have a peer" },
	{ "{" HDR ",'forwards':[" IN_FWD(",'peerIdentity':'spiffe://cluster.local/ns/a/sa/b'") "]}",
	  NAME ": forwards[0].peerIdentity: only outbound forwards have a peerIdentity (inbound ones use allowedPeers)" },
	{ "{" HDR ",'forwards':[" OUT_FWD(",'allowedPeers':[]") "]}",
	  NAME ": forwards[0].allowedPeers: only inbound forwards have allowedPeers (outbound ones use peerIdentity)" },
	{ "{" HDR ",'forwards':[{'name':'db','mode':'outbound',"
	  "'listen':'127.0.0.1:1','peer':'127.0.0.1:3','destination':'127.0.0.1:2',"
	  "'identity':'a/b','peerIdentity':'spiffe://other.org/ns/a/sa/b'}]}",
	  NAME ": forwards[0].peerIdentity: \"spiffe://other.org/ns/a/sa/b\" is in trust domain \"other.org\", not \"cluster.local\"" },
	{ "{" HDR ",'forwards':[{'name':'db','mode':'outbound',"
	  "'listen':'127.0.0.1:1','peer':'127.0.0.1:3','destination':'127.0.0.1:2',"
	  "'identity':'a/b','peerIdentity':'spiffe://cluster.local/sa/b/ns/a'}]}",
	  NAME ": forwards[0].peerIdentity: \"spiffe://cluster.local/sa/b/ns/a\" is not a SPIFFE ID of the form spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT (path does not start with /ns/)" },
	{ "{" HDR ",'forwards':[{'name':'db','mode':'outbound',"
	  "'listen':'127.0.0.1:1','peer':'127.0.0.1:3','destination':'127.0.0.1:2',"
	  "'identity':'a/b','peerIdentity':'spiffe://cluster.local/ns/a/sa/B'}]}",
	  NAME ": forwards[0].peerIdentity: \"spiffe://cluster.local/ns/a/sa/B\" is not a SPIFFE ID of the form spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT (upper-case letters are not allowed)" },
	{ "{" HDR ",'forwards':[" IN_FWD(",'allowedPeers':['spiffe://cluster.local/ns/a/sa/b',"
	  "'spiffe://cluster.local/ns/a/sa/b']") "]}",
	  NAME ": forwards[0].allowedPeers[1]: \"spiffe://cluster.local/ns/a/sa/b\" is already listed in allowedPeers[0]" },
	{ "{" HDR ",'forwards':[" IN_FWD(",'allowedPeers':[7]") "]}",
	  NAME ": forwards[0].allowedPeers[0]: expected a string, got an integer" },
	{ "{" HDR ",'forwards':[{'name':'db','mode':'inbound','listen':'127.0.0.1:1',"
	  "'destination':'127.0.0.1:2','identity':'default'}]}",
	  NAME ": forwards[0].identity: \"default\" is not \"namespace/serviceAccount\" (two DNS labels)" },
	{ "{" HDR ",'forwards':[{'name':'db','mode':'inbound','listen':'127.0.0.1',"
	  "'destination':'127.0.0.1:2','identity':'a/b'}]}",
	  NAME ": forwards[0].listen: \"127.0.0.1\" is not an address:port (like \"127.0.0.1:8080\" or \"[::1]:8080\")" },
	{ "{" HDR ",'forwards':[{'name':'db','mode':'inbound','listen':'127.0.0.1:0',"
	  "'destination':'127.0.0.1:2','identity':'a/b'}]}",
	  NAME ": forwards[0].listen: \"127.0.0.1:0\": port 0 is not allowed" },
	{ "{" HDR ",'forwards':[{'name':'db','mode':'inbound','listen':'0.0.0.0:1',"
	  "'destination':'0.0.0.0:2','identity':'a/b'}]}",
	  NAME ": forwards[0].destination: \"0.0.0.0:2\": cannot connect to the unspecified address" },
	{ "{" HDR ",'forwards':[" OUT_FWD("") "," OUT_FWD("") "]}",
	  NAME ": forwards[1].name: \"db\" is already used by forwards[0]" },
	{ "{" HDR ",'forwards':[" IN_FWD("") ",{'name':'other','mode':'inbound',"
	  "'listen':'127.0.0.1:31046','destination':'127.0.0.1:2','identity':'a/b'}]}",
	  NAME ": forwards[1].listen: 127.0.0.1:31046 is already used by forwards[0]" },
};

START_TEST(test_errors)
{
	const struct err_case *tc = &err_cases[_i];
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	if (!tc->want) {
		ck_assert_msg(load(tc->doc, &c, err) == 0, "case %d: %s", _i, err);
		nm_cluster_free(c);
		return;
	}
	const char *got = load_err(tc->doc);
	size_t wl = strlen(tc->want);

	/* Every message starts with the file name. */
	ck_assert_msg(strncmp(got, NAME ": ", strlen(NAME) + 2) == 0,
		      "case %d: %s", _i, got);
	if (strncmp(tc->want, "...", 3) == 0) {
		char mid[NM_ERRMSG_MAX];

		snprintf(mid, sizeof(mid), "%.*s", (int)(wl - 6), tc->want + 3);
		ck_assert_msg(strstr(got, mid), "case %d: got %s", _i, got);
	} else if (wl > 3 && strcmp(tc->want + wl - 3, "...") == 0) {
		ck_assert_msg(strncmp(got, tc->want, wl - 3) == 0,
			      "case %d: got  %s\nwant %s", _i, got, tc->want);
	} else {
		ck_assert_msg(strcmp(got, tc->want) == 0,
			      "case %d: got  %s\nwant %s", _i, got, tc->want);
	}
}
END_TEST

/* Limits: one over each fixed-size array and string is an error, never a cut. */
START_TEST(test_limits)
{
	char doc[16384], list[8192], err[NM_ERRMSG_MAX], name[80];
	struct nm_cluster *c = NULL;
	size_t o;
	int i;

	/* 16 labels fit, 17 do not. */
	for (int n = 16; n <= 17; n++) {
		o = 0;
		for (i = 0; i < n; i++)
			o += snprintf(list + o, sizeof(list) - o, "%s'k%d':'v'",
				      i ? "," : "", i);
		snprintf(doc, sizeof(doc), "{" HDR "," NODES ",'workloads':["
			 "{'name':'a','namespace':'default','serviceAccount':'sa',"
			 "'ip':'198.18.1.2','node':'n1','labels':{%s}}]}", list);
		if (n == 16) {
			ck_assert_msg(load(doc, &c, err) == 0, "%s", err);
			ck_assert_uint_eq(c->workloads[0].n_labels, 16);
			ck_assert_str_eq(c->workloads[0].labels[15].key, "k15");
			nm_cluster_free(c);
		} else {
			ck_assert_str_eq(load_err(doc),
					 NAME ": workloads[0].labels: too many labels (17, at most 16)");
		}
	}

	/* 17 ports */
	o = 0;
	for (i = 0; i < 17; i++)
		o += snprintf(list + o, sizeof(list) - o, "%s{'port':%d}",
			      i ? "," : "", 100 + i);
	snprintf(doc, sizeof(doc), "{" HDR ",'services':[{'name':'s','namespace':'d',"
		 "'vip':'198.19.0.1','selector':{'a':'b'},'ports':[%s]}]}", list);
	ck_assert_str_eq(load_err(doc),
			 NAME ": services[0].ports: too many ports (17, at most 16)");

	/* 65 forwards */
	o = 0;
	for (i = 0; i < 65; i++)
		o += snprintf(list + o, sizeof(list) - o,
			      "%s{'name':'f%d','mode':'inbound','listen':'127.0.0.1:%d',"
			      "'destination':'127.0.0.1:1','identity':'a/b'}",
			      i ? "," : "", i, 1000 + i);
	snprintf(doc, sizeof(doc), "{" HDR ",'forwards':[%s]}", list);
	ck_assert_str_eq(load_err(doc),
			 NAME ": forwards: too many forwards (65, at most 64)");

	/* 9 allowed peers */
	o = 0;
	for (i = 0; i < 9; i++)
		o += snprintf(list + o, sizeof(list) - o,
			      "%s'spiffe://cluster.local/ns/a/sa/s%d'", i ? "," : "", i);
	snprintf(doc, sizeof(doc), "{" HDR ",'forwards':[" IN_FWD(",'allowedPeers':[%s]") "]}",
		 list);
	ck_assert_str_eq(load_err(doc),
			 NAME ": forwards[0].allowedPeers: too many peers (9, at most 8)");

	/* A 63-byte name fits; 64 bytes is refused, not truncated. */
	memset(name, 'a', 63);
	name[63] = '\0';
	snprintf(doc, sizeof(doc), "{" HDR ",'services':[{'name':'%s','namespace':'d',"
		 "'vip':'198.19.0.1','ports':[{'port':1}],'selector':{'a':'b'}}]}", name);
	ck_assert_msg(load(doc, &c, err) == 0, "%s", err);
	ck_assert_str_eq(c->services[0].name, name);
	nm_cluster_free(c);
	strcat(name, "a");
	snprintf(doc, sizeof(doc), "{" HDR ",'services':[{'name':'%s','namespace':'d',"
		 "'vip':'198.19.0.1','ports':[{'port':1}],'selector':{'a':'b'}}]}", name);
	const char *e = load_err(doc);
	ck_assert_msg(strncmp(e, NAME ": services[0].name: \"aaaa", 25) == 0, "%s", e);
	ck_assert_ptr_nonnull(strstr(e, "is too long (64 bytes, at most 63)"));

	/* A long value is shown cut with "..." but the message says so. */
	char longv[300];
	memset(longv, 'x', 299);
	longv[299] = '\0';
	snprintf(doc, sizeof(doc), "{" HDR ",'mesh':{'failMode':'%s'}}", longv);
	e = load_err(doc);
	ck_assert_ptr_nonnull(strstr(e, "xxx\"... is not \"closed\""));
	ck_assert_uint_lt(strlen(e), 200);

	/* A label value of 64 bytes does not fit either. */
	snprintf(doc, sizeof(doc), "{" HDR ",'services':[{'name':'s','namespace':'d',"
		 "'vip':'198.19.0.1','ports':[{'port':1}],'selector':{'a':'%s'}}]}", name);
	e = load_err(doc);
	ck_assert_msg(strncmp(e, NAME ": services[0].selector.a: ", 34) == 0, "%s", e);
	ck_assert_ptr_nonnull(strstr(e, "too long"));

	/* certDir that only gets too long once resolved. */
	memset(longv, 'c', 250);
	longv[250] = '\0';
	char fname[300];
	memset(fname, 'd', 270);
	strcpy(fname + 270, "/x.json");
	snprintf(doc, sizeof(doc), "{\"trustDomain\":\"td\",\"certDir\":\"%s\"}", longv);
	ck_assert_int_eq(nm_cluster_load_buf(doc, strlen(doc), fname, &c, err,
					     sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, ": certDir: \"ccc"));
	ck_assert_ptr_nonnull(strstr(err, "is too long"));
}
END_TEST

START_TEST(test_api_edges)
{
	char err[NM_ERRMSG_MAX], tiny[8];
	struct nm_cluster *c = (void *)1;
	const char doc[] = "{\"x\":1}";

	/* A short error buffer is cut but terminated; NULL is allowed. */
	ck_assert_int_eq(nm_cluster_load_buf(doc, strlen(doc), NAME, &c, tiny,
					     sizeof(tiny)), -EINVAL);
	ck_assert_str_eq(tiny, "cluster");
	ck_assert_int_eq(nm_cluster_load_buf(doc, strlen(doc), NAME, &c, NULL, 0),
			 -EINVAL);
	/* Only len bytes are read: the trailing garbage is never seen. */
	ck_assert_int_eq(nm_cluster_load_buf("{\"trustDomain\":\"td\",\"certDir\":\"c\"}garbage",
					     34, "b.json", &c, err, sizeof(err)), 0);
	nm_cluster_free(c);
	ck_assert_int_eq(nm_cluster_load_buf(NULL, 0, "null.json", &c, err,
					     sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "null.json: line 1"));
	nm_cluster_free(NULL);
	ck_assert_int_eq(nm_cluster_find_node(NULL, "x"), -ENOENT);

	/* Small files that would cost jansson gigabytes are refused up front. */
	size_t n = 600000, len = 0;
	char *big = malloc(4 * n);
	ck_assert_ptr_nonnull(big);
	big[len++] = '[';
	for (size_t i = 0; i < n; i++) {
		memcpy(big + len, "{},", 3);
		len += 3;
	}
	big[len - 1] = ']';
	ck_assert_int_eq(nm_cluster_load_buf(big, len, NAME, &c, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_eq(err, NAME ": file is too complex (600001 objects and arrays, at most 524288)");
	/* ...but brackets inside strings are text, not structure. */
	len = (size_t)snprintf(big, 4 * n, "{\"trustDomain\":\"td\",\"certDir\":\"");
	for (size_t i = 0; i < n; i++) {
		memcpy(big + len, "{\\\"", 3); /* {\" inside the string */
		len += 3;
	}
	memcpy(big + len, "\"}", 2);
	len += 2;
	ck_assert_int_eq(nm_cluster_load_buf(big, len, NAME, &c, err, sizeof(err)),
			 -EINVAL);
	ck_assert_msg(strstr(err, NAME ": certDir: ") == err, "%s", err);
	ck_assert_ptr_nonnull(strstr(err, "is too long"));
	free(big);
}
END_TEST

/* --- special files: refused at once, never a blocking open ---------------- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Loads path, which is not a regular file: -EINVAL, "PATH: not a regular
 * file", well within a second. Before the non-blocking open a FIFO without
 * a writer blocked open() forever (Check's timeout then fails the test).
 */
static void assert_refused_fast(const char *path)
{
	char err[NM_ERRMSG_MAX], want[NM_ERRMSG_MAX];
	struct nm_cluster *c = (void *)1;
	double t0 = now_s(), dt;
	int ret;

	ret = nm_cluster_load_file(path, &c, err, sizeof(err));
	dt = now_s() - t0;
	ck_assert_msg(ret == -EINVAL, "%s: got %d (%s)", path, ret, err);
	ck_assert_ptr_null(c);
	snprintf(want, sizeof(want), "%s: not a regular file", path);
	ck_assert_str_eq(err, want);
	ck_assert_msg(dt < 0.5, "%s: took %.3f s", path, dt);
}

START_TEST(test_load_special_files)
{
	char dir[] = "/tmp/check_config.XXXXXX", fifo[256], sub[256];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/cluster.json", dir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	assert_refused_fast(fifo);
	/* A second try is just as quick: nothing was left waiting. */
	assert_refused_fast(fifo);
	unlink(fifo);

	/* A directory where the file should be (e.g. a mis-mounted ConfigMap). */
	snprintf(sub, sizeof(sub), "%s/cluster.json", dir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	assert_refused_fast(sub);
	rmdir(sub);

	/* A character device: /dev/zero would never end, /dev/null looks empty. */
	assert_refused_fast("/dev/zero");
	assert_refused_fast("/dev/null");
	rmdir(dir);
}
END_TEST

/* --- SPIFFE IDs: the config accepts exactly what lib/spiffe accepts ------- */

static const char *forward_with_peer(const char *id, char *doc, size_t len)
{
	snprintf(doc, len,
		 "{\"trustDomain\":\"cluster.local\",\"certDir\":\"c\",\"forwards\":["
		 "{\"name\":\"db\",\"mode\":\"outbound\",\"listen\":\"127.0.0.1:1\","
		 "\"peer\":\"127.0.0.1:2\",\"destination\":\"127.0.0.1:3\","
		 "\"identity\":\"a/b\",\"peerIdentity\":\"%s\"}]}", id);
	return doc;
}

START_TEST(test_spiffe_one_validator)
{
	static const char *const ids[] = {
		"spiffe://cluster.local/ns/default/sa/client",
		"spiffe://cluster.local/ns/kube-system/sa/my.sa", /* dots: TLS accepts */
		"spiffe://cluster.local/ns/a_b/sa/c",
		"spiffe://cluster.local/ns/a/sa/b/",
		"spiffe://cluster.local/ns/a/sa/b/c",
		"spiffe://cluster.local/ns/a/sa/..",
		"spiffe://cluster.local/ns/./sa/b",
		"spiffe://cluster.local:8443/ns/a/sa/b",
		"spiffe://cluster.local/ns/a/sa/b?x=1",
		"spiffe://cluster.local/ns/a/sa/b#f",
		"spiffe://cluster.local/ns/a/sa/%62",
		"spiffe://user@cluster.local/ns/a/sa/b",
		"spiffe://CLUSTER.local/ns/a/sa/b",
		"SPIFFE://cluster.local/ns/a/sa/b",
		"spiffe://cluster.local//ns/a/sa/b",
		"spiffe://cluster.local/ns/a",
		"spiffe://cluster.local",
		"spiffe:///ns/a/sa/b",
		"spiffe://other.org/ns/a/sa/b",
		"spiffe://cluster.local./ns/a/sa/b",
		"https://cluster.local/ns/a/sa/b",
		"",
	};
	char doc[1024], err[NM_ERRMSG_MAX];

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		struct nm_spiffe_id id;
		struct nm_cluster *c = NULL;
		const char *why = NULL;
		bool lib_ok = nm_spiffe_parse(ids[i], &id, &why) == 0 &&
			      strcmp(id.trust_domain, "cluster.local") == 0;
		int ret;

		forward_with_peer(ids[i], doc, sizeof(doc));
		ret = nm_cluster_load_buf(doc, strlen(doc), NAME, &c, err, sizeof(err));
		ck_assert_msg((ret == 0) == lib_ok, "%s: config %d (%s), lib %s",
			      ids[i], ret, ret ? err : "", why ? why : "ok");
		if (ret == 0) {
			ck_assert_str_eq(c->forwards[0].peer_identity, ids[i]);
			nm_cluster_free(c);
			continue;
		}
		ck_assert_ptr_nonnull(strstr(err, NAME ": forwards[0].peerIdentity: "));
		/* The message carries the validator's own reason. */
		if (why)
			ck_assert_msg(strstr(err, why), "%s: %s lacks %s", ids[i], err, why);
		else
			ck_assert_ptr_nonnull(strstr(err, "is in trust domain"));
	}

	/* allowedPeers go through the same validator, entry by entry. */
	ck_assert_str_eq(load_err("{" HDR ",'forwards':[" IN_FWD(",'allowedPeers':["
				  "'spiffe://cluster.local/ns/a/sa/b',"
				  "'spiffe://cluster.local:1/ns/a/sa/b']") "]}"),
			 NAME ": forwards[0].allowedPeers[1]: \"spiffe://cluster.local:1/ns/a/sa/b\" is not a SPIFFE ID of the form spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT (port is not allowed)");
	ck_assert_str_eq(load_err("{" HDR ",'forwards':[" IN_FWD(",'allowedPeers':["
				  "'spiffe://cluster.locall/ns/a/sa/b']") "]}"),
			 NAME ": forwards[0].allowedPeers[0]: \"spiffe://cluster.locall/ns/a/sa/b\" is in trust domain \"cluster.locall\", not \"cluster.local\"");
}
END_TEST

/* --- optional cgroup: the parser and docs/config.md agree ----------------- */

START_TEST(test_optional_cgroup)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	/* A local workload (its node has a datapath) without "cgroup". */
	ck_assert_msg(load("{" HDR ",'nodes':[{'name':'n1','address':'198.18.0.1',"
			   "'cgroupRoot':'nm/n1'}],'workloads':["
			   WL("a", "198.18.1.2", "") ","
			   WL("b", "198.18.1.3", ",'cgroup':'nm/n1/b'") "]}",
			   &c, err) == 0, "%s", err);
	ck_assert_uint_eq(c->n_workloads, 2);
	ck_assert_str_eq(c->workloads[0].cgroup, "");
	ck_assert_str_eq(c->workloads[1].cgroup, "nm/n1/b");
	ck_assert_str_eq(c->nodes[0].cgroup_root, "nm/n1");
	nm_cluster_free(c);
}
END_TEST

/*
 * Reads the field table of docs/config.md's "## <section>" and checks each
 * row against the parser: leaving out a field the docs call optional still
 * loads; leaving out a required one fails with "missing required field".
 */
static char *read_doc(const char *rel)
{
	const char *self = __FILE__;
	const char *tail = strstr(self, "tests/unit/check_config.c");
	char path[512];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%.*s%s", tail ? (int)(tail - self) : 0,
		 self, rel);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s", path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

struct doc_item {
	const char *section;  /* "## <section>" heading */
	const char *prefix;   /* document before the item */
	const char *fields[8][2]; /* key, JSON value */
	const char *suffix;
};

static void check_doc_table(const char *docs, const struct doc_item *it)
{
	char heading[64], *sec, *end, doc[2048];
	unsigned int rows = 0;

	snprintf(heading, sizeof(heading), "\n## %s\n", it->section);
	sec = strstr(docs, heading);
	ck_assert_msg(sec != NULL, "docs/config.md has no %s", heading);
	sec += strlen(heading);
	end = strstr(sec, "\n## ");
	for (size_t i = 0; i < 8 && it->fields[i][0]; i++) {
		char row[96], *r, *req;
		size_t o;

		snprintf(row, sizeof(row), "\n| `%s` | ", it->fields[i][0]);
		r = strstr(sec, row);
		ck_assert_msg(r && (!end || r < end), "%s: no row for %s",
			      it->section, it->fields[i][0]);
		/* | `key` | type | required | meaning | */
		req = strchr(r + strlen(row), '|');
		ck_assert_ptr_nonnull(req);
		req += 2;
		o = (size_t)snprintf(doc, sizeof(doc), "%s{", it->prefix);
		for (size_t k = 0; k < 8 && it->fields[k][0]; k++) {
			if (k == i)
				continue;
			o += (size_t)snprintf(doc + o, sizeof(doc) - o, "%s\"%s\":%s",
					      doc[o - 1] == '{' ? "" : ",",
					      it->fields[k][0], it->fields[k][1]);
		}
		snprintf(doc + o, sizeof(doc) - o, "}%s", it->suffix);

		char err[NM_ERRMSG_MAX];
		struct nm_cluster *c = NULL;
		int ret = nm_cluster_load_buf(doc, strlen(doc), NAME, &c, err,
					      sizeof(err));

		if (strncmp(req, "no ", 3) == 0) {
			ck_assert_msg(ret == 0, "%s.%s is optional in the docs: %s",
				      it->section, it->fields[i][0], err);
			nm_cluster_free(c);
		} else {
			ck_assert_msg(strncmp(req, "yes ", 4) == 0, "%s.%s: %.10s",
				      it->section, it->fields[i][0], req);
			ck_assert_msg(ret == -EINVAL && strstr(err, "missing required field"),
				      "%s.%s is required in the docs: %d %s",
				      it->section, it->fields[i][0], ret, err);
		}
		rows++;
	}
	ck_assert_uint_gt(rows, 3);
}

START_TEST(test_docs_agree)
{
	static const struct doc_item items[] = {
		{ "nodes",
		  "{\"trustDomain\":\"td\",\"certDir\":\"c\",\"nodes\":[",
		  { { "name", "\"n1\"" }, { "address", "\"198.18.0.1\"" },
		    { "address6", "\"2001:2::1\"" },
		    { "cgroupRoot", "\"nm/n1\"" } },
		  "]}" },
		{ "workloads",
		  "{\"trustDomain\":\"td\",\"certDir\":\"c\",\"nodes\":[{\"name\":"
		  "\"n1\",\"address\":\"198.18.0.1\",\"cgroupRoot\":\"nm/n1\"}],"
		  "\"workloads\":[",
		  { { "name", "\"a\"" }, { "namespace", "\"default\"" },
		    { "serviceAccount", "\"sa\"" }, { "labels", "{\"app\":\"a\"}" },
		    { "ip", "\"198.18.1.2\"" }, { "ip6", "\"2001:2::2\"" },
		    { "node", "\"n1\"" }, { "cgroup", "\"nm/n1/a\"" } },
		  "]}" },
		{ "services",
		  "{\"trustDomain\":\"td\",\"certDir\":\"c\",\"services\":[",
		  { { "name", "\"s\"" }, { "namespace", "\"default\"" },
		    { "vip", "\"198.19.0.1\"" }, { "vip6", "\"2001:2::10\"" },
		    { "ports", "[{\"port\":80}]" },
		    { "selector", "{\"app\":\"a\"}" } },
		  "]}" },
	};
	char *docs = read_doc("docs/config.md");

	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++)
		check_doc_table(docs, &items[i]);
	free(docs);
}
END_TEST

/* --- mesh.limits ----------------------------------------------------------- */

/* policyDir, policy.applyToExisting, mesh.rootNamespace (docs/policy.md). */
START_TEST(test_policy_fields)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	ck_assert_msg(load("{" HDR "}", &c, err) == 0, "%s", err);
	ck_assert_str_eq(c->policy_dir, "");
	ck_assert(!c->policy_apply_to_existing);
	ck_assert_str_eq(c->mesh.root_ns, "istio-system");
	nm_cluster_free(c);

	ck_assert_msg(load("{" HDR ",'policyDir':'policies','policy':{'applyToExisting':true},"
			   "'mesh':{'rootNamespace':'mesh-root'}}", &c, err) == 0, "%s", err);
	ck_assert_str_eq(c->policy_dir, "policies"); /* NAME has no folder */
	ck_assert(c->policy_apply_to_existing);
	ck_assert_str_eq(c->mesh.root_ns, "mesh-root");
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'policy':{'applyToExisting':false}}", &c, err) == 0,
		      "%s", err);
	ck_assert(!c->policy_apply_to_existing);
	nm_cluster_free(c);

	ck_assert_str_eq(load_err("{" HDR ",'policy':{'applyToExisting':'yes'}}"),
			 NAME ": policy.applyToExisting: expected true or false, got a string");
	ck_assert_ptr_nonnull(strstr(load_err("{" HDR ",'policy':{'apply':true}}"),
				     NAME ": policy.apply"));
	ck_assert_ptr_nonnull(strstr(load_err("{" HDR ",'policyDir':''}"),
				     NAME ": policyDir: must not be empty"));
	ck_assert_ptr_nonnull(strstr(load_err("{" HDR ",'mesh':{'rootNamespace':'Bad_NS'}}"),
				     NAME ": mesh.rootNamespace: \"Bad_NS\" is not a Kubernetes namespace name"));
}
END_TEST

/* mesh.preserveSourceAddress (mesh/srcaddr.h): default true, a boolean. */
START_TEST(test_preserve_source_address)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	ck_assert_msg(load("{" HDR "}", &c, err) == 0, "%s", err);
	ck_assert(c->mesh.preserve_src);
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'mesh':{'preserveSourceAddress':false}}", &c, err) == 0,
		      "%s", err);
	ck_assert(!c->mesh.preserve_src);
	nm_cluster_free(c);
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'preserveSourceAddress':1}}"),
			 NAME ": mesh.preserveSourceAddress: expected true or false, got an integer");
}
END_TEST

/* mesh.tunnelPool (mesh/pool.h): defaults, values, ranges, unknown keys. */
START_TEST(test_mesh_tunnel_pool)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	ck_assert_msg(load("{" HDR "}", &c, err) == 0, "%s", err);
	ck_assert_uint_eq(c->mesh.tunnel_pool.size, 2);
	ck_assert_uint_eq(c->mesh.tunnel_pool.idle_ms, 8000);
	ck_assert_uint_eq(c->mesh.tunnel_pool.max_total, 256);
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'mesh':{'tunnelPool':{'size':0}}}", &c, err) == 0,
		      "%s", err);
	ck_assert_uint_eq(c->mesh.tunnel_pool.size, 0);
	ck_assert_uint_eq(c->mesh.tunnel_pool.idle_ms, 8000); /* others keep defaults */
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'mesh':{'tunnelPool':{'size':64,'idleTimeoutMs':9000,"
			   "'maxConnections':1}}}", &c, err) == 0, "%s", err);
	ck_assert_uint_eq(c->mesh.tunnel_pool.size, 64);
	ck_assert_uint_eq(c->mesh.tunnel_pool.idle_ms, 9000);
	ck_assert_uint_eq(c->mesh.tunnel_pool.max_total, 1);
	nm_cluster_free(c);

	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'tunnelPool':{'size':65}}}"),
			 NAME ": mesh.tunnelPool.size: 65 is not a pool size (0..64 per key; 0 = no pool)");
	/* The peer agent waits 10 s for the preamble: 9 s at most. */
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'tunnelPool':{'idleTimeoutMs':10000}}}"),
			 NAME ": mesh.tunnelPool.idleTimeoutMs: 10000 is not a timeout in ms (100..9000, below the peer agent's 10 s preamble wait)");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'tunnelPool':{'maxConnections':0}}}"),
			 NAME ": mesh.tunnelPool.maxConnections: 0 is not a connection count (1..100000)");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'tunnelPool':{'size':'2'}}}"),
			 NAME ": mesh.tunnelPool.size: expected an integer, got a string");
	ck_assert_ptr_nonnull(strstr(load_err("{" HDR ",'mesh':{'tunnelPool':{'sizes':2}}}"),
				     NAME ": mesh.tunnelPool.sizes: unknown field"));
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'tunnelPool':2}}"),
			 NAME ": mesh.tunnelPool: expected an object, got an integer");
}
END_TEST

/* mesh.kernelPath (docs/kernel-path.md): default true, a boolean. */
START_TEST(test_kernel_path)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	ck_assert_msg(load("{" HDR "}", &c, err) == 0, "%s", err);
	ck_assert(c->mesh.kernel_path);
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'mesh':{'kernelPath':false}}", &c, err) == 0,
		      "%s", err);
	ck_assert(!c->mesh.kernel_path);
	nm_cluster_free(c);
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'kernelPath':'no'}}"),
			 NAME ": mesh.kernelPath: expected true or false, got a string");
}
END_TEST

/* mesh.relay (mesh/zerocopy.h): default auto, one of four names. */
START_TEST(test_mesh_relay)
{
	static const char *const names[] = { "auto", "sockmap", "splice", "copy" };
	char err[NM_ERRMSG_MAX], doc[256];
	struct nm_cluster *c = NULL;

	ck_assert_msg(load("{" HDR "}", &c, err) == 0, "%s", err);
	ck_assert_int_eq(c->mesh.relay, NM_RELAY_AUTO);
	nm_cluster_free(c);
	for (int i = 0; i < 4; i++) {
		snprintf(doc, sizeof(doc), "{" HDR ",'mesh':{'relay':'%s'}}", names[i]);
		ck_assert_msg(load(doc, &c, err) == 0, "%s", err);
		ck_assert_int_eq(c->mesh.relay, i);
		nm_cluster_free(c);
	}
	ck_assert_int_eq(NM_RELAY_SPLICE, 2);
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'relay':'fast'}}"),
			 NAME ": mesh.relay: \"fast\" is not \"auto\", \"sockmap\", \"splice\" or \"copy\"");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'relay':1}}"),
			 NAME ": mesh.relay: expected a string, got an integer");
}
END_TEST

/* mesh.ktls (mesh/ktls.h) and mesh.busyPoll: defaults auto and 0. */
START_TEST(test_ktls_busy_poll)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	ck_assert_msg(load("{" HDR "}", &c, err) == 0, "%s", err);
	ck_assert(!c->mesh.ktls_off);
	ck_assert_uint_eq(c->mesh.busy_poll_us, 0);
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'mesh':{'ktls':'off','busyPoll':50}}", &c, err) == 0,
		      "%s", err);
	ck_assert(c->mesh.ktls_off);
	ck_assert_uint_eq(c->mesh.busy_poll_us, 50);
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'mesh':{'ktls':'auto'}}", &c, err) == 0, "%s", err);
	ck_assert(!c->mesh.ktls_off);
	nm_cluster_free(c);
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'ktls':'on'}}"),
			 NAME ": mesh.ktls: \"on\" is not \"auto\" or \"off\"");
	ck_assert_ptr_nonnull(strstr(load_err("{" HDR ",'mesh':{'ktls':true}}"),
				     "mesh.ktls"));
	ck_assert_ptr_nonnull(strstr(load_err("{" HDR ",'mesh':{'busyPoll':-1}}"),
				     "mesh.busyPoll"));
	ck_assert_ptr_nonnull(strstr(load_err("{" HDR ",'mesh':{'busyPoll':1000001}}"),
				     "mesh.busyPoll"));
	/* mesh.tlsRecords: auto (default) or openssl. */
	ck_assert_msg(load("{" HDR "}", &c, err) == 0, "%s", err);
	ck_assert(!c->mesh.tls_records_openssl);
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'mesh':{'tlsRecords':'openssl'}}", &c, err) == 0, "%s", err);
	ck_assert(c->mesh.tls_records_openssl);
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'mesh':{'tlsRecords':'auto'}}", &c, err) == 0, "%s", err);
	ck_assert(!c->mesh.tls_records_openssl);
	nm_cluster_free(c);
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'tlsRecords':'agent'}}"),
			 NAME ": mesh.tlsRecords: \"agent\" is not \"auto\" or \"openssl\"");
	ck_assert_ptr_nonnull(strstr(load_err("{" HDR ",'mesh':{'tlsRecords':1}}"),
				     "mesh.tlsRecords"));
	/* mesh.tlsEcMethods: auto (default) or provider. */
	ck_assert_msg(load("{" HDR "}", &c, err) == 0, "%s", err);
	ck_assert(!c->mesh.tls_ec_provider);
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'mesh':{'tlsEcMethods':'provider'}}", &c, err) == 0, "%s", err);
	ck_assert(c->mesh.tls_ec_provider);
	nm_cluster_free(c);
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'tlsEcMethods':'builtin'}}"),
			 NAME ": mesh.tlsEcMethods: \"builtin\" is not \"auto\" or \"provider\"");
}
END_TEST

START_TEST(test_mesh_limits)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	/* Absent: all 0, the agent derives them from RLIMIT_NOFILE. */
	ck_assert_msg(load("{" HDR ",'mesh':{'failMode':'open'}}", &c, err) == 0,
		      "%s", err);
	ck_assert_uint_eq(c->mesh.limits.max_flows, 0);
	ck_assert_uint_eq(c->mesh.limits.max_handshakes, 0);
	ck_assert_uint_eq(c->mesh.limits.max_flows_per_pod, 0);
	ck_assert_uint_eq(c->mesh.limits.max_flows_per_peer, 0);
	nm_cluster_free(c);

	ck_assert_msg(load("{" HDR ",'mesh':{'limits':{'maxFlows':20000,"
			   "'maxHandshakes':512,'maxFlowsPerPod':5000,"
			   "'maxFlowsPerPeer':10000000}}}", &c, err) == 0, "%s", err);
	ck_assert_uint_eq(c->mesh.limits.max_flows, 20000);
	ck_assert_uint_eq(c->mesh.limits.max_handshakes, 512);
	ck_assert_uint_eq(c->mesh.limits.max_flows_per_pod, 5000);
	ck_assert_uint_eq(c->mesh.limits.max_flows_per_peer, 10000000);
	ck_assert_int_eq(c->mesh.inbound_port, 15008); /* others keep defaults */
	nm_cluster_free(c);

	/* Some set, 0 explicit: the rest stay derived. */
	ck_assert_msg(load("{" HDR ",'mesh':{'limits':{'maxHandshakes':64,"
			   "'maxFlows':0}}}", &c, err) == 0, "%s", err);
	ck_assert_uint_eq(c->mesh.limits.max_flows, 0);
	ck_assert_uint_eq(c->mesh.limits.max_handshakes, 64);
	ck_assert_uint_eq(c->mesh.limits.max_flows_per_pod, 0);
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'mesh':{'limits':{}}}", &c, err) == 0, "%s", err);
	nm_cluster_free(c);

#define LIMIT_RANGE "is not a limit (0..10000000; 0 = the default derived from RLIMIT_NOFILE)"
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'limits':{'maxFlows':-1}}}"),
			 NAME ": mesh.limits.maxFlows: -1 " LIMIT_RANGE);
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'limits':{'maxFlowsPerPod':10000001}}}"),
			 NAME ": mesh.limits.maxFlowsPerPod: 10000001 " LIMIT_RANGE);
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'limits':{'maxFlowsPerPeer':4294967296}}}"),
			 NAME ": mesh.limits.maxFlowsPerPeer: 4294967296 " LIMIT_RANGE);
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'limits':{'maxHandshakes':1.5}}}"),
			 NAME ": mesh.limits.maxHandshakes: expected an integer, got a number with a fraction or exponent");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'limits':{'maxHandshakes':1e3}}}"),
			 NAME ": mesh.limits.maxHandshakes: expected an integer, got a number with a fraction or exponent");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'limits':{'maxFlows':'100'}}}"),
			 NAME ": mesh.limits.maxFlows: expected an integer, got a string");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'limits':{'maxFlows':null}}}"),
			 NAME ": mesh.limits.maxFlows: expected an integer, got null");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'limits':{'maxFlow':100}}}"),
			 NAME ": mesh.limits.maxFlow: unknown field (did you mean \"maxFlows\"?)");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'limits':{'maxConnections':100}}}"),
			 NAME ": mesh.limits.maxConnections: unknown field");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'limits':[100]}}"),
			 NAME ": mesh.limits: expected an object, got an array");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'limit':{}}}"),
			 NAME ": mesh.limit: unknown field (did you mean \"limits\"?)");
	/* jansson refuses integers beyond int64 at parse time. */
	ck_assert_ptr_nonnull(strstr(load_err("{" HDR ",'mesh':{'limits':"
					      "{'maxFlows':99999999999999999999}}}"),
				     NAME ": line 1, column"));
#undef LIMIT_RANGE
}
END_TEST

/* --- telemetry ----------------------------------------------------------- */

START_TEST(test_telemetry_section)
{
	char err[NM_ERRMSG_MAX], a[64];
	struct nm_cluster *c = NULL;

	ck_assert_msg(load("{" HDR "}", &c, err) == 0, "%s", err);
	ck_assert_uint_eq(c->telemetry.metrics_port, 15020);
	ck_assert_uint_eq(c->telemetry.admin_port, 15000);
	nm_addr_format(&c->telemetry.metrics_addr, a, sizeof(a));
	ck_assert_str_eq(a, "0.0.0.0");
	nm_addr_format(&c->telemetry.admin_addr, a, sizeof(a));
	ck_assert_str_eq(a, "127.0.0.1");
	ck_assert(c->telemetry.sock_stats);
	ck_assert_str_eq(c->telemetry.cluster_id, "Kubernetes");
	ck_assert_int_eq(c->telemetry.flow_log.mode, NM_FLOWLOG_OFF);
	ck_assert_str_eq(c->telemetry.flow_log.file, "");
	ck_assert_uint_eq(c->telemetry.flow_log.keep, 3);
	nm_cluster_free(c);

	/* mesh.adminPort is the admin port's default. */
	ck_assert_msg(load("{" HDR ",'mesh':{'adminPort':9000}}", &c, err) == 0, "%s", err);
	ck_assert_uint_eq(c->telemetry.admin_port, 9000);
	nm_cluster_free(c);

	ck_assert_msg(load("{" HDR ",'telemetry':{'metricsPort':0,'adminPort':16000,"
			   "'metricsAddress':'::','adminAddress':'::1','sockStats':false,"
			   "'clusterId':'east','maxSeriesPerMetric':100,"
			   "'flowLog':{'mode':'sampled','sampleRate':0.25,"
			   "'file':'/var/log/nm/flows.log','maxBytes':8192,'keep':0}}}",
			   &c, err) == 0, "%s", err);
	ck_assert_uint_eq(c->telemetry.metrics_port, 0);
	ck_assert_uint_eq(c->telemetry.admin_port, 16000);
	nm_addr_format(&c->telemetry.metrics_addr, a, sizeof(a));
	ck_assert_str_eq(a, "::");
	nm_addr_format(&c->telemetry.admin_addr, a, sizeof(a));
	ck_assert_str_eq(a, "::1");
	ck_assert(!c->telemetry.sock_stats);
	ck_assert_str_eq(c->telemetry.cluster_id, "east");
	ck_assert_uint_eq(c->telemetry.max_series, 100);
	ck_assert_int_eq(c->telemetry.flow_log.mode, NM_FLOWLOG_SAMPLED);
	ck_assert(c->telemetry.flow_log.sample_rate == 0.25);
	ck_assert_str_eq(c->telemetry.flow_log.file, "/var/log/nm/flows.log");
	ck_assert_uint_eq(c->telemetry.flow_log.max_bytes, 8192);
	ck_assert_uint_eq(c->telemetry.flow_log.keep, 0);
	nm_cluster_free(c);
	ck_assert_msg(load("{" HDR ",'telemetry':{'flowLog':{'mode':'full','file':'-'}}}",
			   &c, err) == 0, "%s", err);
	ck_assert_int_eq(c->telemetry.flow_log.mode, NM_FLOWLOG_FULL);
	ck_assert_str_eq(c->telemetry.flow_log.file, "");
	nm_cluster_free(c);

	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'metricsPort':70000}}"),
			 NAME ": telemetry.metricsPort: 70000 is not a port (1-65535) or 0 (no metrics server)");
	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'metricsPort':15001}}"),
			 NAME ": telemetry.metricsPort: 15001 is already used by mesh.outboundPort");
	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'adminPort':15021}}"),
			 NAME ": telemetry.adminPort: 15021 is already used by mesh.healthPort");
	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'metricsPort':15000}}"),
			 NAME ": telemetry.metricsPort: 15000 is already used by telemetry.adminPort");
	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'adminAddress':'localhost'}}"),
			 NAME ": telemetry.adminAddress: \"localhost\" is not an IPv4 or IPv6 address");
	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'sockStats':1}}"),
			 NAME ": telemetry.sockStats: expected true or false, got an integer");
	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'flowLog':{'mode':'all'}}}"),
			 NAME ": telemetry.flowLog.mode: \"all\" is not \"off\", \"sampled\" or \"full\"");
	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'flowLog':{'sampleRate':1.5}}}"),
			 NAME ": telemetry.flowLog.sampleRate: 1.5 is not a rate from 0 to 1");
	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'flowLog':{'maxBytes':10}}}"),
			 NAME ": telemetry.flowLog.maxBytes: 10 is not a size in bytes (4096..2^40)");
	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'flowLog':{'keep':101}}}"),
			 NAME ": telemetry.flowLog.keep: 101 is not a count of rotated files (0..100)");
	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'flowLog':{'file':'/tmp/'}}}"),
			 NAME ": telemetry.flowLog.file: \"/tmp/\" names a folder, not a file");
	ck_assert_str_eq(load_err("{" HDR ",'telemetry':{'clusterId':'East West'}}"),
			 NAME ": telemetry.clusterId: \"East West\" is not a cluster ID (a DNS name, or \"Kubernetes\")");
	ck_assert_ptr_nonnull(strstr(load_err("{" HDR ",'telemetry':{'metricPort':1}}"),
				     NAME ": telemetry.metricPort: unknown field"));
}
END_TEST

/* workloads[].mode, mesh.defaultMode, mesh.probers (docs/strict.md). */
START_TEST(test_inbound_mode)
{
	char err[NM_ERRMSG_MAX];
	struct nm_cluster *c = NULL;

	/* Defaults: PERMISSIVE as Istio; probers not set (the node's own). */
	ck_assert_msg(load("{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2", "") "]}",
			   &c, err) == 0, "%s", err);
	ck_assert_int_eq(c->mesh.default_mode, NM_MODE_PERMISSIVE);
	ck_assert_int_eq(c->workloads[0].mode, NM_MODE_UNSET);
	ck_assert(!c->mesh.probers_set);
	ck_assert_uint_eq(c->mesh.n_probers, 0);
	nm_cluster_free(c);

	ck_assert_msg(load("{" HDR ",'mesh':{'defaultMode':'STRICT','probers':['198.18.0.1','fd00::1']},"
			   NODES ",'workloads':[" WL("a", "198.18.1.2", ",'mode':'PERMISSIVE'") ","
			   WL("b", "198.18.1.3", ",'mode':'STRICT'") "]}", &c, err) == 0, "%s", err);
	ck_assert_int_eq(c->mesh.default_mode, NM_MODE_STRICT);
	ck_assert_int_eq(c->workloads[0].mode, NM_MODE_PERMISSIVE);
	ck_assert_int_eq(c->workloads[1].mode, NM_MODE_STRICT);
	ck_assert(c->mesh.probers_set);
	ck_assert_uint_eq(c->mesh.n_probers, 2);
	{
		struct nm_addr want = ip("198.18.0.1");

		ck_assert_mem_eq(&c->mesh.probers[0], &want, sizeof(want));
	}
	ck_assert(!nm_addr_is_v4(&c->mesh.probers[1]));
	nm_cluster_free(c);
	/* An empty list admits no prober at all. */
	ck_assert_msg(load("{" HDR ",'mesh':{'probers':[]}}", &c, err) == 0, "%s", err);
	ck_assert(c->mesh.probers_set);
	ck_assert_uint_eq(c->mesh.n_probers, 0);
	nm_cluster_free(c);

	ck_assert_str_eq(load_err("{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2", ",'mode':'strict'") "]}"),
			 NAME ": workloads[0].mode: \"strict\" is not \"STRICT\" or \"PERMISSIVE\"");
	ck_assert_str_eq(load_err("{" HDR "," NODES ",'workloads':[" WL("a", "198.18.1.2", "") ","
				  WL("b", "198.18.1.3", ",'mode':1") "]}"),
			 NAME ": workloads[1].mode: expected a string, got an integer");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'defaultMode':'DISABLE'}}"),
			 NAME ": mesh.defaultMode: \"DISABLE\" is not \"STRICT\" or \"PERMISSIVE\"");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'probers':['198.18.0.1','kubelet']}}"),
			 NAME ": mesh.probers[1]: \"kubelet\" is not an IPv4 or IPv6 address");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'probers':['0.0.0.0']}}"),
			 NAME ": mesh.probers[0]: \"0.0.0.0\" is not an IPv4 or IPv6 address");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'probers':['10.0.0.1','10.0.0.1']}}"),
			 NAME ": mesh.probers[1]: \"10.0.0.1\" is listed twice");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'probers':[1]}}"),
			 NAME ": mesh.probers[0]: expected an address string, got an integer");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'probers':'10.0.0.1'}}"),
			 NAME ": mesh.probers: expected an array, got a string");
	ck_assert_str_eq(load_err("{" HDR ",'mesh':{'probers':['1.0.0.1','1.0.0.2','1.0.0.3',"
				  "'1.0.0.4','1.0.0.5','1.0.0.6','1.0.0.7','1.0.0.8','1.0.0.9','1.0.0.10',"
				  "'1.0.0.11','1.0.0.12','1.0.0.13','1.0.0.14','1.0.0.15','1.0.0.16',"
				  "'1.0.0.17']}}"),
			 NAME ": mesh.probers: 17 addresses, at most 16");
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_full_round_trip);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_cert_dir_resolution);
	tcase_add_test(tc, test_load_file);
	tcase_add_test(tc, test_example_file);
	tcase_add_test(tc, test_selectors_and_find);
	tcase_add_test(tc, test_ip_helpers);
	tcase_add_test(tc, test_sockaddr_parse);
	tcase_add_test(tc, test_forward_only);
	tcase_add_loop_test(tc, test_errors, 0,
			    (int)(sizeof(err_cases) / sizeof(err_cases[0])));
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_api_edges);
	tcase_add_test(tc, test_load_special_files);
	tcase_add_test(tc, test_spiffe_one_validator);
	tcase_add_test(tc, test_optional_cgroup);
	tcase_add_test(tc, test_docs_agree);
	tcase_add_test(tc, test_mesh_limits);
	tcase_add_test(tc, test_mesh_tunnel_pool);
	tcase_add_test(tc, test_policy_fields);
	tcase_add_test(tc, test_telemetry_section);
	tcase_add_test(tc, test_preserve_source_address);
	tcase_add_test(tc, test_ktls_busy_poll);
	tcase_add_test(tc, test_kernel_path);
	tcase_add_test(tc, test_mesh_relay);
	tcase_add_test(tc, test_inbound_mode);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(config_suite)
