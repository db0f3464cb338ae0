'use strict';
// ffibox for Node: call native libraries inside ffibox's jailed workers.
//
//   const ffibox = require('ffibox');
//   const client = await ffibox.connect();
//   const session = await client.session();
//   const libm = await session.load('libm.so.6');
//   const cos = await libm.func('double cos(double)');
//   await cos(0);  // 1
//
// docs/node.md describes the API.
const { connect, Client } = require('./client');
const { defaultAddress } = require('./address');
const { Session } = require('./session');
const errors = require('./errors');
const types = require('./types');

module.exports = {
  connect,
  defaultAddress,
  Client,
  Session,
  RemotePointer: types.RemotePointer,
  struct: types.struct,
  union: types.union,
  pointer: types.pointer,
  buffer: types.buffer,
  array: types.array,
  callback: types.callback,
  typed: types.typed,
  ...errors,
};
