'use strict';
// What a JS value may be for a C scalar the client sends: an argument, an element of an
// array, a field of a struct, a callback's result. A value that does not fit the C type is
// refused here, naming it and the type's range, before anything is sent: converted blindly,
// 2**64 would reach a uint64_t as 0 and -1 as 18446744073709551615, and '' or [] would
// reach an int as 0, with nothing to tell the caller.
//
// Types are the scalar descriptions of types.js ({name, proto: {scalar}, size, signed}).
const { invalid } = require('./errors');

// The largest magnitude a C float holds; a finite double beyond it becomes infinity.
const FLOAT_MAX = 3.4028234663852886e38;

// How many characters of a refused string a message repeats.
const SHOWN_STRING_CHARACTERS = 20;

// A UTF-16 unit UTF-8 cannot encode: a high surrogate without a low one after it, or a low
// one without a high one before it.
const UNPAIRED_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const UNPAIRED_SURROGATES = new RegExp(UNPAIRED_SURROGATE.source, 'g');

/** A refused value as a message names it: "the string '0x10'", "an array", "true". */
function describeValue(value) {
  if (typeof value === 'string') {
    const shown = value.length > SHOWN_STRING_CHARACTERS
      ? `${value.slice(0, SHOWN_STRING_CHARACTERS)}...` : value;
    return `the string ${JSON.stringify(shown)}`;
  }
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return 'an array';
  if (Buffer.isBuffer(value)) return 'a Buffer';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return 'a symbol';
  return String(value);  // a boolean, a number or a BigInt: its own text
}

/** The smallest and largest value of integer type `t`, as BigInts. */
function integerRange(t) {
  const bits = BigInt(t.size * 8);
  return t.signed ? [-(1n << (bits - 1n)), (1n << (bits - 1n)) - 1n] : [0n, (1n << bits) - 1n];
}

/**
 * The code of a one-character string for a `char` (an ASCII character: the one byte it
 * is in UTF-8, as a char* argument sends strings) or a `wchar_t` (any code point).
 */
function characterCode(t, text, what) {
  if ([...text].length !== 1) {
    throw invalid(`${what}: expected one character for ${t.name}, got ${describeValue(text)}`);
  }
  const code = text.codePointAt(0);
  if (t.proto.scalar === 'CHAR' && code > 0x7f) {
    const hex = code.toString(16).toUpperCase().padStart(4, '0');
    throw invalid(`${what}: ${JSON.stringify(text)} (U+${hex}) is not one byte in UTF-8; a char ` +
      'takes an ASCII character as a string, else a number from -128 to 127');
  }
  return code;
}

/**
 * `value` as the BigInt to send for integer type `t`: a number that is an integer or a
 * BigInt within the type's range (or a one-character string for char and wchar_t).
 * Throws InvalidArgument naming `what` otherwise: a fraction, NaN or an infinity, a value
 * out of range, and anything that is not a number, a boolean included.
 */
function integerArgument(t, value, what) {
  let integer;
  if (typeof value === 'bigint') {
    integer = value;
  } else if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw invalid(`${what}: ${value} is not an integer (${t.name})`);
    integer = BigInt(value);
  } else if (typeof value === 'string' &&
      (t.proto.scalar === 'CHAR' || t.proto.scalar === 'WCHAR')) {
    integer = BigInt(characterCode(t, value, what));
  } else {
    throw invalid(`${what}: expected an integer (a number or a BigInt) for ${t.name}, ` +
      `got ${describeValue(value)}`);
  }
  const [min, max] = integerRange(t);
  if (integer < min || integer > max) {
    // The exact integer: String(2 ** 64) would print 18446744073709552000.
    throw invalid(`${what}: ${integer} is out of range for ${t.name} (${min} to ${max})`);
  }
  return integer;
}

/**
 * `value` as the number to send for floating-point type `t`: a number or a BigInt. NaN and
 * the infinities pass, as C lets them; a finite value that a float (or, from a BigInt, a
 * double) cannot hold is refused rather than sent as an infinity. Values too small for a
 * float become zero, as in C.
 */
function floatArgument(t, value, what) {
  if (typeof value !== 'number' && typeof value !== 'bigint') {
    throw invalid(`${what}: expected a number for ${t.name}, got ${describeValue(value)}`);
  }
  const number = Number(value);
  const overflows = t.proto.scalar === 'FLOAT' ? Math.abs(Math.fround(number)) === Infinity
    : Math.abs(number) === Infinity;
  if (overflows && (typeof value === 'bigint' || Number.isFinite(value))) {
    const largest = t.proto.scalar === 'FLOAT' ? FLOAT_MAX : Number.MAX_VALUE;
    throw invalid(`${what}: ${String(value)} is out of range for ${t.name} ` +
      `(its largest magnitude is ${largest})`);
  }
  return number;
}

/** `value` as the truth value to send for a bool: a boolean, or a number or BigInt (0 false). */
function boolArgument(t, value, what) {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return value !== 0n;
  if (typeof value === 'number' && !Number.isNaN(value)) return value !== 0;
  throw invalid(`${what}: expected a boolean or a number for ${t.name}, ` +
    `got ${describeValue(value)}`);
}

/**
 * `text` as the protocol's `string` fields take it (a wchar_t* argument, a library path, a
 * declaration, a record's name): a string that UTF-8 can encode. Throws InvalidArgument
 * naming `what` for a string with an unpaired surrogate ('a\ud800b'): protobuf would send
 * it as bytes that are no UTF-8, and the server, failing to read the message, would end the
 * whole session instead of refusing the one request.
 */
function textArgument(text, what) {
  if (typeof text !== 'string') {
    throw invalid(`${what}: expected a string, got ${describeValue(text)}`);
  }
  const match = UNPAIRED_SURROGATE.exec(text);
  if (match) {
    const hex = match[0].charCodeAt(0).toString(16).toUpperCase();
    throw invalid(`${what}: ${describeValue(text)} has an unpaired surrogate (U+${hex} at ` +
      `index ${match.index}), which is no Unicode character and cannot be sent as UTF-8`);
  }
  return text;
}

/**
 * `text` with each unpaired surrogate replaced by U+FFFD, for text that is sent whatever it
 * holds (the message of a callback's error), where a refusal would help nobody.
 */
function wellFormedText(text) {
  return text.replace(UNPAIRED_SURROGATES, '\ufffd');
}

/**
 * Refuses `options` naming anything not in `known` (a misspelled name would otherwise read
 * as the default, silently): `what` says what they are ("session option"), `owner` (if any)
 * whose.
 */
function knownOptions(options, known, what, owner) {
  const unknown = Object.keys(options || {}).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw invalid(`${owner ? `${owner}: ` : ''}unknown ${what} ${unknown.join(', ')} ` +
      `(known: ${known.join(', ')})`);
  }
}

module.exports = {
  integerArgument, floatArgument, boolArgument, integerRange, describeValue, textArgument,
  wellFormedText, knownOptions,
};
