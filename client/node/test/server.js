'use strict';
// A real ffiboxd for the tests, built by Bazel (scripts/test.sh builds it first):
// //server:ffiboxd, //server:ffibox-worker and the test libraries under bazel-bin.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(ROOT, 'bazel-bin');
const TEST_LIB = path.join(BIN, 'tests', 'testlibs', 'libffibox_test.so');
const PROBE_LIB = path.join(BIN, 'tests', 'testlibs', 'libffibox_probe.so');

/** A private 0700 directory, removed by the caller. */
function privateDirectory(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o700);
  return dir;
}

/**
 * Starts ffiboxd with `flags` (default: a unix socket in a private directory) and
 * `extraFlags` (limits, say) and resolves
 * with {address, stop()} once it prints "listening on"; `address` is the unix address, or
 * the first TCP address it printed when `flags` name one. Rejects with ffiboxd's own words
 * when it does not start. An ordinary user's server waives the cgroup layer, which such a
 * user usually cannot have (as the Python client's private server does).
 */
function startServer(flags = null, extraFlags = []) {
  const dir = privateDirectory('ffibox-node-');
  const unix = `unix:${path.join(dir, 'ffiboxd.sock')}`;
  const args = ['--allow_root=/', ...(flags || [`--listen=${unix}`]), ...extraFlags];
  if (process.geteuid() !== 0) args.push('--waive_jail_layer=cgroup');
  const child = spawn(path.join(BIN, 'server', 'ffiboxd'), args,
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (data) => {
    if (stderr.length < 4096) stderr += data;
  });
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      fs.rmSync(dir, { recursive: true, force: true });
      resolve();
      return;
    }
    child.once('exit', () => {
      fs.rmSync(dir, { recursive: true, force: true });
      resolve();
    });
    child.kill('SIGTERM');
  });
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error('ffiboxd did not start in 20 s')), 20000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`ffiboxd exited (${code}) before listening: ${stderr}`));
    });
    lines.once('line', (line) => {
      clearTimeout(timer);
      const match = line.match(/listening on (\S+)/);
      if (!match) {
        child.kill('SIGKILL');
        reject(new Error(`ffiboxd did not start: ${line}`));
        return;
      }
      const tcp = line.match(/on (\d+\.\d+\.\d+\.\d+:\d+)/);
      resolve({ address: flags && tcp ? tcp[1] : unix, dir, stop, process: child });
    });
  });
}

module.exports = { ROOT, BIN, TEST_LIB, PROBE_LIB, privateDirectory, startServer };
