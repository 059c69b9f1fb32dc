// outage: steady load on the edges while something breaks. The faults are injected from
// outside (`eval`, the wrapper, kills and freezes processes); FAULTS tells this script the
// schedule so that every request is tagged with the phase it was sent in, and the report shows
// errors and latency through each fault.
//
//   k6 run -e EDGES=… -e TRACE=trace.csv -e FAULTS=origin_down@1764700000+10 loadtest/k6/outage.js
//
// -e: EDGES or BASE_URL, TRACE, OFFSET (0: the trace index to begin at, so that a run after
// browse.js meets objects it has not asked for yet, and so misses as well as hits), RATE (300 requests/s), DURATION (60s), FAULTS (name@start+length,
// comma-separated; start in Unix seconds, so that the wrapper and k6 go by the same clock),
// RECOVERY_S (5: how long after a fault ends its phase lasts; it begins 1 s before the fault,
// since a request sent just before may still be in flight), DEADLINE_MS. Thresholds: no
// response past the maximum response time in any phase, and no error outside the faults.
import { check } from 'k6';
import exec from 'k6/execution';
import http from 'k6/http';
import { SharedArray } from 'k6/data';
import { deadlineMs, edgeOf, edges, env, envNumber, parseTrace, tracePath } from './lib.js';

const trace = new SharedArray('trace', () => parseTrace(open(env('TRACE'))));
const targets = edges();
const rate = envNumber('RATE', 300);
const offset = envNumber('OFFSET', 0);
const recoverySeconds = envNumber('RECOVERY_S', 5);
const inFlightSeconds = 1;

// [name, start s, end s] of each fault.
const faults = env('FAULTS', '')
  .split(',')
  .filter((f) => f)
  .map((f) => {
    const m = /^([a-z_]+)@(\d+(?:\.\d+)?)\+(\d+(?:\.\d+)?)$/.exec(f);
    if (!m) throw new Error(`-e FAULTS: \`${f}\` is not name@start+length`);
    return [m[1], Number(m[2]) - inFlightSeconds, Number(m[2]) + Number(m[3]) + recoverySeconds];
  });

const thresholds = {
  http_req_duration: [`max<${deadlineMs()}`],
  'http_req_failed{phase:steady}': ['rate<0.001'],
};
for (const [name] of faults) thresholds[`http_req_duration{phase:${name}}`] = [`max<${deadlineMs()}`];

export const options = {
  discardResponseBodies: true,
  scenarios: {
    steady: { executor: 'constant-arrival-rate', rate, timeUnit: '1s', duration: env('DURATION', '60s'), preAllocatedVUs: 50, maxVUs: 400 },
  },
  thresholds,
};

function phaseAt(unixSeconds) {
  const fault = faults.find(([, start, end]) => unixSeconds >= start && unixSeconds < end);
  return fault ? fault[0] : 'steady';
}

export default function () {
  const request = trace[(offset + exec.scenario.iterationInTest) % trace.length];
  const res = http.get(`${edgeOf(targets, exec.vu.idInTest)}${tracePath(request)}`, { tags: { name: 'image', phase: phaseAt(Date.now() / 1000) } });
  check(res, { 'status 200': (r) => r.status === 200 });
}
