'use strict';
// The JS descriptions of C types a function is declared with, and how each turns into the
// protocol's Type and encodes JS values into protocol Values (and back).
//
// A type is one of:
//   a scalar name: 'int', 'double', 'uint64', 'size_t', 'cstring', 'cbytes', 'pointer', ...
//     (SCALARS),
//     or its C spelling: 'unsigned long', 'uint64_t', 'char*', ... (C_NAMES);
//   struct(name, {field: type, ...}) / union(...): a record, passed and returned by value;
//   pointer(record, direction): a record the function reads or fills through a pointer;
//   buffer(direction): a Node Buffer passed as a pointer to its bytes;
//   array(element, direction): a JS array (of scalars or records) passed as a pointer to its
//     first element;
//   callback(declaration | {result, params}): a JS function passed as a function pointer.
// Directions are 'in', 'out' and 'inout' (the protocol's MemoryBlock directions).
const { integerArgument, floatArgument, boolArgument, textArgument } = require('./arguments');
const { StaleHandle, internal, invalid } = require('./errors');

// Scalar name -> [proto enum name, size in bytes, signed integer?, 64-bit (BigInt) integer?].
const SCALARS = {
  void: ['VOID', 0],
  bool: ['BOOL', 1],
  char: ['CHAR', 1, true],
  schar: ['SCHAR', 1, true],
  uchar: ['UCHAR', 1, false],
  short: ['SHORT', 2, true],
  ushort: ['USHORT', 2, false],
  int: ['INT', 4, true],
  uint: ['UINT', 4, false],
  long: ['LONG', 8, true, true],
  ulong: ['ULONG', 8, false, true],
  longlong: ['LONGLONG', 8, true, true],
  ulonglong: ['ULONGLONG', 8, false, true],
  int8: ['INT8', 1, true],
  uint8: ['UINT8', 1, false],
  int16: ['INT16', 2, true],
  uint16: ['UINT16', 2, false],
  int32: ['INT32', 4, true],
  uint32: ['UINT32', 4, false],
  int64: ['INT64', 8, true, true],
  uint64: ['UINT64', 8, false, true],
  size_t: ['SIZE_T', 8, false, true],
  ssize_t: ['SSIZE_T', 8, true, true],
  float: ['FLOAT', 4],
  double: ['DOUBLE', 8],
  longdouble: ['LONGDOUBLE', 16],
  wchar: ['WCHAR', 4, true],
  pointer: ['POINTER', 8],
  cstring: ['CSTRING', 8],
  // A char* whose values come back as a Buffer of the bytes before its NUL, not as text.
  cbytes: ['CSTRING', 8],
  wstring: ['WSTRING', 8],
};
// The C spellings of scalars (as in declarations and docs/node.md: typed('unsigned long', 5)),
// for the names above; spaces are collapsed and none is kept before a '*'.
const C_NAMES = {
  _Bool: 'bool',
  'signed char': 'schar',
  'unsigned char': 'uchar',
  'unsigned short': 'ushort',
  unsigned: 'uint',
  'unsigned int': 'uint',
  'unsigned long': 'ulong',
  'long long': 'longlong',
  'unsigned long long': 'ulonglong',
  int8_t: 'int8',
  uint8_t: 'uint8',
  int16_t: 'int16',
  uint16_t: 'uint16',
  int32_t: 'int32',
  uint32_t: 'uint32',
  int64_t: 'int64',
  uint64_t: 'uint64',
  'long double': 'longdouble',
  wchar_t: 'wchar',
  'void*': 'pointer',
  'char*': 'cstring',
  'wchar_t*': 'wstring',
};
const SCALAR_BY_ENUM = Object.fromEntries(Object.entries(SCALARS)
  .filter(([name]) => name !== 'cbytes').map(([name, [proto]]) => [proto, name]));
const DIRECTIONS = { in: 'IN', out: 'OUT', inout: 'INOUT' };

