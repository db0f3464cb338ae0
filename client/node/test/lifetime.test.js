'use strict';
// How sessions end, against a real ffiboxd: client.close() ends the sessions opened on it,
// a server that stops answering (SIGSTOP) meets the client's deadline or its keepalive, and
// nothing of an ended session keeps Node running (checked in child Node processes, timed
// until they exit).
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');
const { after, before, describe, test } = require('node:test');
const ffibox = require('..');
const { TEST_LIB, startServer } = require('./server');

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  // A test that failed while the server was stopped must not leave it so: it would never
  // take the SIGTERM that stops it.
  if (server) server.process.kill('SIGCONT');
  if (server) await server.stop();
});

// A test that waits for a deadline fails, rather than hangs, when no deadline comes.
const BOUNDED = { timeout: 20000 };

// Runs `body` with ffiboxd stopped (SIGSTOP), and lets it run again afterwards.
async function whileServerStopped(body) {
  server.process.kill('SIGSTOP');
  try {
    return await body();
  } finally {
    server.process.kill('SIGCONT');
  }
}

// The child: opens a session (deadline 1000 ms, margin 500 ms) on the server at argv[1],
// prints "ready", and then, by mode (argv[2]):
//   close-client:  starts a call of 5 s, closes the client, prints how the call and a later
//                  call ended;
//   deadline:      starts a call of 5 s and prints how it ended (the parent stops the
//                  server once the child is ready);
//   close-session: on a line on stdin (the parent stops the server first), closes the
//                  session.
// It never closes what its mode does not say: Node must exit by itself.
const CHILD = `
const ffibox = require(process.env.FFIBOX_NODE_CLIENT);
const [address, lib, mode] = process.argv.slice(1);
const outcome = (promise) => promise.then((value) => 'resolved ' + value, (error) => error.code);
(async () => {
  const client = await ffibox.connect({ address });
  const session = await client.session({ timeoutMs: 1000, answerMarginMs: 500 });
  const sleep = await (await session.load(lib)).func('int sleep_ms(int)');
  if (mode === 'close-client') {
    const call = outcome(sleep(5000));
    console.log('ready');
    client.close();
    console.log(await call, await outcome(sleep(1)));
  } else if (mode === 'deadline') {
    const call = outcome(sleep(5000));
    console.log('ready');
    console.log(await call);
  } else {
    console.log('ready');
    process.stdin.once('data', () => {
      process.stdin.destroy();
      session.close();
      console.log('closed');
    });
  }
})();
`;

/**
 * Runs the child in `mode`; `onReady(child)` runs once it printed "ready". Resolves with
 * {lines (what it printed after "ready"), exitMs (from "ready" to its exit)}; rejects if it
 * has not exited `limitMs` after "ready" (and kills it).
 */
