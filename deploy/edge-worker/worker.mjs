// Strata's CDN edge-worker client: a Workers-style ES module (Cloudflare Workers; Fastly/Akamai with the
// same fetch-handler shape) that answers a page's recommendation request from the PoP-local Strata edge.
//
//   POST /v1/recommend   body: the edge's request contract, JSON (or msgpack)
//   -> the edge, msgpack both ways, within TIMEOUT_MS; X-Request-ID (and traceparent) forwarded
//   <- the edge's answer in the caller's codec (Accept: application/msgpack, else JSON), X-Request-ID echoed
//
// - Cache headers: the edge's Cache-Control is honoured and passed on. An answer marked cacheable
//   (public / s-maxage / max-age, and not no-store, no-cache or private) is kept for that long in the
//   Workers cache (caches.default, or env.CACHE), keyed by the request body; otherwise nothing is cached
//   (a personalised answer without Cache-Control is never shared).
// - Never empty, never a 5xx for a good request: a timeout, a network error, a 5xx or a 429 from the edge
//   gives the static fallback list (env.FALLBACK_ITEMS, a JSON array of item ids, else FALLBACK_ITEMS
//   below), marked degraded with the reason. A 4xx is the caller's mistake and is passed through.
//
// - Auth: with env.STRATA_API_KEY (a PoP key: strata keys create --pop NAME), every call carries it as
//   Authorization: Bearer, and the shopper's address (CF-Connecting-IP, else the last X-Forwarded-For) as
//   X-Forwarded-For, which the edge trusts from PoP keys only for its per-address rate limit. A 401 or 403 is
//   this worker's key failing, not the shopper's mistake: the fallback list answers (reason edge_auth).
//
// env: EDGE_URL (required, e.g. "http://10.0.0.7:8080"), TIMEOUT_MS (default 50), FALLBACK_ITEMS, CACHE,
// STRATA_API_KEY (with the edge's auth.enabled).

import { decode, encode } from "./vendor/msgpack/index.mjs";

export const MSGPACK = "application/msgpack";
export const JSON_TYPE = "application/json";
export const DEFAULT_TIMEOUT_MS = 50;
// The synthetic catalog's most popular servable items (strata export's default world): replace with your
// catalog's, or set env.FALLBACK_ITEMS.
export const FALLBACK_ITEMS = [
  "SKU-001000", "SKU-011529", "SKU-002629", "SKU-005573", "SKU-011129", "SKU-000717", "SKU-006590",
  "SKU-009734", "SKU-003027", "SKU-003921", "SKU-003407", "SKU-002165", "SKU-003821", "SKU-011963",
  "SKU-007020", "SKU-007259", "SKU-005701", "SKU-011754", "SKU-001425", "SKU-001599",
];

const memory = new Map();   // the cache where no Workers cache exists (Node, tests): key -> {expires, body, headers}

function mediaType(value) {
  return (value || "").split(";")[0].trim().toLowerCase();
}

export function requestId(request) {
  const given = request.headers.get("x-request-id");
  if (given && given.length <= 128 && /^[\x21-\x7e]+$/.test(given)) return given;
  return crypto.randomUUID();
}

// Seconds an answer may be kept by a shared cache, from the edge's Cache-Control; 0: not cacheable.
export function cacheSeconds(cacheControl) {
  if (!cacheControl) return 0;
  const directives = {};
  for (const part of cacheControl.toLowerCase().split(",")) {
    const [name, value] = part.trim().split("=");
    if (name) directives[name] = value === undefined ? true : value.replace(/"/g, "");
  }
  if (directives["no-store"] || directives["no-cache"] || directives["private"]) return 0;
  const seconds = Number(directives["s-maxage"] ?? directives["max-age"] ?? 0);
  return Number.isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : 0;
}

async function cacheKey(payload) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", payload));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return `https://strata-edge-worker.cache/v1/recommend/${hex}`;
}

function workersCache(env) {
  if (env && env.CACHE) return env.CACHE;
  return globalThis.caches && globalThis.caches.default ? globalThis.caches.default : null;
}

async function cacheGet(env, key) {
  const cache = workersCache(env);
  if (cache) {
    const hit = await cache.match(new Request(key));
    return hit ? { body: new Uint8Array(await hit.arrayBuffer()), headers: hit.headers } : null;
  }
  const hit = memory.get(key);
  if (!hit) return null;
  if (hit.expires <= Date.now()) {
    memory.delete(key);
    return null;
  }
  return hit;
}

async function cachePut(env, key, body, headers, seconds) {
  const cache = workersCache(env);
  if (cache) {
    const stored = new Headers(headers);
    stored.set("cache-control", `public, max-age=${seconds}`);
    await cache.put(new Request(key), new Response(body, { headers: stored }));
    return;
  }
  memory.set(key, { expires: Date.now() + seconds * 1000, body, headers: new Headers(headers) });
}

function fallbackItems(env) {
  if (env && env.FALLBACK_ITEMS) {
    const items = typeof env.FALLBACK_ITEMS === "string" ? JSON.parse(env.FALLBACK_ITEMS) : env.FALLBACK_ITEMS;
    if (Array.isArray(items) && items.length) return items.map(String);
  }
  return FALLBACK_ITEMS;
}

