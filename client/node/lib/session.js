'use strict';
// One ffibox session: one bidi `Session` stream, one worker. Matches responses to requests
// by id, answers the server's callback invocations with the session's JS functions, and
// stamps requests made inside a callback with its invocation (reentrancy).
//
// An open session is an open gRPC stream and, like an open socket, keeps Node's event loop
// alive until it ends: session.close(), client.close(), the server ending it, or no answer
// within the client's deadline (lib/answer_watch.js). An ended session holds nothing.
const { AsyncLocalStorage } = require('node:async_hooks');
const { EventEmitter } = require('node:events');
const path = require('node:path');
const { AnswerWatch, MAX_TIMER_DELAY_MS } = require('./answer_watch');
const { knownOptions, textArgument, wellFormedText } = require('./arguments');
const { FfiboxError, SessionClosed, errorFromProto, internal, invalid } = require('./errors');
const { Library } = require('./library');
const { RemotePointer, addressFromServer, callbackOf, fromProto } = require('./types');
const {
  scalarValue, scalarFromServer, aggregateValue, checkLayoutFromServer,
} = require('./values');

// How many SessionEvents `Session.events` keeps (a chatty library's output must not grow
// without bound); listeners of 'event' see every one.
const KEPT_EVENTS = 1000;

// How much longer than its own deadline the client waits for a request's answer by default:
// room for starting a worker, for replaying the session's loads into a new one after a loss,
// and for the server's own reaction to an overrun, which ends the call first.
const DEFAULT_ANSWER_MARGIN_MS = 10000;

// Requests the broker answers at once, without the worker: their answer is due within the
// margin alone.
const BROKER_OPS = new Set(['open', 'ping', 'close', 'parse_declaration', 'callback_return']);

// The Response result each Request op is answered with (docs/protocol.md, Operations).
const EXPECTED_RESULTS = {
  open: 'opened',
  load_library: 'library',
  resolve_function: 'function',
  call: 'call',
  batch: 'batch',
  register_type: 'type_registered',
  get_layout: 'layout',
  read_memory: 'memory',
  read_memory_list: 'memory_list',
  write_memory: 'done',
  alloc_memory: 'allocated',
  free_memory: 'done',
  fill_memory: 'done',
  copy_memory: 'done',
  read_string: 'string',
  lookup_symbol: 'symbol',
  define_callback: 'callback',
  free_callback: 'done',
  callback_return: 'done',
  close: 'done',
  ping: 'done',
  parse_declaration: 'declaration',
  open_local_channel: 'local_channel',
};

function opName(op) {
  return Object.keys(op).find((key) => Object.hasOwn(EXPECTED_RESULTS, key)) || '';
}

// The callbacks running in this async context, innermost first: { session, invocation,
// open, outer }. A call made in one goes in the innermost invocation of its own session that
// is still open: a call on another session goes in that session's (a callback of session B
// called from a callback of session A calling A again), or at the top level; a call made once
// the callback returned (a timer it set, a promise it did not await) goes in the next open
// one out, or at the top level.
const currentInvocation = new AsyncLocalStorage();

// The invocation a request of `session` made in this async context belongs to ('0': none).
function invocationOf(session) {
  for (let frame = currentInvocation.getStore(); frame; frame = frame.outer) {
    if (frame.session === session && frame.open) return frame.invocation;
  }
  return '0';
}

function closedError(status) {
  if (status && status.code !== undefined && status.code !== 0 && status.code !== 1) {
    const codes = { 14: 'UNAVAILABLE', 16: 'UNAUTHENTICATED', 7: 'PERMISSION_DENIED',
      8: 'RESOURCE_EXHAUSTED', 4: 'DEADLINE_EXCEEDED' };
    const code = codes[status.code] || 'UNAVAILABLE';
    return new SessionClosed(`${code}: the session stream ended: ${status.details}`, code);
  }
  return new SessionClosed('SESSION_CLOSED: the session stream ended', 'SESSION_CLOSED');
}

// How much of the server's refusal a failed callback's answer repeats.
const MAX_REFUSAL_DETAIL = 200;

