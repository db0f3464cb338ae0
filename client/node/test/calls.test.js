'use strict';
// The Node client against a real ffiboxd: declarations parsed by the server, scalars,
// strings, buffers, structs, callbacks and typed errors, through real workers calling the
// real test library.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const ffibox = require('..');
const { TEST_LIB, PROBE_LIB, privateDirectory, startServer } = require('./server');

let server;
let client;
let session;
let lib;

before(async () => {
  server = await startServer();
  client = await ffibox.connect({ address: server.address });
  session = await client.session({ timeoutMs: 5000 });
  lib = await session.load(TEST_LIB);
});

after(async () => {
  if (session) session.close();
  if (client) client.close();
  if (server) await server.stop();
});

// Runs `body(session, lib)` on a session of a server of its own started with `flags`, the
// test library loaded; the server stops afterwards, whatever happened.
async function onServerWith(flags, timeoutMs, body) {
  const own = await startServer(null, flags);
  const ownClient = await ffibox.connect({ address: own.address });
  try {
    const ownSession = await ownClient.session({ timeoutMs });
    await body(ownSession, await ownSession.load(TEST_LIB));
    ownSession.close();
  } finally {
    ownClient.close();
    await own.stop();
  }
}

describe('sessions', () => {
  test('a session reports its jail and refuses one without a required layer', async () => {
    assert.ok(Array.isArray(session.opened.jail_layers));
    assert.ok(session.opened.jail_layers.includes('seccomp'), session.opened.jail_layers);
    const all = await client.session({ requireJail: ['all'] });
    all.close();
    // A name that is no layer is refused as such, not taken for a layer the server lacks.
    await assert.rejects(client.session({ requireJail: ['seccomp', 'no-such-layer'] }), (error) => {
      assert.ok(error instanceof ffibox.InvalidArgument, error.stack);
      assert.match(error.message, /no jail layer is called 'no-such-layer'/);
      return true;
    });
    await assert.rejects(client.session({ requireJail: 'seccomp' }), ffibox.InvalidArgument);
  });

  test('a server without the jail refuses a session that requires a layer', async () => {
    const bare = await startServer(null, ['--nojail']);
    const bareClient = await ffibox.connect({ address: bare.address });
    try {
      await assert.rejects(bareClient.session({ requireJail: ['seccomp'] }), (error) => {
        assert.equal(error.code, 'JAIL_UNAVAILABLE');
        assert.match(error.message, /lack the jail layers seccomp \(they have: none\)/);
        return true;
      });
    } finally {
      bareClient.close();
      await bare.stop();
    }
  });

  test('a refused open is a typed error', async () => {
    await assert.rejects(client.session({ memoryLimit: 1024 }), (error) => {
      assert.ok(error instanceof ffibox.InvalidArgument, error.stack);
      assert.equal(error.field, 'open.memory_limit_bytes');
      return true;
    });
  });

  test('close() ends a session with a call in flight at once: its slot is free again',
    { timeout: 20000 }, async () => {
      // One session per identity: the next one opens only once the server ended this one,
      // which it does at once for a close, not after the call in flight (a stream only
      // closed on the client's side has its requests answered first).
      const own = await startServer(null, ['--max_sessions_per_identity=1']);
      const ownClient = await ffibox.connect({ address: own.address });
      try {
        const first = await ownClient.session({ timeoutMs: 30000 });
        const sleep = await (await first.load(TEST_LIB)).func('int sleep_ms(int)');
        const inFlight = sleep(15000).catch((error) => error);
        await new Promise((resolve) => setTimeout(resolve, 200));
        const closed = Date.now();
        first.close();
        assert.ok((await inFlight) instanceof ffibox.SessionClosed);
        let next;
        while (!next) {
          next = await ownClient.session().catch((error) => {
            assert.equal(error.code, 'RESOURCE_EXHAUSTED', error.stack);
            assert.ok(Date.now() - closed < 5000, 'the closed session kept its slot');
            return new Promise((resolve) => setTimeout(() => resolve(null), 100));
          });
        }
        const add = await (await next.load(TEST_LIB)).func('int add_int(int, int)');
        assert.equal(await add(2, 3), 5);
        next.close();
      } finally {
        ownClient.close();
        await own.stop();
      }
    });

  test('a session\'s environment, scratch directory and idle CPU share', async () => {
    const scratchRoot = privateDirectory('ffibox-node-scratch-');
    fs.chmodSync(scratchRoot, 0o711);
    const own = await startServer(null,
      ['--allow_env=FFIBOX_NODE_TEST', `--scratch_root=${scratchRoot}`]);
    const ownClient = await ffibox.connect({ address: own.address });
    try {
      const configured = await ownClient.session({
        environment: { FFIBOX_NODE_TEST: 'h\u00e9llo' },
        scratchDirectory: true,
        idleCpuPercent: 20,
      });
      const libc = await configured.load('libc.so.6');
      const getenv = await libc.func('char* getenv(const char* name)');
      assert.equal(await getenv('FFIBOX_NODE_TEST'), 'h\u00e9llo');
      assert.equal(configured.opened.idle_cpu_percent, 20);
      await assert.rejects(getenv.callWith({ timeout: 50 }, 'X'), /unknown call option timeout/);
      const scratch = configured.opened.scratch_directory;
      assert.ok(scratch.startsWith(scratchRoot), scratch);
      const fopen = await libc.func('void* fopen(const char* path, const char* mode)');
      const fputs = await libc.func('int fputs(const char* s, void* stream)');
      const fclose = await libc.func('int fclose(void* stream)');
      const file = await fopen(path.join(scratch, 'out.txt'), 'w');
      assert.ok(file instanceof ffibox.RemotePointer);
      await fputs('written in the jail', file);
      assert.equal(await fclose(file), 0);
      assert.equal(fs.readFileSync(path.join(scratch, 'out.txt'), 'utf8'), 'written in the jail');
      configured.close();
      // A name the server does not allow is refused by it, naming the variable.
      await assert.rejects(ownClient.session({ environment: { LD_PRELOAD: '/x.so' } }),
        (error) => error instanceof ffibox.InvalidArgument && /LD_PRELOAD/.test(error.message));
      for (const options of [{ environment: 'A=1' }, { environment: { A: 1 } },
        { environment: new Map([['FFIBOX_NODE_TEST', 'x']]) }, { scratchDirectory: 'yes' },
        { idleCpuPercent: 101 }, { memoryLimit: 'abc' }, { memoryLimit: 2 ** 64 },
        { memoryLimit: -1 }, { timeoutMS: 100 }]) {
        await assert.rejects(ownClient.session(options), ffibox.InvalidArgument,
          JSON.stringify(options));
      }
    } finally {
      ownClient.close();
      await own.stop();
      fs.rmSync(scratchRoot, { recursive: true, force: true });
    }
  });

  test('a session deadline that is not a whole number of milliseconds is refused', async () => {
    for (const timeoutMs of [-5, 1.5, '100', 2 ** 32]) {
      await assert.rejects(client.session({ timeoutMs }), ffibox.InvalidArgument,
        String(timeoutMs));
    }
  });

  test('sessions have workers of their own', async () => {
    const other = await client.session();
    try {
      const counter = await (await other.load(TEST_LIB)).func('int counter_next(void)');
      const mine = await lib.func('int counter_next(void)');
      const first = await mine();
      assert.equal(await counter(), 1);
      assert.equal(await counter(), 2);
      assert.equal(await mine(), first + 1);
    } finally {
      other.close();
    }
  });
});

