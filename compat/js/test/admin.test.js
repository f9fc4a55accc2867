// kafkajs 2.2.4's admin client against `nerve serve`: topics created, listed, described, measured by
// offsets (also by timestamp) and deleted.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { ConfigResourceTypes } = require('kafkajs');
const { uniqueTopic, useBroker } = require('../nerve');

const ctx = useBroker('compat-admin');

async function produce(topic, messages) {
  const producer = ctx.kafka.producer({ idempotent: true });
  await producer.connect();
  try {
    return await producer.send({ topic, messages });
  } finally {
    await producer.disconnect();
  }
}

test('admin createTopics creates a topic with the requested partitions, led by broker 0', async () => {
  const topic = uniqueTopic('admin-create');
  assert.equal(await ctx.admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true }), true);

  assert.ok((await ctx.admin.listTopics()).includes(topic));
  const { topics } = await ctx.admin.fetchTopicMetadata({ topics: [topic] });
  assert.equal(topics.length, 1);
  assert.equal(topics[0].name, topic);
  const partitions = [...topics[0].partitions].sort((a, b) => a.partitionId - b.partitionId);
  assert.deepEqual(
    partitions.map((p) => [p.partitionId, p.partitionErrorCode, p.leader, p.replicas, p.isr]),
    [0, 1, 2].map((id) => [id, 0, 0, [0], [0]]),
  );
});

test('admin createTopics of an existing topic reports it was not created', async () => {
  const topic = uniqueTopic('admin-exists');
  assert.equal(await ctx.admin.createTopics({ topics: [{ topic }] }), true);
  // kafkajs turns TOPIC_ALREADY_EXISTS into `false`.
  assert.equal(await ctx.admin.createTopics({ topics: [{ topic }] }), false);
});

test('admin createTopics with validateOnly creates nothing', async () => {
  const topic = uniqueTopic('admin-validate');
  // waitForLeaders: false, or kafkajs asks Metadata for the (rightly) absent topic and fails on its
  // UNKNOWN_TOPIC_OR_PARTITION, against Kafka too.
  await ctx.admin.createTopics({ topics: [{ topic, numPartitions: 2 }], validateOnly: true, waitForLeaders: false });
  assert.ok(!(await ctx.admin.listTopics()).includes(topic));
});

test('admin createTopics rejects an invalid topic name', async () => {
  const topic = 'compat invalid name!';
  await assert.rejects(ctx.admin.createTopics({ topics: [{ topic }] }), (error) => {
    const causes = error.errors || [error];
    assert.ok(
      causes.some((e) => e.type === 'INVALID_TOPIC_EXCEPTION'),
      `expected INVALID_TOPIC_EXCEPTION, got ${causes.map((e) => e.type || e.message)}`,
    );
    return true;
  });
  assert.ok(!(await ctx.admin.listTopics()).includes(topic));
});

test('admin createTopics accepts topic configs by their Kafka names', async () => {
  const topic = uniqueTopic('admin-config');
  const created = await ctx.admin.createTopics({
    topics: [{ topic, configEntries: [{ name: 'retention.ms', value: '3600000' }, { name: 'cleanup.policy', value: 'delete' }] }],
  });
  assert.equal(created, true);
  assert.ok((await ctx.admin.listTopics()).includes(topic));
});

test('admin fetchTopicOffsets reports low and high watermarks per partition', async () => {
  const topic = uniqueTopic('admin-offsets');
  await ctx.admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  await produce(topic, [0, 1, 2, 3, 4].map((i) => ({ partition: 1, value: `v${i}` })));

  const offsets = (await ctx.admin.fetchTopicOffsets(topic)).sort((a, b) => a.partition - b.partition);
  assert.deepEqual(offsets, [
    { partition: 0, offset: '0', high: '0', low: '0' },
    { partition: 1, offset: '5', high: '5', low: '0' },
  ]);
});

test('admin fetchTopicOffsetsByTimestamp finds the first offset at or after the timestamp', async () => {
  const topic = uniqueTopic('admin-bytime');
  await ctx.admin.createTopics({ topics: [{ topic }], waitForLeaders: true });
  const base = Date.now() - 3_600_000;
  // Two sends, so two batches; timestamps one second apart.
  await produce(topic, [0, 1, 2].map((i) => ({ value: `a${i}`, timestamp: String(base + i * 1000) })));
  await produce(topic, [3, 4, 5].map((i) => ({ value: `b${i}`, timestamp: String(base + i * 1000) })));

  const at = async (ts) => (await ctx.admin.fetchTopicOffsetsByTimestamp(topic, ts)).map((p) => [p.partition, p.offset]);
  assert.deepEqual(await at(base - 1), [[0, '0']]);
  assert.deepEqual(await at(base + 1000), [[0, '1']]);
  assert.deepEqual(await at(base + 3500), [[0, '4']]);
  // Past every record the broker answers -1, which kafkajs replaces with the high watermark.
  assert.deepEqual(await at(base + 5001), [[0, '6']]);
});

test('admin deleteTopics removes the topic, and a recreated topic starts empty', async () => {
  const topic = uniqueTopic('admin-delete');
  await ctx.admin.createTopics({ topics: [{ topic }], waitForLeaders: true });
  await produce(topic, [{ value: 'before' }, { value: 'before' }]);

  await ctx.admin.deleteTopics({ topics: [topic] });
  assert.ok(!(await ctx.admin.listTopics()).includes(topic));

  assert.equal(await ctx.admin.createTopics({ topics: [{ topic }], waitForLeaders: true }), true);
  assert.deepEqual(await ctx.admin.fetchTopicOffsets(topic), [{ partition: 0, offset: '0', high: '0', low: '0' }]);
});

