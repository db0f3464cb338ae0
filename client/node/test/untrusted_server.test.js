'use strict';
// The server's answers are untrusted input: against a gRPC server that is not ffiboxd
// (test/fake_server.js), answers that do not fit the request are INTERNAL errors rather than
// values, and a server that never answers meets the client's own deadline instead of
// leaving promises unsettled forever.
const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const ffibox = require('..');
const { opened, ordinaryAnswer, startFakeServer } = require('./fake_server');

const DECLARATIONS = {
  'double cos(double)': {
    name: 'cos', signature: { result: { scalar: 'DOUBLE' }, params: [{ scalar: 'DOUBLE' }] },
  },
  'int add_int(int, int)': {
    name: 'add_int',
    signature: { result: { scalar: 'INT' }, params: [{ scalar: 'INT' }, { scalar: 'INT' }] },
  },
  'void fill(void* out)': { name: 'fill', signature: { params: [{ scalar: 'POINTER' }] } },
  'void* pair(void)': { name: 'pair', signature: { result: { scalar: 'POINTER' }, params: [] } },
  'float half(float)': {
    name: 'half', signature: { result: { scalar: 'FLOAT' }, params: [{ scalar: 'FLOAT' }] },
  },
  'char* name(void)': { name: 'name', signature: { result: { scalar: 'CSTRING' }, params: [] } },
};

// Runs `body(client, server)` against a fake server answering with `answer`, then stops both.
async function withFakeServer(answer, body) {
  const server = await startFakeServer(answer);
  const client = await ffibox.connect({ address: server.address });
  try {
    await body(client, server);
  } finally {
    client.close();
    server.stop();
  }
}

// The ordinary answers, with `call` (and `get_layout`) answered by the functions given.
function answering(overrides) {
  const ordinary = ordinaryAnswer(DECLARATIONS);
  return (request, stream) => (overrides[request.op] || ordinary)(request, stream);
}

function isInternal(pattern) {
  return (error) => {
    assert.ok(error instanceof ffibox.FfiboxError, error.stack);
    assert.equal(error.code, 'INTERNAL');
    assert.match(error.message, pattern);
    return true;
  };
}