describe('declarations', () => {
  test('the server parses a declaration into a name and signature', async () => {
    const parsed = await session.parseDeclaration('int printf(const char *format, ...);');
    assert.equal(parsed.name, 'printf');
    assert.equal(parsed.signature.result.scalar, 'INT');
    assert.equal(parsed.signature.params[0].scalar, 'CSTRING');
    assert.equal(parsed.signature.variadic, true);
  });

  test('a declaration the parser cannot read is InvalidArgument naming the field', async () => {
    await assert.rejects(lib.func('double cos(struct x)'), (error) => {
      assert.ok(error instanceof ffibox.InvalidArgument, error.stack);
      assert.equal(error.code, 'INVALID_ARGUMENT');
      assert.equal(error.field, 'parse_declaration.declaration.params[0]');
      assert.equal(error.neverReachedWorker, true);  // the server's own refusal
      return true;
    });
  });

  test('a missing symbol is SymbolNotFound', async () => {
    await assert.rejects(lib.func('int no_such_function(int)'), (error) => {
      assert.ok(error instanceof ffibox.SymbolNotFound, error.stack);
      assert.match(error.message, /no_such_function/);
      assert.equal(error.neverReachedWorker, false);  // the worker's dlsym
      return true;
    });
  });

  test('libm by soname', async () => {
    const libm = await session.load('libm.so.6');
    const cos = await libm.func('double cos(double)');
    assert.equal(await cos(0), 1);
    assert.equal(cos.functionName, 'cos');
    assert.equal(libm.path, 'libm.so.6');
  });

  test('{global: true} loads with RTLD_GLOBAL: its symbols serve the libraries loaded after',
    async () => {
      const testlibs = path.dirname(TEST_LIB);
      const own = await client.session({ timeoutMs: 5000 });
      try {
        await own.load(path.join(testlibs, 'libffibox_global_provider.so'));  // RTLD_LOCAL
        await assert.rejects(own.load(path.join(testlibs, 'libffibox_global_user.so')),
          /undefined symbol: ffibox_global_answer/);
        await own.load(path.join(testlibs, 'libffibox_global_provider.so'), { global: true });
        const user = await own.load(path.join(testlibs, 'libffibox_global_user.so'));
        assert.equal(await (await user.func('int ask_global_answer(void)'))(), 42);
        await assert.rejects(own.load('libm.so.6', { globl: true }),
          (error) => error instanceof ffibox.InvalidArgument &&
            /unknown load option globl/.test(error.message));
        await assert.rejects(own.load('libm.so.6', { global: 1 }),
          (error) => error instanceof ffibox.InvalidArgument);
      } finally {
        own.close();
      }
    });

  test('a relative path is taken from the working directory of this process', async () => {
    const cwd = process.cwd();
    try {
      process.chdir(path.dirname(path.dirname(TEST_LIB)));
      const absolute = path.join(process.cwd(), 'testlibs', path.basename(TEST_LIB));
      for (const relative of ['testlibs/libffibox_test.so', './testlibs/libffibox_test.so',
        'testlibs/../testlibs/libffibox_test.so']) {
        const relativeLib = await session.load(relative);
        assert.equal(relativeLib.path, absolute);
        assert.equal(await (await relativeLib.func('int add_int(int, int)'))(2, 3), 5);
      }
    } finally {
      process.chdir(cwd);
    }
  });
});

describe('scalars', () => {
  test('ints, chars and bools', async () => {
    assert.equal(await (await lib.func('int add_int(int, int)'))(40, 2), 42);
    assert.equal(await (await lib.func('unsigned int add_uint(unsigned int, unsigned int)'))(
      0xffffffff, 2), 1);
    assert.equal(await (await lib.func('short add_short(short, short)'))(-3, 1), -2);
    assert.equal(await (await lib.func('char next_char(char)'))('a'), 'b'.charCodeAt(0));
    assert.equal(await (await lib.func('bool is_even(int)'))(4), true);
    assert.equal(await (await lib.func('_Bool not_bool(_Bool)'))(true), false);
  });

  test('64-bit integers are BigInt, exact beyond 2^53', async () => {
    const add = await lib.func('uint64_t add_uint64(uint64_t, uint64_t)');
    assert.equal(await add(2n ** 63n, 2n ** 62n + 1n), 2n ** 63n + 2n ** 62n + 1n);
    const neg = await lib.func('int64_t neg_int64(int64_t)');
    assert.equal(await neg(9007199254740993n), -9007199254740993n);
    const addLongLong = await lib.func('long long add_longlong(long long, long long)');
    assert.equal(await addLongLong(-1n, 5), 4n);
    const twice = await lib.func('size_t twice_size(size_t)');
    assert.equal(await twice(21), 42n);
  });

  test('floats and doubles', async () => {
    assert.equal(await (await lib.func('float mul_float(float, float)'))(1.5, 2.5), 3.75);
    assert.equal(await (await lib.func('double mul_double(double, double)'))(0.1, 3), 0.1 * 3);
    const mixed = await lib.func(
      'double sum_mixed(int a, double b, long c, float d, unsigned char e)');
    assert.equal(await mixed(1, 2.5, 3n, 0.5, 4), 11);
  });

  test('a value that does not fit the C type is InvalidArgument', async () => {
    const add = await lib.func('unsigned char add_uchar(unsigned char, unsigned char)');
    await assert.rejects(add(300, 1), (error) => error instanceof ffibox.InvalidArgument);
    assert.equal(await add(200, 100), 44);
  });

  test('a wrong number of arguments is refused before sending', async () => {
    const add = await lib.func('int add_int(int, int)');
    await assert.rejects(add(1), /takes 2 arguments, got 1/);
  });

  test('a misspelled option of func is refused, not read as no option', async () => {
    await assert.rejects(lib.func('int add_int(int, int)', { reslt: 'double' }),
      (error) => error instanceof ffibox.InvalidArgument &&
        /unknown func option reslt \(known: params, result\)/.test(error.message));
  });
});

