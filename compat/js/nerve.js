// Starts `nerve serve` as a child process on a free port with its own temporary data directory, for one
// test file; `stop()` sends SIGTERM and waits for the exit code. Each test file gets its own broker, so
// files run in parallel. Nothing here asserts on timing: waits are bounded only so a broken broker fails a
// test instead of hanging the run.
'use strict';

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');

const REPO = path.resolve(__dirname, '..', '..');
const NERVE_BIN = process.env.NERVE_BIN || path.join(REPO, 'target', 'debug', 'nerve');
const PATIENCE_MS = 60_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function startNerve() {
  if (!fs.existsSync(NERVE_BIN)) {
    throw new Error(`${NERVE_BIN} does not exist: run \`cargo build -p nerve\` (compat/run does)`);
  }
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'nerve-compat-js-'));
  const logPath = path.join(workdir, 'nerve.log');
  // A port picked free can be taken before nerve binds it; then nerve exits and we try another.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const registryPort = await freePort();
    const httpPort = await freePort();
    const log = fs.openSync(logPath, 'a');
    const child = spawn(
      NERVE_BIN,
      [
        'serve', '--data-dir', path.join(workdir, 'data'), '--kafka-listen', `127.0.0.1:${port}`,
        '--registry-listen', `127.0.0.1:${registryPort}`, '--http-listen', `127.0.0.1:${httpPort}`,
      ],
      { stdio: ['ignore', log, log], env: { ...process.env, RUST_LOG: process.env.NERVE_LOG || 'info' } },
    );
    fs.closeSync(log);
    let exitCode = null;
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
      exitCode = code === null ? `signal ${signal}` : code;
      resolve(exitCode);
    }));
    const deadline = Date.now() + PATIENCE_MS;
    while (exitCode === null && Date.now() < deadline) {
      if (await canConnect(port) && await canConnect(registryPort) && await canConnect(httpPort)) {
        return {
          port,
          httpPort,
          bootstrap: `127.0.0.1:${port}`,
          logTail: () => tail(logPath),
          // SIGTERM, then wait; resolves to the exit code (or 'killed' if it never exits).
          async stop() {
            if (exitCode !== null) return exitCode;
            child.kill('SIGTERM');
            let timer;
            const timeout = new Promise((resolve) => {
              timer = setTimeout(() => resolve('timeout'), PATIENCE_MS);
            });
            const code = await Promise.race([exited, timeout]);
            clearTimeout(timer);
            if (code === 'timeout') {
              child.kill('SIGKILL');
              await exited;
              return 'killed';
            }
            if (code === 0) fs.rmSync(workdir, { recursive: true, force: true });
            return code;
          },
        };
      }
      await sleep(50);
    }
    if (exitCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }
  throw new Error(`nerve did not start; its log:\n${tail(logPath)}`);
}

function tail(file, lines = 60) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** A topic name no other test uses. */
function uniqueTopic(stem) {
  const clean = stem.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 60);
  return `${clean}-${crypto.randomBytes(4).toString('hex')}`;
}

/** Whether Debian's kcat is installed (compat/run requires it; a developer may lack it). */
function haveKcat() {
  return spawnSync('kcat', ['-V']).status === 0;
}

/**
 * Reads a whole topic back with kcat (`-C -e -J`, no consumer group), one object per record:
 * { partition, offset, key, payload, headers: [k, v, k, v, ...] }. kafkajs has no way to read without a
 * consumer group, and groups arrive with issue 4.
 */
function readWithKcat(bootstrap, topic) {
  const result = spawnSync(
    'kcat',
    ['-b', bootstrap, '-m', '30', '-q', '-C', '-t', topic, '-e', '-J', '-o', 'beginning'],
    { timeout: 2 * PATIENCE_MS, encoding: 'utf8' },
  );
  if (result.status !== 0) {
    throw new Error(`kcat exited ${result.status}: ${result.stderr}`);
  }
  return result.stdout.split('\n').filter((line) => line.trim()).map((line) => JSON.parse(line));
}

/**
 * Registers node:test hooks that start one broker for the test file, with a kafkajs client and a connected
 * admin, and stop it afterwards (asserting a clean exit on SIGTERM). Returns the object they fill in.
 */
function useBroker(clientId) {
  const { after, before } = require('node:test');
  const assert = require('node:assert/strict');
  const { Kafka, logLevel } = require('kafkajs');
  const ctx = { nerve: undefined, kafka: undefined, admin: undefined };
  before(async () => {
    ctx.nerve = await startNerve();
    ctx.kafka = new Kafka({ clientId, brokers: [ctx.nerve.bootstrap], logLevel: logLevel.NOTHING });
    ctx.admin = ctx.kafka.admin();
    await ctx.admin.connect();
  });
  after(async () => {
    if (ctx.admin) await ctx.admin.disconnect();
    if (ctx.nerve) {
      const code = await ctx.nerve.stop();
      assert.equal(code, 0, `nerve exited with ${code} after SIGTERM; log:\n${ctx.nerve.logTail()}`);
    }
  });
  return ctx;
}

module.exports = { startNerve, uniqueTopic, haveKcat, readWithKcat, useBroker, PATIENCE_MS };