function runChild(mode, onReady, limitMs = 8000) {
  const child = spawn(process.execPath, ['-e', CHILD, server.address, TEST_LIB, mode], {
    env: { ...process.env, FFIBOX_NODE_CLIENT: path.resolve(__dirname, '..') },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = [];
  let readyAt = null;
  let limit = null;
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      if (readyAt !== null) {
        lines.push(line);
        return;
      }
      readyAt = Date.now();
      limit = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the child (${mode}) was still running ${limitMs} ms after it was ` +
          `ready; it printed ${JSON.stringify(lines)}`));
      }, limitMs);
      onReady(child);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(limit);
      if (code !== 0) reject(new Error(`the child (${mode}) exited with ${code} ${signal}`));
      else resolve({ lines, exitMs: Date.now() - readyAt });
    });
  });
}

describe('client.close()', () => {
  test('ends its sessions: a call in flight and later calls reject with SessionClosed',
    BOUNDED, async () => {
      const client = await ffibox.connect({ address: server.address });
      const session = await client.session({ timeoutMs: 5000 });
      const lib = await session.load(TEST_LIB);
      const sleep = await lib.func('int sleep_ms(int)');
      const add = await lib.func('int add_int(int, int)');
      const inFlight = sleep(3000);
      const started = Date.now();
      client.close();
      const isClosed = (error) => error instanceof ffibox.SessionClosed &&
        error.code === 'SESSION_CLOSED' && /the client was closed/.test(error.message);
      await assert.rejects(inFlight, isClosed);
      assert.ok(Date.now() - started < 1000);
      await assert.rejects(add(1, 2), isClosed);
    });

  test('client.session() afterwards rejects with SessionClosed', async () => {
    const client = await ffibox.connect({ address: server.address });
    client.close();
    let promise;
    assert.doesNotThrow(() => {
      promise = client.session();
    });
    await assert.rejects(promise, (error) => error instanceof ffibox.SessionClosed &&
      error.code === 'SESSION_CLOSED');
  });

  test('leaves nothing that keeps Node running, with a call in flight', async () => {
    const { lines, exitMs } = await runChild('close-client', () => {});
    assert.deepEqual(lines, ['SESSION_CLOSED SESSION_CLOSED']);
    assert.ok(exitMs < 3000, `the child exited ${exitMs} ms after closing`);
  });
});

describe('a server that stops answering', () => {
  test("a call rejects after the session's deadline plus the margin; once the server runs " +
    'again, new sessions work', BOUNDED, async () => {
    const client = await ffibox.connect({ address: server.address });
    try {
      const session = await client.session({ timeoutMs: 1000, answerMarginMs: 1000 });
      const lib = await session.load(TEST_LIB);
      const sleep = await lib.func('int sleep_ms(int)');
      const add = await lib.func('int add_int(int, int)');
      await whileServerStopped(async () => {
        const started = Date.now();
        await assert.rejects(sleep(3000), (error) => {
          assert.ok(error instanceof ffibox.SessionClosed, error.stack);
          assert.equal(error.code, 'DEADLINE_EXCEEDED');
          assert.match(error.message, /due within 2000 ms/);
          return true;
        });
        const waited = Date.now() - started;
        assert.ok(waited >= 1900 && waited < 6000, `waited ${waited} ms`);
        // The session is over: later requests fail at once.
        await assert.rejects(add(1, 2), (error) => error.code === 'DEADLINE_EXCEEDED');
      });
      const again = await client.session();
      const addAgain = await (await again.load(TEST_LIB)).func('int add_int(int, int)');
      assert.equal(await addAgain(1, 2), 3);
      again.close();
    } finally {
      client.close();
    }
  });

  test('keepalive fails a call with a far deadline with UNAVAILABLE', BOUNDED, async () => {
    const client = await ffibox.connect({
      address: server.address, keepaliveMs: 1500, keepaliveTimeoutMs: 1000,
    });
    try {
      const session = await client.session({ timeoutMs: 60000 });
      const sleep = await (await session.load(TEST_LIB)).func('int sleep_ms(int)');
      // ffiboxd takes pings while nothing else is sent: an idle session lives on.
      await new Promise((resolve) => setTimeout(resolve, 3500));
      assert.equal(await sleep(1), 1);
      await whileServerStopped(async () => {
        const started = Date.now();
        await assert.rejects(sleep(30000), (error) => {
          assert.ok(error instanceof ffibox.SessionClosed, error.stack);
          assert.equal(error.code, 'UNAVAILABLE');
          return true;
        });
        const waited = Date.now() - started;
        assert.ok(waited < 8000, `waited ${waited} ms`);
      });
    } finally {
      client.close();
    }
  });

  test('a session it ended does not keep Node running', BOUNDED, async () => {
    let stopped = false;
    try {
      const { lines, exitMs } = await runChild('deadline', () => {
        server.process.kill('SIGSTOP');
        stopped = true;
      });
      assert.deepEqual(lines, ['DEADLINE_EXCEEDED']);
      assert.ok(exitMs >= 1400 && exitMs < 5000, `the child exited after ${exitMs} ms`);
    } finally {
      if (stopped) server.process.kill('SIGCONT');
    }
  });

  test('session.close() lets Node exit once the margin has passed', BOUNDED, async () => {
    let stopped = false;
    try {
      const { lines, exitMs } = await runChild('close-session', (child) => {
        server.process.kill('SIGSTOP');
        stopped = true;
        child.stdin.write('close\n');
      });
      assert.deepEqual(lines, ['closed']);
      assert.ok(exitMs >= 400 && exitMs < 5000, `the child exited after ${exitMs} ms`);
    } finally {
      if (stopped) server.process.kill('SIGCONT');
    }
  });
});

test('session.close() with a margin longer than a timer takes waits for the server',
  BOUNDED, async () => {
    const warnings = [];
    const onWarning = (warning) => warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      const client = await ffibox.connect({ address: server.address });
      const session = await client.session({ answerMarginMs: 2 ** 32 });
      const ended = new Promise((resolve) => session._stream.once('status', resolve));
      session.close();
      // The server ends the stream itself: it was not cancelled at once (a timer given more
      // than it takes fires after 1 ms, with a TimeoutOverflowWarning).
      const status = await ended;
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(warnings, []);
      assert.equal(status.code, 0, `the stream ended with ${status.code} ${status.details}`);
      client.close();
    } finally {
      process.off('warning', onWarning);
    }
  });

describe("the client's deadline", () => {
  // Holds Node's event loop for `ms`, as long synchronous work would.
  const holdLoop = (ms) => {
    const until = Date.now() + ms;
    while (Date.now() < until) { /* busy */ }
  };

  test("does not take the client's own held-up loop for the server's silence", BOUNDED,
    async () => {
      const client = await ffibox.connect({ address: server.address });
      try {
        // Held up past the bound (200 ms for the open) before the request is even written:
        // a new stream is written to once the loop turns.
        const opening = client.session({ timeoutMs: 100, answerMarginMs: 200 });
        holdLoop(1500);
        const session = await opening;
        const sleep = await (await session.load(TEST_LIB)).func('int sleep_ms(int)');
        // Held up past the bound (300 ms for the call) with the answer waiting to be read.
        const call = sleep(50);
        await new Promise((resolve) => setImmediate(resolve));
        holdLoop(600);
        assert.equal(await call, 50);
        session.close();
      } finally {
        client.close();
      }
    });
});