// `value` as the protocol's uint64 (a decimal string): a whole number from 0 that a Number
// holds exactly, or a BigInt below 2^64; InvalidArgument naming `what` otherwise (never
// wrapped).
function uint64Of(value, what) {
  if (!((Number.isSafeInteger(value) && value >= 0) ||
        (typeof value === 'bigint' && value >= 0n && value < 2n ** 64n))) {
    throw invalid(`${what} must be a whole number from 0 to 2^64 - 1 (a BigInt beyond ` +
      `2^53), not ${String(value)}`);
  }
  return value.toString();
}

// A size in bytes.
function byteCount(size) {
  return uint64Of(size, 'a size in bytes');
}

// OpenSession.environment of `environment`, an object of variable names to string values.
function environmentOf(environment) {
  const prototype = environment !== null && typeof environment === 'object'
    ? Object.getPrototypeOf(environment) : undefined;
  if (prototype !== Object.prototype && prototype !== null) {
    throw invalid('environment must be a plain object of variable names to string values ' +
      '({LANG: \'C.UTF-8\'})');
  }
  const entries = {};
  for (const [name, value] of Object.entries(environment)) {
    textArgument(name, 'an environment variable name');
    entries[name] = textArgument(value, `environment.${name}`);
  }
  return entries;
}

// The jail layers a server may report (SessionOpened.jail_layers, docs/protocol.md).
const JAIL_LAYERS = ['user', 'pid', 'net', 'ipc', 'uts', 'mount', 'filesystem', 'proc', 'cgroup',
  'seccomp', 'no_new_privs', 'rlimits'];

/**
 * The layers `names` (requireJail) requires, 'all' standing for every one; InvalidArgument for
 * a name that is no layer (misspelt, it would read as a layer the server lacks).
 */
function requiredJailLayers(names) {
  if (names === undefined) return [];
  if (!Array.isArray(names)) {
    throw invalid(`requireJail must be an array of layer names, not ${String(names)}`);
  }
  return names.flatMap((name) => {
    if (name === 'all') return JAIL_LAYERS;
    if (JAIL_LAYERS.includes(name)) return [name];
    throw invalid(`requireJail: no jail layer is called '${String(name)}' ` +
      `(the layers: ${JAIL_LAYERS.join(', ')}, or all)`);
  });
}

// What Client.session takes.
const SESSION_OPTIONS = ['timeoutMs', 'restart', 'memoryLimit', 'requireJail', 'answerMarginMs',
  'environment', 'scratchDirectory', 'idleCpuPercent'];

// How deep messages may nest below a Request: protobufjs encodes no deeper (and then fails
// the whole stream), nor does the server parse deeper.
const MAX_MESSAGE_DEPTH = 100;

/**
 * What a request's op `value` (a Request's fields) holds: `bytes`, those of its Buffers and
 * strings (a lower bound of its size on the wire, and all of it but a few bytes per field),
 * and `depth`, how deep its messages nest below the Request (each object that is not an
 * array or bytes is a message: `{call: {}}` is 1).
 */
function measure(value, depth = 0, shape = { bytes: 0, depth: 0 }) {
  // Deeper is refused whatever is below (and a cyclic object ends here too).
  if (value === null || value === undefined || shape.depth > MAX_MESSAGE_DEPTH) return shape;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    shape.bytes += value.length;
  } else if (typeof value === 'string') {
    shape.bytes += value.length;
  } else if (Array.isArray(value)) {
    for (const item of value) measure(item, depth, shape);
  } else if (typeof value === 'object') {
    if (depth > shape.depth) shape.depth = depth;
    for (const item of Object.values(value)) measure(item, depth + 1, shape);
  }
  return shape;
}

/**
 * Emits 'event' with each SessionEvent (worker lost or restarted, a callback's error, the
 * library's output: `kind`, `error`, `output`, `stream`) until the session ends.
 */
