'use strict';
// connect(): a gRPC channel to one ffiboxd (or several behind gRPC's own round_robin load
// balancing, health-checked: lib/health.js), checked before anything is sent, and the
// sessions made over it.
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { checkUnixServer, defaultAddress } = require('./address');
const { knownOptions } = require('./arguments');
const { FfiboxError, InvalidArgument, SessionClosed, UntrustedServer } = require('./errors');
const { healthRoundRobinConfig } = require('./health');
const { privateServer } = require('./private');
const { Session } = require('./session');

// The proto: packed with the package (npm pack copies it), else the repository's.
function protoPath() {
  const packed = path.join(__dirname, '..', 'proto', 'ffibox.proto');
  if (fs.existsSync(packed)) return packed;
  return path.join(__dirname, '..', '..', '..', 'proto', 'ffibox', 'v1', 'ffibox.proto');
}

let service = null;
function ffiboxService() {
  if (service === null) {
    const definition = protoLoader.loadSync(protoPath(), {
      keepCase: true, longs: String, enums: String, defaults: false, arrays: true, oneofs: true,
    });
    service = grpc.loadPackageDefinition(definition).ffibox.v1.Ffibox;
  }
  return service;
}

function readPem(value) {
  if (value === undefined || value === null) return null;
  return Buffer.isBuffer(value) ? value : fs.readFileSync(value);
}

function credentialsFor(address, tls) {
  if (!tls) return grpc.credentials.createInsecure();
  if (address.startsWith('unix')) {
    throw new InvalidArgument('INVALID_ARGUMENT: TLS is for TCP addresses; a unix socket is ' +
      'checked by its owner instead', 'INVALID_ARGUMENT');
  }
  return grpc.credentials.createSsl(readPem(tls.ca), readPem(tls.key), readPem(tls.cert));
}

class Client {
  /** Use connect(). */
  constructor(address, grpcClient, token) {
    this.address = address;
    this._grpc = grpcClient;
    this._token = token;
    // The private ffiboxd this client uses ({address, pid, directory, logPath}), else null.
    this.privateServer = null;
    this._sessions = new Set();  // the sessions whose streams have not ended
    this._closed = false;
  }

  /**
   * A new session (its own worker). `timeoutMs`: the default per-call deadline; `restart`
   * (default true): replace a dead worker on the next call; `memoryLimit`: bytes;
   * `requireJail`: jail layers the workers must have, else JAIL_UNAVAILABLE;
   * `answerMarginMs` (default 10000): how much longer than a request's deadline (the call's
   * timeout; none for the open) the client waits for the server's answer before it ends the
   * session with code DEADLINE_EXCEEDED. Rejects with SessionClosed once the client is closed.
   */
  session(options = {}) {
    if (this._closed) {
      return Promise.reject(new SessionClosed('SESSION_CLOSED: the client was closed',
        'SESSION_CLOSED'));
    }
    const metadata = new grpc.Metadata();
    if (this._token) metadata.set('authorization', `Bearer ${this._token}`);
    let stream;
    try {
      stream = this._grpc.Session(metadata);
    } catch (error) {
      return Promise.reject(new FfiboxError(`UNAVAILABLE: no session stream: ${error.message}`,
        'UNAVAILABLE'));
    }
    const session = new Session(stream);
    this._sessions.add(session);
    session._whenStreamDone = () => this._sessions.delete(session);
    return session._open(options === null ? {} : options);
  }

  /**
   * Closes the channel and ends every session opened on it, at once: their requests still
   * waiting reject with SessionClosed. Nothing of the client keeps Node running afterwards.
   */
  close() {
    this._closed = true;
    for (const session of this._sessions) session._endWithClient();
    this._sessions.clear();
    this._grpc.close();
  }
}

// The service health checks ask about, as in the C++ and Python clients.
const FFIBOX_SERVICE = 'ffibox.v1.Ffibox';

// gRPC keepalive, as in core/keepalive.h: while a session is open the client pings every
// 30 s and ends the connection when a ping is not acknowledged within 20 s, so that a server
// that stopped answering (its host gone, its process stopped) fails the requests in flight
// with UNAVAILABLE even when their own deadline is far away.
const KEEPALIVE_MS = 30000;
const KEEPALIVE_TIMEOUT_MS = 20000;

// What connect takes.
const CONNECT_OPTIONS = ['address', 'tls', 'token', 'timeoutMs', 'keepaliveMs',
  'keepaliveTimeoutMs', 'healthCheck'];

function keepaliveOptions(options) {
  const keepalive = { time: KEEPALIVE_MS, timeout: KEEPALIVE_TIMEOUT_MS };
  for (const [name, key] of [['keepaliveMs', 'time'], ['keepaliveTimeoutMs', 'timeout']]) {
    if (options[name] === undefined) continue;
    if (!Number.isInteger(options[name]) || options[name] < 1) {
      throw new InvalidArgument(`INVALID_ARGUMENT: ${name} must be a whole number of ` +
        `milliseconds >= 1, not ${options[name]}`, 'INVALID_ARGUMENT');
    }
    keepalive[key] = options[name];
  }
  return keepalive;
}

