'use strict';
// Arguments the client refuses before sending, against a real ffiboxd: a value that does not
// fit its parameter's C type is InvalidArgument naming the argument and the type's range,
// never a wrapped or coerced number reaching the library.
const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');
const ffibox = require('..');
const { TEST_LIB, startServer } = require('./server');

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

// Checks that `promise` rejects with the client's InvalidArgument whose message matches
// `pattern`.
async function refused(promise, pattern) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof ffibox.InvalidArgument, error.stack);
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, pattern);
    return true;
  });
}

const UINT64_RANGE = /\(0 to 18446744073709551615\)/;
const INT64_RANGE = /\(-9223372036854775808 to 9223372036854775807\)/;

describe('integers out of their C type', () => {
  test('64-bit integers out of range are refused, naming the argument and the range', async () => {
    const add = await lib.func('uint64_t add_uint64(uint64_t, uint64_t)');
    await refused(add(2 ** 64, 0), /add_uint64 argument 0: 18446744073709551616 is out of range/);
    await refused(add(0, 2n ** 64n + 5n), /argument 1: 18446744073709551621 is out of range/);
    await refused(add(-1, 0), /argument 0: -1 is out of range for uint64/);
    await refused(add(-1, 0), UINT64_RANGE);
    assert.equal(await add(2n ** 64n - 1n, 0), 2n ** 64n - 1n);
    const twice = await lib.func('size_t twice_size(size_t)');
    await refused(twice(-2), /twice_size argument 0: -2 is out of range for size_t/);
    const neg = await lib.func('int64_t neg_int64(int64_t)');
    await refused(neg(2n ** 63n), INT64_RANGE);
    assert.equal(await neg(-(2n ** 63n) + 1n), 2n ** 63n - 1n);
    const addLong = await lib.func('long add_long(long, long)');
    await refused(addLong(1e20, 0), /100000000000000000000 is out of range for long/);
    await refused(addLong(-(2n ** 63n) - 1n, 0), INT64_RANGE);
    assert.equal(await addLong(2n ** 63n - 1n, 0), 2n ** 63n - 1n);
  });

  test('narrower integers are refused by the client too, with their own range', async () => {
    const neg = await lib.func('int8_t neg_int8(int8_t)');
    await refused(neg(128), /neg_int8 argument 0: 128 is out of range for int8 \(-128 to 127\)/);
    const addUint8 = await lib.func('uint8_t add_uint8(uint8_t, uint8_t)');
    await refused(addUint8(0, -1), /argument 1: -1 is out of range for uint8 \(0 to 255\)/);
    const addUint = await lib.func('unsigned int add_uint(unsigned int, unsigned int)');
    await refused(addUint(2 ** 32, 0), /out of range for uint \(0 to 4294967295\)/);
    assert.equal(await addUint(2 ** 32 - 1, 0), 2 ** 32 - 1);
  });

  test('fractions, NaN and infinities are not integers', async () => {
    const add = await lib.func('int add_int(int, int)');
    await refused(add(1.5, 1), /add_int argument 0: 1.5 is not an integer \(int\)/);
    await refused(add(1, NaN), /argument 1: NaN is not an integer/);
    await refused(add(Infinity, 1), /Infinity is not an integer/);
    const addUint64 = await lib.func('uint64_t add_uint64(uint64_t, uint64_t)');
    await refused(addUint64(-Infinity, 0), /-Infinity is not an integer/);
  });
});

describe('values that are not numbers', () => {
  test('an integer parameter takes only a number or a BigInt', async () => {
    const add = await lib.func('int add_int(int, int)');
    for (const value of ['', '  ', '0x10', '5', [], [7], {}, true, false, () => 1]) {
      await refused(add(value, 5),
        /add_int argument 0: expected an integer \(a number or a BigInt\) for int, got/);
    }
    await refused(add('0x10', 5), /got the string "0x10"/);
    await refused(add([7], 5), /got an array/);
    await refused(add(true, 5), /got true/);
    assert.equal(await add(7n, 5), 12);
  });

  test('a bool takes a boolean or a number; a variadic boolean is an int', async () => {
    const not = await lib.func('_Bool not_bool(_Bool)');
    assert.equal(await not(true), false);
    assert.equal(await not(0), true);
    assert.equal(await not(2n), false);
    await refused(not('false'), /expected a boolean or a number for bool, got the string "false"/);
    await refused(not(NaN), /got NaN/);
    await refused(not(undefined), /missing bool value/);
    const sum = await lib.func('int sum_variadic(int count, ...)');
    assert.equal(await sum(2, true, 41), 42);
  });

  test('a float parameter takes a number or a BigInt', async () => {
    const mul = await lib.func('double mul_double(double, double)');
    await refused(mul('2', 3),
      /mul_double argument 0: expected a number for double, got the string "2"/);
    assert.equal(await mul(2n, 3), 6);
  });
});

