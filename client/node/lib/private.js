'use strict';
// The private ffiboxd: started by connect() given no address when FFIBOX_ADDRESS is unset
// and nothing answers at the default socket, on an owner-only unix socket, and tied to
// this process's life (as the Python client's, client/python/ffibox/_server.py).
//
// It runs as the user, for the user: it may load any library the user can read (the broker
// opens the file and hands the worker its descriptor), while each worker stays fully jailed.
// Its log is `ffiboxd.log` in its private directory; a failed start rejects with
// PrivateServerFailed carrying the log's last lines.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { PrivateServerFailed } = require('./errors');

const START_TIMEOUT_MS = 30000;
const LOG_TAIL_LINES = 20;

function executable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function onPath(name) {
  for (const dir of (process.env.PATH || '').split(':')) {
    if (dir && executable(path.join(dir, name))) return path.join(dir, name);
  }
  return null;
}

/**
 * ffiboxd via FFIBOX_SERVER; then, in a checkout, the checkout's own build output and then
 * PATH (its client and its server are built from one revision, and an installed ffiboxd
 * must not stand in for the one under test); for an installed package, PATH and then
 * /usr/local/bin (scripts/install.sh's default prefix). Throws PrivateServerFailed naming
 * the places looked at.
 */
function findServerBinary() {
  const candidates = [];
  if (process.env.FFIBOX_SERVER) candidates.push(process.env.FFIBOX_SERVER);
  const found = onPath('ffiboxd');
  const repo = path.resolve(__dirname, '..', '..', '..');
  if (fs.existsSync(path.join(repo, 'WORKSPACE'))) {
    candidates.push(path.join(repo, 'bazel-bin', 'server', 'ffiboxd'));
    if (found) candidates.push(found);
  } else {
    if (found) candidates.push(found);
    candidates.push('/usr/local/bin/ffiboxd');
  }
  const binary = candidates.find(executable);
  if (binary) return binary;
  throw new PrivateServerFailed(
    'UNAVAILABLE: ffibox: no server to start (no ffiboxd on PATH, nor at ' +
    `${candidates.join(', ')}): set FFIBOX_ADDRESS to a running ffiboxd, or FFIBOX_SERVER ` +
    'to the ffiboxd binary, or install it (scripts/install.sh, docs/install.md) or build it ' +
    '(bazel build //server:ffiboxd //server:ffibox-worker)', '');
}

/** The last `lines` lines of the file at `logPath`. */
function logTail(logPath, lines = LOG_TAIL_LINES) {
  try {
    const text = fs.readFileSync(logPath, 'utf8');
    return text.split('\n').slice(-lines - 1).join('\n');
  } catch (error) {
    return `(cannot read the log: ${error.message})`;
  }
}

/** A running private ffiboxd: its `address`, `pid`, `directory` and `logPath`. */
class PrivateServer {
  constructor(binary, directory, child) {
    this.binary = binary;
    this.directory = directory;
    this.address = `unix:${path.join(directory, 'ffiboxd.sock')}`;
    this.logPath = path.join(directory, 'ffiboxd.log');
    this.process = child;
    this.pid = child.pid;
  }

  /** Whether the server is still running. */
  running() {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  /** Terminates the server (and with it its workers) and removes its directory. */
  stop() {
    if (this.running()) this.process.kill('SIGTERM');
    fs.rmSync(this.directory, { recursive: true, force: true });
  }
}

/**
 * Starts ffiboxd `binary` in a new 0700 directory and resolves with its PrivateServer once
 * it prints "listening on"; rejects with PrivateServerFailed (the log's last lines) when it
 * exits or says anything else first, or does not start within START_TIMEOUT_MS.
 */
function startPrivateServer(binary) {
  let base = process.env.XDG_RUNTIME_DIR;
  try {
    if (!base) throw new Error('unset');
    fs.accessSync(base, fs.constants.W_OK);
  } catch {
    base = os.tmpdir();
  }
  const directory = fs.mkdtempSync(path.join(base, 'ffibox-private-'));
  fs.chmodSync(directory, 0o700);
  const address = `unix:${path.join(directory, 'ffiboxd.sock')}`;
  const logPath = path.join(directory, 'ffiboxd.log');
  // --allow_root=/ admits any library the user can open (ffiboxd opens it as the user); it
  // adds nothing to the workers' view. --exit_with_parent ends the server when this process
  // dies in any way, SIGKILL included. --allow_env=*: which variables reach the workers is
  // this process's choice. --scratch_root: sessions may ask for a scratch directory.
  // --waive_jail_layer=cgroup: an ordinary user's server usually may not make cgroups (it
  // does when it can: a waiver applies only to a layer the host cannot provide); the waiver
  // is reported in the session's waived jail layers. --private_directory: the server removes
  // this directory when it shuts down, killed parent included.
  const args = [`--listen=${address}`, '--allow_root=/', '--allow_env=*', '--exit_with_parent',
    `--private_directory=${directory}`, `--scratch_root=${path.join(directory, 'scratch')}`, '--waive_jail_layer=cgroup'];
  const log = fs.openSync(logPath, 'a', 0o600);
  let child;
  try {
    child = spawn(binary, args, { stdio: ['ignore', 'pipe', log] });
  } finally {
    fs.closeSync(log);
  }
  const server = new PrivateServer(binary, directory, child);
  const failed = (why) => {
    if (server.running()) server.process.kill('SIGKILL');
    const tail = logTail(logPath);  // the directory and its log are kept for the user
    return new PrivateServerFailed(`UNAVAILABLE: ffibox: the private ffiboxd (${binary}) ` +
      `did not start: ${why}\nits log (${logPath}) ends with:\n${tail}`, tail);
  };
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (fn) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(() => settle(() => reject(failed(
      `no "listening on" within ${START_TIMEOUT_MS / 1000} s`))), START_TIMEOUT_MS);
    child.once('error', (error) => settle(() => reject(failed(error.message))));
    child.once('exit', (code, signal) => settle(() => reject(failed(
      signal ? `killed by ${signal}` : `exited with status ${code}`))));
    const lines = readline.createInterface({ input: child.stdout });
    lines.once('line', (line) => settle(() => {
      if (!/listening on/.test(line)) {
        reject(failed(line.trim() || 'no output'));
        return;
      }
      // Keep draining stdout so the server never blocks on a full pipe, without holding
      // this process's event loop open: the server lives exactly as long as this process.
      child.stdout.on('data', () => {});
      child.stdout.unref();
      child.unref();
      resolve(server);
    }));
  });
}

let current = null;  // Promise of this process's PrivateServer
let started = null;  // the PrivateServer once it listens

/** This process's private server, started on first use (again if it has since died). */
function privateServer() {
  if (started && !started.running()) {
    started.stop();
    started = null;
    current = null;
  }
  if (!current) {
    current = (async () => startPrivateServer(findServerBinary()))();
    current.then((server) => { started = server; }, () => { current = null; });
  }
  return current;
}

process.on('exit', () => {
  // A normal exit; when this process is killed, --exit_with_parent ends the server (and it
  // removes its directory).
  if (started) started.stop();
});

module.exports = { findServerBinary, privateServer };