function reply(answer, accept, rid, extraHeaders = {}, status = 200) {
  const asMsgpack = mediaType(accept) === MSGPACK;
  const body = asMsgpack ? encode(answer) : JSON.stringify(answer);
  return new Response(body, {
    status,
    headers: { "content-type": asMsgpack ? MSGPACK : JSON_TYPE, "x-request-id": rid, ...extraHeaders },
  });
}

export function fallback(env, k, rid, reason, accept) {
  const items = fallbackItems(env).slice(0, Math.max(1, k));
  return reply({
    items: items.map((id) => ({ item_id: id, score: 0, explored: false })),
    tier: "fallback", confidence: 0, degraded: true, route_reasons: [reason], model_version: "fallback",
    request_id: rid, impression_id: null,
  }, accept, rid, { "cache-control": "no-store" });
}

function error(status, code, reason, field, rid) {
  return reply({ error: { code, reason, field }, retriable: false }, JSON_TYPE, rid, {}, status);
}

async function readBody(request) {
  const bytes = new Uint8Array(await request.arrayBuffer());
  const type = mediaType(request.headers.get("content-type")) || JSON_TYPE;
  if (type === MSGPACK) return decode(bytes);
  if (type === JSON_TYPE) return JSON.parse(new TextDecoder().decode(bytes));
  throw Object.assign(new Error(`Content-Type '${type}' is not supported; use ${JSON_TYPE} or ${MSGPACK}`),
    { status: 415, code: "unsupported_media_type", field: "Content-Type" });
}

export async function recommend(request, env) {
  const rid = requestId(request);
  const accept = request.headers.get("accept") || request.headers.get("content-type") || JSON_TYPE;
  let body;
  try {
    body = await readBody(request);
  } catch (exc) {
    return error(exc.status || 400, exc.code || "malformed_body", exc.message, exc.field || "body", rid);
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    return error(400, "malformed_body", "body must be an object", "body", rid);
  }
  const k = Number.isInteger(body.k) ? body.k : 10;
  if (!env || !env.EDGE_URL) return fallback(env, k, rid, "edge_not_configured", accept);
  const payload = encode(body);
  const key = await cacheKey(payload);
  const cached = await cacheGet(env, key);
  if (cached) {
    const answer = decode(cached.body);
    return reply(answer, accept, rid, { "cache-control": cached.headers.get("cache-control") || "no-store",
      "x-strata-worker-cache": "hit" });
  }
  const timeout = Number(env.TIMEOUT_MS ?? DEFAULT_TIMEOUT_MS);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  const headers = { "content-type": MSGPACK, accept: MSGPACK, "x-request-id": rid };
  const traceparent = request.headers.get("traceparent");
  if (traceparent) headers.traceparent = traceparent;
  if (env.STRATA_API_KEY) {
    headers.authorization = `Bearer ${env.STRATA_API_KEY}`;
    const client = request.headers.get("cf-connecting-ip")
      || (request.headers.get("x-forwarded-for") || "").split(",").pop().trim();
    if (client) headers["x-forwarded-for"] = client;
  }
  let resp;
  let bytes;
  try {
    resp = await fetch(`${String(env.EDGE_URL).replace(/\/+$/, "")}/v1/recommend`, {
      method: "POST", body: payload, headers, signal: controller.signal,
    });
    bytes = new Uint8Array(await resp.arrayBuffer());       // the deadline covers the body too
  } catch (exc) {
    return fallback(env, k, rid, controller.signal.aborted ? "edge_timeout" : "edge_unavailable", accept);
  } finally {
    clearTimeout(timer);
  }
  if (resp.status >= 500 || resp.status === 429 || resp.status === 401 || resp.status === 403) {
    const why = resp.status === 429 ? "edge_overloaded" : resp.status >= 500 ? "edge_error" : "edge_auth";
    return fallback(env, k, rid, why, accept);
  }
  let answer;
  try {
    answer = mediaType(resp.headers.get("content-type")) === MSGPACK ? decode(bytes)
      : JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return fallback(env, k, rid, "edge_bad_answer", accept);
  }
  const cacheControl = resp.headers.get("cache-control");
  const passed = { "cache-control": cacheControl || "no-store" };
  for (const name of ["vary", "etag", "retry-after"]) {
    const value = resp.headers.get(name);
    if (value) passed[name] = value;
  }
  if (resp.status >= 400) return reply(answer, accept, rid, passed, resp.status);   // the caller's mistake
  if (!Array.isArray(answer.items) || answer.items.length === 0) {
    return fallback(env, k, rid, "edge_empty_answer", accept);
  }
  const seconds = cacheSeconds(cacheControl);
  if (seconds > 0) await cachePut(env, key, encode(answer), { "cache-control": cacheControl }, seconds);
  return reply(answer, accept, rid, { ...passed, "x-strata-worker-cache": "miss" });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname !== "/v1/recommend") {
      return error(404, "not_found", `no route ${url.pathname}; POST /v1/recommend`, "path", requestId(request));
    }
    if (request.method !== "POST") {
      return error(405, "method_not_allowed", "use POST", "method", requestId(request));
    }
    try {
      return await recommend(request, env);
    } catch {                   // a bug here must not become a 5xx either
      return fallback(env, 10, requestId(request), "worker_error", request.headers.get("accept"));
    }
  },
};
