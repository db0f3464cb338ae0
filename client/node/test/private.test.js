'use strict';
// connect() with no address and nothing at the default socket starts a private ffiboxd,
// tied to the Node process's life: each test runs a child Node process with a clean
// environment (no FFIBOX_ADDRESS, XDG_RUNTIME_DIR an empty directory) and checks by pid
// that its server is gone once the child has exited normally or been killed.
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { after, before, describe, test } = require('node:test');
const { BIN } = require('./server');

const CLIENT = path.resolve(__dirname, '..');
const ORDINARY_USER = 'ffibox-t1';

// The child: connects with no address, calls cos(0.5) in libm and prints one JSON line;
// with argument "wait" it then stays alive until killed.
const CHILD = `
const ffibox = require(process.env.FFIBOX_NODE_CLIENT);
(async () => {
  const client = await ffibox.connect();
  const session = await client.session();
  const libm = await session.load('libm.so.6');
  const cos = await libm.func('double cos(double)');
  const again = await ffibox.connect();
  console.log(JSON.stringify({
    address: client.address, pid: client.privateServer && client.privateServer.pid,
    reused: again.privateServer === client.privateServer, cos: await cos(0.5),
  }));
  again.close();
  if (process.argv[1] === 'wait') return setInterval(() => {}, 1000);
  session.close();
  client.close();
})().catch((error) => {
  console.log(JSON.stringify({ error: error.name, code: error.code, message: error.message,
    logTail: error.logTail }));
});
`;

/** The uid, gid and a 0755 directory with ffiboxd, its worker and the jail's init that `user` can run. */
function userInstall(user) {
  const uid = Number(execFileSync('id', ['-u', user]).toString());
  const gid = Number(execFileSync('id', ['-g', user]).toString());
  const dir = fs.mkdtempSync(path.join('/tmp', 'ffibox-node-install-'));
  fs.chmodSync(dir, 0o755);
  fs.mkdirSync(path.join(dir, 'bin'));
  for (const name of ['ffiboxd', 'ffibox-worker', 'ffibox-init']) {
    fs.copyFileSync(path.join(BIN, 'server', name), path.join(dir, 'bin', name));
    fs.chmodSync(path.join(dir, 'bin', name), 0o755);
  }
  // The client as a package would install it (its proto beside lib/): the checkout may lie
  // where the user cannot read, e.g. under a root-only temporary directory.
  const client = path.join(dir, 'client');
  for (const part of ['package.json', 'lib', 'node_modules']) {
    fs.cpSync(path.join(CLIENT, part), path.join(client, part), { recursive: true });
  }
  fs.mkdirSync(path.join(client, 'proto'));
  fs.copyFileSync(path.join(CLIENT, '..', '..', 'proto', 'ffibox', 'v1', 'ffibox.proto'),
    path.join(client, 'proto', 'ffibox.proto'));
  execFileSync('chmod', ['-R', 'a+rX', client]);
  return { uid, gid, dir, client, server: path.join(dir, 'bin', 'ffiboxd') };
}

function ensureUser(user) {
  try {
    execFileSync('id', ['-u', user], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['-m', '-s', '/bin/sh', user], { stdio: 'ignore' });
  }
}

/**
 * Runs the child Node process as `as` ({uid, gid} or null for this user) with only PATH,
 * HOME, XDG_RUNTIME_DIR (a fresh empty directory), FFIBOX_SERVER and FFIBOX_NODE_CLIENT (the
 * client to require: the user's own copy when `as` has one) set. Resolves with
 * {result (the child's JSON line), child, runtime}.
 */
