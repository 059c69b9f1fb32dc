// herd: hundreds of users asking for one cold object at the same instant, on every edge. Each
// round r every user waits for the same moment (start + r·PERIOD_MS) and asks for object
// `herd-<run>-<r>`, never asked before; the origin must see one fetch of it per round.
//
//   k6 run -e EDGES=http://edge1,http://edge2 -e ORIGIN=http://origin loadtest/k6/herd.js
//
// -e: EDGES or BASE_URL, ORIGIN (the eval origin, asked how often it was fetched), VUS (300),
// ROUNDS (5), PERIOD_MS (2000), SIZE (200000 bytes), MAX_FETCHES (1 per object), DEADLINE_MS.
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import http from 'k6/http';
import { Trend } from 'k6/metrics';
import { deadlineMs, edgeOf, edges, env, envNumber } from './lib.js';

const targets = edges();
const origin = env('ORIGIN');
const vus = envNumber('VUS', 300);
const rounds = envNumber('ROUNDS', 5);
const periodMs = envNumber('PERIOD_MS', 2000);
const size = envNumber('SIZE', 200000);

const fetchesPerObject = new Trend('origin_fetches_per_object');

export const options = {
  discardResponseBodies: true,
  setupTimeout: '30s',
  scenarios: {
    herd: { executor: 'per-vu-iterations', vus, iterations: rounds, maxDuration: `${(rounds * periodMs) / 1000 + 60}s` },
  },
  thresholds: {
    http_req_duration: [`max<${deadlineMs()}`],
    http_req_failed: ['rate==0'],
    origin_fetches_per_object: [`max<=${envNumber('MAX_FETCHES', 1)}`],
  },
};

// The object ids of this run: fresh ones, so that a second run finds them cold too.
function pathOf(run, round) {
  return `/t/${run}${round}-${size}.jpg`;
}

export function setup() {
  return { start: Date.now() + 2000, run: Date.now() % 1e9 };
}

export default function (data) {
  const round = exec.vu.iterationInScenario;
  const wait = data.start + round * periodMs - Date.now();
  if (wait > 0) sleep(wait / 1000);
  const res = http.get(`${edgeOf(targets, exec.vu.idInTest)}${pathOf(data.run, round)}`, { tags: { name: 'herd' } });
  check(res, {
    'status 200': (r) => r.status === 200,
    'the whole object': (r) => Number(r.headers['Content-Length']) === size,
  });
}

export function teardown(data) {
  for (let round = 0; round < rounds; round++) {
    const path = pathOf(data.run, round);
    const res = http.get(`${origin}/_eval/fetches?path=${encodeURIComponent(path)}`, { responseType: 'text', tags: { name: 'origin-count' } });
    fetchesPerObject.add(res.status === 200 ? res.json('fetches') : 1e9);
  }
}
