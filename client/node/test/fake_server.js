'use strict';
// A gRPC server with the ffibox service that is not ffiboxd, for what a real server does
// not do: answer with the wrong kind of value, or not at all. It listens on a unix socket in
// a private directory (so connect() trusts it), and answers each request of a session with
// what the test's `answer(request, stream)` returns: a Response without its id, or
// undefined for no answer (the test may write one later with `stream.write`).
const path = require('node:path');
const fs = require('node:fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { ROOT, privateDirectory } = require('./server');

const PROTO = path.join(ROOT, 'proto', 'ffibox', 'v1', 'ffibox.proto');

/** What ffiboxd would answer to `open` (the session's deadline as asked, else 30 s). */
function opened(request) {
  return {
    opened: {
      session_id: 'fake', call_timeout_ms: request.open.call_timeout_ms || 30000,
      max_message_bytes: String(16 << 20), jail_layers: ['seccomp'], union_members: true,
    },
  };
}

/**
 * Answers as ffiboxd would to open, load_library and resolve_function, and to
 * parse_declaration with the entry of `declarations` for the declaration's text
 * ({name, signature}); other requests get no answer.
 */
function ordinaryAnswer(declarations = {}) {
  return (request) => {
    switch (request.op) {
      case 'open': return opened(request);
      case 'load_library': return { library: { library: '1' } };
      case 'resolve_function': return { function: { function: '1' } };
      case 'parse_declaration':
        return { declaration: declarations[request.parse_declaration.declaration] };
      default: return undefined;
    }
  };
}

/**
 * Starts the server; resolves with {address, requests (every request received, in order),
 * sessionStreams, stop()}.
 */
async function startFakeServer(answer) {
  const definition = protoLoader.loadSync(PROTO, {
    keepCase: true, longs: String, enums: String, defaults: false, arrays: true, oneofs: true,
  });
  const { Ffibox } = grpc.loadPackageDefinition(definition).ffibox.v1;
  const dir = privateDirectory('ffibox-node-fake-');
  const address = `unix:${path.join(dir, 'ffiboxd.sock')}`;
  const requests = [];
  const sessionStreams = [];
  const server = new grpc.Server();
  server.addService(Ffibox.service, {
    Session: (stream) => {
      sessionStreams.push(stream);
      stream.on('data', (request) => {
        requests.push(request);
        const response = answer(request, stream);
        if (response !== undefined) stream.write({ id: request.id, generation: '1', ...response });
      });
      stream.on('end', () => stream.end());
      stream.on('error', () => {});
    },
  });
  await new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(),
      (error) => (error ? reject(error) : resolve()));
  });
  return {
    address,
    requests,
    sessionStreams,
    stop: () => {
      server.forceShutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { startFakeServer, ordinaryAnswer, opened };
