// Checks the aggregator's OpenAPI document against the live server.
//
//   node check_openapi.mjs --url http://127.0.0.1:PORT --modules DIR [--param id=dev-1 ...]
//
// 1. GET /api/openapi.json and validate it as an OpenAPI 3.1 document
//    (@seriousme/openapi-schema-validator).
// 2. Every documented GET path is requested (path parameters from --param, else the parameter's
//    `example`): the status must be documented, the Content-Type must be the documented media type,
//    and a JSON body must match the documented schema (Ajv, JSON Schema 2020-12, as OpenAPI 3.1
//    uses). An event stream's first `data:` must match `x-event-data`.
// 3. Each operation's `x-check-requests` (other parameters, query strings) must answer the stated
//    status with a body of the documented shape: the 400/404 answers are part of the contract.
// Prints one JSON summary line; exits 1 on the first list of failures.
import { createRequire } from "node:module";
import path from "node:path";

const args = process.argv.slice(2);
const opt = { params: {} };
for (let i = 0; i < args.length; i += 2) {
  const [k, v] = [args[i], args[i + 1]];
  if (k === "--url") opt.url = v.replace(/\/$/, "");
  else if (k === "--modules") opt.modules = v;
  else if (k === "--param") {
    const eq = v.indexOf("=");
    opt.params[v.slice(0, eq)] = v.slice(eq + 1);
  } else {
    console.error(`unknown argument ${k}`);
    process.exit(2);
  }
}
if (!opt.url || !opt.modules) {
  console.error("usage: check_openapi.mjs --url BASE --modules NODE_MODULES_PARENT [--param k=v]");
  process.exit(2);
}
const require = createRequire(path.join(opt.modules, "package.json"));
const { Validator } = await import(require.resolve("@seriousme/openapi-schema-validator"));
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default ?? require("ajv-formats");

const failures = [];
const fail = (msg) => failures.push(msg);

const docRes = await fetch(`${opt.url}/api/openapi.json`);
if (docRes.status !== 200) {
  console.log(JSON.stringify({ ok: false, error: `GET /api/openapi.json: HTTP ${docRes.status}` }));
  process.exit(1);
}
const doc = await docRes.json();
const validator = new Validator();
const docCheck = await validator.validate(structuredClone(doc));
if (!docCheck.valid) {
  console.log(JSON.stringify({ ok: false, error: "not a valid OpenAPI document", details: docCheck.errors }));
  process.exit(1);
}
if (!doc.openapi.startsWith("3.")) fail(`openapi ${doc.openapi}: want 3.x`);

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: "openapi", components: doc.components });
const validatorFor = (schema) =>
  ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"openapi#/components/')));

async function firstEvent(res, ms) {
  const reader = res.body.getReader();
  const deadline = Date.now() + ms;
  let text = "";
  while (Date.now() < deadline && !text.includes("\n\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  await reader.cancel();
  const line = text.split("\n").find((l) => l.startsWith("data:"));
  return line ? line.slice(5).trim() : null;
}

let requests = 0;
async function check(route, op, params, query, wantStatus) {
  const url =
    opt.url +
    route.replace(/\{([^}]+)\}/g, (_, n) => encodeURIComponent(params[n])) +
    (Object.keys(query).length ? "?" + new URLSearchParams(query) : "");
  const where = `GET ${url.slice(opt.url.length)}`;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 10000);
  let res;
  try {
    res = await fetch(url, { signal: ctl.signal });
  } catch (e) {
    clearTimeout(timer);
    return fail(`${where}: ${e}`);
  }
  requests++;
  const doc = op.responses[String(res.status)];
  if (wantStatus !== undefined && res.status !== wantStatus) {
    fail(`${where}: HTTP ${res.status}, x-check-requests wants ${wantStatus}`);
  }
  if (!doc) {
    clearTimeout(timer);
    await res.body?.cancel();
    return fail(`${where}: HTTP ${res.status} is not documented`);
  }
  const ctype = (res.headers.get("content-type") || "").split(";")[0].trim();
  const media = doc.content?.[ctype];
  if (!media) {
    clearTimeout(timer);
    await res.body?.cancel();
    return fail(`${where}: Content-Type ${ctype} is not documented for ${res.status}`);
  }
  let body;
  if (ctype === "text/event-stream") {
    const data = await firstEvent(res, 5000);
    clearTimeout(timer);
    if (data === null) return fail(`${where}: no event within 5 s`);
    if (!op["x-event-data"]) return fail(`${where}: event stream without x-event-data`);
    body = JSON.parse(data);
    const v = validatorFor(op["x-event-data"]);
    if (!v(body)) fail(`${where}: event: ${ajv.errorsText(v.errors)}`);
    return;
  }
  const text = await res.text();
  clearTimeout(timer);
  if (ctype === "application/json") {
    try {
      body = JSON.parse(text);
    } catch (e) {
      return fail(`${where}: not JSON: ${e}`);
    }
  } else {
    body = text;
  }
  const v = validatorFor(media.schema ?? {});
  if (!v(body)) fail(`${where}: ${res.status} body: ${ajv.errorsText(v.errors)}`);
}

let operations = 0;
for (const [route, item] of Object.entries(doc.paths)) {
  const op = item.get;
  if (!op) {
    fail(`${route}: no GET operation (the server serves GET only)`);
    continue;
  }
  operations++;
  const params = {};
  for (const p of op.parameters ?? []) {
    if (p.in === "path") params[p.name] = opt.params[p.name] ?? p.example;
  }
  await check(route, op, params, {}, undefined);
  for (const extra of op["x-check-requests"] ?? []) {
    await check(route, op, { ...params, ...(extra.params ?? {}) }, extra.query ?? {}, extra.status);
  }
}
const ok = failures.length === 0;
console.log(JSON.stringify({ ok, openapi: doc.openapi, operations, requests, failures }));
process.exit(ok ? 0 : 1);
