#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""
apiserver.py - a fixture Kubernetes API server for nodemesh's tests.

No API server can run here, so this one serves list and watch for the kinds
nodemesh watches the way kube-apiserver 1.30 does (discovery, paging with
continue tokens, resourceVersion semantics, chunked watch streams with
bookmarks, 410 Gone, 401 with Status objects) from objects in the real API's
JSON shape, and a plain-HTTP admin port drives scenarios (add, modify and
delete objects, cut a watch mid-event, force 410, expire the token, compact
history, inject failures). Python 3 standard library only. See README.md.

  apiserver.py serve --dir DIR [--objects PATH]... [--plain] [--port N]
                     [--admin-port N] [--token-file F] [--scenario F]
                     [--bookmark-interval S] [--rv-start N] [--log F]
  apiserver.py ctl ADMIN_URL STEP-JSON|@FILE|-      run steps, print result
  apiserver.py ctl ADMIN_URL --get /state|/requests|/objects?resource=pods
"""

import argparse
import base64
import bisect
import copy
import datetime
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- resources

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
META_FIELDS = ("metadata.name", "metadata.namespace")


class Res:
	def __init__(self, group, versions, plural, singular, kind, namespaced,
		     short=(), categories=(), fields=(), table=None, hash_=""):
		self.group = group
		self.versions = versions  # served versions, preferred first
		self.plural = plural
		self.singular = singular
		self.kind = kind
		self.namespaced = namespaced
		self.short = list(short)
		self.categories = list(categories)
		self.fields = set(META_FIELDS) | set(fields)
		self.table = table
		self.hash = hash_

	def api_version(self, version=None):
		v = version or self.versions[0]
		return f"{self.group}/{v}" if self.group else v

	def group_resource(self):
		return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = [
	Res("", ["v1"], "pods", "pod", "Pod", True, ["po"], ["all"],
	    ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
	     "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
	     "status.podIP", "status.nominatedNodeName"], "pods", "xPOwRZ+Yhw8="),
	Res("", ["v1"], "services", "service", "Service", True, ["svc"], ["all"],
	    [], "services", "0/CO1lhkEBI="),
	Res("", ["v1"], "nodes", "node", "Node", False, ["no"], [],
	    ["spec.unschedulable"], "nodes", "XwShjMxG9Fs="),
	Res("", ["v1"], "namespaces", "namespace", "Namespace", False, ["ns"], [],
	    ["status.phase"], "namespaces", "Q3oi5N2YM8M="),
	Res("discovery.k8s.io", ["v1"], "endpointslices", "endpointslice", "EndpointSlice",
	    True, [], [], [], "endpointslices", "Nx3SIv6I0mE="),
	Res("security.istio.io", ["v1", "v1beta1"], "authorizationpolicies",
	    "authorizationpolicy", "AuthorizationPolicy", True, ["ap"],
	    ["istio-io", "security-istio-io"], [], "authorizationpolicies", ""),
]
BY_PLURAL = {r.plural: r for r in RESOURCES}
CRD_GROUP = "security.istio.io"


def res_for_object(obj):
	kind = obj.get("kind")
	group = obj.get("apiVersion", "").rpartition("/")[0]
	for r in RESOURCES:
		if r.kind == kind and r.group == group:
			return r
	raise ValueError(f"no resource for apiVersion={obj.get('apiVersion')} kind={kind}")


def res_by_name(name):
	"""'pods', 'Pod', 'endpointslices.discovery.k8s.io'."""
	base = name.split(".")[0]
	for r in RESOURCES:
		if base in (r.plural, r.singular, r.kind, r.kind.lower()) or base in r.short:
			return r
	raise ValueError(f"unknown resource {name}")


# ---------------------------------------------------------------- helpers

def now_rfc3339():
	return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps(obj):
	# kube-apiserver writes compact JSON.
	return json.dumps(obj, separators=(",", ":"))


def status(code, reason, message, details=None, meta=None):
	st = {"kind": "Status", "apiVersion": "v1", "metadata": meta or {},
	      "status": "Failure", "message": message, "reason": reason}
	if details is not None:
		st["details"] = details
	st["code"] = code
	return st


class ApiError(Exception):
	def __init__(self, st, headers=None):
		super().__init__(st["message"])
		self.status = st
		self.headers = headers or {}


def bad_request(msg):
	return ApiError(status(400, "BadRequest", msg))


def invalid_list_options(causes):
	msg = "ListOptions.meta.k8s.io \"\" is invalid: " + ", ".join(
		f"{c['field']}: {c['message']}" for c in causes)
	return ApiError(status(422, "Invalid", msg, {"group": "meta.k8s.io", "kind": "ListOptions",
						    "causes": [{"reason": "FieldValueForbidden" if "orbidden" in c["message"] else "FieldValueInvalid",
								"message": c["message"], "field": c["field"]} for c in causes]}))


def too_old_rv_status(rv, oldest):
	return status(410, "Expired", f"too old resource version: {rv} ({oldest})")


def too_large_rv(rv, current):
	return ApiError(status(504, "Timeout", f"Too large resource version: {rv}, current: {current}",
			       {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
				"retryAfterSeconds": 1}), {"Retry-After": "1"})


def merge_patch(target, patch):
	if not isinstance(patch, dict):
		return copy.deepcopy(patch)
	out = dict(target) if isinstance(target, dict) else {}
	for k, v in patch.items():
		if v is None:
			out.pop(k, None)
		else:
			out[k] = merge_patch(out.get(k), v)
	return out


def field_value(obj, path):
	cur = obj
	for part in path.split("."):
		if not isinstance(cur, dict):
			return ""
		cur = cur.get(part)
	if cur is None:
		return ""
	if isinstance(cur, bool):
		return "true" if cur else "false"
	return str(cur)


def parse_field_selector(sel, res):
	reqs = []
	if not sel:
		return reqs
	for term in sel.split(","):
		term = term.strip()
		if not term:
			continue
		for op in ("!=", "==", "="):
			if op in term:
				k, _, v = term.partition(op)
				k = k.strip()
				if k not in res.fields:
					raise bad_request(f"field label not supported: {k}")
				reqs.append((k, "!=" if op == "!=" else "=", v.strip()))
				break
		else:
			raise bad_request(f"invalid field selector: '{sel}': invalid selector: '{sel}'; can't understand '{term}'")
	return reqs


def split_label_terms(sel):
	terms, depth, cur = [], 0, ""
	for ch in sel:
		if ch == "(":
			depth += 1
		elif ch == ")":
			depth -= 1
		if ch == "," and depth == 0:
			terms.append(cur)
			cur = ""
		else:
			cur += ch
	if cur:
		terms.append(cur)
	return [t.strip() for t in terms if t.strip()]


def parse_label_selector(sel):
	reqs = []
	if not sel:
		return reqs
	for term in split_label_terms(sel):
		words = term.split()
		if len(words) >= 2 and words[1] in ("in", "notin"):
			vals = term.split(None, 2)[2].strip()
			if not (vals.startswith("(") and vals.endswith(")")):
				raise bad_request(f"unable to parse requirement: found '{vals}', expected: '('")
			reqs.append((words[0], words[1], {v.strip() for v in vals[1:-1].split(",") if v.strip()}))
		elif term.startswith("!"):
			reqs.append((term[1:].strip(), "!", None))
		elif "!=" in term:
			k, _, v = term.partition("!=")
			reqs.append((k.strip(), "!=", v.strip()))
		elif "==" in term or "=" in term:
			k, _, v = term.partition("==") if "==" in term else term.partition("=")
			reqs.append((k.strip(), "=", v.strip()))
		else:
			reqs.append((term, "exists", None))
	return reqs


def matches(obj, ns, freqs, lreqs):
	if obj is None:
		return False
	md = obj.get("metadata", {})
	if ns and md.get("namespace") != ns:
		return False
	for k, op, v in freqs:
		have = field_value(obj, k)
		if (have == v) != (op == "="):
			return False
	labels = md.get("labels") or {}
	for k, op, v in lreqs:
		if op == "=" and labels.get(k) != v:
			return False
		if op == "!=" and labels.get(k) == v:
			return False
		if op == "exists" and k not in labels:
			return False
		if op == "!" and k in labels:
			return False
		if op == "in" and labels.get(k) not in v:
			return False
		if op == "notin" and k in labels and labels[k] in v:
			return False
	return True


def obj_key(res, obj):
	md = obj.get("metadata", {})
	return (md.get("namespace", "") if res.namespaced else "", md["name"])


def key_str(k):
	return f"{k[0]}/{k[1]}" if k[0] else k[1]


def with_version(obj, res, version):
	if version == res.versions[0] or obj is None:
		return obj
	out = dict(obj)
	out["apiVersion"] = res.api_version(version)
	return out


def list_item(obj, res, version):
	# Typed lists (core, discovery) carry no kind/apiVersion on their items;
	# custom resources (unstructured) keep both.
	if res.group == CRD_GROUP:
		return with_version(obj, res, version)
	return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def bookmark_object(res, version, rv, initial_end=False):
	md = {"resourceVersion": str(rv), "creationTimestamp": None}
	if initial_end:
		md["annotations"] = {"k8s.io/initial-events-end": "true"}
	obj = {"kind": res.kind, "apiVersion": res.api_version(version), "metadata": md}
	# The empty Go struct the apiserver marshals for each kind.
	obj.update({
		"Pod": {"spec": {"containers": None}, "status": {}},
		"Service": {"spec": {}, "status": {"loadBalancer": {}}},
		"Node": {"spec": {}, "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
						 "nodeInfo": {k: "" for k in ("machineID", "systemUUID", "bootID",
									    "kernelVersion", "osImage",
									    "containerRuntimeVersion", "kubeletVersion",
									    "kubeProxyVersion", "operatingSystem",
									    "architecture")}}},
		"Namespace": {"spec": {}, "status": {}},
		"EndpointSlice": {"addressType": "", "endpoints": None},
	}.get(res.kind, {}))
	if res.kind == "AuthorizationPolicy":
		del md["creationTimestamp"]
	return obj


def encode_continue(rv, start):
	raw = dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
	return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(tok):
	try:
		raw = base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))
		d = json.loads(raw)
		if d.get("v") != "meta.k8s.io/v1":
			raise ValueError("continue key is not valid")
		rv, start = int(d["rv"]), str(d["start"])
		if rv == 0:
			raise ValueError("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
		return rv, start
	except ApiError:
		raise
	except Exception as e:  # noqa: BLE001 - any garbage is a bad token
		raise bad_request(f"continue key is not valid: {e}")


def age(ts):
	try:
		t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
	except (TypeError, ValueError):
		return "<unknown>"
	s = int((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())
	if s < 120:
		return f"{s}s"
	if s < 7200:
		return f"{s // 60}m"
	if s < 172800:
		return f"{s // 3600}h"
	return f"{s // 86400}d"


# ---------------------------------------------------------------- store


class Event:
	__slots__ = ("rv", "res", "type", "obj", "prev")

	def __init__(self, rv, res, type_, obj, prev):
		self.rv, self.res, self.type, self.obj, self.prev = rv, res, type_, obj, prev


class Watch:
	def __init__(self, wid, res, ns, query, start_rv, handler):
		self.id = wid
		self.res = res
		self.ns = ns
		self.query = query
		self.start_rv = start_rv
		self.pos = start_rv
		self.handler = handler
		self.cut = None         # ("half" | "clean", rv): half of the next event after rv, then end
		self.drop = False       # close the connection now
		self.close = False      # end the stream cleanly now
		self.gone = False       # send ERROR 410 now, then end
		self.bookmark = False   # send a BOOKMARK now
		self.events_sent = 0


class Store:
	"""All objects, one global resourceVersion counter (like etcd's revision)
	and the full event history. compacted is the oldest revision that can
	still be watched from or listed exactly."""

	def __init__(self, rv_start):
		self.cond = threading.Condition()
		self.rv = rv_start
		self.objects = {r.plural: {} for r in RESOURCES}
		self.events = []
		self.event_rvs = []
		self.compacted = rv_start
		self.watches = {}
		self.watch_seq = 0
		self.watches_started = {r.plural: 0 for r in RESOURCES}
		self.force_gone = {}      # plural -> count of next watches answered with 410
		self.expired_tokens = set()
		self.failures = []        # injected request failures
		self.forbidden = set()    # (plural, verb)
		self.crd_present = True
		self.scenario = ""
		self.requests = []
		self.req_seq = 0

	# -- writes (caller holds no lock)
	def _commit(self, res, type_, obj, prev):
		self.rv += 1
		obj = copy.deepcopy(obj)
		obj["metadata"]["resourceVersion"] = str(self.rv)
		k = obj_key(res, obj)
		if type_ == "DELETED":
			self.objects[res.plural].pop(k, None)
		else:
			self.objects[res.plural][k] = obj
		self.events.append(Event(self.rv, res, type_, obj, prev))
		self.event_rvs.append(self.rv)
		self.cond.notify_all()
		return self.rv

	def apply(self, obj):
		res = res_for_object(obj)
		obj = copy.deepcopy(obj)
		obj["apiVersion"] = res.api_version()
		md = obj.setdefault("metadata", {})
		if "name" not in md:
			raise ValueError("object without metadata.name")
		if res.namespaced:
			md.setdefault("namespace", "default")
		else:
			md.pop("namespace", None)
		with self.cond:
			prev = self.objects[res.plural].get(obj_key(res, obj))
			if prev is not None:
				md["uid"] = prev["metadata"]["uid"]
				md["creationTimestamp"] = prev["metadata"].get("creationTimestamp")
			else:
				md.setdefault("uid", str(uuid.uuid4()))
				md.setdefault("creationTimestamp", now_rfc3339())
			if prev is not None and "generation" in prev["metadata"]:
				spec_changed = {k: v for k, v in obj.items() if k not in ("metadata", "status")} != \
					{k: v for k, v in prev.items() if k not in ("metadata", "status")}
				md["generation"] = prev["metadata"]["generation"] + (1 if spec_changed else 0)
			return self._commit(res, "MODIFIED" if prev is not None else "ADDED", obj, prev)

	def patch(self, res, ns, name, patch):
		with self.cond:
			prev = self.objects[res.plural].get((ns if res.namespaced else "", name))
			if prev is None:
				raise ValueError(f"{res.plural} {ns}/{name} not found")
			obj = merge_patch(prev, patch)
			obj["metadata"]["uid"] = prev["metadata"]["uid"]
			obj["metadata"]["name"] = name
			return self._commit(res, "MODIFIED", obj, prev)

	def delete(self, res, ns, name, graceful=False):
		with self.cond:
			k = (ns if res.namespaced else "", name)
			prev = self.objects[res.plural].get(k)
			if prev is None:
				raise ValueError(f"{res.plural} {ns}/{name} not found")
			if graceful:
				# kubectl delete pod: first the deletionTimestamp, then the removal.
				term = copy.deepcopy(prev)
				term["metadata"]["deletionTimestamp"] = now_rfc3339()
				term["metadata"]["deletionGracePeriodSeconds"] = 30
				self._commit(res, "MODIFIED", term, prev)
				prev = self.objects[res.plural][k]
			return self._commit(res, "DELETED", prev, prev)

	def compact(self, rv=None):
		with self.cond:
			rv = self.rv if rv is None else min(int(rv), self.rv)
			self.compacted = max(self.compacted, rv)
			return self.compacted

	# -- reads (caller holds the lock)
	def state_at(self, res, rv):
		"""Objects of res as of revision rv (rv >= compacted)."""
		if rv >= self.rv:
			return dict(self.objects[res.plural])
		state = dict(self.objects[res.plural])
		# Undo the events after rv, newest first.
		i = len(self.event_rvs)
		while i > 0 and self.event_rvs[i - 1] > rv:
			i -= 1
			ev = self.events[i]
			if ev.res is not res:
				continue
			k = obj_key(res, ev.obj)
			if ev.prev is None:
				state.pop(k, None)
			else:
				state[k] = ev.prev
		return state

	def events_after(self, rv):
		i = bisect.bisect_right(self.event_rvs, rv)
		return self.events[i:]


# ---------------------------------------------------------------- HTTP API

class Api:
	def __init__(self, store, token_file, bookmark_interval, log):
		self.store = store
		self.token_file = token_file
		self.bookmark_interval = bookmark_interval
		self.log = log
		self.url = ""


def make_handler(api):
	store = api.store

	class Handler(BaseHTTPRequestHandler):
		protocol_version = "HTTP/1.1"
		server_version = "nodemesh-fixture-apiserver"
		sys_version = ""

		def log_message(self, fmt, *args):
			if api.log:
				api.log.write("%s %s\n" % (now_rfc3339(), fmt % args))
				api.log.flush()

		def setup(self):
			# Headers and body go out in separate writes: without NODELAY,
			# Nagle and delayed ACKs add 40 ms to every response.
			self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
			super().setup()

		def handle(self):
			try:
				super().handle()
			except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
				pass

		# -- response writers
		def send_json(self, code, obj, headers=None):
			body = (dumps(obj) + "\n").encode() if obj is not None else b""
			self.send_response(code)
			self.send_header("Audit-Id", str(uuid.uuid4()))
			self.send_header("Cache-Control", "no-cache, private")
			self.send_header("Content-Type", "application/json")
			for k, v in (headers or {}).items():
				self.send_header(k, v)
			self.send_header("Content-Length", str(len(body)))
			self.end_headers()
			self.wfile.write(body)
			self.record(code)

		def send_text(self, code, text):
			body = text.encode()
			self.send_response(code)
			self.send_header("Content-Type", "text/plain; charset=utf-8")
			self.send_header("X-Content-Type-Options", "nosniff")
			self.send_header("Content-Length", str(len(body)))
			self.end_headers()
			self.wfile.write(body)
			self.record(code)

		def record(self, code, watch=False):
			with store.cond:
				store.req_seq += 1
				store.requests.append({
					"seq": store.req_seq, "time": time.time(), "method": self.command,
					"path": self.url.path, "query": dict(self.query), "status": code,
					"watch": watch, "auth": getattr(self, "auth", ""),
					"userAgent": self.headers.get("User-Agent", ""),
					"accept": self.headers.get("Accept", ""),
				})
				del store.requests[:-5000]

		def abort(self):
			self.close_connection = True
			try:
				self.connection.shutdown(socket.SHUT_RDWR)
			except OSError:
				pass

		# -- entry points
		def do_GET(self):
			self.dispatch()

		def do_POST(self):
			self.dispatch()

		do_PUT = do_PATCH = do_DELETE = do_POST

		def dispatch(self):
			self.url = urllib.parse.urlsplit(self.path)
			self.query = dict(urllib.parse.parse_qsl(self.url.query, keep_blank_values=True))
			self.auth = ""
			length = int(self.headers.get("Content-Length") or 0)
			if length:
				self.rfile.read(length)
			try:
				self.route()
			except ApiError as e:
				self.send_json(e.status["code"], e.status, e.headers)
			except (ConnectionError, ssl.SSLError, BrokenPipeError):
				self.close_connection = True

		def check_auth(self):
			hdr = self.headers.get("Authorization", "")
			try:
				with open(api.token_file) as f:
					want = f.read().strip()
			except OSError:
				want = ""
			have = hdr[7:].strip() if hdr.startswith("Bearer ") else None
			if have is None:
				self.auth = "missing"
			elif not want or have != want:
				self.auth = "bad"
			elif have in store.expired_tokens:
				self.auth = "expired"
			else:
				self.auth = "ok"
				return
			raise ApiError(status(401, "Unauthorized", "Unauthorized"))

		def route(self):
			p = self.url.path.rstrip("/") or "/"
			if p in ("/healthz", "/livez", "/readyz"):
				return self.send_text(200, "ok")
			if p == "/version":
				return self.send_json(200, {
					"major": "1", "minor": "30", "gitVersion": "v1.30.0",
					"gitCommit": "7c48c2bd72b9bf5c44d21d7338cc7bea77d0ad2a", "gitTreeState": "clean",
					"buildDate": "2024-04-17T17:27:03Z", "goVersion": "go1.22.2",
					"compiler": "gc", "platform": "linux/amd64"})
			self.check_auth()
			parts = [urllib.parse.unquote(x) for x in p.split("/")[1:]]
			if parts[0] == "api":
				if len(parts) == 1:
					return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
								    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
												    "serverAddress": api.url.split("//")[1]}]})
				if parts[1] != "v1":
					raise self.not_found()
				return self.resource_path("", "v1", parts[2:])
			if parts[0] == "apis":
				if len(parts) == 1:
					return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
								    "groups": [self.group_doc(g) for g in self.groups()]})
				group = parts[1]
				if group not in self.groups():
					raise self.not_found()
				if len(parts) == 2:
					return self.send_json(200, self.group_doc(group))
				return self.resource_path(group, parts[2], parts[3:])
			raise self.not_found()

		def not_found(self):
			return ApiError(status(404, "NotFound", "the server could not find the requested resource", {}))

		def groups(self):
			gs = []
			for r in RESOURCES:
				if r.group and r.group not in gs and (r.group != CRD_GROUP or store.crd_present):
					gs.append(r.group)
			return gs

		def group_doc(self, group):
			versions = next(r.versions for r in RESOURCES if r.group == group)
			gv = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
			return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gv,
				"preferredVersion": gv[0]}

		def resource_list(self, group, version):
			out = []
			for r in RESOURCES:
				if r.group != group or version not in r.versions:
					continue
				d = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
				     "kind": r.kind, "verbs": VERBS}
				if r.short:
					d["shortNames"] = r.short
				if r.categories:
					d["categories"] = r.categories
				if r.hash:
					d["storageVersionHash"] = r.hash
				out.append(d)
				if r.group == "":
					out.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
						    "kind": r.kind, "verbs": ["get", "patch", "update"]})
			return {"kind": "APIResourceList", "apiVersion": "v1",
				"groupVersion": f"{group}/{version}" if group else version, "resources": out}

		def resource_path(self, group, version, rest):
			if not any(r.group == group and version in r.versions for r in RESOURCES):
				raise self.not_found()
			if not rest:
				return self.send_json(200, self.resource_list(group, version))
			ns, name = "", None
			if rest[0] == "namespaces" and len(rest) >= 3 and group == "":
				ns, rest = rest[1], rest[2:]
			elif rest[0] == "namespaces" and len(rest) >= 3:
				ns, rest = rest[1], rest[2:]
			plural = rest[0]
			res = BY_PLURAL.get(plural)
			if res is None or res.group != group or version not in res.versions or len(rest) > 2:
				raise self.not_found()
			if ns and not res.namespaced:
				raise self.not_found()
			if len(rest) == 2:
				name = rest[1]
			if self.command != "GET":
				raise ApiError(status(405, "MethodNotAllowed",
						      "the server does not allow this method on the requested resource",
						      {"name": name or "", "kind": res.plural} if name else {}))
			watch = self.query.get("watch", "") in ("1", "true", "True")
			verb = "watch" if watch else ("get" if name else "list")
			self.injected(res, verb)
			if name and not watch:
				return self.get_one(res, version, ns, name)
			if name:
				# watch on one object: metadata.name field selector, as the apiserver does.
				fs = self.query.get("fieldSelector", "")
				self.query["fieldSelector"] = (fs + "," if fs else "") + f"metadata.name={name}"
			if watch:
				return self.watch(res, version, ns)
			return self.list(res, version, ns)

		def injected(self, res, verb):
			if (res.plural, verb) in store.forbidden or (res.plural, "*") in store.forbidden:
				scope = "at the cluster scope" if not self.ns_of_path() else f'in the namespace "{self.ns_of_path()}"'
				raise ApiError(status(403, "Forbidden",
						      f'{res.group_resource()} is forbidden: User "system:serviceaccount:nodemesh:nodemesh" '
						      f'cannot {verb} resource "{res.plural}" in API group "{res.group}" {scope}',
						      {"group": res.group, "kind": res.plural} if res.group else {"kind": res.plural}))
			with store.cond:
				for f in store.failures:
					if f["count"] > 0 and f.get("resource") in (None, res.plural) and \
					   f.get("verb") in (None, verb):
						f["count"] -= 1
						rule = dict(f)
						break
				else:
					return
			code = int(rule.get("status", 500))
			if code == 0:
				self.record(0)
				self.abort()
				raise ConnectionError("injected connection drop")
			reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
				  504: "Timeout"}.get(code, "InternalError")
			msg = rule.get("message") or {429: "Too many requests, please try again later.",
						      503: "the server is currently unable to handle the request"}.get(
				code, "an error on the server (\"\") has prevented the request from succeeding")
			hdrs = {}
			details = None
			if "retryAfter" in rule:
				hdrs["Retry-After"] = str(rule["retryAfter"])
				details = {"retryAfterSeconds": int(rule["retryAfter"])}
			raise ApiError(status(code, reason, msg, details), hdrs)

		def ns_of_path(self):
			parts = self.url.path.split("/")
			return parts[parts.index("namespaces") + 1] if "namespaces" in parts[:-1] and \
				parts.index("namespaces") + 2 < len(parts) else ""

		def get_one(self, res, version, ns, name):
			with store.cond:
				obj = store.objects[res.plural].get((ns if res.namespaced else "", name))
			if obj is None:
				raise ApiError(status(404, "NotFound", f'{res.group_resource()} "{name}" not found',
						      {"name": name, "group": res.group, "kind": res.plural} if res.group
						      else {"name": name, "kind": res.plural}))
			self.send_json(200, with_version(obj, res, version))

		def selectors(self, res):
			return (parse_field_selector(self.query.get("fieldSelector", ""), res),
				parse_label_selector(self.query.get("labelSelector", "")))

		def list(self, res, version, ns):
			q = self.query
			freqs, lreqs = self.selectors(res)
			rv_s = q.get("resourceVersion")
			match = q.get("resourceVersionMatch", "")
			cont = q.get("continue", "")
			try:
				limit = int(q.get("limit", "0") or 0)
			except ValueError:
				raise bad_request(f"invalid limit: {q.get('limit')}")
			causes = []
			if match and match not in ("Exact", "NotOlderThan"):
				causes.append({"field": "resourceVersionMatch", "message": f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan", ""'})
			if match and not rv_s:
				causes.append({"field": "resourceVersionMatch", "message": "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"})
			if match and cont:
				causes.append({"field": "resourceVersionMatch", "message": "Forbidden: resourceVersionMatch is forbidden when continue is provided"})
			if match == "Exact" and rv_s == "0":
				causes.append({"field": "resourceVersionMatch", "message": "Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""})
			if causes:
				raise invalid_list_options(causes)
			if rv_s not in (None, "", "0"):
				try:
					rv_n = int(rv_s)
				except ValueError:
					raise bad_request(f"invalid resource version: {rv_s}")
			with store.cond:
				cur = store.rv
				if cont:
					if rv_s not in (None, "", "0"):
						raise bad_request("specifying resource version is not allowed when using continue")
					at, start = decode_continue(cont)
					if at < store.compacted:
						raise ApiError(status(410, "Expired",
								      "The provided continue parameter is too old to display a consistent list result. "
								      "You can start a new list without the continue parameter, or use the continue token "
								      "in this response to retrieve the remainder of the results. Continuing with the "
								      "provided token results in an inconsistent list - objects that were created, "
								      "modified, or deleted between the time the first chunk was returned and now may "
								      "show up in the list.", None,
								      {"continue": encode_continue(-1, start)}))
					paged = True
				elif rv_s in (None, ""):
					at, start, paged = cur, "", limit > 0
				elif rv_s == "0":
					# Served from the watch cache, which ignores limit.
					at, start, paged = cur, "", False
				elif match == "Exact" or (not match and limit > 0):
					if rv_n < store.compacted:
						raise ApiError(status(410, "Expired", "The resourceVersion for the provided list is too old."))
					if rv_n > cur:
						raise too_large_rv(rv_n, cur)
					at, start, paged = rv_n, "", limit > 0
				else:
					# NotOlderThan: wait up to 3 s for the cache to catch up, as the watch cache does.
					deadline = time.monotonic() + 3
					while store.rv < rv_n and time.monotonic() < deadline:
						store.cond.wait(deadline - time.monotonic())
					if store.rv < rv_n:
						raise too_large_rv(rv_n, store.rv)
					at, start, paged = store.rv, "", limit > 0 and match == "NotOlderThan"
				state = store.state_at(res, at)
			keys = sorted(state, key=key_str)
			items, next_key, remaining = [], None, 0
			for i, k in enumerate(keys):
				if start and key_str(k) < start:
					continue
				obj = state[k]
				if not matches(obj, ns, freqs, lreqs):
					continue
				if paged and len(items) == limit:
					next_key = key_str(k)
					remaining = sum(1 for kk in keys[i:] if matches(state[kk], ns, freqs, lreqs))
					break
				items.append(list_item(obj, res, version))
			meta = {"resourceVersion": str(at)}
			if next_key is not None:
				meta["continue"] = encode_continue(at, next_key)
				if not freqs and not lreqs:
					meta["remainingItemCount"] = remaining
			lst = {"kind": res.kind + "List", "apiVersion": res.api_version(version),
			       "metadata": meta, "items": items}
			if "as=Table" in self.headers.get("Accept", ""):
				return self.send_json(200, self.table(res, lst))
			self.send_json(200, lst)

		def table(self, res, lst):
			cols = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
				 "description": "Name must be unique within a namespace."}]
			if res.kind == "Pod":
				cols += [{"name": "Status", "type": "string", "format": "", "priority": 0,
					  "description": "The aggregate status of the containers in this pod."},
					 {"name": "IP", "type": "string", "format": "", "priority": 1,
					  "description": "The IP address assigned to the pod"},
					 {"name": "Node", "type": "string", "format": "", "priority": 1,
					  "description": "The node the pod is scheduled to"}]
			cols.append({"name": "Age", "type": "string", "format": "", "priority": 0,
				     "description": "CreationTimestamp is a timestamp representing the server time when this object was created."})
			rows = []
			for o in lst["items"]:
				md = o["metadata"]
				cells = [md["name"]]
				if res.kind == "Pod":
					cells += [o.get("status", {}).get("phase", ""),
						  o.get("status", {}).get("podIP", "<none>"),
						  o.get("spec", {}).get("nodeName", "<none>")]
				cells.append(age(md.get("creationTimestamp")))
				pm = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
				      "metadata": md}
				rows.append({"cells": cells, "object": pm})
			return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": lst["metadata"],
				"columnDefinitions": cols, "rows": rows}

		# -- watch
		def watch(self, res, version, ns):
			q = self.query
			freqs, lreqs = self.selectors(res)
			rv_s = q.get("resourceVersion", "")
			bookmarks = q.get("allowWatchBookmarks", "") in ("1", "true", "True")
			send_initial = q.get("sendInitialEvents", "") in ("1", "true", "True")
			match = q.get("resourceVersionMatch", "")
			try:
				timeout = float(q.get("timeoutSeconds", "") or 1800)
			except ValueError:
				raise bad_request(f"invalid timeoutSeconds: {q.get('timeoutSeconds')}")
			if send_initial and (match != "NotOlderThan" or not bookmarks):
				raise invalid_list_options([{"field": "sendInitialEvents", "message":
							    "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan and allowWatchBookmarks to true" if match != "NotOlderThan" else
							    "Forbidden: sendInitialEvents requires allowWatchBookmarks=true"}])
			if match and not send_initial:
				raise invalid_list_options([{"field": "resourceVersionMatch", "message":
							    "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"}])
			if rv_s not in ("", "0"):
				try:
					rv_n = int(rv_s)
				except ValueError:
					raise bad_request(f"invalid resource version: {rv_s}")
			initial, gone = [], None
			with store.cond:
				if store.force_gone.get(res.plural, 0) > 0:
					store.force_gone[res.plural] -= 1
					gone = too_old_rv_status(rv_s or store.rv, store.compacted)
				elif rv_s in ("", "0") or send_initial:
					start = store.rv
					if send_initial and rv_s not in ("", "0"):
						if rv_n < store.compacted:
							gone = too_old_rv_status(rv_n, store.compacted)
						start = max(start, rv_n)
					if gone is None:
						state = store.state_at(res, start)
						initial = [state[k] for k in sorted(state, key=key_str)
							   if matches(state[k], ns, freqs, lreqs)]
				else:
					if rv_n < store.compacted:
						gone = too_old_rv_status(rv_n, store.compacted)
					start = rv_n
				w = None
				if gone is None:
					store.watch_seq += 1
					w = Watch(store.watch_seq, res, ns, dict(q), start, self)
					store.watches[w.id] = w
					store.watches_started[res.plural] += 1
			self.send_response(200)
			self.send_header("Audit-Id", str(uuid.uuid4()))
			self.send_header("Cache-Control", "no-cache, private")
			self.send_header("Content-Type", "application/json")
			self.send_header("Transfer-Encoding", "chunked")
			self.end_headers()
			self.record(200, watch=True)
			try:
				if gone is not None:
					self.chunk({"type": "ERROR", "object": gone})
					self.end_chunks()
					return
				self.stream(w, res, version, ns, freqs, lreqs, initial, bookmarks,
					    send_initial, time.monotonic() + timeout)
			finally:
				if w is not None:
					with store.cond:
						store.watches.pop(w.id, None)

		def chunk(self, event=None, raw=None):
			data = raw if raw is not None else (dumps(event) + "\n").encode()
			self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

		def end_chunks(self):
			self.wfile.write(b"0\r\n\r\n")

		def stream(self, w, res, version, ns, freqs, lreqs, initial, bookmarks, send_initial, deadline):
			for obj in initial:
				self.chunk({"type": "ADDED", "object": with_version(obj, res, version)})
			if send_initial:
				self.chunk({"type": "BOOKMARK", "object": bookmark_object(res, version, w.pos, True)})
			next_bm = time.monotonic() + api.bookmark_interval
			final_bm = bookmarks and deadline - time.monotonic() > 2
			while True:
				out, action = [], None
				with store.cond:
					while True:
						for ev in store.events_after(w.pos):
							w.pos = ev.rv
							if ev.res is not res:
								continue
							typ = self.transition(ev, ns, freqs, lreqs)
							if typ:
								out.append((ev.rv, {"type": typ, "object": with_version(ev.obj, res, version)}))
						# A bookmark carries the newest revision, even when it belongs to another kind.
						w.pos = max(w.pos, store.rv)
						now = time.monotonic()
						if w.drop:
							action = "drop"
						elif w.gone:
							action = "gone"
						elif w.close or now >= deadline:
							action = "close"
						elif out:
							break
						elif bookmarks and (w.bookmark or now >= next_bm or
								    (final_bm and now >= deadline - 1)):
							if final_bm and now >= deadline - 1:
								final_bm = False
							action = "bookmark"
						if action:
							break
						wait = deadline - now
						if bookmarks:
							wait = min(wait, next_bm - now)
							if final_bm:
								wait = min(wait, deadline - 1 - now)
						store.cond.wait(max(0.01, min(wait, 1.0)))
					# A cut hits the first event committed after the cut was asked for.
					cut = w.cut if w.cut and any(rv > w.cut[1] for rv, _ in out) else None
					if cut:
						w.cut = None
					w.bookmark = False
					pos = w.pos
				for rv, ev in out:
					if cut and rv > cut[1]:
						# Half of the event's line in a chunk, then the stream ends mid-event.
						line = dumps(ev).encode()
						self.chunk(raw=line[:len(line) // 2])
						if cut[0] == "clean":
							self.end_chunks()
						else:
							self.abort()
						return
					self.chunk(ev)
					w.events_sent += 1
				if action == "drop":
					self.abort()
					return
				if action == "gone":
					self.chunk({"type": "ERROR", "object": too_old_rv_status(w.start_rv, store.compacted)})
					self.end_chunks()
					return
				if action == "close":
					self.end_chunks()
					return
				if action == "bookmark":
					self.chunk({"type": "BOOKMARK", "object": bookmark_object(res, version, pos)})
					next_bm = time.monotonic() + api.bookmark_interval

		@staticmethod
		def transition(ev, ns, freqs, lreqs):
			new_m = ev.type != "DELETED" and matches(ev.obj, ns, freqs, lreqs)
			old_m = matches(ev.prev, ns, freqs, lreqs) if ev.prev is not None else False
			if ev.type == "DELETED":
				return "DELETED" if old_m else None
			if new_m and old_m:
				return "MODIFIED"
			if new_m:
				return "ADDED"
			if old_m:
				return "DELETED"
			return None

	return Handler


# ---------------------------------------------------------------- admin

def run_steps(store, steps, out):
	results = []
	for st in steps:
		op = st.get("op")
		r = {"op": op}
		if op == "apply":
			objs = st["object"].get("items") if st["object"].get("kind") == "List" else [st["object"]]
			for o in objs:
				r["resourceVersion"] = str(store.apply(o))
		elif op in ("patch", "delete"):
			res = res_by_name(st.get("resource") or st["kind"])
			ns = st.get("namespace", "default")
			if op == "patch":
				r["resourceVersion"] = str(store.patch(res, ns, st["name"], st["merge"]))
			else:
				r["resourceVersion"] = str(store.delete(res, ns, st["name"], st.get("graceful", False)))
		elif op in ("cut", "drop", "close_watches", "gone", "bookmark"):
			with store.cond:
				if op == "gone" and not st.get("now"):
					res = res_by_name(st.get("resource", "pods"))
					store.force_gone[res.plural] = store.force_gone.get(res.plural, 0) + int(st.get("count", 1))
				else:
					n = 0
					for w in store.watches.values():
						if st.get("resource") and w.res is not res_by_name(st["resource"]):
							continue
						n += 1
						if op == "cut":
							w.cut = (st.get("mode", "half"), store.rv)
						elif op == "drop":
							w.drop = True
						elif op == "close_watches":
							w.close = True
						elif op == "gone":
							w.gone = True
						else:
							w.bookmark = True
					r["watches"] = n
				store.cond.notify_all()
		elif op == "compact":
			r["compacted"] = str(store.compact(st.get("resourceVersion")))
		elif op == "expire_token":
			with open(out["token_file"]) as f:
				tok = f.read().strip()
			with store.cond:
				store.expired_tokens.add(tok)
		elif op == "rotate_token":
			tok = st.get("token") or secrets.token_urlsafe(32)
			write_atomic(out["token_file"], tok)
			r["token"] = tok
		elif op == "fail":
			with store.cond:
				store.failures.append({"status": int(st.get("status", 500)), "count": int(st.get("count", 1)),
						       "resource": res_by_name(st["resource"]).plural if st.get("resource") else None,
						       "verb": st.get("verb"), **({"retryAfter": st["retryAfter"]} if "retryAfter" in st else {}),
						       **({"message": st["message"]} if "message" in st else {})})
		elif op in ("forbid", "allow"):
			key = (res_by_name(st["resource"]).plural, st.get("verb", "*"))
			with store.cond:
				(store.forbidden.add if op == "forbid" else store.forbidden.discard)(key)
		elif op == "crd":
			with store.cond:
				store.crd_present = bool(st.get("present", True))
				if not store.crd_present:
					# Removing the CRD ends its watches.
					for w in store.watches.values():
						if w.res.group == CRD_GROUP:
							w.close = True
				store.cond.notify_all()
		elif op == "sleep":
			time.sleep(float(st.get("ms", 0)) / 1000)
		elif op == "wait_watch":
			res = res_by_name(st.get("resource", "pods"))
			deadline = time.monotonic() + float(st.get("timeout_ms", 10000)) / 1000
			with store.cond:
				def ok():
					if "started" in st:
						return store.watches_started[res.plural] >= int(st["started"])
					return sum(1 for w in store.watches.values() if w.res is res) >= int(st.get("count", 1))
				while not ok() and time.monotonic() < deadline:
					store.cond.wait(0.05)
				if not ok():
					raise TimeoutError(f"wait_watch {res.plural} {st} timed out")
		else:
			raise ValueError(f"unknown op {op!r}")
		results.append(r)
	return results


def make_admin_handler(store, out):
	class Admin(BaseHTTPRequestHandler):
		protocol_version = "HTTP/1.1"

		def log_message(self, *a):
			pass

		def reply(self, code, obj):
			body = (json.dumps(obj, indent=1) + "\n").encode()
			self.send_response(code)
			self.send_header("Content-Type", "application/json")
			self.send_header("Content-Length", str(len(body)))
			self.end_headers()
			self.wfile.write(body)

		def do_GET(self):
			u = urllib.parse.urlsplit(self.path)
			q = dict(urllib.parse.parse_qsl(u.query))
			with store.cond:
				if u.path == "/state":
					return self.reply(200, {
						"resourceVersion": str(store.rv), "compacted": str(store.compacted),
						"crdPresent": store.crd_present, "scenario": store.scenario,
						"watchesStarted": store.watches_started,
						"watches": [{"id": w.id, "resource": w.res.plural, "namespace": w.ns,
							     "query": w.query, "startResourceVersion": str(w.start_rv),
							     "eventsSent": w.events_sent} for w in store.watches.values()]})
				if u.path == "/requests":
					since = int(q.get("since", 0))
					return self.reply(200, [r for r in store.requests if r["seq"] > since])
				if u.path == "/objects":
					res = res_by_name(q.get("resource", "pods"))
					return self.reply(200, [store.objects[res.plural][k]
								for k in sorted(store.objects[res.plural], key=key_str)])
			self.reply(404, {"error": "unknown path"})

		def do_POST(self):
			body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
			try:
				doc = json.loads(body or b"{}")
				steps = doc.get("steps", [doc]) if isinstance(doc, dict) else doc
				res = run_steps(store, steps, out)
				with store.cond:
					rv = store.rv
				self.reply(200, {"resourceVersion": str(rv), "results": res})
			except TimeoutError as e:
				self.reply(408, {"error": str(e)})
			except (ValueError, KeyError, TypeError, OSError) as e:
				self.reply(400, {"error": f"{type(e).__name__}: {e}"})

	return Admin


# ---------------------------------------------------------------- setup

def write_atomic(path, text):
	tmp = f"{path}.tmp{os.getpid()}"
	with open(tmp, "w") as f:
		f.write(text)
	os.replace(tmp, path)


def make_certs(d):
	ca, crt, key = (os.path.join(d, n) for n in ("ca.crt", "server.crt", "server.key"))
	if all(os.path.exists(p) for p in (ca, crt, key)):
		return ca, crt, key
	ext = os.path.join(d, "server.ext")
	with open(ext, "w") as f:
		f.write("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
			"DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
			"extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
	run = lambda *a: subprocess.run(["openssl", *a], check=True, stdout=subprocess.DEVNULL,
					stderr=subprocess.DEVNULL)
	ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
	run("req", "-x509", *ec, "-keyout", os.path.join(d, "ca.key"), "-out", ca, "-days", "7",
	    "-subj", "/CN=nodemesh-fixture-ca", "-addext", "basicConstraints=critical,CA:TRUE",
	    "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	run("req", *ec, "-keyout", key, "-out", os.path.join(d, "server.csr"), "-subj", "/CN=kube-apiserver")
	run("x509", "-req", "-in", os.path.join(d, "server.csr"), "-CA", ca, "-CAkey", os.path.join(d, "ca.key"),
	    "-CAcreateserial", "-out", crt, "-days", "7", "-extfile", ext)
	return ca, crt, key


def load_objects(store, paths):
	files = []
	for p in paths:
		if os.path.isdir(p):
			files += [os.path.join(p, n) for n in sorted(os.listdir(p)) if n.endswith(".json")]
		else:
			files.append(p)
	for fn in files:
		with open(fn) as f:
			doc = json.load(f)
		items = doc["items"] if doc.get("kind", "").endswith("List") else [doc]
		for o in items:
			store.apply(o)


def serve(args):
	d = os.path.abspath(args.dir)
	os.makedirs(d, exist_ok=True)
	sa = os.path.join(d, "serviceaccount")
	os.makedirs(sa, exist_ok=True)
	token_file = os.path.abspath(args.token_file) if args.token_file else os.path.join(sa, "token")
	if not os.path.exists(token_file):
		write_atomic(token_file, secrets.token_urlsafe(32))
	write_atomic(os.path.join(sa, "namespace"), "nodemesh")

	store = Store(args.rv_start)
	load_objects(store, args.objects or [os.path.join(HERE, "objects")])
	store.compact()

	log = open(args.log, "a") if args.log else None
	api = Api(store, token_file, args.bookmark_interval, log)
	srv = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(api))
	srv.daemon_threads = True
	scheme, ca = "http", ""
	if not args.plain:
		ca, crt, key = make_certs(d)
		ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
		ctx.load_cert_chain(crt, key)
		ctx.set_alpn_protocols(["http/1.1"])
		# The handshake runs in the connection's thread, not in accept.
		srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
		scheme = "https"
		with open(ca) as src:
			write_atomic(os.path.join(sa, "ca.crt"), src.read())
	port = srv.server_address[1]
	api.url = f"{scheme}://127.0.0.1:{port}"
	out = {"token_file": token_file}
	adm = ThreadingHTTPServer(("127.0.0.1", args.admin_port), make_admin_handler(store, out))
	adm.daemon_threads = True
	admin_url = f"http://127.0.0.1:{adm.server_address[1]}"

	kubeconfig = os.path.join(d, "kubeconfig")
	cluster = f"    certificate-authority: {ca}\n" if ca else ""
	write_atomic(kubeconfig, (
		"apiVersion: v1\nkind: Config\nclusters:\n- name: fixture\n  cluster:\n"
		f"    server: {api.url}\n{cluster}"
		"contexts:\n- name: fixture\n  context:\n    cluster: fixture\n    user: nodemesh\n"
		"    namespace: default\ncurrent-context: fixture\nusers:\n- name: nodemesh\n  user:\n"
		f"    tokenFile: {token_file}\n"))

	threading.Thread(target=adm.serve_forever, daemon=True).start()
	threading.Thread(target=srv.serve_forever, daemon=True).start()
	if args.scenario:
		with open(args.scenario) as f:
			steps = json.load(f)
		steps = steps.get("steps", steps) if isinstance(steps, dict) else steps
		def scenario():
			try:
				run_steps(store, steps, out)
				store.scenario = "done"
			except Exception as e:  # noqa: BLE001 - reported through /state
				store.scenario = f"failed: {type(e).__name__}: {e}"
		store.scenario = "running"
		threading.Thread(target=scenario, daemon=True).start()

	# The ready file is a KEY=VALUE list (sh and C friendly), written last.
	write_atomic(os.path.join(d, "ready"), "".join(f"{k}={v}\n" for k, v in [
		("NM_K8S_PID", os.getpid()), ("NM_K8S_URL", api.url), ("NM_K8S_PORT", port),
		("NM_K8S_ADMIN", admin_url), ("NM_K8S_CA", ca), ("NM_K8S_TOKEN_FILE", token_file),
		("NM_K8S_KUBECONFIG", kubeconfig), ("NM_K8S_SA_DIR", sa),
		("KUBERNETES_SERVICE_HOST", "127.0.0.1"), ("KUBERNETES_SERVICE_PORT", port)]))
	try:
		while True:
			time.sleep(3600)
	except KeyboardInterrupt:
		pass


def ctl(args):
	try:
		if args.get:
			with urllib.request.urlopen(args.admin + args.get, timeout=30) as r:
				sys.stdout.write(r.read().decode())
			return 0
		if args.step == "-":
			body = sys.stdin.read()
		elif args.step.startswith("@"):
			with open(args.step[1:]) as f:
				body = f.read()
		else:
			body = args.step
		req = urllib.request.Request(args.admin + "/steps", data=body.encode(),
					     headers={"Content-Type": "application/json"})
		with urllib.request.urlopen(req, timeout=120) as r:
			sys.stdout.write(r.read().decode())
		return 0
	except urllib.error.HTTPError as e:
		sys.stderr.write(f"apiserver ctl: {e.code}: {e.read().decode()}")
		return 1


def main():
	ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
	sub = ap.add_subparsers(dest="cmd", required=True)
	s = sub.add_parser("serve")
	s.add_argument("--dir", required=True, help="work dir: certs, token, kubeconfig, ready file")
	s.add_argument("--objects", action="append", help="JSON object/List file or dir (repeatable; default tests/k8s/objects)")
	s.add_argument("--plain", action="store_true", help="plain HTTP instead of HTTPS")
	s.add_argument("--port", type=int, default=0)
	s.add_argument("--admin-port", type=int, default=0)
	s.add_argument("--token-file")
	s.add_argument("--scenario", help="JSON steps run after start")
	s.add_argument("--bookmark-interval", type=float, default=60.0)
	s.add_argument("--rv-start", type=int, default=1000)
	s.add_argument("--log")
	c = sub.add_parser("ctl")
	c.add_argument("admin")
	c.add_argument("step", nargs="?", default="-")
	c.add_argument("--get")
	args = ap.parse_args()
	if args.cmd == "serve":
		serve(args)
		return 0
	return ctl(args)


if __name__ == "__main__":
	sys.exit(main())
