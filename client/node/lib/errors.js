'use strict';
// Errors of the ffibox Node client: one class per protocol ErrorCode that a caller may want
// to tell apart, and the one function that maps a protocol Error message to them.

/**
 * Base of every ffibox error. `code` is the protocol's ErrorCode name ("WORKER_CRASHED").
 * `neverReachedWorker` is true when the server refused the request before any worker saw it:
 * nothing it asked for happened.
 */
class FfiboxError extends Error {
  constructor(message, code = 'INTERNAL', details = {}) {
    super(message);
    this.name = this.constructor.name;
    this.code = code;
    this.field = details.field || '';        // INVALID_ARGUMENT: the bad part of the request
    this.function = details.function || '';  // the function (or operation) that was running
    this.batchIndex = details.batchIndex;    // a batch: the index of the call that failed
    this.neverReachedWorker = details.neverReachedWorker === true;
  }
}

/** The worker died while running `function`: killed by `signal`, or exited `exitCode`. */
class WorkerCrashed extends FfiboxError {
  constructor(message, details = {}) {
    super(message, 'WORKER_CRASHED', details);
    this.signal = details.signal || 0;
    this.exitCode = details.exitCode === undefined ? -1 : details.exitCode;
    this.faultAddress = details.faultAddress || 0n;
  }
}

/** The jail killed the worker for a forbidden system call (`syscall`). */
class SandboxViolation extends FfiboxError {
  constructor(message, details = {}) {
    super(message, 'SANDBOX_VIOLATION', details);
    this.syscall = details.syscall || '';
  }
}

/** The call's deadline passed; the worker was killed (the session restarts it). */
class CallTimeout extends FfiboxError {}
/** The request was malformed; `field` names the offending part. */
class InvalidArgument extends FfiboxError {}
/** The library is outside the server's allowed roots. */
class LibraryNotAllowed extends FfiboxError {}
/** dlopen failed in the worker; the message has dlerror(). */
class LibraryLoadFailed extends FfiboxError {}
/** dlsym failed. */
class SymbolNotFound extends FfiboxError {}
/** A remote address could not be read or written (the worker was not harmed). */
class MemoryFault extends FfiboxError {}
/** A remote address or callback of a worker generation that has since died. */
class StaleHandle extends FfiboxError {}
/** A limit was hit (message size, memory, sessions, ...). */
class ResourceExhausted extends FfiboxError {}
/** The session stream ended (closed, or the server went away), or no server answers. */
class SessionClosed extends FfiboxError {}

/**
 * A unix socket, its directory or its owner is another user's than yours or root's; the
 * client refused it before sending anything. Code PERMISSION_DENIED.
 */
class UntrustedServer extends FfiboxError {
  constructor(message) {
    super(message, 'PERMISSION_DENIED');
  }
}

/**
 * The private ffiboxd connect() starts did not start (or there is no ffiboxd to start).
 * Code UNAVAILABLE; `logTail`: the last lines of its log (in the message too).
 */
class PrivateServerFailed extends FfiboxError {
  constructor(message, logTail = '') {
    super(message, 'UNAVAILABLE');
    this.logTail = logTail;
  }
}

const CLASSES = {
  CALL_TIMEOUT: CallTimeout,
  INVALID_ARGUMENT: InvalidArgument,
  LIBRARY_NOT_ALLOWED: LibraryNotAllowed,
  LIBRARY_LOAD_FAILED: LibraryLoadFailed,
  SYMBOL_NOT_FOUND: SymbolNotFound,
  MEMORY_FAULT: MemoryFault,
  STALE_HANDLE: StaleHandle,
  RESOURCE_EXHAUSTED: ResourceExhausted,
};

/** An InvalidArgument for a bad argument the client refuses before sending anything. */
function invalid(message) {
  return new InvalidArgument(`INVALID_ARGUMENT: ${message}`, 'INVALID_ARGUMENT');
}

/**
 * The error for an answer of the server that does not fit what was asked: the server's
 * answers are untrusted input, and a client bug or a hostile server must not pass for a value.
 */
function internal(message, details = {}) {
  return new FfiboxError(`INTERNAL: ${message}`, 'INTERNAL', details);
}

/** The Error for a protocol `Error` message (as decoded by proto-loader, enums as names). */
function errorFromProto(error, fallbackFunction = '') {
  const code = error.code || 'INTERNAL';
  const message = error.message ? `${code}: ${error.message}` : code;
  const details = {
    field: error.field,
    function: error.function || fallbackFunction,
    batchIndex: error.batch_index === undefined || error.batch_index === null
      ? undefined : Number(error.batch_index),
    neverReachedWorker: error.never_reached_worker === true,
  };
  if (code === 'WORKER_CRASHED') {
    return new WorkerCrashed(message, {
      ...details,
      signal: error.signal || 0,
      exitCode: error.exit_code === undefined ? -1 : error.exit_code,
      faultAddress: BigInt(error.fault_address || 0),
    });
  }
  if (code === 'SANDBOX_VIOLATION') {
    return new SandboxViolation(message, { ...details, syscall: error.syscall || '' });
  }
  const Class = CLASSES[code] || FfiboxError;
  return new Class(message, code, details);
}

module.exports = {
  FfiboxError,
  WorkerCrashed,
  SandboxViolation,
  CallTimeout,
  InvalidArgument,
  LibraryNotAllowed,
  LibraryLoadFailed,
  SymbolNotFound,
  MemoryFault,
  StaleHandle,
  ResourceExhausted,
  SessionClosed,
  UntrustedServer,
  PrivateServerFailed,
  errorFromProto,
  invalid,
  internal,
};