describe('floats', () => {
  test('a finite number a C float cannot hold is refused; NaN and infinities pass', async () => {
    const mul = await lib.func('float mul_float(float, float)');
    await refused(mul(1e40, 1), /mul_float argument 0: 1e\+40 is out of range for float/);
    await refused(mul(1, -1e39), /argument 1: -1e\+39 is out of range for float/);
    assert.equal(await mul(3.4028234663852886e38, 1), 3.4028234663852886e38);
    assert.ok(Number.isNaN(await mul(NaN, 1)));
    assert.equal(await mul(Infinity, 1), Infinity);
    assert.equal(await mul(-Infinity, 1), -Infinity);
    const mulDouble = await lib.func('double mul_double(double, double)');
    assert.equal(await mulDouble(1e300, 1), 1e300);
    await refused(mulDouble(2n ** 1024n, 1), /is out of range for double/);
  });
});

describe('characters', () => {
  test('a char takes one ASCII character or a number from -128 to 127', async () => {
    const next = await lib.func('char next_char(char)');
    assert.equal(await next('a'), 'b'.charCodeAt(0));
    assert.equal(await next(-128), -127);
    await refused(next('\u00e9'),
      /next_char argument 0: "é" \(U\+00E9\) is not one byte in UTF-8/);
    await refused(next('\u{1F600}'), /\(U\+1F600\) is not one byte/);
    await refused(next('ab'), /expected one character for char, got the string "ab"/);
    await refused(next(''), /expected one character for char/);
    await refused(next(128), /128 is out of range for char \(-128 to 127\)/);
  });

  test('a wchar_t takes any one character', async () => {
    const upper = await lib.func('wchar_t upper_wchar(wchar_t)');
    assert.equal(await upper('a'), 'A'.codePointAt(0));
    // The worker's C locale upper-cases ASCII only: the code point comes back as sent.
    assert.equal(await upper('\u00e9'), 0xe9);
    assert.equal(await upper('\u{1F600}'), 0x1f600);
    await refused(upper('\u00e9t\u00e9'), /expected one character for wchar/);
  });
});

describe('array elements and struct fields', () => {
  test('are checked as arguments are', async () => {
    const increment = await lib.func('void increment(int* p)',
      { params: [ffibox.array('int', 'inout')] });
    const counter = [41];
    await increment(counter);
    assert.deepEqual(counter, [42]);
    await refused(increment([2 ** 31]),
      /increment argument 0\[0\]: 2147483648 is out of range for int/);
    await refused(increment(['1']), /increment argument 0\[0\]: expected an integer/);
    const Counter = ffibox.struct('Counter', { value: 'int' });
    const incrementCounter = await lib.func('void increment(void* p)',
      { params: [ffibox.pointer(Counter, 'inout')] });
    const object = { value: 1 };
    await incrementCounter(object);
    assert.deepEqual(object, { value: 2 });
    await refused(incrementCounter({ value: 1.5 }),
      /increment argument 0\.value: 1.5 is not an integer/);
    const IntPair = ffibox.struct('IntPair', { a: 'int', b: 'int' });
    const swap = await lib.func('void* swap_pair(void* p)', { params: [IntPair], result: IntPair });
    await refused(swap({ a: 1, b: -(2 ** 31) - 1 }),
      /swap_pair argument 0\.b: -2147483649 is out of range/);
    const fold = await lib.func('double fold(void* f, const double* xs, int n, double init)', {
      params: { 0: ffibox.callback('double f(double, double)'), 1: ffibox.array('double', 'in') },
    });
    await refused(fold((a, b) => a + b, [1, 'two'], 2, 0),
      /argument 1\[1\]: expected a number for double/);
  });
});

describe('parameter overrides', () => {
  test('an index that is not a parameter of the declaration is refused', async () => {
    for (const index of ['0.5', '-0', '1e0', ' 1', '2', '-1']) {
      await refused(lib.func('int add_int(int, int)', { params: { [index]: 'int' } }),
        /add_int has 2 parameters \(indices 0 to 1\); no parameter/);
    }
    await refused(lib.func('int add_int(int, int)', { params: { 0.5: 'int' } }),
      /no parameter "0.5"/);
    const add = await lib.func('int add_int(int, int)', { params: { 1: 'int' } });
    assert.equal(await add(1, 2), 3);
  });
});

describe('worker pointers', () => {
  test('a RemotePointer shows its address and generation as text', () => {
    const pointer = new ffibox.RemotePointer(0x7f12ab00n, 3);
    assert.equal(String(pointer), 'RemotePointer(0x7f12ab00, generation 3)');
    assert.equal(`${new ffibox.RemotePointer(0, 1)}`, 'RemotePointer(0x0, generation 1)');
  });
});