/** An address in the session's worker (returned by a call); valid for its `generation`. */
class RemotePointer {
  /**
   * `address`: a BigInt, an integral number or a decimal string from 0 to 2^64 - 1 (a word
   * read from the worker's memory with `readBigUInt64LE`); `generation`: the worker's, as
   * the pointer it was read through carries (`ptr.generation`). InvalidArgument otherwise.
   */
  constructor(address, generation) {
    const whole = typeof address === 'bigint' || Number.isSafeInteger(address) ||
      (typeof address === 'string' && /^[0-9]+$/.test(address));
    if (!whole) {
      throw invalid(`RemotePointer: the address must be a BigInt, a whole number or a string ` +
        `of decimal digits, not ${String(address)}`);
    }
    const value = BigInt(address);
    if (value < 0n || value >= 2n ** 64n) {
      throw invalid(`RemotePointer: the address ${value} is not from 0 to 2^64 - 1`);
    }
    const number = typeof generation === 'bigint' || typeof generation === 'string' ||
      typeof generation === 'number' ? Number(generation) : NaN;
    if (!Number.isSafeInteger(number) || number < 0) {
      throw invalid(`RemotePointer: the generation must be a whole number from 0, ` +
        `not ${String(generation)}`);
    }
    this.address = value;
    this.generation = number;
  }

  /** "RemotePointer(0x7f..., generation 1)", as `String(ptr)` and template strings show it. */
  toString() {
    return `RemotePointer(0x${this.address.toString(16)}, generation ${this.generation})`;
  }
}

// The RemotePointer of a RemoteAddress the server sent (untrusted); INTERNAL naming `what`
// when it is missing or not a worker address.
function addressFromServer(address, what) {
  try {
    return new RemotePointer(address.address || 0, address.generation || 0);
  } catch (error) {
    throw internal(`the server answered ${what} with no address it could have given ` +
      `(${JSON.stringify(address)})`);
  }
}

function direction(name) {
  const proto = DIRECTIONS[name || 'inout'];
  if (!proto) throw invalid(`direction must be 'in', 'out' or 'inout', not ${name}`);
  return proto;
}

function scalar(spelled) {
  const cName = String(spelled).trim().replace(/\s+/g, ' ').replace(/ \*/g, '*');
  const name = Object.hasOwn(C_NAMES, cName) ? C_NAMES[cName] : spelled;
  if (!Object.hasOwn(SCALARS, name)) {
    throw invalid(`unknown type '${spelled}' (known: ${Object.keys(SCALARS).join(', ')}, ` +
      `and the C spellings ${Object.keys(C_NAMES).join(', ')})`);
  }
  const info = SCALARS[name];
  return {
    kind: 'scalar', name, proto: { scalar: info[0] }, size: info[1], signed: info[2],
    wide: info[3] === true, integer: info[2] !== undefined, bytes: name === 'cbytes',
  };
}

/** The description for `type`: a scalar name or a description made by this module. */
function describe(type) {
  if (typeof type === 'string') return scalar(type);
  if (type && typeof type === 'object' && type.kind && 'proto' in type) return type;
  throw invalid(`not a type description: ${String(type)}`);
}

function record(kind, name, fields, options = {}) {
  textArgument(name, `the name of a ${kind.toLowerCase()}`);
  const unknown = Object.keys(options || {}).filter((key) => key !== 'pack');
  if (unknown.length > 0) throw invalid(`${name}: unknown option ${unknown.join(', ')} (pack)`);
  const pack = options.pack === undefined ? 0 : options.pack;
  if (![0, 1, 2, 4, 8, 16].includes(pack)) {
    throw invalid(`${name}: pack is 1, 2, 4, 8 or 16 (#pragma pack(n)), not ${String(pack)}`);
  }
  const entries = Array.isArray(fields) ? fields : Object.entries(fields);
  if (entries.length === 0) throw invalid(`${name} has no fields`);
  const described = entries.map(([fieldName, type]) => {
    textArgument(fieldName, `the name of a field of ${name}`);
    const field = describe(type);
    if (field.kind !== 'scalar' && field.kind !== 'record') {
      throw invalid(`${name}.${fieldName}: a field is a scalar or a struct, not ${field.kind}`);
    }
    return [fieldName, field];
  });
  return {
    kind: 'record',
    name,
    fields: described,
    proto: {
      record: {
        kind,
        name,
        fields: described.map(([fieldName, t]) => ({ name: fieldName, type: t.proto })),
        ...(pack ? { pack } : {}),
      },
    },
  };
}

