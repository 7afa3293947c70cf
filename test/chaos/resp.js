// A minimal RESP2 client for the harness's admin commands (PING, INFO, REPLICAOF): one command,
// one reply, on a fresh connection with a time limit. Deliberately not ioredis: an admin command
// must never queue behind a reconnect or be re-sent later.
'use strict';
const net = require('node:net');

const HOST = '127.0.0.1';

function encode(args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) out += `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`;
  return out;
}

/**
 * Sends `args` to 127.0.0.1:`port` and resolves with the reply (a string for simple, integer and
 * bulk replies; null for a null bulk); rejects on an error reply, a closed connection or timeout.
 */
function command(port, args, timeoutMs = 2_000) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let done = false;
    const sock = net.connect({ host: HOST, port });
    const finish = (error, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (error) reject(error);
      else resolve(value);
    };
    const timer = setTimeout(
      () => finish(new Error(`${args.join(' ')} on port ${port}: no answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
    sock.once('error', (e) => finish(e));
    sock.once('close', () => finish(new Error(`${args.join(' ')} on port ${port}: connection closed`)));
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const type = String.fromCharCode(buf[0]);
      const line = buf.subarray(1, eol).toString();
      if (type === '+' || type === ':') return finish(undefined, line);
      if (type === '-') return finish(new Error(`${args.join(' ')} on port ${port}: ${line}`));
      if (type === '$') {
        const length = Number(line);
        if (length < 0) return finish(undefined, null);
        if (buf.length < eol + 2 + length + 2) return;
        return finish(undefined, buf.subarray(eol + 2, eol + 2 + length).toString());
      }
      finish(new Error(`unsupported reply type ${JSON.stringify(type)}`));
    });
    sock.once('connect', () => sock.write(encode(args)));
  });
}

/** `INFO <section>` as an object of its `name:value` lines. */
async function info(port, section, timeoutMs) {
  const text = await command(port, ['INFO', section], timeoutMs);
  const out = {};
  for (const line of String(text).split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

module.exports = { HOST, command, info };
