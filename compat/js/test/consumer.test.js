// kafkajs 2.2.4 consumers against `nerve serve`: every kafkajs consumer joins a group, so these cover the
// group protocol as kafkajs speaks it (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetCommit,
// OffsetFetch, LeaveGroup) and its admin's group calls.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { uniqueTopic, useBroker } = require('../nerve');

const PATIENCE_MS = 60_000;

const ctx = useBroker('compat-consumer');

/** Resolves once `predicate()` is true; rejects after PATIENCE_MS. */
async function waitFor(predicate, what) {
  const deadline = Date.now() + PATIENCE_MS;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('two group members read every record once and commit; the admin fetches the offsets and deletes the group', async () => {
  const topic = uniqueTopic('kafkajs-group');
  const groupId = `${topic}-group`;
  await ctx.admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  const producer = ctx.kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < 10; i += 1) messages.push({ partition: i % 2, value: `v${i}` });
  await producer.send({ topic, messages });
  await producer.disconnect();

  const seen = [];
  const members = [ctx.kafka.consumer({ groupId }), ctx.kafka.consumer({ groupId })];
  for (const member of members) {
    await member.connect();
    await member.subscribe({ topic, fromBeginning: true });
    await member.run({
      eachMessage: async ({ partition, message }) => {
        seen.push(`${partition}:${message.offset}:${message.value.toString()}`);
      },
    });
  }
  await waitFor(() => seen.length >= 10, 'all 10 records');
  assert.equal(new Set(seen).size, 10);
  for (const member of members) await member.disconnect();

  const offsets = await ctx.admin.fetchOffsets({ groupId, topics: [topic] });
  const committed = offsets[0].partitions.map((p) => [p.partition, p.offset]).sort();
  assert.deepEqual(committed, [[0, '5'], [1, '5']]);

  const groups = (await ctx.admin.listGroups()).groups.map((g) => g.groupId);
  assert.ok(groups.includes(groupId));
  await ctx.admin.deleteGroups([groupId]);
  assert.ok(!(await ctx.admin.listGroups()).groups.map((g) => g.groupId).includes(groupId));
});
