'use strict';
// JS values <-> protocol Values for the types of types.js. Records need the worker's layout
// (offsets of their fields), which the session asks the server for once per record type.
const {
  integerArgument, floatArgument, boolArgument, integerRange, textArgument,
} = require('./arguments');
const { internal, invalid } = require('./errors');
const { RemotePointer, readScalar, writeScalar } = require('./types');

/** The Value of a scalar argument `value` of scalar type `t`; InvalidArgument naming `what`. */
function scalarValue(t, value, what) {
  const kind = t.proto.scalar;
  if (value instanceof RemotePointer) {
    return { pointer: { remote: { address: value.address.toString(), generation: value.generation } } };
  }
  if (value === null && (kind === 'POINTER' || kind === 'CSTRING' || kind === 'WSTRING')) {
    return { pointer: { null: true } };
  }
  if (value === undefined || value === null) throw invalid(`${what}: missing ${t.name} value`);
  switch (kind) {
    case 'BOOL':
      return { bool_value: boolArgument(t, value, what) };
    case 'FLOAT': case 'DOUBLE': case 'LONGDOUBLE':
      return { float_value: floatArgument(t, value, what) };
    case 'CSTRING':
      if (Buffer.isBuffer(value)) return { bytes_value: value };
      if (typeof value === 'string') return { bytes_value: Buffer.from(value, 'utf8') };
      throw invalid(`${what}: a cstring needs a string, a Buffer or null`);
    case 'WSTRING':
      if (typeof value === 'string') return { text_value: textArgument(value, what) };
      throw invalid(`${what}: a wstring needs a string or null`);
    case 'POINTER':
      throw invalid(`${what}: a pointer needs null or a RemotePointer ` +
        '(declare the parameter buffer() to pass a Buffer)');
    default:
      break;
  }
  const integer = integerArgument(t, value, what).toString();
  return t.signed ? { int_value: integer } : { uint_value: integer };
}

// Whether values of `t` travel as the protocol's pointer (a string also as its text).
function isPointerLike(t) {
  const scalar = t.proto.scalar;
  return scalar === 'POINTER' || scalar === 'CSTRING' || scalar === 'WSTRING' ||
    Boolean(t.proto.pointer || t.proto.function);
}

// What a Value of `t` from the server may be, for messages.
function expectedKinds(t) {
  if (t.kind !== 'scalar') {
    return isPointerLike(t) ? 'a pointer (null or a remote address)' : `a ${t.kind}`;
  }
  switch (t.proto.scalar) {
    case 'BOOL': return 'bool';
    case 'FLOAT': case 'DOUBLE': case 'LONGDOUBLE': return 'a floating-point type';
    case 'CSTRING': return 'a char* (bytes or a pointer)';
    case 'WSTRING': return 'a wchar_t* (text or a pointer)';
    case 'POINTER': return 'a pointer (null or a remote address)';
    case 'CHAR': return 'a char (an integer or one byte)';
    default: return `an integer (${t.name})`;
  }
}

function unexpectedValue(value, expected, what) {
  const kind = value && value.kind ? value.kind : 'no value';
  return internal(`the server returned ${kind} where ${expected} was expected (${what})`);
}

/**
 * The JS value of a scalar Value of type `t` that the server sent (a result, a callback's
 * argument): untrusted, so its kind and range are checked against `t`; an FfiboxError
 * INTERNAL naming `what` otherwise. 64-bit integers come back as BigInts.
 */
function scalarFromServer(t, value, what, { stringAddresses = false } = {}) {
  const kind = value && value.kind;
  const scalar = t.proto.scalar;
  const wrong = () => unexpectedValue(value, expectedKinds(t), what);
  if (isPointerLike(t)) {
    if (kind === 'pointer') {
      const p = value.pointer;
      if (p.target === 'null') return null;
      // A char* result always comes as its bytes; a wchar_t* one as its address when it holds
      // a unit that is no character, and a callback's string argument (`stringAddresses`)
      // when it is too long to send or cannot be read (docs/node.md).
      if (p.target === 'remote' && (scalar !== 'CSTRING' || stringAddresses)) {
        return new RemotePointer(p.remote.address || 0, p.remote.generation || 0);
      }
      throw unexpectedValue({ kind: `pointer.${p.target || 'unset'}` }, expectedKinds(t), what);
    }
    if (scalar === 'CSTRING' && kind === 'bytes_value') {
      // Text decodes as Buffer.toString does (a byte sequence that is not UTF-8 becomes
      // U+FFFD); a 'cbytes' type keeps the bytes.
      return t.bytes ? Buffer.from(value.bytes_value) : value.bytes_value.toString('utf8');
    }
    if (scalar === 'WSTRING' && kind === 'text_value') return value.text_value;
    throw wrong();
  }
  switch (scalar) {
    case 'BOOL':
      if (kind === 'bool_value') return value.bool_value;
      if (kind === 'int_value' || kind === 'uint_value') return BigInt(value[kind]) !== 0n;
      throw wrong();
    case 'FLOAT': case 'DOUBLE': case 'LONGDOUBLE':
      // A C float comes as a double that holds it exactly: any other is no float's value.
      if (kind === 'float_value' && scalar === 'FLOAT' && !Number.isNaN(value.float_value) &&
          Math.fround(value.float_value) !== value.float_value) {
        throw wrong();
      }
      if (kind === 'float_value') return value.float_value;
      if (kind === 'int_value' || kind === 'uint_value') return Number(value[kind]);
      throw wrong();
    default:
      break;
  }
  if (!t.integer) throw wrong();
  if (scalar === 'CHAR' && kind === 'bytes_value' && value.bytes_value.length === 1) {
    return value.bytes_value.readInt8(0);
  }
  if (kind !== 'int_value' && kind !== 'uint_value') throw wrong();
  const integer = BigInt(value[kind]);
  const [min, max] = integerRange(t);
  if (integer < min || integer > max) {
    throw internal(`the server returned ${integer}, out of range for ${t.name} ` +
      `(${min} to ${max}) (${what})`);
  }
  return t.wide ? integer : Number(integer);
}

