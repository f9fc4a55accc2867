// kafkajs 2.2.4's producer against `nerve serve`: keys, headers, explicit partitions and timestamps, each
// codec kafkajs has without plugins (none, gzip), idempotence, acks. kafkajs consumers always join a group
// (issue 4), so records are read back with kcat (`-C`, no group) and checked field by field, and also
// counted by the admin client's high watermarks.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { CompressionTypes } = require('kafkajs');
const { haveKcat, readWithKcat, uniqueTopic, useBroker } = require('../nerve');

const ctx = useBroker('compat-producer');

async function withProducer(options, fn) {
  const producer = ctx.kafka.producer(options);
  await producer.connect();
  try {
    return await fn(producer);
  } finally {
    await producer.disconnect();
  }
}

async function highWatermarks(topic) {
  const offsets = await ctx.admin.fetchTopicOffsets(topic);
  return offsets.sort((a, b) => a.partition - b.partition).map((p) => Number(p.high));
}

/** Record i: partition i % 3, a key, a growing value, two headers, an explicit timestamp. */
function sampleMessages(n, base) {
  return Array.from({ length: n }, (_, i) => ({
    partition: i % 3,
    key: `key-${i}`,
    value: `value-${i}-${'z'.repeat(i % 150)}`,
    headers: { trace: `t${i}`, kind: 'compat' },
    timestamp: String(base + i),
  }));
}

const CODECS = [
  ['none', CompressionTypes.None],
  ['gzip', CompressionTypes.GZIP],
];

for (const [name, codec] of CODECS) {
  test(`idempotent producer sends keys, headers and timestamps with codec ${name}, stored intact`, async (t) => {
    const topic = uniqueTopic(`producer-${name}`);
    await ctx.admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
    const base = Date.now() - 60_000;
    const messages = sampleMessages(120, base);

    // Three sends of 40: each yields one batch per partition.
    const results = [];
    await withProducer({ idempotent: true, maxInFlightRequests: 1 }, async (producer) => {
      for (let from = 0; from < messages.length; from += 40) {
        results.push(...(await producer.send({ topic, compression: codec, messages: messages.slice(from, from + 40) })));
      }
    });
    for (const r of results) assert.equal(r.errorCode, 0);
    // Base offsets per partition: 0, then advancing by the previous send's record count.
    for (const p of [0, 1, 2]) {
      const bases = results.filter((r) => r.partition === p).map((r) => r.baseOffset);
      const sizes = [0, 40, 80].map((from) => messages.slice(from, from + 40).filter((m) => m.partition === p).length);
      assert.deepEqual(bases, [String(0), String(sizes[0]), String(sizes[0] + sizes[1])]);
    }
    assert.deepEqual(await highWatermarks(topic), [40, 40, 40]);

    if (!haveKcat()) {
      t.skip('kcat is not installed: records counted, not read back');
      return;
    }
    const stored = readWithKcat(ctx.nerve.bootstrap, topic)
      .map((r) => ({
        partition: r.partition,
        offset: r.offset,
        key: r.key,
        value: r.payload,
        headers: r.headers,
        timestamp: r.ts,
        tstype: r.tstype,
      }))
      .sort((a, b) => a.partition - b.partition || a.offset - b.offset);
    const expected = [0, 1, 2].flatMap((p) =>
      messages
        .filter((m) => m.partition === p)
        .map((m, offset) => ({
          partition: p,
          offset,
          key: m.key,
          value: m.value,
          headers: ['trace', m.headers.trace, 'kind', 'compat'],
          timestamp: Number(m.timestamp),
          tstype: 'create',
        })),
    );
    assert.deepEqual(stored, expected);
  });
}

test('producer send to an unknown topic creates it through metadata', async () => {
  const topic = uniqueTopic('producer-autocreate');
  const [result] = await withProducer({}, (producer) => producer.send({ topic, messages: [{ value: 'hello' }] }));
  assert.equal(result.errorCode, 0);
  assert.equal(result.baseOffset, '0');
  assert.ok((await ctx.admin.listTopics()).includes(topic));
});

test('producer sendBatch writes to several topics in one request', async () => {
  const topics = [uniqueTopic('producer-batch-a'), uniqueTopic('producer-batch-b')];
  await ctx.admin.createTopics({ topics: topics.map((topic) => ({ topic })), waitForLeaders: true });
  const results = await withProducer({ idempotent: true }, (producer) =>
    producer.sendBatch({
      topicMessages: [
        { topic: topics[0], messages: [{ key: 'a', value: '1' }, { key: 'a', value: '2' }] },
        { topic: topics[1], messages: [{ key: 'b', value: '3' }] },
      ],
    }),
  );
  assert.deepEqual(
    results.map((r) => [r.topicName, r.partition, r.errorCode, r.baseOffset]).sort(),
    [[topics[0], 0, 0, '0'], [topics[1], 0, 0, '0']].sort(),
  );
  assert.deepEqual(await highWatermarks(topics[0]), [2]);
  assert.deepEqual(await highWatermarks(topics[1]), [1]);
});

test('producer with acks 0 gets no response yet its records are stored', async () => {
  const topic = uniqueTopic('producer-acks0');
  await ctx.admin.createTopics({ topics: [{ topic }], waitForLeaders: true });
  await withProducer({}, async (producer) => {
    for (let i = 0; i < 5; i++) {
      await producer.send({ topic, acks: 0, messages: [{ value: `fire-and-forget-${i}` }] });
    }
    // The connection still answers acknowledged requests in order afterwards.
    const [result] = await producer.send({ topic, acks: -1, messages: [{ value: 'acknowledged' }] });
    assert.equal(result.errorCode, 0);
    assert.equal(result.baseOffset, '5');
  });
  assert.deepEqual(await highWatermarks(topic), [6]);
});

test('producer with acks 1 is acknowledged like acks all', async () => {
  const topic = uniqueTopic('producer-acks1');
  const [result] = await withProducer({}, (producer) =>
    producer.send({ topic, acks: 1, messages: [{ key: 'k', value: 'v' }, { key: 'k', value: 'w' }] }),
  );
  assert.equal(result.errorCode, 0);
  assert.equal(result.baseOffset, '0');
  assert.deepEqual(await highWatermarks(topic), [2]);
});