describe('order', () => {
  test('calls made without awaiting each run in the order they were made', async () => {
    const set = await lib.func('void set_owned_number(int index, int value)');
    const get = await lib.func('int owned_number_at(int index)');
    const Fresh = ffibox.struct('OrderPoint', { x: 'double', y: 'double' });
    // Its argument's layout is asked of the server before the call can be written.
    const area = await lib.func('double rect_area(void* r)',
      { params: [ffibox.struct('OrderRect', { min: Fresh, max: Fresh })] });
    const made = [];
    for (let i = 1; i <= 5; ++i) made.push(set(0, i));
    made.push(area({ min: { x: 0, y: 0 }, max: { x: 1, y: 1 } }));
    made.push(set(0, 42));
    made.push(get(0));  // one argument, where set has two: it was written before them
    const results = await Promise.all(made);
    assert.equal(results[results.length - 1], 42);
    await set(0, 7);  // as the library had it
  });
});

describe('order after a failure', () => {
  test('a call refused before it is written holds back the calls made after it', async () => {
    const set = await lib.func('void set_owned_number(int index, int value)');
    const register = await lib.func('void register_handler(void* h)',
      { params: [ffibox.callback('int h(int)')] });
    const fire = await lib.func('int fire_handler(int x)');
    const doubled = (x) => x * 2;
    const answered = [];
    const made = [
      register(doubled).then(() => answered.push('register')),  // awaits its definition
      set(0, 'bad').catch(() => answered.push('refused')),
      fire(10).then((value) => answered.push(`fire ${value}`)),
    ];
    await Promise.all(made);
    assert.deepEqual(answered.filter((a) => a !== 'refused'), ['register', 'fire 20']);
    assert.equal(doubled(1), 2);
    await set(0, 7);
  });
});

describe('errno', () => {
  test('withErrno gives the worker\'s errno right after the call, and callWith sets it before', async () => {
    const setErrno = await lib.func('int set_errno_to(int)');
    assert.deepEqual(await setErrno.withErrno(34), { value: -1, errno: 34 });
    assert.equal(await setErrno(5), -1);  // a plain call still gives the value alone
    const getErrno = await lib.func('int get_errno_value(void)');
    assert.deepEqual(await getErrno.callWith({ captureErrno: true, setErrno: 7 }),
      { value: 7, errno: 7 });
    assert.equal(await getErrno.callWith({ setErrno: 0 }), 0);
    const open = await (await session.load('libc.so.6')).func('int open(const char*, int)');
    assert.deepEqual(await open.withErrno('/no/such/file', 0), { value: -1, errno: 2 });
    await assert.rejects(getErrno.callWith({ setErrno: 1.5 }), (error) => {
      assert.ok(error instanceof ffibox.InvalidArgument, error.stack);
      assert.match(error.message, /setErrno must be a 32-bit integer/);
      return true;
    });
  });
});

describe('variadic functions', () => {
  test('variadic arguments typed by their JS values, or explicitly', async () => {
    const sum = await lib.func('int sum_variadic(int count, ...)');
    assert.equal(await sum(3, 1, 2, 39), 42);
    assert.equal(await sum(2, ffibox.typed('int', 40), 2), 42);
    const libc = await session.load('libc.so.6');
    const snprintf = await libc.func('int snprintf(char* buf, size_t n, const char* format, ...)',
      { params: { 0: ffibox.buffer('out') } });
    const out = Buffer.alloc(32);
    const written = await snprintf(out, 32, '%d|%.2f|%s|%lld', 7, 2.5, 'x', 2n ** 40n);
    assert.equal(out.toString('utf8', 0, written), '7|2.50|x|1099511627776');
    // C spellings name the client's types too.
    const wide = Buffer.alloc(64);
    const typedWritten = await snprintf(wide, 64, '%lu|%u|%s',
      ffibox.typed('unsigned long', 2n ** 63n), ffibox.typed('unsigned  int', 2 ** 31),
      ffibox.typed('char *', 'y'));
    assert.equal(wide.toString('utf8', 0, typedWritten), '9223372036854775808|2147483648|y');
    // A Buffer past the fixed parameters is read as a string (its NUL comes after it) and
    // takes what the library writes there.
    const sscanf = await libc.func('int sscanf(const char* s, const char* format, ...)');
    const word = Buffer.alloc(8);
    const number = Buffer.from('xyz');
    assert.equal(await sscanf('hello 42', '%7s', word), 1);
    assert.equal(word.toString('utf8', 0, 5), 'hello');
    const printed = Buffer.alloc(16);
    assert.equal(await snprintf(printed, 16, '[%s]', number), 5);
    assert.equal(printed.toString('utf8', 0, 5), '[xyz]');
  });

  test('a fixed parameter missing is refused before sending', async () => {
    const sum = await lib.func('int sum_variadic(int count, ...)');
    await assert.rejects(sum(), /takes at least 1 argument, got 0/);
    await assert.rejects(sum(1, ffibox.typed(ffibox.buffer(), Buffer.alloc(1))),
      ffibox.InvalidArgument);
    await assert.rejects(lib.func('void* greeting(void)', { result: ffibox.buffer('out') }),
      ffibox.InvalidArgument);
    assert.equal(await sum(1, 41), 41);  // the session is intact
  });
});

