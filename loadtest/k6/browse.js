// browse: people looking at image pages. Each iteration is one page: the next PAGE images of
// the trace (so the trace's popularity and one-hit wonders reach the cache in order), fetched
// in parallel as a browser does, then THINK_MS of reading before the next page.
//
//   k6 run -e EDGES=http://edge1,http://edge2 -e TRACE=trace.csv loadtest/k6/browse.js
//
// -e: EDGES or BASE_URL, TRACE (id,size lines), VUS (100), DURATION (60s), PAGE (6),
// THINK_MS (1000; each pause is uniform in 0.5–1.5 of it), DEADLINE_MS (5000).
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import http from 'k6/http';
import { SharedArray } from 'k6/data';
import { Rate } from 'k6/metrics';
import { deadlineMs, edgeOf, edges, env, envNumber, isHit, parseTrace, tracePath } from './lib.js';

const trace = new SharedArray('trace', () => parseTrace(open(env('TRACE'))));
const targets = edges();
const page = envNumber('PAGE', 6);
const thinkMs = envNumber('THINK_MS', 1000);

const hits = new Rate('cache_hits');

export const options = {
  discardResponseBodies: true,
  scenarios: {
    browse: { executor: 'constant-vus', vus: envNumber('VUS', 100), duration: env('DURATION', '60s') },
  },
  thresholds: {
    // No request past the maximum response time; errors and misses within their budgets.
    http_req_duration: [`max<${deadlineMs()}`],
    http_req_failed: ['rate<0.001'],
    checks: ['rate>0.999'],
  },
};

export default function () {
  const base = edgeOf(targets, exec.vu.idInTest);
  const first = (exec.scenario.iterationInTest * page) % trace.length;
  const wanted = [];
  for (let i = 0; i < page; i++) wanted.push(trace[(first + i) % trace.length]);
  const responses = http.batch(wanted.map((r) => ['GET', `${base}${tracePath(r)}`, null, { tags: { name: 'image' } }]));
  responses.forEach((res, i) => {
    const hit = isHit(res);
    hits.add(hit);
    check(res, {
      'status 200': (r) => r.status === 200,
      'the traced size': (r) => Number(r.headers['Content-Length']) === wanted[i][1],
    });
  });
  sleep((thinkMs * (0.5 + Math.random())) / 1000);
}
