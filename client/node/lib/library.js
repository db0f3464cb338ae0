'use strict';
// A library loaded in a session's worker, and its functions: declared with a C declaration
// the server parses (`'double cos(double)'`), with JS type descriptions overriding the
// parameters and result the C text cannot say (structs, buffers, arrays, callbacks).
const { knownOptions, textArgument } = require('./arguments');
const { internal, invalid } = require('./errors');
const {
  Typed, addressFromServer, describe, fromProto, readScalar, variadicType, writeScalar,
} = require('./types');
const {
  scalarValue, scalarFromServer, aggregateValue, writeRecord, readRecord, recordFromServer,
} = require('./values');

// What callWith takes.
const CALL_OPTIONS = ['captureErrno', 'setErrno', 'timeoutMs'];
// What func takes.
const FUNC_OPTIONS = ['params', 'result'];

// A parameter index as `options.params` may name it: a whole number without sign or
// exponent ('0.5', '-0', '1e1' and ' 1' name no parameter, whatever Number() makes of them).
const PARAMETER_INDEX = /^(0|[1-9][0-9]*)$/;

class Library {
  /** Use Session.load(). */
  constructor(session, handle, path) {
    this.session = session;
    this.handle = handle;
    this.path = path;
  }

  /**
   * The address of the exported symbol `name` (a variable, ctypes' in_dll) in the current
   * worker, as a RemotePointer to read and write with the session's memory methods;
   * SymbolNotFound when the library does not export it.
   */
  async symbol(name) {
    textArgument(name, 'the symbol');
    const response = await this.session.request({
      lookup_symbol: { library: String(this.handle), symbol: name },
    }, `dlsym ${name}`);
    return addressFromServer(response.symbol.address, `dlsym ${name}`);
  }

  /**
   * An async JS function calling the C function `declaration` names, e.g.
   * `await lib.func('double cos(double)')`. `options.params` ({index: type} or an array)
   * and `options.result` replace the declared types by JS descriptions (types.js).
   * Rejects with SymbolNotFound when the library has no such symbol and InvalidArgument
   * when the declaration does not parse.
   */
  async func(declaration, options = {}) {
    knownOptions(options, FUNC_OPTIONS, 'func option');
    const parsed = await this.session.parseDeclaration(declaration);
    const signature = parsed.signature;
    const params = signature.params.map(fromProto);
    for (const [index, type] of Object.entries(options.params || {})) {
      if (type === undefined) continue;
      const i = PARAMETER_INDEX.test(index) ? Number(index) : -1;
      if (!(i >= 0 && i < params.length)) {
        throw invalid(`${parsed.name} has ${params.length} parameters (indices 0 to ` +
          `${params.length - 1}); no parameter ${JSON.stringify(index)}`);
      }
      params[i] = await this.session.resolveCallbackType(describe(type));
    }
    let result = signature.result ? fromProto(signature.result) : null;
    if (options.result !== undefined) result = describe(options.result);
    if (result && result.kind !== 'scalar' && result.kind !== 'record') {
      throw invalid(`${parsed.name}: a result is a scalar, a struct or a union ` +
        `(a returned pointer comes back as a RemotePointer), not ${result.kind}`);
    }
    if (result && result.kind === 'scalar' && result.name === 'void') result = null;
    const protoSignature = { params: params.map((p) => p.proto), variadic: signature.variadic };
    if (result) protoSignature.result = result.proto;
    const response = await this.session.request({
      resolve_function: { library: String(this.handle), symbol: parsed.name, signature: protoSignature },
    }, `resolve ${parsed.name}`);
    const fn = new NativeFunction(this.session, parsed.name,
      Number(response.function.function), params, result, signature.variadic);
    const call = (...args) => fn.call(args);
    // `withErrno(...args)`: the result and the worker's errno right after the call, as
    // `{value, errno}` (ctypes' use_errno); `callWith({captureErrno, setErrno, timeoutMs},
    // ...args)`: errno set to `setErrno` right before the call too, and the call's own
    // deadline in place of the session's.
    call.withErrno = (...args) => fn.call(args, { captureErrno: true });
    call.callWith = (callOptions, ...args) => fn.call(args, callOptions);
    call.functionName = parsed.name;
    call.handle = fn.handle;
    return call;
  }
}

class NativeFunction {
  constructor(session, name, handle, params, result, variadic) {
    Object.assign(this, { session, name, handle, params, result, variadic });
  }