/**
 * InvalidArgument naming `what` when `object` has an own property that is no field of
 * record `t` (a misspelled field would otherwise be sent as zero).
 */
function checkFieldNames(t, object, what) {
  const unknown = Object.keys(object).filter((key) => !t.fields.some(([name]) => name === key));
  if (unknown.length > 0) {
    throw invalid(`${what}: ${t.name} has no field ${unknown.join(', ')} ` +
      `(its fields: ${t.fields.map(([n]) => n).join(', ')})`);
  }
}

/**
 * `object`'s fields as an aggregate Value of record type `t` (fields by name). A union is
 * set through the one member the object names (the first when it names none); a server
 * that sets only a union's first member (`unionMembers` false: older than
 * SessionOpened.union_members) is refused another.
 */
function aggregateValue(t, object, what, unionMembers = true) {
  if (object === null || typeof object !== 'object') {
    throw invalid(`${what}: ${t.name} needs an object with fields ${t.fields.map(([n]) => n)}`);
  }
  checkFieldNames(t, object, what);
  const element = ([name, field]) => {
    const where = `${what}.${name}`;
    return field.kind === 'record' ? aggregateValue(field, object[name], where, unionMembers)
      : scalarValue(field, object[name], where);
  };
  if (t.proto.record.kind !== 'UNION') return { aggregate: { elements: t.fields.map(element) } };
  const named = t.fields.flatMap(([name], i) =>
    (Object.hasOwn(object, name) && object[name] !== undefined ? [i] : []));
  if (named.length > 1) {
    throw invalid(`${what}: a ${t.name} holds one member; the object names ` +
      named.map((i) => t.fields[i][0]).join(', '));
  }
  const member = named.length === 1 ? named[0] : 0;
  if (member !== 0 && !unionMembers) {
    throw invalid(`${what}: this server sets only a union's first member ` +
      `(${t.fields[0][0]}), not ${t.fields[member][0]}: it is older than this client`);
  }
  return { aggregate: { elements: [element(t.fields[member])], member } };
}

/** Writes `object` into `data` at `offset` in the worker's layout of record `t`. */
function writeRecord(t, layout, object, data, offset, what, generation) {
  if (object === null || typeof object !== 'object') {
    throw invalid(`${what}: ${t.name} needs an object with fields ${t.fields.map(([n]) => n)}`);
  }
  checkFieldNames(t, object, what);
  t.fields.forEach(([name, field], i) => {
    if (object[name] === undefined) return;  // left zero
    const at = offset + Number(layout.fields[i].offset || 0);
    if (field.kind === 'record') {
      writeRecord(field, layout.nested[i], object[name], data, at, `${what}.${name}`,
        generation);
    } else {
      writeScalar(field, object[name], data, at, `${what}.${name}`, generation);
    }
  });
}

/**
 * The object that `data` at `offset` holds in the worker's layout of record `t`; `data`
 * holds at least the layout's size (see recordFromServer for bytes the server sent).
 */
function readRecord(t, layout, data, offset = 0, generation = undefined) {
  const object = {};
  t.fields.forEach(([name, field], i) => {
    const at = offset + Number(layout.fields[i].offset || 0);
    object[name] = field.kind === 'record'
      ? readRecord(field, layout.nested[i], data, at, generation)
      : readScalar(field, data, at, generation);
  });
  return object;
}

/**
 * The object a record Value of type `t` that the server sent holds (a result by value):
 * raw bytes of the layout's size, else an FfiboxError INTERNAL naming `what`.
 */
function recordFromServer(t, layout, value, what, generation = undefined) {
  if (!value || value.kind !== 'raw') {
    throw unexpectedValue(value, `raw bytes of a ${t.name}`, what);
  }
  const size = Number(layout.size || 0);
  if (value.raw.length !== size) {
    throw internal(`the server returned ${value.raw.length} bytes for a ${t.name} of ` +
      `${size} bytes (${what})`);
  }
  return readRecord(t, layout, value.raw, 0, generation);
}

/**
 * Checks the layout of record `t` the server sent (get_layout, with `nested` the layouts of
 * its record fields): one entry per field, each field within the record's size, so that
 * reading and writing the record's bytes stay inside them. FfiboxError INTERNAL otherwise.
 */
function checkLayoutFromServer(t, layout) {
  const size = Number(layout.size || 0);
  const fields = layout.fields || [];
  if (fields.length !== t.fields.length) {
    throw internal(`the server's layout of ${t.name} has ${fields.length} fields; ` +
      `it has ${t.fields.length}`);
  }
  t.fields.forEach(([name, field], i) => {
    const fieldSize = field.kind === 'record' ? Number(layout.nested[i].size || 0) : field.size;
    const end = Number(fields[i].offset || 0) + fieldSize;
    if (end > size) {
      throw internal(`the server's layout of ${t.name} puts ${name} at bytes ` +
        `${end - fieldSize} to ${end}, past its ${size} bytes`);
    }
  });
}

module.exports = {
  scalarValue, scalarFromServer, aggregateValue, writeRecord, readRecord, recordFromServer,
  checkLayoutFromServer,
};
