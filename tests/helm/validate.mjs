// SPDX-License-Identifier: Apache-2.0
//
// validate.mjs - validate rendered Kubernetes manifests with two real
// validators, none of their schemas written here:
//  1. kubernetes-models: the JSON-schema validate() of each kind (generated
//     from the Kubernetes OpenAPI spec; types, required fields, enums,
//     formats); @kubernetes-models/prometheus-operator for ServiceMonitor.
//  2. tsc over kubernetes-types@1.30.0 (generated from the Kubernetes 1.30
//     OpenAPI spec): every object is type-checked as a literal of its 1.30
//     type, so a field that 1.30 does not have (excess property), a missing
//     required field or a wrong type fails. Kinds outside kubernetes-types
//     (ServiceMonitor) are checked by 1. only.
// Also checked: the AuthorizationPolicy CRD's v1 and v1beta1 openAPIV3Schema
// accepts the repository's policies/*.yaml (ajv) and refuses a broken one.
//
//   node validate.mjs MODULES_DIR FILE.yaml...
// Prints "ok FILE: N objects (kinds)" or "error FILE: ..." lines; exits 1 on
// any error.
import { readFileSync, writeFileSync, mkdtempSync, rmSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { tmpdir } from "node:os";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [modules, ...files] = process.argv.slice(2);
if (!modules || files.length === 0) {
	console.error("usage: node validate.mjs MODULES_DIR FILE.yaml...");
	process.exit(2);
}
const req = createRequire(join(resolve(modules), "package.json"));
// ESM-only packages: import their files by path (require.resolve would
// apply the "require" export condition, which they do not have).
const imp = (spec) => import(pathToFileURL(join(resolve(modules), "node_modules", `${spec}.js`)).href);
const YAML = req("yaml");

// apiVersion/kind -> [kubernetes-models module, kubernetes-types module]
const KINDS = {
	"v1/ConfigMap": ["kubernetes-models/v1/ConfigMap", "kubernetes-types/core/v1"],
	"v1/Service": ["kubernetes-models/v1/Service", "kubernetes-types/core/v1"],
	"v1/ServiceAccount": ["kubernetes-models/v1/ServiceAccount", "kubernetes-types/core/v1"],
	"apps/v1/DaemonSet": ["kubernetes-models/apps/v1/DaemonSet", "kubernetes-types/apps/v1"],
	"rbac.authorization.k8s.io/v1/ClusterRole": ["kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole", "kubernetes-types/rbac/v1"],
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": ["kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding", "kubernetes-types/rbac/v1"],
	"scheduling.k8s.io/v1/PriorityClass": ["kubernetes-models/scheduling.k8s.io/v1/PriorityClass", "kubernetes-types/scheduling/v1"],
	"apiextensions.k8s.io/v1/CustomResourceDefinition": ["kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition", "kubernetes-types/apiextensions/v1"],
	"monitoring.coreos.com/v1/ServiceMonitor": ["@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor", null],
};

let failed = 0;
const tsDir = mkdtempSync(join(tmpdir(), "nm-helm-ts-"));
const tsLines = [];
const tsOrigin = [];
const policies = [];

for (const file of files) {
	let docs;
	try {
		docs = YAML.parseAllDocuments(readFileSync(file, "utf8"));
	} catch (e) {
		console.log(`error ${file}: ${e.message}`);
		failed++;
		continue;
	}
	const kinds = [];
	let errs = 0;
	for (const doc of docs) {
		if (doc.errors.length) {
			console.log(`error ${file}: YAML: ${doc.errors[0].message}`);
			errs++;
			continue;
		}
		const obj = doc.toJS();
		if (obj === null || obj === undefined) continue;
		const key = `${obj.apiVersion}/${obj.kind}`;
		const name = `${obj.kind}/${obj.metadata?.name}`;
		const entry = KINDS[key];
		if (!entry) {
			console.log(`error ${file}: ${name}: ${key} has no validator (add it to KINDS)`);
			errs++;
			continue;
		}
		const mod = await imp(entry[0]);
		const Model = mod[obj.kind] ?? mod.default;
		try {
			new Model(obj).validate();
		} catch (e) {
			console.log(`error ${file}: ${name}: ${e.message}`);
			errs++;
		}
		if (entry[1]) {
			const i = tsLines.length;
			// kubernetes-types leaves the x-kubernetes-* schema extensions
			// out of JSONSchemaProps (kubernetes-models checks them above).
			const forTs = key === "apiextensions.k8s.io/v1/CustomResourceDefinition"
				? JSON.parse(JSON.stringify(obj), (k, v) => (k.startsWith("x-kubernetes-") ? undefined : v))
				: obj;
			tsLines.push(`import type { ${obj.kind} as T${i} } from "${entry[1]}";\n` +
				`export const o${i}: T${i} = ${JSON.stringify(forTs, null, 1)};\n`);
			tsOrigin.push(`${file}: ${name}`);
		}
		if (key === "apiextensions.k8s.io/v1/CustomResourceDefinition" &&
		    obj.metadata.name === "authorizationpolicies.security.istio.io")
			policies.push([file, obj]);
		kinds.push(obj.kind);
	}
	if (errs) failed += errs;
	else console.log(`ok ${file}: ${kinds.length} objects (${kinds.join(", ")})`);
}

// 2. One tsc run over all objects (about 3 s).
if (tsLines.length) {
	for (let i = 0; i < tsLines.length; i++) writeFileSync(join(tsDir, `o${i}.ts`), tsLines[i]);
	writeFileSync(join(tsDir, "tsconfig.json"), JSON.stringify({
		compilerOptions: {
			strict: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext",
			typeRoots: [], types: [], skipLibCheck: true, target: "es2022",
			baseUrl: ".", paths: { "kubernetes-types/*": [join(resolve(modules), "node_modules/kubernetes-types/*")] },
		},
		include: ["*.ts"],
	}));
	const tsc = req.resolve("typescript/bin/tsc");
	const r = spawnSync(process.execPath, [tsc, "-p", tsDir, "--pretty", "false"], { encoding: "utf8" });
	if (r.status !== 0) {
		const out = (r.stdout + r.stderr).trim().split("\n");
		for (const line of out.slice(0, 20)) {
			const m = line.match(/^o(\d+)\.ts/);
			console.log(`error tsc (Kubernetes 1.30 types): ${m ? tsOrigin[+m[1]] + ": " : ""}${line}`);
		}
		failed++;
	} else {
		console.log(`ok tsc: ${tsLines.length} objects match the Kubernetes 1.30 types (kubernetes-types@${req("kubernetes-types/package.json").version})`);
	}
}
rmSync(tsDir, { recursive: true, force: true });

// 3. The AuthorizationPolicy CRD's schemas against real policies.
if (policies.length) {
	const Ajv = req("ajv").default ?? req("ajv");
	const here = new URL(".", import.meta.url).pathname;
	const pdir = resolve(here, "../../policies");
	const samples = readdirSync(pdir).filter((f) => /\.ya?ml$/.test(f))
		.flatMap((f) => YAML.parseAllDocuments(readFileSync(join(pdir, f), "utf8")).map((d) => [f, d.toJS()]))
		.filter(([, o]) => o && o.kind === "AuthorizationPolicy");
	const [file, crd] = policies[0];
	for (const v of crd.spec.versions) {
		const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, logger: false });
		const check = ajv.compile(v.schema.openAPIV3Schema);
		let bad = 0;
		for (const [f, o] of samples) {
			if (!check(o)) {
				console.log(`error ${file}: CRD ${v.name} refuses policies/${f}: ${ajv.errorsText(check.errors)}`);
				bad++;
			}
		}
		const broken = { apiVersion: `security.istio.io/${v.name}`, kind: "AuthorizationPolicy",
			metadata: { name: "x" }, spec: { action: "PERMIT", rules: "none" } };
		if (check(broken)) {
			console.log(`error ${file}: CRD ${v.name} accepts a broken policy (action PERMIT, rules a string)`);
			bad++;
		}
		if (bad) failed += bad;
		else console.log(`ok ${file}: CRD ${v.name} schema accepts ${samples.length} policies/ files, refuses a broken one`);
	}
}

process.exit(failed ? 1 : 0);
