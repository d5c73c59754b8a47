#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""
reflector_python.py SCENARIO.json - play one scenario against a real client.

The fixture server (already started with --scenario SCENARIO.json, ready
file in the environment) runs the scenario's steps; this client does what
nodemesh's agent must do, with the Debian python3-kubernetes client:
list (paged) then watch every kind with bookmarks, watch again from the last
resourceVersion when a stream breaks or ends, list again on 410, re-read the
token file on 401, back off on 429/5xx. When the scenario has run, each
kind's cache must equal the scenario's "expect" (namespace/name lists; a
"fields" map lists [key path, value] pairs per object) within 5 s. Prints one PASS/FAIL line.
"""

import json
import os
import sys
import threading
import time
import urllib.request

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

ADMIN = os.environ["NM_K8S_ADMIN"]
KINDS = {
	"pods": ("", "v1", "pods"), "services": ("", "v1", "services"), "nodes": ("", "v1", "nodes"),
	"namespaces": ("", "v1", "namespaces"),
	"endpointslices": ("discovery.k8s.io", "v1", "endpointslices"),
	"authorizationpolicies": ("security.istio.io", "v1", "authorizationpolicies"),
}


def admin_get(path):
	with urllib.request.urlopen(ADMIN + path, timeout=30) as r:
		return json.load(r)


class Reflector:
	def __init__(self, kind, api, token_file):
		self.kind = kind
		self.group, self.version, self.plural = KINDS[kind]
		self.api = api
		self.token_file = token_file
		self.cache = {}
		self.lists = self.watches = self.relists_410 = self.rewatches = self.auth_retries = 0
		self.lock = threading.Lock()
		self.stop = False

	def path(self):
		return f"/api/{self.version}/{self.plural}" if not self.group else \
			f"/apis/{self.group}/{self.version}/{self.plural}"

	def call(self, **q):
		# The generic call keeps JSON as dicts for every kind, CRDs included.
		resp = self.api.call_api(self.path(), "GET", query_params=list(q.items()),
					 header_params={"Accept": "application/json"},
					 auth_settings=["BearerToken"], _preload_content=False,
					 _request_timeout=15)
		return resp[0]

	def reload_token(self):
		with open(self.token_file) as f:
			self.api.configuration.api_key["authorization"] = "Bearer " + f.read().strip()

	def list(self):
		items, cont = {}, None
		for _ in range(100):
			q = {"limit": "3"}
			if cont:
				q["continue"] = cont
			doc = json.loads(self.call(**q).data)
			for o in doc["items"]:
				md = o["metadata"]
				items[f"{md.get('namespace', '')}/{md['name']}"] = o
			cont = doc["metadata"].get("continue")
			if not cont:
				break
		self.lists += 1
		with self.lock:
			self.cache = items
		return doc["metadata"]["resourceVersion"]

	def watch(self, rv):
		self.watches += 1
		resp = self.call(watch="true", resourceVersion=rv, allowWatchBookmarks="true", timeoutSeconds="30")
		buf = b""
		try:
			for chunk in resp.stream(amt=None, decode_content=False):
				buf += chunk
				while b"\n" in buf:
					line, buf = buf.split(b"\n", 1)
					ev = json.loads(line)
					obj = ev["object"]
					if ev["type"] == "ERROR":
						raise ApiException(status=obj["code"], reason=obj["reason"])
					rv = obj["metadata"]["resourceVersion"]
					if ev["type"] == "BOOKMARK":
						continue
					md = obj["metadata"]
					key = f"{md.get('namespace', '')}/{md['name']}"
					with self.lock:
						if ev["type"] == "DELETED":
							self.cache.pop(key, None)
						else:
							self.cache[key] = obj
				if self.stop:
					return rv
		finally:
			resp.release_conn()
		return rv

	def run(self):
		rv, backoff = None, 0.05
		while not self.stop:
			try:
				if rv is None:
					rv = self.list()
				rv = self.watch(rv)
				backoff = 0.05
			except ApiException as e:
				if e.status == 410:
					self.relists_410 += 1
					rv = None
				elif e.status == 401:
					self.auth_retries += 1
					self.reload_token()
				elif e.status == 404:
					# The CRD is absent: nothing to hold.
					with self.lock:
						self.cache = {}
					rv = None
				time.sleep(backoff)
				backoff = min(backoff * 2, 0.5)
			except (urllib3.exceptions.HTTPError, ValueError, OSError):
				# Cut mid-event or dropped: watch again from the last event seen.
				self.rewatches += 1
				time.sleep(backoff)
				backoff = min(backoff * 2, 0.5)


def field(obj, path):
	for p in path:
		try:
			obj = obj[p]
		except (KeyError, IndexError, TypeError):
			return None
	return obj


def main():
	scen_file = sys.argv[1]
	name = "scenario-" + os.path.basename(scen_file).removesuffix(".json")
	with open(scen_file) as f:
		scen = json.load(f)
	config.load_kube_config(config_file=os.environ["NM_K8S_KUBECONFIG"])
	api = client.ApiClient()
	refl = {k: Reflector(k, api, os.environ["NM_K8S_TOKEN_FILE"]) for k in scen["expect"]}
	for r in refl.values():
		threading.Thread(target=r.run, daemon=True).start()
	deadline = time.monotonic() + 40
	while time.monotonic() < deadline and admin_get("/state")["scenario"] == "running":
		time.sleep(0.1)
	state = admin_get("/state")["scenario"]
	if state != "done":
		print(f"FAIL {name}: scenario {state or 'not started'}")
		return 1

	def diff():
		out = []
		for k, want in scen["expect"].items():
			with refl[k].lock:
				cache = dict(refl[k].cache)
			if sorted(cache) != sorted(want):
				out.append(f"{k}: have {sorted(cache)} want {sorted(want)}")
			for key, fields in scen.get("fields", {}).get(k, {}).items():
				for path, val in fields:
					if key not in cache or field(cache[key], path) != val:
						out.append(f"{k} {key} {path}: {field(cache[key], path) if key in cache else None!r} != {val!r}")
		return out

	end = time.monotonic() + 5
	while diff() and time.monotonic() < end:
		time.sleep(0.05)
	d = diff()
	for r in refl.values():
		r.stop = True
	stats = {k: f"{r.lists}L/{r.watches}W" for k, r in refl.items()}
	extra = sum(r.relists_410 for r in refl.values()), sum(r.rewatches for r in refl.values()), \
		sum(r.auth_retries for r in refl.values())
	need = scen.get("client", {})
	bad_need = [f"{k} {extra[i]} < {need[k]}" for i, k in enumerate(("relists410", "rewatches", "authRetries"))
		    if extra[i] < need.get(k, 0)]
	if d or bad_need:
		print(f"FAIL {name}: {'; '.join(d + bad_need)}")
		return 1
	print(f"PASS {name} (end state matches; relists after 410 {extra[0]}, rewatches {extra[1]}, "
	      f"401 retries {extra[2]}; {stats})")
	return 0


if __name__ == "__main__":
	sys.exit(main())
