// purge: an origin that changes images and purges them with the signed webhook, while readers
// check that no edge ever serves a version older than the last purge purge-api answered.
//
// The writer, RATE times a second: a new version of one of the images (`POST
// ORIGIN/_eval/live/NAME`), the webhook for it, and once purge-api has answered 200, the
// version is recorded at the origin as answered. A reader first asks the origin for the
// highest answered version of an image, then reads the image from its edge: the body begins
// `fresco-eval NAME v<version>`, and a version below the one answered before the read began is
// a stale read.
//
//   k6 run -e EDGES=… -e ORIGIN=… -e PURGE_API=… -e SECRET=… loadtest/k6/purge.js
//
// -e: EDGES or BASE_URL, ORIGIN (the eval origin), PURGE_API, SECRET (a webhook secret of
// purge-api), RATE (5 purges/s), READERS (50), DURATION (60s), IMAGES (4·RATE, at least 8:
// one signature is taken once, so an image is not purged twice in the same second),
// PURGE_MS (the purge answer budget, 2·lease = 4000), DEADLINE_MS.
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import http from 'k6/http';
import { Counter, Trend } from 'k6/metrics';
import { deadlineMs, edgeOf, edges, env, envNumber, signedPurge } from './lib.js';

const targets = edges();
const origin = env('ORIGIN');
const purgeApi = env('PURGE_API');
const secret = env('SECRET');
const rate = envNumber('RATE', 5);
const images = Math.max(8, envNumber('IMAGES', 4 * rate));
const duration = env('DURATION', '60s');

const purgeAnswer = new Trend('purge_answer_ms', true);
const staleReads = new Counter('stale_reads');
const freshReads = new Counter('fresh_reads');

export const options = {
  scenarios: {
    writer: { executor: 'constant-arrival-rate', exec: 'write', rate, timeUnit: '1s', duration, preAllocatedVUs: 4 * rate, maxVUs: 20 * rate },
    readers: { executor: 'constant-vus', exec: 'read', vus: envNumber('READERS', 50), duration },
  },
  thresholds: {
    stale_reads: ['count==0'],
    fresh_reads: ['count>0'],
    purge_answer_ms: [`max<${envNumber('PURGE_MS', 4000)}`],
    'http_req_duration{name:image}': [`max<${deadlineMs()}`],
    'http_req_failed{name:image}': ['rate<0.001'],
    'checks{check:purge answered 200}': ['rate==1'],
  },
};

function nameOf(n) {
  return `img-${n % images}.jpg`;
}

export function write() {
  const name = nameOf(exec.scenario.iterationInTest);
  const version = http.post(`${origin}/_eval/live/${name}`, null, { tags: { name: 'origin-change' } }).json('version');
  const res = signedPurge(purgeApi, secret, { urls: [`/live/${name}`] });
  purgeAnswer.add(res.timings.duration);
  if (check(res, { 'purge answered 200': (r) => r.status === 200 })) {
    http.post(`${origin}/_eval/answered/${name}/${version}`, null, { tags: { name: 'origin-answered' } });
  }
}

export function read() {
  const name = nameOf(Math.floor(Math.random() * images));
  const floor = http.get(`${origin}/_eval/answered/${name}`, { tags: { name: 'origin-answered' } }).json('version');
  const res = http.get(`${edgeOf(targets, exec.vu.idInTest)}/live/${name}`, { tags: { name: 'image' } });
  const match = res.status === 200 && res.body ? /^fresco-eval \S+ v(\d+)/.exec(res.body.substring(0, 64)) : null;
  if (!check(res, { 'image 200 with its version': () => match !== null })) return;
  if (Number(match[1]) < floor) {
    staleReads.add(1);
    console.error(`stale read: ${name} v${match[1]} after v${floor} was answered (${res.headers['X-Cache']})`);
  } else {
    freshReads.add(1);
  }
  sleep(0.05);
}