describe('answers that do not fit the request', () => {
  test('a result of the wrong kind is INTERNAL naming what came', async () => {
    const call = () => ({ call: { result: { text_value: 'not a number' } } });
    await withFakeServer(answering({ call }), async (client) => {
      const session = await client.session();
      const cos = await (await session.load('libm.so.6')).func('double cos(double)');
      await assert.rejects(cos(0.5), isInternal(new RegExp('the server returned text_value ' +
        'where a floating-point type was expected \\(the result of cos\\)')));
    });
  });

  test('an integer result out of its C type is INTERNAL', async () => {
    const call = () => ({ call: { result: { int_value: String(2 ** 40) } } });
    await withFakeServer(answering({ call }), async (client) => {
      const session = await client.session();
      const add = await (await session.load('libtest.so')).func('int add_int(int, int)');
      await assert.rejects(add(1, 2), isInternal(/returned 1099511627776, out of range for int/));
    });
  });

  test('a float result no C float holds, or a char* result as an address, is INTERNAL',
    async () => {
      let result = { float_value: 1e300 };
      const call = () => ({ call: { result } });
      await withFakeServer(answering({ call }), async (client) => {
        const session = await client.session();
        const lib = await session.load('libtest.so');
        const half = await lib.func('float half(float)');
        await assert.rejects(half(1), isInternal(/returned float_value where/));
        result = { float_value: 0.1 };
        await assert.rejects(half(1), isInternal(/returned float_value where/));
        result = { float_value: 0.25 };  // a float's value: taken
        assert.equal(await half(1), 0.25);
        const name = await lib.func('char* name(void)');
        result = { pointer: { remote: { address: '4096', generation: '1' } } };
        await assert.rejects(name(), isInternal(/returned pointer.remote where/));
        result = { bytes_value: Buffer.from('ok') };
        assert.equal(await name(), 'ok');
      });
    });

  test('an answer of another operation is INTERNAL', async () => {
    const load = () => ({ done: {} });
    await withFakeServer(answering({ load_library: load }), async (client) => {
      const session = await client.session();
      await assert.rejects(session.load('libm.so.6'), isInternal(
        /answered load_library with done where library was expected/));
    });
  });

  test('an out block of the wrong size is INTERNAL and leaves the Buffer alone', async () => {
    const call = () => ({ call: { blocks: [{ block: 0, data: Buffer.from('xyz') }] } });
    await withFakeServer(answering({ call }), async (client) => {
      const session = await client.session();
      const fill = await (await session.load('libtest.so')).func('void fill(void* out)',
        { params: [ffibox.buffer('out')] });
      const out = Buffer.from('......');
      await assert.rejects(fill(out), isInternal(/3 bytes for block 0 of 6 bytes/));
      assert.equal(out.toString(), '......');
    });
  });

  test('a struct result of the wrong size, or a layout past its bytes, is INTERNAL', async () => {
    const Pair = ffibox.struct('Pair', { a: 'int', b: 'int' });
    let layoutSize = 8;
    const get_layout = () => ({
      layout: {
        size: String(layoutSize), alignment: '4', fields: [{ offset: '0' }, { offset: '4' }],
      },
    });
    const call = () => ({ call: { result: { raw: Buffer.alloc(4) } } });
    await withFakeServer(answering({ call, get_layout }), async (client) => {
      const session = await client.session();
      const lib = await session.load('libtest.so');
      const pair = await lib.func('void* pair(void)', { result: Pair });
      await assert.rejects(pair(), isInternal(/4 bytes for a Pair of 8 bytes/));
      layoutSize = 6;
      const other = await client.session();
      const pairAgain = await (await other.load('libtest.so')).func('void* pair(void)',
        { result: Pair });
      await assert.rejects(pairAgain(),
        isInternal(/layout of Pair puts b at bytes 4 to 8, past its 6/));
    });
  });

  test('memory answers without an address, or of another size, are INTERNAL', async () => {
    const overrides = {
      alloc_memory: () => ({ allocated: {} }),
      lookup_symbol: () => ({ symbol: {} }),
      read_memory: () => ({ memory: { data: Buffer.alloc(3) } }),
    };
    await withFakeServer(answering(overrides), async (client) => {
      const session = await client.session();
      await assert.rejects(session.alloc(16), isInternal(/answered alloc_memory with no address/));
      const lib = await session.load('libm.so.6');
      await assert.rejects(lib.symbol('x'), isInternal(/answered dlsym x with no address/));
      await assert.rejects(session.readMemory(new ffibox.RemotePointer(4096, 1), 16),
        isInternal(/answered a read of 16 bytes with 3/));
    });
  });

  // Answers a call of `declaration` (its first parameter a callback of `callbackDeclaration`)
  // by invoking callback 1 with `args`, then the call with what the callback returned;
  // `returned(callback_return)` sees the client's answer.
  function invokingOnce(declaration, signature, callbackDeclaration, callbackSignature, args,
    returned) {
    let callId = null;
    const declarations = {
      ...DECLARATIONS,
      [declaration]: { name: declaration.match(/(\w+)\(/)[1], signature },
      [callbackDeclaration]: { name: 'f', signature: callbackSignature },
    };
    const ordinary = ordinaryAnswer(declarations);
    return (request, stream) => {
      if (request.op === 'define_callback') return { callback: { callback: '1' } };
      if (request.op === 'call') {
        callId = request.id;
        stream.write({ id: '0', callback_invoke: { invocation: '7', callback: '1', args } });
        return undefined;
      }
      if (request.op === 'callback_return') {
        returned(request.callback_return);
        stream.write({ id: callId, call: { result: request.callback_return.result ||
          { float_value: 0 } } });
        return { done: {} };
      }
      return ordinary(request);
    };
  }

  test("a callback's char* argument sent as an address (too long to send) reaches the " +
    'handler as a RemotePointer', async () => {
    const visit = 'int visit(void* f)';
    const answer = invokingOnce(visit,
      { result: { scalar: 'INT' }, params: [{ scalar: 'POINTER' }] }, 'int f(const char*)',
      { result: { scalar: 'INT' }, params: [{ scalar: 'CSTRING' }] },
      [{ pointer: { remote: { address: '4096', generation: '1' } } }], () => {});
    await withFakeServer(answer, async (client) => {
      const session = await client.session();
      const f = await (await session.load('libtest.so')).func(visit,
        { params: [ffibox.callback('int f(const char*)')] });
      let got = null;
      assert.equal(await f((text) => {
        got = text;
        return 5;
      }), 5);
      assert.ok(got instanceof ffibox.RemotePointer, String(got));
      assert.equal(Number(got.address), 4096);
    });
  });

  test('a callback argument of the wrong kind fails the callback, not the client', async () => {
    // The server invokes callback 1 with text where a double is expected; the client answers
    // with the error, as for a callback that throws.
    let answered = null;
    const fold = 'double fold(void* f, double x)';
    const answer = invokingOnce(fold,
      { result: { scalar: 'DOUBLE' }, params: [{ scalar: 'POINTER' }, { scalar: 'DOUBLE' }] },
      'double f(double)', { result: { scalar: 'DOUBLE' }, params: [{ scalar: 'DOUBLE' }] },
      [{ text_value: 'x' }], (callbackReturn) => {
        answered = callbackReturn;
      });
    await withFakeServer(answer, async (client) => {
      const session = await client.session();
      const f = await (await session.load('libtest.so')).func(fold,
        { params: [ffibox.callback('double f(double)')] });
      let ran = false;
      assert.equal(await f(() => {
        ran = true;
        return 1;
      }, 2), 0);
      assert.equal(ran, false);
      assert.match(answered.error, /text_value where a floating-point type was expected/);
    });
  });
});

// A test that waits for a deadline fails, rather than hangs, when no deadline comes.
const BOUNDED = { timeout: 20000 };

describe('a server that does not answer', () => {
  test('an open never answered rejects with DEADLINE_EXCEEDED after the margin', BOUNDED,
    async () => {
      await withFakeServer(() => undefined, async (client) => {
        const started = Date.now();
        await assert.rejects(client.session({ answerMarginMs: 300 }), (error) => {
          assert.ok(error instanceof ffibox.SessionClosed, error.stack);
          assert.equal(error.code, 'DEADLINE_EXCEEDED');
          assert.match(error.message, /sent nothing for \d+ ms/);
          return true;
        });
        const waited = Date.now() - started;
        assert.ok(waited >= 290 && waited < 5000, `waited ${waited} ms`);
      });
    });

  test("a call never answered rejects after the session's deadline plus the margin, and " +
    'the session is closed', BOUNDED, async () => {
    await withFakeServer(answering({}), async (client, server) => {
      const session = await client.session({ timeoutMs: 400, answerMarginMs: 300 });
      const add = await (await session.load('libtest.so')).func('int add_int(int, int)');
      const started = Date.now();
      await assert.rejects(add(1, 2), (error) => error instanceof ffibox.SessionClosed &&
        error.code === 'DEADLINE_EXCEEDED' && /due within 700 ms/.test(error.message));
      const waited = Date.now() - started;
      assert.ok(waited >= 690 && waited < 5000, `waited ${waited} ms`);
      await assert.rejects(add(1, 2), (error) => error.code === 'DEADLINE_EXCEEDED');
      // The client cancelled the stream: the server sees it end.
      const stream = server.sessionStreams[0];
      for (let i = 0; i < 100 && !stream.cancelled; ++i) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(stream.cancelled);
    });
  });

  test('requests queued behind slow answers each get their whole bound', BOUNDED, async () => {
    // Like a worker, the server answers one call at a time, each 250 ms after the last: the
    // third answer comes 750 ms after it was sent, past its bound of 400 ms counted from its
    // sending, but within 400 ms of the answer before it.
    let queue = Promise.resolve();
    const call = (request, stream) => {
      queue = queue.then(() => new Promise((resolve) => setTimeout(resolve, 250))).then(() => {
        stream.write({ id: request.id, call: { result: { int_value: '3' } } });
      });
      return undefined;
    };
    await withFakeServer(answering({ call }), async (client) => {
      const session = await client.session({ timeoutMs: 100, answerMarginMs: 300 });
      const add = await (await session.load('libtest.so')).func('int add_int(int, int)');
      assert.deepEqual(await Promise.all([add(1, 2), add(1, 2), add(1, 2)]), [3, 3, 3]);
    });
  });

  test('no event reaches listeners after session.close()', async () => {
    await withFakeServer(ordinaryAnswer(DECLARATIONS), async (client, server) => {
      const session = await client.session();
      const events = [];
      session.on('event', (event) => events.push(event.kind));
      const stream = server.sessionStreams[0];
      const event = { id: '0', event: { kind: 'WORKER_OUTPUT', output: Buffer.from('x') } };
      stream.write(event);
      for (let i = 0; i < 100 && events.length === 0; ++i) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      session.close();
      stream.write(event);
      stream.write({ id: '0', event: { kind: 'WORKER_RESTARTED' } });
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(events, ['WORKER_OUTPUT']);
    });
  });

  test('answerMarginMs must be a number of milliseconds', async () => {
    await withFakeServer((request) => (request.op === 'open' ? opened(request) : undefined),
      async (client) => {
        await assert.rejects(client.session({ answerMarginMs: -1 }), ffibox.InvalidArgument);
        // Zero would leave even the open's answer no time at all: every session would fail.
        await assert.rejects(client.session({ answerMarginMs: 0 }), ffibox.InvalidArgument);
        await assert.rejects(client.session({ answerMarginMs: '5' }), ffibox.InvalidArgument);
      });
  });
});