class Session extends EventEmitter {
  /** Use Client.session(). `stream` is the gRPC duplex stream of this session. */
  constructor(stream) {
    super();
    this._stream = stream;
    this._streamDone = false;        // the stream has its final status (nothing to cancel)
    this._answerMarginMs = DEFAULT_ANSWER_MARGIN_MS;
    this._answerWatch = new AnswerWatch((silentMs, boundMs) => this._expire(silentMs, boundMs));
    this._whenStreamDone = null;     // set by the Client, which keeps the sessions it must end
    this._nextId = 1;
    // The last turn taken in each scope (takeTurn), by invocation ('0': the top level).
    this._turns = new Map();
    this._pending = new Map();       // request id -> {resolve, reject, label, name, bound}
    // callback id -> {ref: WeakRef of the JS function, type}
    this._callbacks = new Map();
    // JS function -> Map(signature JSON -> Promise of its callback id): held weakly, so that
    // a function nothing else holds any more is collected, and its callbacks freed in the
    // worker (_collected), as ctypes frees a CFUNCTYPE object's.
    this._callbackIds = new WeakMap();
    this._collected = new FinalizationRegistry((ids) => this._freeCallbacks(ids));
    this._layouts = new Map();       // record Type JSON -> Promise of layout
    this._closed = null;             // the error every later request gets
    /** The last KEPT_EVENTS SessionEvents (worker lost/restarted, output, callback errors). */
    this.events = [];
    /** The SessionOpened reply: jail layers, limits, deadline. */
    this.opened = null;
    /** The generation of the worker that served the last response. */
    this.generation = 0;
    stream.on('data', (response) => this._receive(response));
    stream.on('status', () => {
      this._streamDone = true;
      if (this._whenStreamDone) this._whenStreamDone();
    });
    stream.on('error', (error) => this._end(closedError(error)));
    stream.on('end', () => this._end(closedError(null)));
  }

  /** Whether the server sets a union through any member (an older one: the first only). */
  get unionMembers() {
    return Boolean(this.opened && this.opened.union_members);
  }

  async _open(options) {
    try {
      knownOptions(options, SESSION_OPTIONS, 'session option');
    } catch (error) {
      this.close();
      throw error;
    }
    let requiredLayers;
    try {
      requiredLayers = requiredJailLayers(options.requireJail);
    } catch (error) {
      this.close();
      throw error;
    }
    if (options.answerMarginMs !== undefined) {
      const margin = options.answerMarginMs;
      if (!Number.isFinite(margin) || margin <= 0) {
        this.close();
        throw invalid(`answerMarginMs must be a number of milliseconds > 0, not ${margin}`);
      }
      this._answerMarginMs = margin;
    }
    const whole = (name, most) => {
      const value = options[name];
      if (value === undefined) return 0;
      if (!Number.isInteger(value) || value < 0 || value > most) {
        this.close();
        throw invalid(`${name} must be a whole number from 0 to ${most}, not ${String(value)}`);
      }
      return value;
    };
    const open = {
      call_timeout_ms: whole('timeoutMs', 2 ** 32 - 1),
      restart: options.restart === false ? 'NO_RESTART' : 'RESTART',
      memory_limit_bytes: '0',
      idle_cpu_percent: whole('idleCpuPercent', 100),
    };
    if (options.memoryLimit !== undefined) {
      try {
        open.memory_limit_bytes = uint64Of(options.memoryLimit, 'memoryLimit');
      } catch (error) {
        this.close();
        throw error;
      }
    }
    if (options.scratchDirectory !== undefined) {
      if (typeof options.scratchDirectory !== 'boolean') {
        this.close();
        throw invalid('scratchDirectory must be true or false, not ' +
          String(options.scratchDirectory));
      }
      open.scratch_directory = options.scratchDirectory;
    }
    if (options.environment !== undefined) {
      try {
        open.environment = environmentOf(options.environment);
      } catch (error) {
        this.close();
        throw error;
      }
    }
    let response;
    try {
      response = await this.request({ open }, 'open');
    } catch (error) {
      this.close();  // a refused open leaves no stream behind
      throw error;
    }
    this.opened = response.opened;
    const missing = requiredLayers.filter((l) => !this.opened.jail_layers.includes(l));
    if (missing.length > 0) {
      this.close();
      throw new FfiboxError(`JAIL_UNAVAILABLE: the server's workers lack the jail layers ` +
        `${missing.join(', ')} (they have: ${this.opened.jail_layers.join(', ') || 'none'})`,
      'JAIL_UNAVAILABLE');
    }
    return this;
  }