/**
 * A struct passed by value: struct('Point', {x: 'double', y: 'double'}); `{pack: 1}` for
 * one declared under `#pragma pack(1)` (ctypes' `_pack_`).
 */
function struct(name, fields, options) {
  return record('STRUCT', name, fields, options);
}

/** A union passed by value; a JS value sets the one member it names (else the first). */
function union(name, fields, options) {
  return record('UNION', name, fields, options);
}

/** A pointer to a record the function reads ('in'), fills ('out') or both ('inout'). */
function pointer(recordType, dir = 'inout') {
  const pointee = describe(recordType);
  if (pointee.kind !== 'record') throw invalid('pointer() takes a struct or union');
  return { kind: 'recordPointer', pointee, direction: direction(dir),
    proto: { pointer: { pointee: pointee.proto } } };
}

/** A Node Buffer passed as a pointer to its bytes. */
function buffer(dir = 'inout') {
  return { kind: 'buffer', direction: direction(dir), proto: { scalar: 'POINTER' } };
}

// A Buffer past a variadic function's fixed parameters: its bytes and a NUL after them (a
// "%s" reads it as a string), copied back after the call (a "%s" of sscanf writes there).
const VARIADIC_BUFFER = { ...buffer('inout'), terminated: true };

/** A JS array of scalars or records passed as a pointer to its first element. */
function array(element, dir = 'in') {
  const described = describe(element);
  if (described.kind !== 'record' &&
      (described.kind !== 'scalar' || described.size === 0 || described.name === 'longdouble')) {
    throw invalid('array() takes a scalar element type of 1 to 8 bytes, a struct or a union');
  }
  return { kind: 'array', element: described, direction: direction(dir),
    proto: { pointer: { pointee: described.proto } } };
}

/**
 * A function pointer to a JS function: callback('double f(double, double)') (the session
 * parses the declaration) or callback({result: 'double', params: ['double', 'double']}).
 */
function callback(signature) {
  if (typeof signature === 'string') {
    return { kind: 'callback', declaration: signature, proto: null };
  }
  const result = signature.result === undefined ? null : describe(signature.result);
  const params = (signature.params || []).map(describe);
  params.forEach((param, i) => {
    if (param.kind === 'recordPointer' || param.kind === 'buffer' || param.kind === 'array') {
      // Its handler gets a RemotePointer: what such a description asks for (a struct read
      // and written back, an array) is not done for a callback's arguments.
      throw invalid(`callback parameter ${i}: a callback's parameter is a scalar, a pointer ` +
        `('pointer', which the handler gets as a RemotePointer to read with ` +
        `session.readMemory) or a struct by value, not ${param.kind}`);
    }
  });
  return callbackOf(result, params);
}

function callbackOf(result, params) {
  const proto = { params: params.map((p) => p.proto), variadic: false };
  if (result && !(result.kind === 'scalar' && result.name === 'void')) proto.result = result.proto;
  return { kind: 'callback', result, params, proto: { function: proto } };
}

/** A variadic argument with an explicit C type: typed('long', 5n), typed('float', 1.5). */
class Typed {
  constructor(type, value) {
    this.type = describe(type);
    this.value = value;
  }
}

function typed(type, value) {
  return new Typed(type, value);
}

/**
 * The type of a variadic argument: a typed() one's, else by the JS value, as ctypes infers
 * it (C's default promotions): an integral number int (long past 32 bits), another number
 * double, a BigInt long long, a boolean bool (which C promotes to int), a string or Buffer
 * char*, null or a RemotePointer void*.
 */
