'use strict';
// connect(): the default address, the unix socket checks made before anything is sent,
// typed errors when nothing answers, and TCP with mutual TLS, a bearer token and a target
// naming several servers, health-checked.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const grpc = require('@grpc/grpc-js');
const ffibox = require('..');
const { healthClientConstructor } = require('../lib/health');
const { TEST_LIB, privateDirectory, startServer } = require('./server');

function withEnv(changes, fn) {
  const saved = {};
  for (const [name, value] of Object.entries(changes)) {
    saved[name] = process.env[name];
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  try {
    return fn();
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

describe('default address', () => {
  test('FFIBOX_ADDRESS wins', () => {
    withEnv({ FFIBOX_ADDRESS: 'unix:/somewhere/else.sock' }, () => {
      assert.equal(ffibox.defaultAddress(), 'unix:/somewhere/else.sock');
    });
  });

  test('root, XDG_RUNTIME_DIR, then /tmp/ffibox-UID', () => {
    const uid = process.geteuid();
    withEnv({ FFIBOX_ADDRESS: undefined, XDG_RUNTIME_DIR: '/run/user/4242' }, () => {
      assert.equal(ffibox.defaultAddress(), uid === 0 ? 'unix:/run/ffibox/ffiboxd.sock'
        : 'unix:/run/user/4242/ffibox/ffiboxd.sock');
    });
    withEnv({ FFIBOX_ADDRESS: undefined, XDG_RUNTIME_DIR: undefined }, () => {
      assert.equal(ffibox.defaultAddress(), uid === 0 ? 'unix:/run/ffibox/ffiboxd.sock'
        : `unix:/tmp/ffibox-${uid}/ffiboxd.sock`);
    });
  });
});

describe('unix socket checks', () => {
  let dir;
  before(() => {
    dir = privateDirectory('ffibox-node-check-');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a socket in a directory others may write is refused before anything is sent',
    async () => {
      const open = path.join(dir, 'open');
      fs.mkdirSync(open);
      fs.chmodSync(open, 0o777);
      const socketPath = path.join(open, 'ffiboxd.sock');
      let connections = 0;
      const squatter = net.createServer(() => ++connections);
      await new Promise((resolve) => squatter.listen(socketPath, resolve));
      try {
        await assert.rejects(ffibox.connect({ address: `unix:${socketPath}` }), (error) => {
          assert.ok(error instanceof ffibox.UntrustedServer, error.stack);
          assert.equal(error.code, 'PERMISSION_DENIED');
          assert.match(error.message, /writable by other users \(mode 0777\)/);
          return true;
        });
        assert.equal(connections, 0);
      } finally {
        squatter.close();
      }
    });

  test('a path that is not a socket is refused', async () => {
    const file = path.join(dir, 'plain');
    fs.writeFileSync(file, '');
    await assert.rejects(ffibox.connect({ address: `unix:${file}` }),
      (error) => error instanceof ffibox.UntrustedServer && /is not a socket/.test(error.message));
  });

  test('abstract sockets are refused: Node cannot see who listens', async () => {
    await assert.rejects(ffibox.connect({ address: 'unix-abstract:ffibox-test' }),
      ffibox.UntrustedServer);
  });

  test('a misspelled option is refused, not read as the default address', async () => {
    await assert.rejects(ffibox.connect({ adress: `unix:${dir}/none.sock` }),
      (error) => error instanceof ffibox.InvalidArgument &&
        /unknown connect option adress \(known: address, /.test(error.message));
  });

  test('a socket that does not exist is UNAVAILABLE, saying so', async () => {
    await assert.rejects(ffibox.connect({ address: `unix:${dir}/none.sock`, timeoutMs: 300 }),
      (error) => error.code === 'UNAVAILABLE' && /does not exist/.test(error.message));
  });

  test('the default address is used without one', async () => {
    const server = await startServer();
    try {
      const client = await withEnv({ FFIBOX_ADDRESS: server.address }, () => ffibox.connect());
      assert.equal(client.address, server.address);
      const session = await client.session();
      assert.ok(session.opened.session_id.length > 0);
      session.close();
      client.close();
    } finally {
      await server.stop();
    }
  });
});

const TOKEN = 'node-client-token-0123456789';

function makeCertificates(dir) {
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  run(['req', '-x509', ...key, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj',
    '/CN=ca']);
  const leaf = (name, cn, extensions) => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), `${extensions}\n`);
    run(['req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    run(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key',
      '-CAcreateserial', '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`]);
  };
  leaf('server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' +
    'extendedKeyUsage=serverAuth');
  leaf('client', 'node.client', 'extendedKeyUsage=clientAuth');
  fs.writeFileSync(path.join(dir, 'ffiboxd.conf'),
    `identities { name: "node" bearer_token: "${TOKEN}" client_cert_name: "node.client" }\n`);
}

describe('a token over TCP', () => {
  test('is refused without TLS, before anything is sent', async () => {
    let connections = 0;
    const listener = net.createServer((socket) => {
      ++connections;
      socket.destroy();
    });
    await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
    try {
      const address = `127.0.0.1:${listener.address().port}`;
      await assert.rejects(
        ffibox.connect({ address, token: 'node-token-0123456789abcdef', timeoutMs: 500 }),
        (error) => {
          assert.ok(error instanceof ffibox.InvalidArgument, error.stack);
          assert.equal(error.code, 'INVALID_ARGUMENT');
          assert.match(error.message, /only over TLS/);
          assert.doesNotMatch(error.message, /node-token/);
          return true;
        });
      assert.equal(connections, 0);
    } finally {
      listener.close();
    }
  });
});

/**
 * A gRPC server that is not ffiboxd, with the ffiboxd's certificate in `dir`: its health
 * Watch runs `watch(call)`, and it has no ffibox service, so a session sent there fails
 * ("does not implement the method"). Resolves with {port, stop()}.
 */
async function healthStandIn(dir, watch) {
  const server = new grpc.Server();
  server.addService(healthClientConstructor().service, {
    Check: (call, callback) => callback(null, { status: 'NOT_SERVING' }),
    Watch: watch,
  });
  const read = (name) => fs.readFileSync(path.join(dir, name));
  const credentials = grpc.ServerCredentials.createSsl(read('ca.pem'),
    [{ cert_chain: read('server.pem'), private_key: read('server.key') }], false);
  const port = await new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (error, bound) => {
      if (error) reject(error);
      else resolve(bound);
    });
  });
  return { port, stop: () => server.forceShutdown() };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

describe('TCP with mutual TLS and a token', () => {
  let dir;
  // The test library, where others may search: a root ffiboxd hands a token's identity's
  // workers nothing in a directory closed to others (the build tree is in root's home).
  let libDir;
  let tenantLib;
  const servers = [];
  before(async () => {
    dir = privateDirectory('ffibox-node-tls-');
    makeCertificates(dir);
    libDir = fs.mkdtempSync('/tmp/ffibox-node-lib-');
    fs.chmodSync(libDir, 0o755);
    tenantLib = path.join(libDir, path.basename(TEST_LIB));
    fs.copyFileSync(TEST_LIB, tenantLib);
    fs.chmodSync(tenantLib, 0o755);
    for (let i = 0; i < 2; ++i) {
      servers.push(await startServer(['--listen=127.0.0.1:0',
        `--tls_cert_file=${dir}/server.pem`, `--tls_key_file=${dir}/server.key`,
        `--tls_client_ca_file=${dir}/ca.pem`, `--config=${dir}/ffiboxd.conf`,
        // Tells the servers apart: each session reports its server's default deadline.
        `--call_timeout_ms=${30001 + i}`]));
    }
  });
  after(async () => {
    for (const server of servers) await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(libDir, { recursive: true, force: true });
  });

  const tls = () => ({ ca: `${dir}/ca.pem`, cert: `${dir}/client.pem`, key: `${dir}/client.key` });

  test('a call over TLS with the token', async () => {
    const client = await ffibox.connect({ address: servers[0].address, tls: tls(), token: TOKEN });
    try {
      const session = await client.session();
      const lib = await session.load(tenantLib);
      assert.equal(await (await lib.func('int add_int(int, int)'))(20, 22), 42);
      session.close();
    } finally {
      client.close();
    }
  });

  test('without the token the session is UNAUTHENTICATED', async () => {
    const client = await ffibox.connect({ address: servers[0].address, tls: tls() });
    try {
      await assert.rejects(client.session(), (error) => {
        assert.ok(error instanceof ffibox.SessionClosed, error.stack);
        assert.equal(error.code, 'UNAUTHENTICATED');
        return true;
      });
    } finally {
      client.close();
    }
  });

  test('a target naming two servers spreads sessions over both', async () => {
    const ports = servers.map((s) => s.address.split(':')[1]);
    // The certificate names localhost and 127.0.0.1; both servers present it.
    const target = `ipv4:127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}`;
    const client = await ffibox.connect({ address: target, tls: tls(), token: TOKEN });
    try {
      // round_robin picks among the servers it has connected to; the second may still be
      // in its TLS handshake for the first sessions.
      const sessions = [];
      const servedBy = new Set();
      for (let i = 0; i < 40 && servedBy.size < 2; ++i) {
        const session = await client.session();
        sessions.push(session);
        servedBy.add(session.opened.call_timeout_ms);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.deepEqual([...servedBy].sort(), [30001, 30002]);
      const lib = await sessions[sessions.length - 1].load(tenantLib);
      assert.equal(await (await lib.func('int add_int(int, int)'))(1, 2), 3);
      for (const s of sessions) s.close();
    } finally {
      client.close();
    }
  });

  // Client-side health checks: a reachable server that is not SERVING is left out of the
  // rotation. Without them a third of these sessions would go to the stand-in and fail.
  const unhealthy = {
    'answers NOT_SERVING': (call) => call.write({ status: 'NOT_SERVING' }),
    'fails its health Watch': (call) => call.emit('error',
      { code: grpc.status.INTERNAL, details: 'health unknown' }),
  };
  for (const [what, watch] of Object.entries(unhealthy)) {
    test(`a server that ${what} gets no session`, async () => {
      const standIn = await healthStandIn(dir, watch);
      const ports = [...servers.map((s) => s.address.split(':')[1]), standIn.port];
      const target = `ipv4:${ports.map((port) => `127.0.0.1:${port}`).join(',')}`;
      const client = await ffibox.connect({ address: target, tls: tls(), token: TOKEN });
      try {
        const sessions = [];
        const servedBy = new Set();
        while (sessions.length < 12 || (servedBy.size < 2 && sessions.length < 40)) {
          const session = await client.session();
          sessions.push(session);
          servedBy.add(session.opened.call_timeout_ms);
          await sleep(25);
        }
        assert.deepEqual([...servedBy].sort(), [30001, 30002]);
        for (const s of sessions) s.close();
      } finally {
        client.close();
        standIn.stop();
      }
    });
  }

  test('a target whose only server is NOT_SERVING does not connect', async () => {
    const standIn = await healthStandIn(dir, unhealthy['answers NOT_SERVING']);
    try {
      await assert.rejects(ffibox.connect({
        address: `ipv4:127.0.0.1:${standIn.port}`, tls: tls(), token: TOKEN, timeoutMs: 1000,
      }), (error) => {
        assert.equal(error.code, 'UNAVAILABLE');
        return true;
      });
    } finally {
      standIn.stop();
    }
  });
});