  /**
   * Sends one request (`op`: an object with one Request op field) and resolves with its
   * Response; rejects with the typed error the server answered.
   */
  request(op, label = '') {
    if (this._closed) return Promise.reject(this._closed);
    const limit = this.opened ? Number(this.opened.max_message_bytes || 0) : 0;
    let shape;
    try {
      shape = measure(op);
    } catch (error) {
      return Promise.reject(error);
    }
    const { bytes, depth } = shape;
    if (limit > 0 && bytes > limit) {
      // Not written: the broker would refuse it, and at four times the limit gRPC would end
      // the whole stream over it.
      return Promise.reject(errorFromProto({
        code: 'RESOURCE_EXHAUSTED',
        message: `request of at least ${bytes} bytes exceeds the limit of ${limit} bytes`,
      }, label));
    }
    if (depth > MAX_MESSAGE_DEPTH) {
      // Not written either: its encoding would fail, and with it the stream.
      return Promise.reject(invalid(`${label || opName(op)}: the request nests ${depth} ` +
        `messages deep, past protobuf's ${MAX_MESSAGE_DEPTH} (a type nests at most 32 levels: ` +
        'a struct takes three messages a level, a pointer or array two)'));
    }
    const id = this._nextId++;
    const request = { id: String(id), invocation: invocationOf(this), ...op };
    const name = opName(op);
    const bound = this._answerBound(name, op);
    return new Promise((resolve, reject) => {
      // The callbacks this request was made in: those its invocations run inside.
      const frame = currentInvocation.getStore();
      this._pending.set(id, { resolve, reject, label, name, bound, frame });
      this._answerWatch.sent(bound);
      this._stream.write(request);
    });
  }

  /**
   * A turn to write a call in: calls are written in the order they were made, within their
   * scope (the top level, or the invocation whose handler made them), so that a call made
   * after another runs after it in the worker even when the first awaits something before it
   * is written (a record's layout, a callback's definition; those requests are not held).
   * `ready` resolves once every earlier turn of the scope is done; `done()` ends this one
   * (call it once the call is written, or not going to be).
   */
  takeTurn() {
    const scope = invocationOf(this);
    const ready = this._turns.get(scope) || Promise.resolve();
    let finish;
    const mine = new Promise((resolve) => { finish = resolve; });
    this._turns.set(scope, mine);
    return {
      ready,
      // Not before the earlier turns: a call that fails before its own turn came (a bad
      // argument) would otherwise let the calls after it overtake those before it.
      done: () => {
        ready.then(() => {
          if (this._turns.get(scope) === mine) this._turns.delete(scope);
          finish();
        });
      },
    };
  }

  // How long after the server's last message the answer to request `op` may take: its
  // deadline in the worker (its own, else the session's) plus the margin.
  _answerBound(name, op) {
    const margin = this._answerMarginMs;
    if (BROKER_OPS.has(name)) return margin;
    const sessionDeadline = Number((this.opened && this.opened.call_timeout_ms) || 0);
    const deadline = (call) => Number(call.timeout_ms || 0) || sessionDeadline;
    if (name === 'call') return deadline(op.call) + margin;
    if (name === 'batch') {
      // The server's own deadline for a batch is its timeout_ms, else the sum of its calls'.
      const calls = op.batch.calls || [];
      return (Number(op.batch.timeout_ms || 0) ||
        calls.reduce((sum, call) => sum + deadline(call), 0)) + margin;
    }
    return sessionDeadline + margin;
  }