describe('events', () => {
  test("the library's output arrives as WORKER_OUTPUT events", async () => {
    const libc = await session.load('libc.so.6');
    const puts = await libc.func('int puts(const char* s)');
    const fflush = await libc.func('int fflush(void* stream)');
    const output = [];
    const listener = (event) => {
      if (event.kind === 'WORKER_OUTPUT') output.push(event.output.toString());
    };
    session.on('event', listener);
    try {
      await puts('hello from node');
      await fflush(null);
    } finally {
      session.off('event', listener);
    }
    assert.equal(output.join(''), 'hello from node\n');
  });
});

describe('strings', () => {
  test('char* in and out', async () => {
    const strLen = await lib.func('size_t str_len(const char* s)');
    assert.equal(await strLen('h\u00e9llo'), 6n);
    assert.equal(await strLen(null), 0n);
    const greeting = await lib.func('const char* greeting(void)');
    assert.equal(await greeting(), 'hello, ffibox');
    const nullString = await lib.func('const char* null_string(void)');
    assert.equal(await nullString(), null);
  });

  test('a char* that is not UTF-8: text with U+FFFD, or its bytes as cbytes', async () => {
    const libc = await session.load('libc.so.6');
    const bytes = Buffer.from([0xff, 0xfe, 0x41, 0xe9, 0]);
    const asText = await libc.func('char* strchr(const char* s, int c)');
    assert.equal(await asText(bytes, 0xff), '\ufffd\ufffdA\ufffd');
    const asBytes = await libc.func('char* strchr(const char* s, int c)', { result: 'cbytes' });
    assert.deepEqual(await asBytes(bytes, 0xff), Buffer.from([0xff, 0xfe, 0x41, 0xe9]));
    assert.deepEqual(await asBytes(bytes, 0x41), Buffer.from([0x41, 0xe9]));
    assert.equal(await asBytes(bytes, 0x42), null);
    // In a callback's arguments too.
    const seen = [];
    const fold = await lib.func('int call_with_string(void* f, const char* s)', {
      params: { 0: ffibox.callback({ result: 'int', params: ['cbytes'] }) },
    });
    assert.equal(await fold((s) => { seen.push(s); return s.length; }, bytes), 4);
    assert.deepEqual(seen, [Buffer.from([0xff, 0xfe, 0x41, 0xe9])]);
  });

  test('wchar_t* in and out', async () => {
    const wstrLen = await lib.func('size_t wstr_len(const wchar_t* s)');
    assert.equal(await wstrLen('h\u00e9llo \u4e16\u754c'), 8n);
    const wgreeting = await lib.func('const wchar_t* wgreeting(void)');
    assert.equal(await wgreeting(), 'h\u00e9llo \u4e16\u754c');
  });
});

describe('text with an unpaired surrogate', () => {
  // UTF-8 has no encoding of an unpaired surrogate: sent in a protocol `string` field, it
  // would make the server fail to read the message and end the session's stream.
  const refusal = (pattern) => (error) => {
    assert.ok(error instanceof ffibox.InvalidArgument, error.stack);
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, pattern);
    return true;
  };

  test('is refused before sending, naming what holds it, and the session goes on', async () => {
    const own = await client.session({ timeoutMs: 5000 });
    try {
      const ownLib = await own.load(TEST_LIB);
      const addInt = await ownLib.func('int add_int(int, int)');
      const wstrLen = await ownLib.func('size_t wstr_len(const wchar_t* s)');
      await assert.rejects(wstrLen('a\ud800b'),
        refusal(/wstr_len argument 0: the string "a\\ud800b" has an unpaired surrogate/));
      await assert.rejects(wstrLen('a\ud800b'), refusal(/\(U\+D800 at index 1\)/));
      await assert.rejects(wstrLen('\udc00x'), refusal(/U\+DC00 at index 0/));
      await assert.rejects(wstrLen('x\ud83d'), refusal(/U\+D83D at index 1/));
      await assert.rejects(own.load('/tmp/\ud800.so'), refusal(/the library path: /));
      await assert.rejects(ownLib.func('int a\ud800(int)'), refusal(/the declaration: /));
      await assert.rejects(ownLib.func('double f(void* g)',
        { params: [ffibox.callback('int g(\udfff)')] }), refusal(/the declaration: /));
      await assert.rejects(async () => ownLib.func('double rect_area(void* r)',
        { params: [ffibox.struct('P\ud800', { x: 'double' })] }),
      refusal(/the name of a struct: /));
      await assert.rejects(async () => ownLib.func('double rect_area(void* r)',
        { params: [ffibox.union('U', { ['x\udc00']: 'double' })] }),
      refusal(/the name of a field of U: /));
      // Pairs are characters like any other.
      assert.equal(await wstrLen('\ud83d\ude00'), 1n);
      assert.equal(await addInt(2, 3), 5);
      assert.equal(own.generation, 1);
    } finally {
      own.close();
    }
  });

  test("in a callback's error is replaced, and the session goes on", async () => {
    const own = await client.session({ timeoutMs: 5000 });
    try {
      const ownLib = await own.load(TEST_LIB);
      const fold = await ownLib.func('double fold(void* f, const double* xs, int n, double init)', {
        params: { 0: ffibox.callback('double f(double, double)'), 1: ffibox.array('double', 'in') },
      });
      const before = own.events.length;
      assert.equal(await fold(() => {
        throw new Error('no \ud800 today');
      }, [1], 1, 5), 0);
      const events = own.events.slice(before).filter((e) => e.kind === 'CALLBACK_ERROR');
      assert.equal(events.length, 1);
      assert.match(events[0].error.message, /no \ufffd today/);
      assert.equal(await fold((a, b) => a + b, [1.5, 2], 2, 0), 3.5);
    } finally {
      own.close();
    }
  });
});