function openChannel(address, tls, keepalive, healthCheck) {
  const channelOptions = {
    'grpc.max_receive_message_length': -1,
    'grpc.keepalive_time_ms': keepalive.time,
    'grpc.keepalive_timeout_ms': keepalive.timeout,
  };
  if (!address.startsWith('unix')) {
    const policy = healthCheck ? healthRoundRobinConfig(FFIBOX_SERVICE) : { round_robin: {} };
    channelOptions['grpc.service_config'] = JSON.stringify({ loadBalancingConfig: [policy] });
    // The policy above is the client's; DNS TXT records do not override it.
    channelOptions['grpc.service_config_disable_resolution'] = 1;
  }
  const Ffibox = ffiboxService();
  return new Ffibox(address, credentialsFor(address, tls), channelOptions);
}

/** Resolves once `grpcClient` answers within `timeoutMs`, else closes it and rejects. */
function waitForServer(grpcClient, address, timeoutMs) {
  return new Promise((resolve, reject) => {
    grpcClient.waitForReady(Date.now() + timeoutMs, (error) => {
      if (!error) return resolve();
      grpcClient.close();
      reject(new FfiboxError(`UNAVAILABLE: no ffiboxd answers at ${address}: ${error.message}`,
        'UNAVAILABLE'));
    });
  });
}

/**
 * A client of the ffiboxd at `options.address`: `unix:/path` (checked to be yours or
 * root's before anything is sent), `host:port`, or any gRPC target naming several servers
 * (`dns:///name:port`, `ipv4:10.0.0.1:7000,10.0.0.2:7000`), which are balanced
 * round_robin, one session per stream, new sessions going only to servers whose
 * grpc.health.v1 status for ffibox.v1.Ffibox is SERVING (unless `healthCheck` is false).
 * Without an address: FFIBOX_ADDRESS; else the default socket when a server answers there;
 * else this process's private ffiboxd (lib/private.js), started on first use. `tls`: {ca,
 * cert, key} (PEM Buffers or file paths) for TCP; `token`: the bearer token; `timeoutMs`
 * (default 2000): how long to wait for a server (a SERVING one, for a health-checked TCP
 * target); `keepaliveMs` / `keepaliveTimeoutMs` (default 30000 / 20000): while a session is
 * open the client pings the server that often and ends the connection, failing the requests
 * in flight with UNAVAILABLE, when a ping is not acknowledged in time (ffiboxd takes pings
 * as often as once a second). Rejects with UntrustedServer for another user's socket, with
 * InvalidArgument for a token to a TCP target without `tls` (nothing is sent), with code
 * UNAVAILABLE when nothing answers, and with PrivateServerFailed when the private server
 * does not start.
 */
async function connect(options = {}) {
  knownOptions(options, CONNECT_OPTIONS, 'connect option');
  const timeoutMs = options.timeoutMs === undefined ? 2000 : options.timeoutMs;
  const keepalive = keepaliveOptions(options);
  if (options.address || process.env.FFIBOX_ADDRESS) {
    const address = options.address || defaultAddress();
    if (options.token && !options.tls && !address.startsWith('unix')) {
      throw new InvalidArgument('INVALID_ARGUMENT: a bearer token is sent to a TCP target only ' +
        `over TLS; pass tls to reach ${address} (ffiboxd serves TCP only with TLS)`,
      'INVALID_ARGUMENT');
    }
    await checkUnixServer(address, timeoutMs);
    const grpcClient = openChannel(address, options.tls, keepalive, options.healthCheck !== false);
    await waitForServer(grpcClient, address, timeoutMs);
    return new Client(address, grpcClient, options.token);
  }
  const address = defaultAddress();
  let listening = true;
  try {
    await checkUnixServer(address, 0);
  } catch (error) {
    if (error instanceof UntrustedServer) throw error;
    listening = false;  // nothing there: start a private server
  }
  if (listening) {
    const grpcClient = openChannel(address, options.tls, keepalive);
    try {
      await waitForServer(grpcClient, address, timeoutMs);
      return new Client(address, grpcClient, options.token);
    } catch {
      // a stale socket: start a private server
    }
  }
  const server = await privateServer();
  await checkUnixServer(server.address, timeoutMs);
  const grpcClient = openChannel(server.address, options.tls, keepalive);
  await waitForServer(grpcClient, server.address, timeoutMs);
  const client = new Client(server.address, grpcClient, options.token);
  client.privateServer = server;
  return client;
}

module.exports = { connect, Client };