  // No answer came within the client's deadline: the server is taken for gone, and the
  // session ends (a new one may reach it again once it answers).
  _expire(silentMs, boundMs) {
    this._end(new SessionClosed(`DEADLINE_EXCEEDED: the server sent nothing for ${silentMs} ms ` +
      `while requests waited for answers due within ${boundMs} ms (their deadline plus ` +
      `${this._answerMarginMs} ms); the session is closed`, 'DEADLINE_EXCEEDED'));
    this._cancelStream();
  }

  _cancelStream() {
    if (!this._streamDone) this._stream.cancel();
  }

  _receive(response) {
    // Once closed, the session's listeners and callbacks hear nothing more.
    if (this._closed) return;
    this._answerWatch.heard();
    if (response.generation) this.generation = Number(response.generation);
    const id = Number(response.id || 0);
    if (id === 0) {
      if (response.result === 'callback_invoke') {
        this._invoke(response.callback_invoke);
      } else if (response.result === 'event') {
        this.events.push(response.event);
        if (this.events.length > KEPT_EVENTS) this.events.shift();
        this.emit('event', response.event);
      }
      return;
    }
    const pending = this._pending.get(id);
    if (!pending) return;
    this._pending.delete(id);
    this._answerWatch.answered(pending.bound);
    const expected = EXPECTED_RESULTS[pending.name];
    if (response.error) {
      pending.reject(errorFromProto(response.error, pending.label));
    } else if (expected && response.result !== expected) {
      pending.reject(internal(`the server answered ${pending.name} with ` +
        `${response.result || 'nothing'} where ${expected} was expected`,
      { function: pending.label }));
    } else {
      pending.resolve(response);
    }
  }

  _end(error) {
    if (this._closed) return;
    this._closed = error;
    this._answerWatch.stop();
    for (const pending of this._pending.values()) pending.reject(error);
    this._pending.clear();
  }

  /**
   * Loads a library in the worker: a path, or a soname such as 'libm.so.6' that the dynamic
   * linker searches for. A relative path ('./libx.so') is taken from process.cwd(), not from
   * the worker's working directory, which is not this process's. `{global: true}` loads it
   * with dlopen's RTLD_GLOBAL: its symbols also serve the libraries loaded after it in this
   * session (RTLD_LOCAL otherwise).
   */
  async load(file, options = {}) {
    textArgument(file, 'the library path');
    knownOptions(options, ['global'], 'load option');
    const { global = false } = options || {};
    if (typeof global !== 'boolean') throw invalid('load: global must be true or false');
    const libraryPath = file.includes('/') && !path.isAbsolute(file) ? path.resolve(file) : file;
    const response = await this.request({ load_library: { path: libraryPath, global } },
      `load ${libraryPath}`);
    return new Library(this, Number(response.library.library), libraryPath);
  }

  // ---- the worker's memory (docs/node.md, "Memory in the worker") ----------------------

  /** `size` bytes at `pointer` (a RemotePointer of this session's worker) as a Buffer. */
  async readMemory(pointer, size) {
    const response = await this.request({
      read_memory: { address: this._address(pointer, 'readMemory'), size: byteCount(size) },
    }, 'read_memory');
    const data = Buffer.from(response.memory.data || []);
    if (BigInt(data.length) !== BigInt(size)) {
      throw internal(`the server answered a read of ${size} bytes with ${data.length}`);
    }
    return data;
  }

  /** Writes the bytes of Buffer `data` at `pointer`. */
  async writeMemory(pointer, data) {
    if (!Buffer.isBuffer(data) && !(data instanceof Uint8Array)) {
      throw invalid(`writeMemory: the data must be a Buffer, not ${typeof data}`);
    }
    await this.request({
      write_memory: { address: this._address(pointer, 'writeMemory'), data: Buffer.from(data) },
    }, 'write_memory');
  }