function variadicType(value) {
  if (value instanceof Typed) {
    if (value.type.kind !== 'scalar' && value.type.kind !== 'record') {
      throw invalid(`typed(): a variadic argument is a scalar or a record, not ${value.type.kind}`);
    }
    return value.type;
  }
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) return scalar('double');
    return scalar(value >= -(2 ** 31) && value < 2 ** 31 ? 'int' : 'long');
  }
  if (typeof value === 'bigint') return scalar('longlong');
  // The server promotes a bool to int, as C does for a variadic argument.
  if (typeof value === 'boolean') return scalar('bool');
  if (typeof value === 'string') return scalar('cstring');
  // The library may write into it (sscanf, snprintf): a block copied back, NUL after it.
  if (Buffer.isBuffer(value)) return VARIADIC_BUFFER;
  if (value === null || value instanceof RemotePointer) return scalar('pointer');
  throw invalid(`cannot tell the C type of variadic argument ${String(value)}; use typed()`);
}

/** The description of a protocol Type produced by the server's declaration parser. */
function fromProto(type) {
  if (type.scalar && SCALAR_BY_ENUM[type.scalar]) return scalar(SCALAR_BY_ENUM[type.scalar]);
  throw invalid(`unexpected type from the declaration parser: ${JSON.stringify(type)}`);
}

// ---- raw bytes in the worker's layout ------------------------------------------------

// A pointer among bytes the worker wrote (a field of a record it returned or filled) is a
// RemotePointer of worker `generation`, as a pointer result is; without a generation, its
// address as a BigInt.
function readScalar(t, data, offset, generation) {
  switch (t.proto.scalar) {
    case 'BOOL': return data.readUInt8(offset) !== 0;
    case 'FLOAT': return data.readFloatLE(offset);
    case 'DOUBLE': return data.readDoubleLE(offset);
    case 'POINTER': case 'CSTRING': case 'WSTRING': {
      const address = data.readBigUInt64LE(offset);
      if (address === 0n) return null;
      return generation === undefined ? address : new RemotePointer(address, generation);
    }
    default: break;
  }
  if (!t.integer) throw invalid(`${t.name} cannot be read from raw bytes by this client`);
  if (t.size === 8) return t.signed ? data.readBigInt64LE(offset) : data.readBigUInt64LE(offset);
  return t.signed ? data.readIntLE(offset, t.size) : data.readUIntLE(offset, t.size);
}

/**
 * Writes `value` at `offset` of `data` as scalar `t` in the worker's layout (an array
 * element, a field of a struct behind a pointer); InvalidArgument naming `what` when the
 * value does not fit the type (lib/arguments.js).
 */
function writeScalar(t, value, data, offset, what, generation) {
  switch (t.proto.scalar) {
    case 'POINTER':
      // An element of an array of pointers (a T** argument), a pointer field behind a
      // pointer: NULL or an address the session's worker (of `generation`) handed out. The
      // bytes cannot say its generation, so an older one is refused here.
      if (value === null) {
        data.writeBigUInt64LE(0n, offset);
      } else if (!(value instanceof RemotePointer)) {
        throw invalid(`${what}: a pointer needs null or a RemotePointer`);
      } else if (value.generation !== generation) {
        throw new StaleHandle(`STALE_HANDLE: ${what}: the address belongs to worker ` +
          `generation ${value.generation}; this session's worker is generation ${generation}`,
        'STALE_HANDLE');
      } else {
        data.writeBigUInt64LE(BigInt(value.address), offset);
      }
      return;
    case 'BOOL': data.writeUInt8(boolArgument(t, value, what) ? 1 : 0, offset); return;
    case 'FLOAT': data.writeFloatLE(floatArgument(t, value, what), offset); return;
    case 'DOUBLE': data.writeDoubleLE(floatArgument(t, value, what), offset); return;
    default: break;
  }
  if (!t.integer) throw invalid(`${what}: ${t.name} cannot be written as raw bytes by this client`);
  const integer = integerArgument(t, value, what);
  if (t.size === 8) {
    if (t.signed) data.writeBigInt64LE(integer, offset);
    else data.writeBigUInt64LE(integer, offset);
  } else if (t.signed) {
    data.writeIntLE(Number(integer), offset, t.size);
  } else {
    data.writeUIntLE(Number(integer), offset, t.size);
  }
}

module.exports = {
  SCALARS, RemotePointer, addressFromServer, Typed, typed, variadicType, describe, scalar, struct, union, pointer, buffer, array, callback,
  callbackOf, fromProto, readScalar, writeScalar, invalid,
};
