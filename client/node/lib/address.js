'use strict';
// Where the client connects: the default address every ffibox client and ffiboxd agree on
// (docs/configuration.md), and the checks of a unix socket made before anything is sent.
//
// A unix socket has no TLS: another local user who creates the socket first would receive
// the arguments and could forge the results. So a unix address is trusted only when its
// directory is a real directory owned by you or root and writable by nobody else, and the
// socket file is owned by you or root: then only you or root can have bound it. The Python
// and C++ clients also ask the kernel who listens (SO_PEERCRED); Node cannot read that
// without a native addon, so this client refuses `unix-abstract:` addresses (which have no
// file to check) instead of trusting them unchecked.
const fs = require('node:fs');
const path = require('node:path');
const { FfiboxError, InvalidArgument, UntrustedServer } = require('./errors');

const RETRY_INTERVAL_MS = 20;

/** The default address: FFIBOX_ADDRESS, else the socket of root's or your own ffiboxd. */
function defaultAddress() {
  if (process.env.FFIBOX_ADDRESS) return process.env.FFIBOX_ADDRESS;
  const uid = process.geteuid();
  if (uid === 0) return 'unix:/run/ffibox/ffiboxd.sock';
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime && runtime.startsWith('/')) return `unix:${runtime}/ffibox/ffiboxd.sock`;
  return `unix:/tmp/ffibox-${uid}/ffiboxd.sock`;
}

function notListening(address, why) {
  return new FfiboxError(`UNAVAILABLE: no ffiboxd at ${address}: ${why}`, 'UNAVAILABLE');
}

function youOrRoot(me) {
  return me === 0 ? 'you (root)' : `you (uid ${me}) or root`;
}

function refuse(address, why) {
  return new UntrustedServer(`PERMISSION_DENIED: refusing ${address}: ${why}`);
}

function mode4(mode) {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

function checkDirectory(address, directory, me) {
  let st;
  try {
    st = fs.lstatSync(directory);
  } catch (error) {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') {
      throw notListening(address, `directory ${directory} does not exist`);
    }
    throw refuse(address, `cannot inspect directory ${directory}: ${error.message}`);
  }
  if (st.isSymbolicLink()) {
    throw refuse(address, `directory ${directory} is a symbolic link; name the real directory`);
  }
  if (!st.isDirectory()) throw refuse(address, `${directory} is not a directory`);
  if (st.uid !== me && st.uid !== 0) {
    throw refuse(address,
      `directory ${directory} is owned by uid ${st.uid}, not by ${youOrRoot(me)}`);
  }
  if (st.mode & 0o022) {
    throw refuse(address, `directory ${directory} is writable by other users ` +
      `(mode ${mode4(st.mode)}), so anyone could have put the socket there`);
  }
}

function checkSocketFile(address, socketPath, me) {
  let st;
  try {
    st = fs.lstatSync(socketPath);
  } catch (error) {
    if (error.code === 'ENOENT') throw notListening(address, `${socketPath} does not exist`);
    throw refuse(address, `cannot inspect ${socketPath}: ${error.message}`);
  }
  if (!st.isSocket()) throw refuse(address, `${socketPath} is not a socket`);
  if (st.uid !== me && st.uid !== 0) {
    throw refuse(address,
      `socket ${socketPath} is owned by uid ${st.uid}, not by ${youOrRoot(me)}`);
  }
}

/**
 * The socket path of a `unix:` address, null for other addresses. Throws InvalidArgument
 * for a unix address gRPC would read differently (with %, ? or #, or a host), and refuses
 * `unix-abstract:` (see the top of this file).
 */
function unixPath(address) {
  if (address.startsWith('unix-abstract:')) {
    throw refuse(address, 'the Node client cannot check who listens on an abstract socket ' +
      '(no SO_PEERCRED in Node); use a unix:PATH socket');
  }
  if (!address.startsWith('unix:')) return null;
  let socketPath = address.slice('unix:'.length);
  if (socketPath.startsWith('///')) {
    socketPath = socketPath.slice(2);
  } else if (socketPath.startsWith('//')) {
    throw new InvalidArgument(
      `INVALID_ARGUMENT: unix address with a host: ${address}; write unix:/PATH`,
      'INVALID_ARGUMENT');
  }
  if (!socketPath || /[%?#]/.test(socketPath)) {
    throw new InvalidArgument('INVALID_ARGUMENT: unsupported unix socket address (empty, or ' +
      `with '%', '?' or '#'): ${address}`, 'INVALID_ARGUMENT');
  }
  return socketPath;
}

/**
 * Checks that the unix socket of gRPC target `address` is yours or root's (other addresses
 * pass). Rejects with UntrustedServer naming the path and its owner or mode when a check
 * fails, and with code UNAVAILABLE when the socket does not appear within `timeoutMs`.
 */
async function checkUnixServer(address, timeoutMs) {
  const socketPath = unixPath(address);
  if (socketPath === null) return;
  const me = process.geteuid();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      checkDirectory(address, path.dirname(socketPath) || '.', me);
      checkSocketFile(address, socketPath, me);
      return;
    } catch (error) {
      if (error instanceof UntrustedServer) throw error;
      if (Date.now() + RETRY_INTERVAL_MS >= deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_INTERVAL_MS));
  }
}

module.exports = { defaultAddress, checkUnixServer };
