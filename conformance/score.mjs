// Scores cache-tests results: fresco's runs beside the published results of the peers that ship
// with the suite (cache-tests/results/), counted as the issue and the peers' tables count them:
// a test passes when its result is `true`. Lists what fresco still fails, and fails (exit 1) when a
// run passes fewer required tests than its floor in floor.json.
//
//   node score.mjs RUN=results.json [RUN=results.json ...]
import fs from 'fs'
import path from 'path'
import { fileURLToPath } from 'url'

import tests from './cache-tests/tests/index.mjs'
import peers from './cache-tests/results/index.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const floor = JSON.parse(fs.readFileSync(path.join(here, 'floor.json'), 'utf8'))

const allTests = tests.flatMap(suite => suite.tests.map(test => ({ ...test, suite: suite.name })))
const isRequired = test => test.kind === 'required' || test.kind === undefined
const requiredCount = allTests.filter(isRequired).length

function score (results) {
  const counts = { required: 0, optimal: 0, failed: [] }
  for (const test of allTests) {
    const result = results[test.id]
    if (result === true) {
      if (isRequired(test)) counts.required += 1
      if (test.kind === 'optimal') counts.optimal += 1
    } else if (isRequired(test)) {
      const why = result === undefined ? (test.browser_only ? 'browsers only' : 'not run') : JSON.stringify(result).slice(0, 160)
      counts.failed.push(`${test.suite} / ${test.id}: ${why}`)
    }
  }
  return counts
}

const rows = []
let belowFloor = false
const runs = process.argv.slice(2).map(arg => arg.split('='))
for (const [name, file] of runs) {
  const counts = score(JSON.parse(fs.readFileSync(file, 'utf8')))
  rows.push({ name: `fresco (${name})`, ...counts })
  if (floor[name] !== undefined && counts.required < floor[name]) {
    console.error(`fresco (${name}) passes ${counts.required} required tests, below its floor of ${floor[name]} (conformance/floor.json)`)
    belowFloor = true
  }
}
for (const peer of peers.filter(p => p.type !== 'browser')) {
  const results = JSON.parse(fs.readFileSync(path.join(here, 'cache-tests/results', peer.file), 'utf8'))
  rows.push({ name: `${peer.name} ${peer.version}`, ...score(results) })
}

console.log(`\n${'cache'.padEnd(34)} ${`required (of ${requiredCount})`.padStart(20)} ${'optimal'.padStart(8)}`)
for (const row of rows.sort((a, b) => b.required - a.required || b.optimal - a.optimal)) {
  console.log(`${row.name.padEnd(34)} ${String(row.required).padStart(20)} ${String(row.optimal).padStart(8)}`)
}
for (const row of rows.filter(r => r.name.startsWith('fresco'))) {
  console.log(`\n${row.name}: ${row.failed.length} required tests not passed`)
  for (const line of row.failed) console.log(`  ${line}`)
}
process.exit(belowFloor ? 1 : 0)