function runChild({ server, as = null, wait = false }) {
  const runtime = fs.mkdtempSync(path.join(os.tmpdir(), 'ffibox-node-runtime-'));
  fs.chmodSync(runtime, 0o700);
  if (as) fs.chownSync(runtime, as.uid, as.gid);
  const env = { PATH: '/usr/bin:/bin', HOME: '/tmp', XDG_RUNTIME_DIR: runtime,
    FFIBOX_SERVER: server, FFIBOX_NODE_CLIENT: (as && as.client) || CLIENT };
  const child = spawn(process.execPath, ['-e', CHILD, ...(wait ? ['wait'] : [])], {
    env, stdio: ['ignore', 'pipe', 'inherit'], ...(as ? { uid: as.uid, gid: as.gid } : {}),
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('the child printed nothing in 60 s'));
    }, 60000);
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      resolve({ result: JSON.parse(line), child, runtime });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the child exited (${code}) without a result`));
    });
  });
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Whether process `pid` is still running (not gone, not a zombie awaiting its reaper). */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function gone(pid, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return !alive(pid);
}

async function checkPrivateServer(options, how) {
  const { result, child, runtime } = await runChild({ ...options, wait: how === 'SIGKILL' });
  try {
    assert.equal(result.error, undefined, result.message);
    assert.equal(result.cos, 0.8775825618903728);
    assert.ok(Number.isInteger(result.pid) && result.pid > 0, JSON.stringify(result));
    assert.match(result.address, /^unix:.*\/ffibox-private-[^/]+\/ffiboxd\.sock$/);
    assert.ok(result.address.startsWith(`unix:${runtime}/`), result.address);
    assert.equal(result.reused, true, 'a second connect() must reuse the private server');
    assert.ok(alive(result.pid), 'the private server runs while its process does');
    if (how === 'SIGKILL') child.kill('SIGKILL');
    const status = await exited(child);
    if (how === 'SIGKILL') assert.equal(status.signal, 'SIGKILL');
    else assert.equal(status.code, 0);
    assert.ok(await gone(result.pid), `ffiboxd ${result.pid} outlived its Node process`);
    const directory = path.dirname(result.address.slice('unix:'.length));
    // Killed, Node removes nothing: the server removes its own directory as it shuts down.
    assert.ok(!fs.existsSync(directory), `${directory} was left behind`);
  } finally {
    if (alive(result.pid)) process.kill(result.pid, 'SIGKILL');
    fs.rmSync(runtime, { recursive: true, force: true });
  }
}

describe('a private server when nothing listens', () => {
  const server = path.join(BIN, 'server', 'ffiboxd');
  // root's default socket does not move with XDG_RUNTIME_DIR: a server there would be used.
  const rootDefaultTaken = process.geteuid() === 0 && fs.existsSync('/run/ffibox/ffiboxd.sock');

  test('connect() starts one; it ends when Node exits', { skip: rootDefaultTaken }, () =>
    checkPrivateServer({ server }, 'exit'));

  test('it ends when Node is killed (SIGKILL)', { skip: rootDefaultTaken }, () =>
    checkPrivateServer({ server }, 'SIGKILL'));

  test('a failed start rejects with the last lines of its log', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffibox-node-fake-'));
    try {
      const fake = path.join(dir, 'ffiboxd');
      fs.writeFileSync(fake, '#!/bin/sh\necho "ffiboxd: bad flag, cannot listen" >&2\nexit 3\n',
        { mode: 0o755 });
      const { result, child, runtime } = await runChild({ server: fake });
      await exited(child);
      fs.rmSync(runtime, { recursive: true, force: true });
      assert.equal(result.error, 'PrivateServerFailed');
      assert.equal(result.code, 'UNAVAILABLE');
      assert.match(result.message, /did not start: exited with status 3/);
      assert.match(result.message, /ffiboxd: bad flag, cannot listen/);
      assert.match(result.logTail, /ffiboxd: bad flag, cannot listen/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe(`as the ordinary user ${ORDINARY_USER}`, { skip: process.geteuid() !== 0 }, () => {
    let install;
    before(() => {
      ensureUser(ORDINARY_USER);
      install = userInstall(ORDINARY_USER);
    });
    after(() => fs.rmSync(install.dir, { recursive: true, force: true }));

    test('connect() starts one; it ends when Node exits', () =>
      checkPrivateServer({ server: install.server, as: install }, 'exit'));

    test('it ends when Node is killed (SIGKILL)', () =>
      checkPrivateServer({ server: install.server, as: install }, 'SIGKILL'));
  });
});