describe('buffers', () => {
  test('an out buffer is filled by the library', async () => {
    const fill = await lib.func('void fill_buffer(char* out, size_t n, char c)',
      { params: { 0: ffibox.buffer('out') } });
    const out = Buffer.alloc(5);
    assert.equal(await fill(out, 5, 'z'), undefined);
    assert.equal(out.toString(), 'zzzzz');
  });

  test('an in buffer is read by the library', async () => {
    const sum = await lib.func('size_t sum_bytes(const unsigned char* in, size_t n)',
      { params: { 0: ffibox.buffer('in') } });
    assert.equal(await sum(Buffer.from([1, 2, 3, 250]), 4), 256n);
  });

  test('an inout buffer comes back changed', async () => {
    const reverse = await lib.func('void reverse_in_place(char* buf, size_t n)',
      { params: { 0: ffibox.buffer('inout') } });
    const text = Buffer.from('ffibox');
    await reverse(text, text.length);
    assert.equal(text.toString(), 'xobiff');
  });

  test('a buffer larger than a message is refused and the session goes on', async () => {
    await onServerWith(['--max_message_bytes=1048576'], 5000, async (s, testlib) => {
      const reverse = await testlib.func('void reverse_in_place(char* buf, size_t n)',
        { params: { 0: ffibox.buffer('inout') } });
      await assert.rejects(reverse(Buffer.alloc(6 << 20), 1),
        (error) => error.code === 'RESOURCE_EXHAUSTED' && /exceeds the limit of 1048576/.test(error.message));
      const text = Buffer.from('ffibox');
      await reverse(text, text.length);
      assert.equal(text.toString(), 'xobiff');
    });
  });

  test('out parameters through Buffers, and a null pointer', async () => {
    const divmod = await lib.func('int divmod(int a, int b, int* quotient, int* remainder)',
      { params: { 2: ffibox.buffer('out'), 3: ffibox.buffer('out') } });
    const q = Buffer.alloc(4);
    const r = Buffer.alloc(4);
    assert.equal(await divmod(17, 5, q, r), 0);
    assert.deepEqual([q.readInt32LE(0), r.readInt32LE(0)], [3, 2]);
    const increment = await lib.func('void increment(int* p)', { params: [ffibox.buffer()] });
    const n = Buffer.alloc(4);
    n.writeInt32LE(41);
    await increment(n);
    assert.equal(n.readInt32LE(0), 42);
  });
});