  /**
   * The NUL-terminated string at `pointer`: a char* string as text (decoded as `char*`
   * results are), its bytes as a Buffer with `{bytes: true}`, or a wchar_t* string with
   * `{wide: true}`.
   */
  async readString(pointer, { wide = false, bytes = false } = {}) {
    if (wide && bytes) {
      throw invalid('readString: a wchar_t* string is read as text; {bytes: true} is for ' +
        'char* strings');
    }
    const response = await this.request({
      read_string: { address: this._address(pointer, 'readString'), wide: Boolean(wide) },
    }, 'read_string');
    if (wide) return response.string.text || '';
    const data = Buffer.from(response.string.data || []);
    return bytes ? data : data.toString('utf8');
  }

  /** `size` bytes allocated in the worker (16-byte aligned), until free(). */
  async alloc(size) {
    const response = await this.request({ alloc_memory: { size: byteCount(size) } },
      'alloc_memory');
    return addressFromServer(response.allocated.address, 'alloc_memory');
  }

  /** Frees memory alloc() returned; null is nothing to free, as for C's free(). */
  async free(pointer) {
    if (pointer === null) return;
    await this.request({ free_memory: { address: this._address(pointer, 'free') } },
      'free_memory');
  }

  // The RemoteAddress of `pointer` (null: address 0 of the current worker, which the worker
  // answers with MEMORY_FAULT).
  _address(pointer, what) {
    if (pointer === null) return { address: '0', generation: this.generation };
    if (!(pointer instanceof RemotePointer)) {
      throw invalid(`${what}: needs a RemotePointer (or null), not ${String(pointer)}`);
    }
    return { address: pointer.address.toString(), generation: pointer.generation };
  }

  /** The name and protocol Signature of a C declaration, parsed by the server. */
  async parseDeclaration(declaration) {
    textArgument(declaration, 'the declaration');
    const response = await this.request({ parse_declaration: { declaration } }, 'parse_declaration');
    return { name: response.declaration.name, signature: response.declaration.signature };
  }

  /** The worker's layout of a record type description (cached per type). */
  layout(recordType) {
    const key = JSON.stringify(recordType.proto);
    if (!this._layouts.has(key)) {
      const promise = (async () => {
        const response = await this.request({ get_layout: { type: recordType.proto } }, 'layout');
        const layout = response.layout;
        layout.nested = await Promise.all(recordType.fields.map(
          ([, field]) => (field.kind === 'record' ? this.layout(field) : null)));
        checkLayoutFromServer(recordType, layout);
        return layout;
      })();
      promise.catch(() => this._layouts.delete(key));
      this._layouts.set(key, promise);
    }
    return this._layouts.get(key);
  }

  /** A callback type declared as C text, with its signature parsed by the server. */
  async resolveCallbackType(type) {
    if (type.kind !== 'callback' || type.proto !== null) return type;
    const { signature } = await this.parseDeclaration(type.declaration);
    return callbackOf(signature.result ? fromProto(signature.result) : null,
      signature.params.map(fromProto));
  }

  /** The callback id standing for JS function `fn` with callback type `type` (defined once). */
  async callbackId(type, fn) {
    const resolved = await this.resolveCallbackType(type);
    const key = JSON.stringify(resolved.proto);
    let byType = this._callbackIds.get(fn);
    if (!byType) {
      byType = new Map();
      this._callbackIds.set(fn, byType);
      this._collected.register(fn, byType, byType);
    }
    if (!byType.has(key)) {
      const ref = new WeakRef(fn);
      const defined = this.request({ define_callback: { signature: resolved.proto.function } },
        'define_callback').then((response) => {
        const id = Number(response.callback.callback);
        this._callbacks.set(id, { ref, type: resolved });
        return id;
      });
      defined.catch(() => byType.delete(key));
      byType.set(key, defined);
    }
    return byType.get(key);
  }

  /**
   * Frees the callbacks defined for JS function `fn` in this session's worker now: native
   * code that still calls one gets zero, and the session a CALLBACK_ERROR event. Without it,
   * they are freed once `fn` is collected (keep a function the library stores reachable as
   * long as the library may call it, as with ctypes).
   */
  async freeCallback(fn) {
    const byType = this._callbackIds.get(fn);
    if (!byType) return;
    this._callbackIds.delete(fn);
    this._collected.unregister(byType);
    await this._freeCallbacks(byType);
  }

