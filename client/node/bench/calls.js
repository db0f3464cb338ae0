'use strict';
// What a call costs from Node: add_int(int, int) on one session, one call at a time and
// with many in flight, and a declaration parsed by the server. Starts its own ffiboxd from
// bazel-bin (as the tests do). Usage: node bench/calls.js [CALLS]
const ffibox = require('..');
const { TEST_LIB, startServer } = require('../test/server');

async function timed(label, count, fn) {
  const started = process.hrtime.bigint();
  await fn();
  const ns = Number(process.hrtime.bigint() - started);
  console.log(`${label}: ${(ns / count / 1000).toFixed(1)} us per call, ` +
    `${Math.round(count / (ns / 1e9))} calls/s`);
}

async function main() {
  const calls = Number(process.argv[2] || 20000);
  const server = await startServer();
  const client = await ffibox.connect({ address: server.address });
  const session = await client.session();
  try {
    const lib = await session.load(TEST_LIB);
    const add = await lib.func('int add_int(int, int)');
    for (let i = 0; i < 1000; ++i) await add(i, 1);  // warm up
    await timed('add_int, one at a time', calls, async () => {
      for (let i = 0; i < calls; ++i) await add(i, 1);
    });
    await timed('add_int, 64 in flight', calls, async () => {
      for (let i = 0; i < calls; i += 64) {
        await Promise.all(Array.from({ length: 64 }, (_, j) => add(i + j, 1)));
      }
    });
    const parses = Math.min(calls, 5000);
    await timed('parse_declaration', parses, async () => {
      for (let i = 0; i < parses; ++i) await session.parseDeclaration('double cos(double)');
    });
  } finally {
    session.close();
    client.close();
    await server.stop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
