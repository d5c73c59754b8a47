#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""
fidelity_python.py - the Debian python3-kubernetes client against the fixture
API server. Run by tests/integration/test_20_k8s_fixture.sh with the server's
ready file in the environment (NM_K8S_*); prints one "PASS name" or
"FAIL name: reason" line per check and exits 1 when any failed.

The client is the real one (urllib3, its own deserialisers, its own watch
loop with its retry after 410): if it cannot use the server, the server is
wrong.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

HERE = os.path.dirname(os.path.abspath(__file__))
ADMIN = os.environ["NM_K8S_ADMIN"]
FAILS = 0


def ok(name, detail=""):
	print(f"PASS {name}{' (' + detail + ')' if detail else ''}", flush=True)


def fail(name, reason):
	global FAILS
	FAILS += 1
	print(f"FAIL {name}: {reason}", flush=True)


def admin(step):
	req = urllib.request.Request(ADMIN + "/steps", data=json.dumps(step).encode(),
				     headers={"Content-Type": "application/json"})
	with urllib.request.urlopen(req, timeout=30) as r:
		return json.load(r)


def admin_get(path):
	with urllib.request.urlopen(ADMIN + path, timeout=30) as r:
		return json.load(r)


def later(*steps):
	"""Run admin steps in a thread once a new watch is open, so the events
	happen while the client is watching."""
	started = admin_get("/state")["watchesStarted"]["pods"]

	def run():
		admin({"op": "wait_watch", "resource": "pods", "started": started + 1, "timeout_ms": 10000})
		for st in steps:
			admin(st)
	t = threading.Thread(target=run, daemon=True)
	t.start()
	return t


def new_pod(name):
	with open(os.path.join(HERE, "objects", "20-pods.json")) as f:
		pod = json.load(f)["items"][0]
	pod["metadata"]["name"] = name
	pod["metadata"].pop("uid")
	pod["status"]["podIP"] = "198.18.1.99"
	pod["status"]["podIPs"] = [{"ip": "198.18.1.99"}]
	return pod


def check(name, fn):
	try:
		fn(name)
	except Exception as e:  # noqa: BLE001 - a check that throws fails
		fail(name, f"{type(e).__name__}: {e}")


