'use strict';
// JS values <-> protocol Values for the types of types.js. Records need the worker's layout
// (offsets of their fields), which the session asks the server for once per record type.
const { RemotePointer, readScalar, writeScalar, invalid } = require('./types');

function toBigInt(value, what) {
  try {
    return BigInt(value);
  } catch (error) {
    throw invalid(`${what}: ${String(value)} is not an integer`);
  }
}

/** The Value of a scalar argument `value` of scalar type `t`. */
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
      return { bool_value: Boolean(value) };
    case 'FLOAT': case 'DOUBLE': case 'LONGDOUBLE':
      if (typeof value !== 'number' && typeof value !== 'bigint') {
        throw invalid(`${what}: a ${t.name} needs a number, not ${typeof value}`);
      }
      return { float_value: Number(value) };
    case 'CSTRING':
      if (Buffer.isBuffer(value)) return { bytes_value: value };
      if (typeof value === 'string') return { bytes_value: Buffer.from(value, 'utf8') };
      throw invalid(`${what}: a cstring needs a string, a Buffer or null`);
    case 'WSTRING':
      if (typeof value === 'string') return { text_value: value };
      throw invalid(`${what}: a wstring needs a string or null`);
    case 'POINTER':
      throw invalid(`${what}: a pointer needs null or a RemotePointer ` +
        '(declare the parameter buffer() to pass a Buffer)');
    default:
      break;
  }
  if ((kind === 'CHAR' || kind === 'WCHAR') && typeof value === 'string') {
    if ([...value].length !== 1) throw invalid(`${what}: one character expected, got '${value}'`);
    value = kind === 'CHAR' ? Buffer.from(value, 'utf8')[0] : value.codePointAt(0);
    if (kind === 'CHAR' && value > 127) value -= 256;
  }
  const integer = toBigInt(value, what).toString();
  return t.signed ? { int_value: integer } : { uint_value: integer };
}

/** The JS value of a scalar Value of type `t` (BigInt for 64-bit integers). */
function scalarFromValue(t, value) {
  if (!value || !value.kind) return undefined;
  switch (value.kind) {
    case 'int_value': case 'uint_value':
      if (t.proto.scalar === 'BOOL') return BigInt(value[value.kind]) !== 0n;
      return t.wide ? BigInt(value[value.kind]) : Number(value[value.kind]);
    case 'bool_value': return value.bool_value;
    case 'float_value': return value.float_value;
    case 'bytes_value':
      return t.proto.scalar === 'CHAR' ? value.bytes_value.readInt8(0)
        : value.bytes_value.toString('utf8');
    case 'text_value': return value.text_value;
    case 'pointer': {
      const p = value.pointer;
      if (p.target === 'remote') return new RemotePointer(p.remote.address, p.remote.generation);
      return null;
    }
    default:
      throw invalid(`unexpected ${value.kind} for a ${t.name}`);
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
function writeRecord(t, layout, object, data, offset, what) {
  t.fields.forEach(([name, field], i) => {
    if (object[name] === undefined) return;  // left zero
    const at = offset + Number(layout.fields[i].offset || 0);
    if (field.kind === 'record') {
      writeRecord(field, layout.nested[i], object[name], data, at, `${what}.${name}`);
    } else {
      writeScalar(field, object[name], data, at);
    }
  });
}

/** The object that `data` at `offset` holds in the worker's layout of record `t`. */
function readRecord(t, layout, data, offset = 0) {
  const object = {};
  t.fields.forEach(([name, field], i) => {
    const at = offset + Number(layout.fields[i].offset || 0);
    object[name] = field.kind === 'record' ? readRecord(field, layout.nested[i], data, at)
      : readScalar(field, data, at);
  });
  return object;
}

module.exports = { scalarValue, scalarFromValue, aggregateValue, writeRecord, readRecord };