  async call(args, options = {}) {
    knownOptions(options, CALL_OPTIONS, 'call option', this.name);
    const { captureErrno = false, setErrno, timeoutMs } = options || {};
    if (setErrno !== undefined && !(Number.isInteger(setErrno) && setErrno >= -(2 ** 31) &&
        setErrno < 2 ** 31)) {
      throw invalid(`${this.name}: setErrno must be a 32-bit integer, not ${String(setErrno)}`);
    }
    if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0 &&
        timeoutMs < 2 ** 32)) {
      throw invalid(`${this.name}: timeoutMs must be a whole number of milliseconds from 1 ` +
        `to ${2 ** 32 - 1}, not ${String(timeoutMs)}`);
    }
    const fixed = this.params.length;
    if (args.length < fixed || (!this.variadic && args.length > fixed)) {
      throw invalid(`${this.name} takes ${this.variadic ? 'at least ' : ''}${fixed} ` +
        `argument${fixed === 1 ? '' : 's'}, got ${args.length}`);
    }
    const variadicTypes = args.slice(fixed).map(variadicType);
    const types = [...this.params, ...variadicTypes];
    const blocks = [];
    // (blocks returned, worker generation) => void: copies out/inout blocks back
    const afterCall = [];
    const values = [];
    // Taken now: the call is written after every call made before it, whatever its
    // arguments await.
    const turn = this.session.takeTurn();
    // The JS functions passed as callbacks, held until the call has returned: native code
    // may call them during the call, and a function held by nothing else would be collected
    // and its callback freed meanwhile.
    const held = args.map((arg) => (arg instanceof Typed ? arg.value : arg))
      .filter((arg) => typeof arg === 'function');
    let answer;
    try {
      for (let i = 0; i < args.length; ++i) {
        const arg = args[i] instanceof Typed ? args[i].value : args[i];
        values.push(await this._argument(types[i], arg, `${this.name} argument ${i}`,
          blocks, afterCall));
      }
      const call = { function: String(this.handle), args: values, blocks };
      if (variadicTypes.length > 0) call.variadic_types = variadicTypes.map((t) => t.proto);
      if (captureErrno) call.capture_errno = true;
      if (setErrno !== undefined) call.set_errno = setErrno;
      if (timeoutMs !== undefined) call.timeout_ms = timeoutMs;
      await turn.ready;
      answer = this.session.request({ call }, this.name);
    } finally {
      turn.done();
    }
    const response = await answer;
    held.length = 0;
    const returned = returnedBlocks(blocks, response.call.blocks, this.name);
    const value = response.call.result;
    // Pointer fields of records the worker wrote are its addresses, of this generation.
    const generation = Number(response.generation || this.session.generation);
    let result;
    if (this.result && this.result.kind === 'record') {
      const layout = await this.session.layout(this.result);
      result = recordFromServer(this.result, layout, value, `the result of ${this.name}`,
        generation);
    } else if (this.result) {
      result = scalarFromServer(this.result, value, `the result of ${this.name}`);
    }
    let errno;
    if (captureErrno) {
      errno = response.call.errno_value;
      if (!Number.isInteger(errno)) {
        throw internal(`the server did not report errno for the call of ${this.name}`);
      }
    }
    // Only once the whole answer is known good: a bad one changes none of the caller's objects.
    for (const copyBack of afterCall) copyBack(returned, generation);
    return captureErrno ? { value: result, errno } : result;
  }

  // The Value of one argument; adds the blocks it needs to `blocks`.
  async _argument(type, arg, what, blocks, afterCall) {
    if (arg === null && type.kind !== 'record' && type.kind !== 'scalar') return { pointer: { null: true } };
    switch (type.kind) {
      case 'scalar':
        return scalarValue(type, arg, what);
      case 'record':
        return aggregateValue(type, arg, what, this.session.unionMembers);
      case 'callback':
        if (typeof arg !== 'function') throw invalid(`${what}: a callback needs a function`);
        return { pointer: { callback: String(await this.session.callbackId(type, arg)) } };
      case 'buffer': {
        if (!Buffer.isBuffer(arg)) throw invalid(`${what}: a buffer needs a Node Buffer`);
        const data = type.terminated ? Buffer.concat([arg, Buffer.alloc(1)]) : arg;
        const index = addBlock(blocks, data, data.length, type.direction);
        if (type.direction !== 'IN') {
          afterCall.push((returned) => copyInto(returned.get(index), arg));
        }
        return blockPointer(index);
      }
      case 'array': {
        if (!Array.isArray(arg)) throw invalid(`${what}: an array needs a JS array`);
        if (type.element.kind === 'record') {
          return this._recordArray(type, arg, what, blocks, afterCall);
        }
        // Pointers the library stored are RemotePointers of the worker that answered, as a
        // pointer result is (a create(&handle) out-parameter).
        return arrayBlock(arg, type.element.size, type.direction, blocks, afterCall,
          (value, data, offset, i) => writeScalar(type.element, value, data, offset,
            `${what}[${i}]`, this.session.generation),
          (out, offset, i, generation) => {
            arg[i] = readScalar(type.element, out, offset, generation);
          });
      }
      case 'recordPointer': {
        if (typeof arg !== 'object') throw invalid(`${what}: ${type.pointee.name} object expected`);
        const layout = await this.session.layout(type.pointee);
        const data = Buffer.alloc(Number(layout.size || 0));
        if (type.direction !== 'OUT') {
          writeRecord(type.pointee, layout, arg, data, 0, what, this.session.generation);
        }
        const index = addBlock(blocks, data, data.length, type.direction);
        if (type.direction !== 'IN') {
          afterCall.push((returned, generation) => {
            const out = returned.get(index);
            if (out) Object.assign(arg, readRecord(type.pointee, layout, out, 0, generation));
          });
        }
        return blockPointer(index);
      }
      default:
        throw invalid(`${what}: unsupported type ${type.kind}`);
    }
  }

  // An array of records: the objects written in the worker's layout, one after the other
  // (its size is the record's stride), and for 'out' and 'inout' each object updated from
  // what the library left, as pointer() updates one.
  async _recordArray(type, arg, what, blocks, afterCall) {
    const layout = await this.session.layout(type.element);
    return arrayBlock(arg, Number(layout.size || 0), type.direction, blocks, afterCall,
      (object, data, offset, i) => {
        if (object === null || typeof object !== 'object') {
          throw invalid(`${what}[${i}]: ${type.element.name} object expected`);
        }
        writeRecord(type.element, layout, object, data, offset, `${what}[${i}]`,
          this.session.generation);
      },
      (out, offset, i, generation) => {
        const read = readRecord(type.element, layout, out, offset, generation);
        if (arg[i] !== null && typeof arg[i] === 'object') Object.assign(arg[i], read);
        else arg[i] = read;
      });
  }
}