def main():
	config.load_kube_config(config_file=os.environ["NM_K8S_KUBECONFIG"])
	v1 = client.CoreV1Api()

	def list_paging(name):
		truth = [p["metadata"]["name"] for p in admin_get("/objects?resource=pods")]
		names, tok, pages, rvs, remaining = [], None, 0, set(), []
		while True:
			r = v1.list_pod_for_all_namespaces(limit=2, _continue=tok)
			pages += 1
			names += [p.metadata.name for p in r.items]
			rvs.add(r.metadata.resource_version)
			remaining.append(r.metadata.remaining_item_count)
			tok = r.metadata._continue
			if not tok or pages > 50:
				break
		want_pages = (len(truth) + 1) // 2
		if sorted(names) == sorted(truth) and pages == want_pages and len(rvs) == 1 and \
		   remaining == list(range(len(truth) - 2, 0, -2)) + [None]:
			ok(name, f"{len(names)} pods in {pages} pages at resourceVersion {rvs.pop()}")
		else:
			fail(name, f"names {names} vs {truth}, pages {pages}/{want_pages}, rvs {rvs}, remaining {remaining}")

	def typed_objects(name):
		pods = {p.metadata.name: p for p in v1.list_namespaced_pod("default").items}
		echo = pods["echo"]
		sl = client.DiscoveryV1Api().list_namespaced_endpoint_slice(
			"default", label_selector="kubernetes.io/service-name=echo").items
		nodes = {n.metadata.name: n for n in v1.list_node().items}
		svc = v1.read_namespaced_service("echo", "default")
		aps = client.CustomObjectsApi().list_namespaced_custom_object(
			"security.istio.io", "v1", "default", "authorizationpolicies")["items"]
		local = v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-1").items
		got = (echo.status.pod_ip, echo.spec.node_name, echo.spec.service_account_name,
		       echo.status.qos_class, [s.metadata.name for s in sl], sl[0].endpoints[0].target_ref.name,
		       nodes["node-2"].metadata.labels["topology.kubernetes.io/zone"], svc.spec.cluster_ip,
		       sorted(a["metadata"]["name"] for a in aps), sorted(p.spec.node_name for p in local))
		want = ("198.18.2.11", "node-2", "echo", "BestEffort", ["echo-k8x2q"], "echo", "zone-b",
			"198.19.0.10", ["deny-legacy", "echo-allow-client"], ["node-1"] * 4)
		if got == want:
			ok(name, "pods, endpointslices, nodes, services, authorizationpolicies, fieldSelector")
		else:
			fail(name, f"got {got}, want {want}")

	def watch_events(name):
		rv = v1.list_namespaced_pod("default").metadata.resource_version
		later({"op": "apply", "object": new_pod("py-new")},
		      {"op": "patch", "kind": "Pod", "name": "py-new", "merge": {"metadata": {"labels": {"v": "2"}}}},
		      {"op": "delete", "kind": "Pod", "name": "py-new"})
		seen = []
		w = watch.Watch()
		for ev in w.stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=10):
			seen.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.labels.get("v"),
				     ev["object"].status.pod_ip))
			if ev["type"] == "DELETED":
				w.stop()
		want = [("ADDED", "py-new", None, "198.18.1.99"), ("MODIFIED", "py-new", "2", "198.18.1.99"),
			("DELETED", "py-new", "2", "198.18.1.99")]
		if seen == want:
			ok(name, "ADDED, MODIFIED, DELETED as V1Pod")
		else:
			fail(name, f"events {seen}")

	def watch_bookmark(name):
		# The bookmark carries the newest revision, here one of a Service.
		rv = v1.list_namespaced_pod("default").metadata.resource_version
		svc_rv = {}

		started = admin_get("/state")["watchesStarted"]["pods"]

		def bump():
			admin({"op": "wait_watch", "resource": "pods", "started": started + 1})
			svc_rv["rv"] = int(admin({"op": "patch", "kind": "Service", "name": "echo",
						 "merge": {"metadata": {"labels": {"bumped": "1"}}}})["resourceVersion"])
			admin({"op": "bookmark", "resource": "pods"})
		threading.Thread(target=bump, daemon=True).start()
		w = watch.Watch()
		seen = []
		for ev in w.stream(v1.list_namespaced_pod, "default", resource_version=rv,
				   allow_watch_bookmarks=True, timeout_seconds=10):
			seen.append(ev["type"])
			if ev["type"] == "BOOKMARK":
				w.stop()
				raw = ev["raw_object"]
				brv = int(raw["metadata"]["resourceVersion"])
				# (python3-kubernetes 22.6 itself does not resume from bookmarks.)
				if raw["kind"] == "Pod" and brv >= svc_rv.get("rv", 1 << 62) and \
				   set(raw["metadata"]) <= {"resourceVersion", "creationTimestamp"}:
					ok(name, f"BOOKMARK with only resourceVersion {brv} >= service change {svc_rv['rv']}")
				else:
					fail(name, f"bookmark {raw}, service rv {svc_rv}, watch rv {w.resource_version}")
				return
		fail(name, f"no BOOKMARK, events {seen}")

	def watch_410_compacted(name):
		old = v1.list_namespaced_pod("default").metadata.resource_version
		admin({"op": "patch", "kind": "Pod", "name": "echo", "merge": {"metadata": {"labels": {"c": "1"}}}})
		comp = admin({"op": "compact"})["results"][0]["compacted"]
		since = admin_get("/requests")[-1]["seq"]
		try:
			# No timeout_seconds: with it the client skips its retry after 410.
			for ev in watch.Watch().stream(v1.list_namespaced_pod, "default", resource_version=old,
						       _request_timeout=10):
				fail(name, f"event {ev['type']} from a compacted resourceVersion")
				return
			fail(name, "stream ended without ApiException")
		except ApiException as e:
			watches = [r for r in admin_get(f"/requests?since={since}") if r["watch"]]
			if e.status == 410 and "too old resource version" in e.reason and len(watches) == 2 and \
			   all(r["query"].get("resourceVersion") == old for r in watches):
				ok(name, f"ApiException 410 '{e.reason}' after the client's one retry (compacted at {comp})")
			else:
				fail(name, f"status {e.status} reason {e.reason}, watch requests {watches}")

	def watch_410_forced(name):
		rv = v1.list_namespaced_pod("default").metadata.resource_version
		admin({"op": "gone", "resource": "pods", "count": 1})
		try:
			for ev in watch.Watch().stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=5):
				fail(name, f"event {ev['type']}")
				return
			fail(name, "stream ended without ApiException")
		except ApiException as e:
			if e.status == 410 and e.reason.startswith("Expired: "):
				ok(name, e.reason)
			else:
				fail(name, f"status {e.status} reason {e.reason}")

	def list_410_and_504(name):
		res = []
		try:
			v1.list_namespaced_pod("default", resource_version="1001", resource_version_match="Exact")
			res.append("exact: no error")
		except ApiException as e:
			st = json.loads(e.body)
			if not (e.status == 410 and st["kind"] == "Status" and st["reason"] == "Expired" and st["code"] == 410):
				res.append(f"exact: {e.status} {e.body}")
		cur = int(v1.list_namespaced_pod("default").metadata.resource_version)
		try:
			v1.list_namespaced_pod("default", resource_version=str(cur + 100))
			res.append("too large: no error")
		except ApiException as e:
			st = json.loads(e.body)
			if not (e.status == 504 and st["reason"] == "Timeout" and
				st["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"):
				res.append(f"too large: {e.status} {e.body}")
		if res:
			fail(name, "; ".join(res))
		else:
			ok(name, "Exact below compaction -> 410 Expired, NotOlderThan in the future -> 504 ResourceVersionTooLarge")

	def watch_cut(name):
		rv = v1.list_namespaced_pod("default").metadata.resource_version
		pod = new_pod("py-cut")
		later({"op": "apply", "object": pod},
		      {"op": "cut", "resource": "pods"},
		      {"op": "patch", "kind": "Pod", "name": "py-cut", "merge": {"metadata": {"labels": {"cut": "yes"}}}})
		seen, err = [], None
		w = watch.Watch()
		try:
			for ev in w.stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=10):
				seen.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
		except (urllib3.exceptions.ProtocolError, ValueError) as e:
			err = e
		# Resume from the last event the client saw: the cut event comes again, whole.
		last = seen[-1][2] if seen else rv
		again = []
		w2 = watch.Watch()
		for ev in w2.stream(v1.list_namespaced_pod, "default", resource_version=last, timeout_seconds=5):
			again.append((ev["type"], ev["object"].metadata.labels.get("cut")))
			w2.stop()
		if [s[:2] for s in seen] == [("ADDED", "py-cut")] and err is not None and again == [("MODIFIED", "yes")]:
			ok(name, f"stream broke with {type(err).__name__}, no event from the half line, resume from {last} got it")
		else:
			fail(name, f"seen {seen}, error {err!r}, after resume {again}")
		admin({"op": "delete", "kind": "Pod", "name": "py-cut"})

	def auth_401(name):
		tok_file = os.environ["NM_K8S_TOKEN_FILE"]
		cfg = client.Configuration.get_default_copy()

		def api_with(token):
			c = client.Configuration()
			c.host, c.ssl_ca_cert = cfg.host, cfg.ssl_ca_cert
			c.api_key = {"authorization": "Bearer " + token}
			return client.CoreV1Api(client.ApiClient(c))

		def code(api):
			try:
				api.list_namespace()
				return 200, None
			except ApiException as e:
				return e.status, json.loads(e.body)

		with open(tok_file) as f:
			tok = f.read()
		bad = code(api_with("not-the-token"))
		good = code(api_with(tok))
		admin({"op": "expire_token"})
		expired = code(api_with(tok))
		new = admin({"op": "rotate_token"})["results"][0]["token"]
		rotated_old, rotated_new = code(api_with(tok)), code(api_with(new))
		st = bad[1] or {}
		if bad[0] == 401 and st.get("kind") == "Status" and st.get("reason") == "Unauthorized" and \
		   good[0] == 200 and expired[0] == 401 and rotated_old[0] == 401 and rotated_new[0] == 200:
			ok(name, "bad 401, expired 401 until the file holds a new token, new token 200")
		else:
			fail(name, f"bad {bad}, good {good}, expired {expired}, old after rotate {rotated_old}, new {rotated_new}")

	for n, fn in [("py-list-paging", list_paging), ("py-typed-objects", typed_objects),
		      ("py-watch-events", watch_events), ("py-watch-bookmark", watch_bookmark),
		      ("py-watch-cut-resume", watch_cut), ("py-watch-410-compacted", watch_410_compacted),
		      ("py-watch-410-forced", watch_410_forced), ("py-list-410-504", list_410_and_504),
		      ("py-auth-401-rotate", auth_401)]:
		t0 = time.monotonic()
		check(n, fn)
		if time.monotonic() - t0 > 15:
			fail(n + "-time", f"took {time.monotonic() - t0:.1f}s")
	return 1 if FAILS else 0


if __name__ == "__main__":
	sys.exit(main())