  // Frees the callbacks of `byType` (signature JSON -> Promise of an id) in the worker.
  async _freeCallbacks(byType) {
    for (const defined of byType.values()) {
      let id;
      try {
        id = await defined;
      } catch (error) {
        continue;  // never defined
      }
      this._callbacks.delete(id);
      if (this._closed) continue;
      await this.request({ free_callback: { callback: String(id) } }, 'free_callback')
        .catch(() => {});  // freed with its worker, or a worker of an older generation's
    }
  }

  async _invoke(invoke) {
    const invocation = invoke.invocation;
    const entry = this._callbacks.get(Number(invoke.callback));
    const answer = { invocation };
    try {
      const fn = entry && entry.ref.deref();
      if (!fn) throw new Error(`no function for callback ${invoke.callback} (freed, or collected)`);
      const { type } = entry;
      const args = type.params.map((t, i) => {
        const value = invoke.args[i];
        if (t.kind === 'record' && value && value.kind === 'raw') return value.raw;
        return scalarFromServer(t, value, `argument ${i} of callback ${invoke.callback}`,
          { stringAddresses: true });
      });
      // Inside the callbacks the call that made it was made in (on this session or
      // another), which the stream's event that brought it does not carry; one a thread of
      // the library made is inside none.
      const making = this._pending.get(Number(invoke.request_id || 0));
      const running = { session: this, invocation: String(invocation), open: true,
        outer: making ? making.frame : undefined };
      let result;
      try {
        result = await currentInvocation.run(running, () => fn(...args));
      } finally {
        running.open = false;
      }
      if (type.result && !(type.result.kind === 'scalar' && type.result.name === 'void')) {
        answer.result = type.result.kind === 'record'
          ? aggregateValue(type.result, result, 'callback result', this.unionMembers)
          : scalarValue(type.result, result, 'callback result');
      }
    } catch (error) {
      // Sent as it is, an unpaired surrogate in the message would end the session's stream.
      answer.error = wellFormedText(String((error && error.message) || error || 'callback failed'));
      delete answer.result;
    }
    this.request({ callback_return: answer }, 'callback_return').catch((error) => {
      // Refused (larger than the server reads, or a result it does not accept): the invocation
      // is still open and native code would wait for the call's deadline. It fails as a
      // callback instead, once, with a message short enough to send.
      if (this._closed || error.code === 'FAILED_PRECONDITION') return;
      const why = error.code === 'RESOURCE_EXHAUSTED'
        ? "the callback's answer is too large to send"
        : "the server refused the callback's answer";
      const detail = String(error.message || '').slice(0, MAX_REFUSAL_DETAIL);
      this.request({ callback_return: { invocation, error: wellFormedText(`${why}: ${detail}`) } },
        'callback_return').catch(() => {});
    });
  }

  /**
   * Ends the session: the server kills its worker. Requests still waiting reject with
   * SessionClosed, and no 'event' is emitted after it.
   */
  close() {
    if (this._closed) return;
    this._end(new SessionClosed('SESSION_CLOSED: the session was closed', 'SESSION_CLOSED'));
    // CloseSession ends the session at once; a stream only closed on this side would have
    // every request still in flight answered first (docs/protocol.md).
    if (!this._streamDone) {
      this._stream.write({ id: String(this._nextId++), invocation: '0', close: {} });
    }
    this._stream.end();
    // A server that stopped answering would never end the stream, which would then keep
    // Node running: it is cancelled once it had the margin to end (a margin longer than
    // setTimeout takes waits its longest, not none at all).
    const giveUp = setTimeout(() => this._cancelStream(),
      Math.min(this._answerMarginMs, MAX_TIMER_DELAY_MS));
    giveUp.unref();
    this._stream.once('status', () => clearTimeout(giveUp));
  }

  // Ends the session at once, its client being closed: no answer is waited for.
  _endWithClient() {
    this._end(new SessionClosed('SESSION_CLOSED: the client was closed', 'SESSION_CLOSED'));
    this._cancelStream();
  }
}

module.exports = { Session };