/**
 * An array argument as one block of `arg.length` elements of `size` bytes: `write(value,
 * data, offset, i)` puts element i there (not for 'OUT'), and for 'OUT' and 'INOUT'
 * `read(out, offset, i, generation)` takes each back from what the call returned.
 */
function arrayBlock(arg, size, direction, blocks, afterCall, write, read) {
  const data = Buffer.alloc(arg.length * size);
  if (direction !== 'OUT') arg.forEach((value, i) => write(value, data, i * size, i));
  const index = addBlock(blocks, data, data.length, direction);
  if (direction !== 'IN') {
    afterCall.push((returned, generation) => {
      const out = returned.get(index);
      if (!out) return;
      for (let i = 0; i < arg.length; ++i) read(out, i * size, i, generation);
    });
  }
  return blockPointer(index);
}

/**
 * The data of the out and inout blocks of a call's answer (untrusted), by block index: each
 * such block exactly once, with its full size, as the protocol says; an FfiboxError INTERNAL
 * naming `name` otherwise.
 */
function returnedBlocks(sent, answered, name) {
  const returned = new Map();
  for (const block of answered) {
    const index = Number(block.block || 0);
    const asked = sent[index];
    if (!asked || asked.direction === 'IN' || returned.has(index)) {
      throw internal(`the server returned block ${index}, which the call of ${name} did not ` +
        'send as an out or inout block (or returned twice)');
    }
    const data = block.data || Buffer.alloc(0);
    if (data.length !== Number(asked.size)) {
      throw internal(`the server returned ${data.length} bytes for block ${index} of ` +
        `${asked.size} bytes (the call of ${name})`);
    }
    returned.set(index, data);
  }
  sent.forEach((asked, index) => {
    if (asked.direction !== 'IN' && !returned.has(index)) {
      throw internal(`the server did not return out block ${index} (the call of ${name})`);
    }
  });
  return returned;
}

function addBlock(blocks, data, size, direction) {
  blocks.push({ data: direction === 'OUT' ? Buffer.alloc(0) : data, size: String(size), direction });
  return blocks.length - 1;
}

function blockPointer(index) {
  return { pointer: { block: { block: index, offset: '0' } } };
}

function copyInto(data, target) {
  if (data) data.copy(target, 0, 0, Math.min(data.length, target.length));
}

module.exports = { Library };
