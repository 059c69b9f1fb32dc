// What the scenarios share: their targets from `-e`, the trace, what counts as a cache hit,
// and the signed purge webhook.
import crypto from 'k6/crypto';
import http from 'k6/http';

// A value of `-e NAME=…`, or `fallback`; a missing required one stops the test with its name.
export function env(name, fallback) {
  const value = __ENV[name];
  if (value !== undefined && value !== '') return value;
  if (fallback === undefined) throw new Error(`-e ${name}=… is required`);
  return fallback;
}

export function envNumber(name, fallback) {
  const value = Number(env(name, String(fallback)));
  if (!Number.isFinite(value)) throw new Error(`-e ${name} must be a number`);
  return value;
}

// The edges to spread users over: `-e EDGES=url1,url2,…`, else `-e BASE_URL=…`.
export function edges() {
  const list = env('EDGES', env('BASE_URL', '')).split(',').map((u) => u.trim().replace(/\/$/, '')).filter((u) => u);
  if (list.length === 0) throw new Error('-e BASE_URL=… (or -e EDGES=url1,url2,…) is required');
  return list;
}

// The edge a virtual user talks to: users stay with "their" edge, as browsers stay with the
// edge DNS gave them.
export function edgeOf(list, vu) {
  return list[(vu - 1) % list.length];
}

// The longest a response may take, from `-e DEADLINE_MS` (the edges' `deadline_ms`, 5 s by
// default) plus the time the body takes over loopback.
export function deadlineMs() {
  return envNumber('DEADLINE_MS', 5000) + envNumber('BODY_MARGIN_MS', 500);
}

// A trace as `id,size` lines (loadtest's trace format; a header line is skipped).
export function parseTrace(text) {
  const requests = [];
  for (const line of text.split('\n')) {
    const [id, size] = line.split(',');
    const n = Number(size);
    if (id && id !== 'id' && Number.isFinite(n)) requests.push([id, n]);
  }
  if (requests.length === 0) throw new Error('the trace holds no `id,size` line');
  return requests;
}

// The path the eval origin (and loadtest's trace origin) serves a traced object under.
export function tracePath([id, size]) {
  return `/t/${id}-${size}.jpg`;
}

// Whether a response came from the cache: fresco and Varnish (with loadtest's VCL) say so in
// `X-Cache`; Traffic Server in its coded `Via` (insert_response_via_str 2): after `[c`, `H` is a
// fresh hit and `R` a fresh hit from RAM. `Age` alone tells nothing: Traffic Server adds it to
// misses too.
export function isHit(res) {
  const xcache = res.headers['X-Cache'];
  if (xcache !== undefined) return xcache.startsWith('HIT');
  const via = res.headers['Via'];
  return via !== undefined && /\[c[HR]/.test(via);
}

// `POST /v1/purge` as an origin sends it: `X-Fresco-Signature: t=<unix>,v1=<hex
// HMAC-SHA256(secret, "<t>.<body>")>`.
export function signedPurge(purgeApi, secret, purge) {
  const body = JSON.stringify(purge);
  const t = Math.floor(Date.now() / 1000);
  const signature = crypto.hmac('sha256', secret, `${t}.${body}`, 'hex');
  return http.post(`${purgeApi}/v1/purge`, body, {
    headers: { 'Content-Type': 'application/json', 'X-Fresco-Signature': `t=${t},v1=${signature}` },
    tags: { name: 'purge' },
    timeout: '30s',
  });
}