test('admin deleteTopics of an unknown topic fails with UNKNOWN_TOPIC_OR_PARTITION', async () => {
  const topic = uniqueTopic('admin-delete-unknown');
  // kafkajs retries this error; with no retries it surfaces at once, wrapped as the retries' cause.
  const impatient = ctx.kafka.admin({ retry: { retries: 0 } });
  await impatient.connect();
  try {
    await assert.rejects(impatient.deleteTopics({ topics: [topic] }), (error) => {
      const type = error.type || (error.cause && error.cause.type);
      assert.equal(type, 'UNKNOWN_TOPIC_OR_PARTITION', `got ${type}: ${error.message}`);
      return true;
    });
  } finally {
    await impatient.disconnect();
  }
});

test('admin fetchTopicMetadata of an unknown topic does not create it', async () => {
  // kafkajs's admin asks Metadata with allow_auto_topic_creation=false.
  const topic = uniqueTopic('admin-no-autocreate');
  const impatient = ctx.kafka.admin({ retry: { retries: 0 } });
  await impatient.connect();
  try {
    await assert.rejects(impatient.fetchTopicMetadata({ topics: [topic] }), (error) => {
      const type = error.type || (error.cause && error.cause.type);
      assert.equal(type, 'UNKNOWN_TOPIC_OR_PARTITION', `got ${type}: ${error.message}`);
      return true;
    });
  } finally {
    await impatient.disconnect();
  }
  assert.ok(!(await ctx.admin.listTopics()).includes(topic));
});

// ------------------------------------------------------------- partitions, configs, records, cluster

test('admin createPartitions grows a topic and the new partitions take records', async () => {
  const topic = uniqueTopic('admin-partitions');
  await ctx.admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });

  await ctx.admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] });

  const { topics } = await ctx.admin.fetchTopicMetadata({ topics: [topic] });
  assert.deepEqual(topics[0].partitions.map((p) => p.partitionId).sort(), [0, 1, 2]);
  const [result] = await produce(topic, [{ partition: 2, value: 'new' }]);
  assert.deepEqual([result.partition, result.errorCode, result.baseOffset], [2, 0, '0']);
});

test('admin createPartitions refuses to shrink a topic', async () => {
  const topic = uniqueTopic('admin-shrink');
  await ctx.admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  await assert.rejects(ctx.admin.createPartitions({ topicPartitions: [{ topic, count: 2 }] }), (error) => {
    const type = error.type || (error.cause && error.cause.type);
    assert.equal(type, 'INVALID_PARTITIONS', `got ${type}: ${error.message}`);
    return true;
  });
});

test('admin describeConfigs returns every topic config, set ones not default', async () => {
  const topic = uniqueTopic('admin-describe-configs');
  await ctx.admin.createTopics({
    topics: [{ topic, configEntries: [{ name: 'retention.ms', value: '3600000' }] }],
    waitForLeaders: true,
  });

  const { resources } = await ctx.admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    includeSynonyms: false,
  });
  assert.equal(resources.length, 1);
  assert.equal(resources[0].errorCode, 0);
  const entries = Object.fromEntries(resources[0].configEntries.map((e) => [e.configName, e]));
  for (const name of ['cleanup.policy', 'retention.ms', 'retention.bytes', 'segment.bytes', 'max.message.bytes']) {
    assert.ok(name in entries, `${name} is not described`);
  }
  assert.equal(entries['retention.ms'].configValue, '3600000');
  assert.equal(entries['retention.ms'].isDefault, false);
  assert.equal(entries['cleanup.policy'].configValue, 'delete');
  assert.equal(entries['cleanup.policy'].isDefault, true);
});

test('admin alterConfigs sets a topic config that describeConfigs then reports', async () => {
  const topic = uniqueTopic('admin-alter-configs');
  await ctx.admin.createTopics({ topics: [{ topic }], waitForLeaders: true });

  await ctx.admin.alterConfigs({
    validateOnly: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'segment.ms', value: '1000000' }] }],
  });

  const { resources } = await ctx.admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['segment.ms'] }],
    includeSynonyms: false,
  });
  assert.deepEqual(
    resources[0].configEntries.map((e) => [e.configName, e.configValue, e.isDefault]),
    [['segment.ms', '1000000', false]],
  );
});

test('admin deleteTopicRecords moves the low watermark', async () => {
  const topic = uniqueTopic('admin-delete-records');
  await ctx.admin.createTopics({ topics: [{ topic }], waitForLeaders: true });
  await produce(topic, Array.from({ length: 10 }, (_, i) => ({ value: `v${i}` })));

  // kafkajs looks the partition leaders up in its metadata cache: load the topic into it first.
  await ctx.admin.fetchTopicMetadata({ topics: [topic] });
  try {
    await ctx.admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '5' }] });
  } catch (error) {
    throw new Error(`${error.message}: ${JSON.stringify(error.partitions || error)}`);
  }

  assert.deepEqual(await ctx.admin.fetchTopicOffsets(topic), [{ partition: 0, offset: '10', high: '10', low: '5' }]);
});

test('admin describeCluster names the single broker as controller', async () => {
  const cluster = await ctx.admin.describeCluster();
  assert.equal(cluster.controller, 0);
  assert.deepEqual(cluster.brokers.map((b) => [b.nodeId, b.host, b.port]), [[0, '127.0.0.1', ctx.nerve.port]]);
  assert.ok(cluster.clusterId);
});