describe('structs', () => {
  const Point = ffibox.struct('Point', { x: 'double', y: 'double' });
  const IntPair = ffibox.struct('IntPair', { a: 'int', b: 'int' });
  const Rect = ffibox.struct('Rect', { min: Point, max: Point });

  test('a pointer field the library fills is a RemotePointer, passed back as one', async () => {
    const Slot = ffibox.struct('Slot', { node: 'void*' });
    const node = await (await lib.func('void* make_list(int)'))(2);
    const store = await lib.func('void store_node(void*, void*)',
      { params: [ffibox.pointer(Slot, 'out')] });
    const slot = {};
    await store(slot, node);
    assert.ok(slot.node instanceof ffibox.RemotePointer, String(slot.node));
    assert.equal(slot.node.address, node.address);
    assert.equal(slot.node.generation, session.generation);
    assert.equal(await (await lib.func('int sum_list(void*)'))(slot.node), 1);  // 0 + 1
  });

  test('an array of pointers: a T** out-parameter is a RemotePointer, and one goes back in', async () => {
    const outList = await lib.func('void out_list(int n, void* out)',
      { params: { 1: ffibox.array('pointer', 'out') } });
    const made = [null];
    await outList(3, made);
    assert.ok(made[0] instanceof ffibox.RemotePointer, String(made[0]));
    assert.equal(made[0].generation, session.generation);
    const sum = await lib.func('int sum_list(void*)');
    assert.equal(await sum(made[0]), 0 + 1 + 2);
    const store = await lib.func('void store_node(void* slot, void* node)',
      { params: { 0: ffibox.array('pointer', 'inout') } });
    const slot = [made[0]];
    await store(slot, null);
    assert.equal(slot[0], null);
    await store(slot, made[0]);
    assert.equal(slot[0].address, made[0].address);
    await assert.rejects(store(['not a pointer'], null), ffibox.InvalidArgument);
    // A pointer field behind a pointer is checked as well.
    const NodeT = ffibox.struct('StaleNode', { value: 'int', next: 'void*' });
    const sumFrom = await lib.func('int sum_list(void*)',
      { params: [ffibox.pointer(NodeT, 'in')] });
    assert.equal(await sumFrom({ value: 100, next: made[0] }), 100 + 0 + 1 + 2);
    await assert.rejects(sumFrom({ value: 100,
      next: new ffibox.RemotePointer(made[0].address, session.generation + 1) }),
    ffibox.StaleHandle);
    await assert.rejects(store([new ffibox.RemotePointer(made[0].address, session.generation + 1)],
      null), ffibox.StaleHandle);
  });

  test('a struct nested deeper than the server parses is InvalidArgument; the session goes on',
    async () => {
      let deep = 'int';
      for (let level = 0; level < 40; level += 1) deep = ffibox.struct(`Deep${level}`, { f: deep });
      await assert.rejects(lib.func('int add_int(void* a, int b)',
        { params: [ffibox.pointer(deep, 'in')] }), (error) => {
        assert.ok(error instanceof ffibox.InvalidArgument, error.stack);
        assert.match(error.message, /nests at most 32 levels/);
        return true;
      });
      const add = await lib.func('int add_int(int a, int b)');
      assert.equal(await add(2, 3), 5);
    });

  test('a packed struct is laid out as #pragma pack lays it out', async () => {
    const Packed1 = ffibox.struct('Packed1', { c: 'char', i: 'int', s: 'short' }, { pack: 1 });
    const sum = await lib.func('long packed1_sum(void* p)', { params: [Packed1] });
    assert.equal(await sum({ c: 1, i: 2, s: 3 }), 6n);
    const bump = await lib.func('void* packed1_bump(void* p)',
      { params: [Packed1], result: Packed1 });
    assert.deepEqual(await bump({ c: 1, i: 2, s: 3 }), { c: 2, i: 3, s: 4 });
    assert.equal((await session.layout(Packed1)).size, '7');
    assert.throws(() => ffibox.struct('P', { c: 'char' }, { pack: 3 }), ffibox.InvalidArgument);
    assert.throws(() => ffibox.struct('P', { c: 'char' }, { packed: 1 }), /unknown option packed/);
  });

  test('a struct field is a scalar or a struct', () => {
    assert.throws(() => ffibox.struct('S', { data: ffibox.buffer() }), ffibox.InvalidArgument);
    assert.throws(() => ffibox.struct('S', { n: 'integer' }), /unknown type 'integer'/);
  });

  test('by value, in and out', async () => {
    const add = await lib.func('void* point_add(void* a, void* b)',
      { params: [Point, Point], result: Point });
    assert.deepEqual(await add({ x: 1, y: 2 }, { x: 0.5, y: -4 }), { x: 1.5, y: -2 });
    const swap = await lib.func('void* swap_pair(void* p)', { params: [IntPair], result: IntPair });
    assert.deepEqual(await swap({ a: 1, b: 2 }), { a: 2, b: 1 });
    const Big5 = ffibox.struct('Big5', { a: 'long', b: 'long', c: 'long', d: 'long', e: 'long' });
    const make = await lib.func('void* big5_make(long start)', { result: Big5 });
    assert.deepEqual(await make(10), { a: 10n, b: 11n, c: 12n, d: 13n, e: 14n });
  });

  test('nested structs by value and through pointers', async () => {
    const area = await lib.func('double rect_area(void* r)', { params: [Rect] });
    assert.equal(await area({ min: { x: 0, y: 0 }, max: { x: 2, y: 3 } }), 6);
    const scale = await lib.func('void scale_rect(void* r, double k)',
      { params: [ffibox.pointer(Rect, 'inout')] });
    const rect = { min: { x: 1, y: 1 }, max: { x: 2, y: 4 } };
    await scale(rect, 2);
    assert.deepEqual(rect, { min: { x: 2, y: 2 }, max: { x: 4, y: 8 } });
    const width = await lib.func('double rect_width_of(const void* r)',
      { params: [ffibox.pointer(Rect, 'in')] });
    assert.equal(await width(rect), 2);
  });

  test('a union by value is set through the member the object names', async () => {
    const NumberOrText = ffibox.union('NumberOrText', { number: 'long', text: 'cstring' });
    const Variant = ffibox.struct('Variant', { is_text: 'int', as: NumberOrText });
    const measure = await lib.func('long number_or_text_measure(void* value, int is_text)',
      { params: [NumberOrText] });
    assert.equal(await measure({ text: 'eleven long' }, 1), 11n);
    assert.equal(await measure({ number: -5 }, 0), -5n);
    await assert.rejects(measure({ number: 1, text: 'x' }, 0),
      /holds one member; the object names number, text/);
    // A server that sets only a union's first member (SessionOpened.union_members unset).
    const { aggregateValue } = require('../lib/values');
    assert.throws(() => aggregateValue(NumberOrText, { text: 'x' }, 'value', false),
      /this server sets only a union's first member \(number\), not text/);
    assert.deepEqual(aggregateValue(NumberOrText, { number: 3 }, 'value', false).aggregate.member, 0);
    const variant = await lib.func('long variant_measure(void* v)', { params: [Variant] });
    assert.equal(await variant({ is_text: 1, as: { text: 'seven!!' } }), 7n);
    assert.equal(await variant({ is_text: 0, as: { number: 2 ** 40 } }), 2n ** 40n);
  });

  test('an array of structs, in and out; an out struct is filled', async () => {
    const bounds = await lib.func('void rect_bounds(const void* points, int n, void* out)',
      { params: { 0: ffibox.array(Point, 'in'), 2: ffibox.pointer(Rect, 'out') } });
    const out = {};
    await bounds([{ x: 3, y: -1 }, { x: -2, y: 5 }, { x: 0, y: 0 }], 3, out);
    assert.deepEqual(out, { min: { x: -2, y: -1 }, max: { x: 3, y: 5 } });
    // Filled and updated in place, element by element: a record with padding (int, double).
    const Tagged = ffibox.struct('TaggedValue', { tag: 'int', value: 'double' });
    const scale = await lib.func('void scale_tagged(void* items, int n, double k)',
      { params: { 0: ffibox.array(Tagged, 'inout') } });
    const items = [{ tag: 1, value: 1.5 }, { tag: 2, value: -2 }];
    const first = items[0];
    await scale(items, 2, 4);
    assert.deepEqual(items, [{ tag: 1, value: 6 }, { tag: 2, value: -8 }]);
    assert.equal(items[0], first, 'the objects are updated, not replaced');
    await assert.rejects(scale([{ tag: 1, value: 1 }, 7], 2, 1), ffibox.InvalidArgument);
    await assert.rejects(scale([{ tag: 1, valeu: 1 }], 1, 1), /TaggedValue has no field valeu/);
    assert.throws(() => ffibox.array(ffibox.buffer()), ffibox.InvalidArgument);
  });
});

describe('memory in the worker', () => {
  test('allocated memory is written, read and freed', async () => {
    const block = await session.alloc(16);
    assert.ok(block instanceof ffibox.RemotePointer);
    await session.writeMemory(block, Buffer.from('h\u00e9llo\0', 'utf8'));
    assert.deepEqual(await session.readMemory(block, 3), Buffer.from([0x68, 0xc3, 0xa9]));
    assert.equal(await session.readString(block), 'h\u00e9llo');
    assert.deepEqual(await session.readString(block, { bytes: true }),
      Buffer.from('h\u00e9llo', 'utf8'));
    const strLen = await lib.func('size_t str_len(const void* s)');
    assert.equal(await strLen(block), 6n);
    await session.free(block);
  });

  test('a returned pointer and an exported variable are read and written', async () => {
    const greeting = await lib.func('const char* greeting(void)', { result: 'pointer' });
    const text = await greeting();
    assert.equal(await session.readString(text), 'hello, ffibox');
    const wgreeting = await lib.func('const wchar_t* wgreeting(void)', { result: 'pointer' });
    assert.equal(await session.readString(await wgreeting(), { wide: true }),
      'h\u00e9llo \u4e16\u754c');
    const counter = await lib.symbol('ffibox_test_counter');
    const before = (await session.readMemory(counter, 4)).readInt32LE(0);
    const written = Buffer.alloc(4);
    written.writeInt32LE(before + 1000);
    await session.writeMemory(counter, written);
    assert.equal((await session.readMemory(counter, 4)).readInt32LE(0), before + 1000);
    await session.writeMemory(counter, (() => {
      const restored = Buffer.alloc(4);
      restored.writeInt32LE(before);
      return restored;
    })());
    await assert.rejects(lib.symbol('no_such_symbol'), ffibox.SymbolNotFound);
  });

  test('a callback writes through the pointer it is handed', async () => {
    const callFill = await lib.func('void call_fill(void* fill, void* buffer, int n)', {
      params: [ffibox.callback({ params: ['pointer', 'int'] }), ffibox.buffer('inout')],
    });
    const out = Buffer.alloc(5);
    await callFill(async (at, n) => {
      await session.writeMemory(at, Buffer.alloc(n, 'z'));
    }, out, 5);
    assert.equal(out.toString(), 'zzzzz');
  });

  test('bad addresses and arguments are typed errors, and the session goes on', async () => {
    await assert.rejects(session.readMemory(null, 4), ffibox.MemoryFault);
    await assert.rejects(session.readMemory(new ffibox.RemotePointer(8n, session.generation), 4),
      ffibox.MemoryFault);
    await assert.rejects(session.readMemory(new ffibox.RemotePointer(0x1000n,
      session.generation + 1), 4), ffibox.StaleHandle);
    await assert.rejects(session.readMemory(0x1000, 4), ffibox.InvalidArgument);
    await assert.rejects(session.readMemory(null, -1), ffibox.InvalidArgument);
    // Sizes a uint64 cannot hold, or a Number cannot hold exactly, are refused, not wrapped.
    for (const size of [2 ** 64, 1e21, 2 ** 53, 2n ** 64n + 8n, 1.5]) {
      await assert.rejects(session.alloc(size), ffibox.InvalidArgument, String(size));
      await assert.rejects(session.readMemory(null, size), ffibox.InvalidArgument, String(size));
    }
    await assert.rejects(session.readString(null, { wide: true, bytes: true }),
      ffibox.InvalidArgument);
    await session.free(null);  // nothing to free, as C's free(NULL)
    for (const [address, generation] of [[2n ** 64n, 1], [-1, 1], ['x', 1], [1.5, 1], [8, -1],
      ['', 0], [true, 1], [8, []]]) {
      assert.throws(() => new ffibox.RemotePointer(address, generation), ffibox.InvalidArgument,
        `${address} ${generation}`);
    }
    // A request that nests without end (a cyclic object) is refused, not a thrown RangeError.
    const cyclic = { ping: {} };
    cyclic.ping.again = cyclic;
    await assert.rejects(session.request(cyclic), ffibox.InvalidArgument);
    await assert.rejects(session.writeMemory(null, 'text'), ffibox.InvalidArgument);
    const add = await lib.func('int add_int(int, int)');
    assert.equal(await add(2, 3), 5);
  });
});

describe('callbacks', () => {
  test('a callback parameter described as memory to copy is refused, not ignored', () => {
    const Pair = ffibox.struct('CallbackPair', { x: 'double', y: 'double' });
    for (const param of [ffibox.pointer(Pair, 'inout'), ffibox.array('int', 'in'),
      ffibox.buffer('in')]) {
      assert.throws(() => ffibox.callback({ result: 'int', params: ['int', param] }),
        /callback parameter 1: a callback's parameter is a scalar, a pointer/);
    }
  });

  test('a JS function called by native code, with an in array', async () => {
    const fold = await lib.func('double fold(void* f, const double* xs, int n, double init)', {
      params: { 0: ffibox.callback('double f(double, double)'), 1: ffibox.array('double', 'in') },
    });
    const seen = [];
    const add = (a, b) => {
      seen.push([a, b]);
      return a + b;
    };
    assert.equal(await fold(add, [1.5, 2, 4], 3, 0), 7.5);
    assert.deepEqual(seen, [[0, 1.5], [1.5, 2], [3.5, 4]]);
  });

  test('async callbacks and callbacks that call the library again', async () => {
    const twice = await lib.func('int call_twice_nested(void* h, int x)',
      { params: [ffibox.callback({ result: 'int', params: ['int'] })] });
    const addInt = await lib.func('int add_int(int, int)');
    // Inside the invocation the call runs reentrantly on the blocked worker thread.
    assert.equal(await twice(async (x) => addInt(x, 10), 1), 21);
  });

  test("a callback's calls on another session, and calls it leaves to run later, are top-level calls", async () => {
    // They went in the callback's invocation (FAILED_PRECONDITION: the invocation is not
    // open, on the other session, or once the callback had returned).
    const other = await client.session({ timeoutMs: 5000 });
    try {
      const strlen = await (await other.load('libc.so.6')).func('size_t strlen(const char*)');
      const twice = await lib.func('int call_twice_nested(void* h, int x)',
        { params: [ffibox.callback({ result: 'int', params: ['int'] })] });
      const addInt = await lib.func('int add_int(int, int)');
      let later;
      assert.equal(await twice(async (x) => {
        later = new Promise((resolve) => setTimeout(() => resolve(addInt(x, 100)), 20));
        return Number(await strlen('hello')) + x;
      }, 1), 11);  // h(h(1)), h(x) = 5 + x
      assert.equal(await later, 106);  // left by the second run, h(6)
    } finally {
      other.close();
    }
  });

  test("a callback of another session called from a callback calls the first session in the first's invocation", async () => {
    // The innermost frame alone was looked at: the call went at the top level of the first
    // session, behind its call waiting for the outer callback, until the deadline.
    const other = await client.session({ timeoutMs: 5000 });
    try {
      const declaration = 'int call_twice_nested(void* h, int x)';
      const options = { params: [ffibox.callback({ result: 'int', params: ['int'] })] };
      const twiceOther = await (await other.load(TEST_LIB)).func(declaration, options);
      const twice = await lib.func(declaration, options);
      const addInt = await lib.func('int add_int(int, int)');
      // h(x) = x + 2 through the other session's library, whose callback adds 1 here.
      assert.equal(await twice(async (x) => twiceOther(async (y) => addInt(y, 1), x), 1), 5);
    } finally {
      other.close();
    }
  });

  test('a stored callback fired later', async () => {
    const register = await lib.func('void register_handler(void* h)',
      { params: [ffibox.callback('int h(int)')] });
    const fire = await lib.func('int fire_handler(int x)');
    // Held here: a function the library keeps must stay reachable while it may be called.
    const triple = (x) => x * 3;
    await register(triple);
    assert.equal(await fire(14), 42);
    assert.equal(triple(1), 3);
  });

  test('the callbacks of collected functions are freed; freeCallback frees one now', async () => {
    const v8 = require('node:v8');
    const vm = require('node:vm');
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc');
    const twice = await lib.func('int call_twice_nested(void* f, int x)',
      { params: [ffibox.callback('int f(int)')] });
    // Past the worker's 4096 callbacks defined at once: each call defines a new one, whose
    // function nothing holds once the call has returned.
    for (let i = 0; i < 4200; ++i) {
      assert.equal(await twice((x) => x + 1, i), i + 2);
      if (i % 500 === 499) {
        gc();
        await new Promise((resolve) => { setTimeout(resolve, 20); });
      }
    }
    const register = await lib.func('void register_handler(void* h)',
      { params: [ffibox.callback('int h(int)')] });
    const fire = await lib.func('int fire_handler(int x)');
    const triple = (x) => x * 3;
    await register(triple);
    assert.equal(await fire(2), 6);
    const before = session.events.length;
    await session.freeCallback(triple);
    assert.equal(await fire(2), 0);
    const events = session.events.slice(before).filter((e) => e.kind === 'CALLBACK_ERROR');
    assert.equal(events.length, 1);
  });

  test('a callback that throws gives native code zero and a CALLBACK_ERROR event', async () => {
    const fold = await lib.func('double fold(void* f, const double* xs, int n, double init)', {
      params: { 0: ffibox.callback('double f(double, double)'), 1: ffibox.array('double', 'in') },
    });
    const before = session.events.length;
    const failing = () => {
      throw new Error('no folding today');
    };
    assert.equal(await fold(failing, [1, 2], 2, 5), 0);
    const events = session.events.slice(before).filter((e) => e.kind === 'CALLBACK_ERROR');
    assert.equal(events.length, 2);
    assert.match(events[0].error.message, /no folding today/);
  });
});

describe('callback answers the server would refuse', () => {
  // On a server that reads requests of at most 1024 bytes, a callback whose answer is larger
  // fails as a callback (native code gets zero at once, CALLBACK_ERROR says why) instead of
  // leaving native code waiting for the call's deadline.
  test('an answer too large to send fails the callback at once', async () => {
    await onServerWith(['--max_message_bytes=1024'], 20000, async (smallSession, smallLib) => {
      const lengthOfMade = await smallLib.func('size_t length_of_made(void* make)',
        { params: [ffibox.callback({ result: 'cstring', params: [] })] });
      // 4000 bytes: refused by the client's own check ("at least": it counts the payload
      // only). 1011 bytes: past that check, refused by the server, the framing taking the
      // request past 1024 bytes.
      for (const [size, refusal] of [[4000, /request of at least/], [1011, /request of \d+/]]) {
        const before = smallSession.events.length;
        const started = Date.now();
        assert.equal(Number(await lengthOfMade(() => 'x'.repeat(size))), 0);
        assert.ok(Date.now() - started < 10000, `the call took ${Date.now() - started} ms`);
        const errors = smallSession.events.slice(before)
          .filter((e) => e.kind === 'CALLBACK_ERROR');
        assert.equal(errors.length, 1);
        assert.match(errors[0].error.message, /too large to send/);
        assert.match(errors[0].error.message, refusal);
      }
      // The session and its worker go on.
      const addInt = await smallLib.func('int add_int(int, int)');
      assert.equal(await addInt(2, 3), 5);
      assert.equal(smallSession.generation, 1);
    });
  });
});

describe('faults', () => {
  test('a crash is WorkerCrashed with the signal, and the next call works', async () => {
    const crash = await lib.func('int crash_null_deref(void)');
    const add = await lib.func('int add_int(int, int)');
    await assert.rejects(crash(), (error) => {
      assert.ok(error instanceof ffibox.WorkerCrashed, error.stack);
      assert.equal(error.code, 'WORKER_CRASHED');
      assert.equal(error.signal, 11);
      assert.equal(error.function, 'crash_null_deref');
      return true;
    });
    assert.equal(await add(2, 3), 5);
    assert.ok(session.generation >= 2);
  });

  test('an abort is SIGABRT', async () => {
    const abort = await lib.func('int crash_abort(void)');
    await assert.rejects(abort(), (error) => error instanceof ffibox.WorkerCrashed &&
      error.signal === 6);
  });

  test('a call past its deadline is CallTimeout', async () => {
    const quick = await client.session({ timeoutMs: 300 });
    try {
      const hostLib = await quick.load(TEST_LIB);
      const hang = await hostLib.func('int hang_forever(void)');
      await assert.rejects(hang(), (error) => error instanceof ffibox.CallTimeout &&
        error.code === 'CALL_TIMEOUT');
      const add = await hostLib.func('int add_int(int, int)');
      assert.equal(await add(1, 1), 2);
    } finally {
      quick.close();
    }
  });

  test('a call\'s own deadline replaces the session\'s', async () => {
    const sleep = await lib.func('int sleep_ms(int)');
    const started = Date.now();
    await assert.rejects(sleep.callWith({ timeoutMs: 200 }, 3000), (error) => {
      assert.ok(error instanceof ffibox.CallTimeout, error.stack);
      return true;
    });
    assert.ok(Date.now() - started < 2500, `the call took ${Date.now() - started} ms`);
    assert.equal(await sleep.callWith({ timeoutMs: 2000 }, 10), 10);
    for (const bad of [0, -1, 1.5, 2 ** 32, '100']) {
      await assert.rejects(sleep.callWith({ timeoutMs: bad }, 1), ffibox.InvalidArgument);
    }
  });

  test('a forbidden system call is SandboxViolation naming it', async () => {
    const probe = await session.load(PROBE_LIB);
    const execve = await probe.func('int probe_execve(const char* path)');
    await assert.rejects(execve('/bin/true'), (error) => {
      assert.ok(error instanceof ffibox.SandboxViolation, error.stack);
      assert.equal(error.syscall, 'execve');
      return true;
    });
  });

  test('a session without restart stays dead after a crash', async () => {
    const once = await client.session({ restart: false });
    try {
      const onceLib = await once.load(TEST_LIB);
      const crash = await onceLib.func('int crash_abort(void)');
      await assert.rejects(crash(), ffibox.WorkerCrashed);
      await assert.rejects(onceLib.func('int add_int(int, int)'), ffibox.FfiboxError);
    } finally {
      once.close();
    }
  });
});
