#!/usr/bin/env node
// Node.js driver smoke test for the tandem proxy: CRUD, a multi-batch cursor and the hello
// rewrite.
//
// Usage: node node_smoke.js [--direct] URI
//
// Through the proxy (the default) the server must look like a mongos: hello says msg
// "isdbgrid" and carries no replica-set fields, and the driver sees a sharded topology. With
// --direct the script runs against the upstream itself and checks instead that it does not look
// like a mongos, so that clients_test.go can compare the two runs.
//
// Exits 1 with a "FAIL: ..." line on the first failed check, prints "ok: N checks" otherwise.
'use strict';

const crypto = require('node:crypto');
const util = require('node:util');
const { MongoClient } = require('mongodb');

class Failure extends Error {}

let checks = 0;

function check(cond, what, got) {
  if (!cond) {
    throw new Failure(got === undefined ? what : `${what} (got ${util.inspect(got, { depth: 5 })})`);
  }
  checks++;
}

function sameJSON(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// sorted returns a copy of a plain document with its keys in order, to compare documents
// whatever the field order the server chose.
function sorted(doc) {
  if (doc === null || typeof doc !== 'object') return doc;
  return Object.fromEntries(Object.keys(doc).sort().map((k) => [k, doc[k]]));
}

async function run(uri, direct) {
  const client = new MongoClient(uri, {
    serverSelectionTimeoutMS: 10000,
    monitorCommands: true,
    appName: 'tandem-node-smoke',
  });
  let getMores = 0;
  client.on('commandStarted', (e) => {
    if (e.commandName === 'getMore') getMores++;
  });
  let topologyType = 'Unknown';
  client.on('topologyDescriptionChanged', (e) => {
    topologyType = e.newDescription.type;
  });

  const dbName = 'smoke_node_' + crypto.randomBytes(6).toString('hex');
  let connected = false;
  let dropped = false;
  try {
    await client.connect();
    connected = true;

    // Handshake: the proxy presents itself as a mongos.
    const hello = await client.db('admin').command({ hello: 1 });
    check(hello.ok === 1, 'hello ok', hello);
    if (direct) {
      check(hello.msg !== 'isdbgrid', 'direct hello must not say isdbgrid', hello);
    } else {
      check(hello.msg === 'isdbgrid', 'hello msg === "isdbgrid"', hello);
      for (const field of ['hosts', 'setName', 'me']) {
        check(!(field in hello), `hello has no ${JSON.stringify(field)} field`, hello);
      }
    }
    if (direct) {
      check(topologyType !== 'Sharded', 'direct topology is not Sharded', topologyType);
    } else {
      check(topologyType === 'Sharded', 'topology through the proxy is Sharded', topologyType);
    }

    const coll = client.db(dbName).collection('things');

    // insertOne and insertMany
    let res = await coll.insertOne({ _id: 'a0', kind: 'single', n: -1 });
    check(res.insertedId === 'a0', 'insertOne insertedId', res.insertedId);
    const docs = [];
    for (let i = 0; i < 25; i++) {
      docs.push({ _id: 'd' + String(i).padStart(2, '0'), kind: 'many', n: i, even: i % 2 === 0 });
    }
    res = await coll.insertMany(docs);
    check(res.insertedCount === 25, 'insertMany inserted 25', res.insertedCount);

    // A cursor in batches of 5: the driver must run getMore.
    const before = getMores;
    const got = [];
    for await (const d of coll.find({ kind: 'many' }).sort({ _id: 1 }).batchSize(5)) {
      got.push(d);
    }
    check(got.length === 25, 'cursor returned 25 documents', got.length);
    const ids = got.map((d) => d._id);
    check(sameJSON(ids, docs.map((d) => d._id)), 'cursor order by _id', ids);
    check(got.every((d, i) => d.n === i), 'cursor documents intact', got);
    check(getMores - before >= 4, 'cursor ran at least 4 getMore commands', getMores - before);

    // updateOne with $set
    res = await coll.updateOne({ _id: 'd03' }, { $set: { tag: 'x' } });
    check(res.matchedCount === 1 && res.modifiedCount === 1, 'updateOne matched/modified 1',
      [res.matchedCount, res.modifiedCount]);
    let doc = await coll.findOne({ _id: 'd03' });
    check(doc !== null && doc.tag === 'x' && doc.n === 3, 'updateOne result', doc);

    // replaceOne
    res = await coll.replaceOne({ _id: 'd04' }, { kind: 'replaced', n: 104 });
    check(res.matchedCount === 1 && res.modifiedCount === 1, 'replaceOne matched/modified 1',
      [res.matchedCount, res.modifiedCount]);
    doc = await coll.findOne({ _id: 'd04' });
    check(sameJSON(sorted(doc), sorted({ _id: 'd04', kind: 'replaced', n: 104 })), 'replaceOne result', doc);

    // deleteOne and deleteMany
    res = await coll.deleteOne({ _id: 'a0' });
    check(res.deletedCount === 1, 'deleteOne deleted 1', res.deletedCount);
    let n = await coll.countDocuments({});
    check(n === 25, 'count after deleteOne', n);
    // Even n in 0..24 is 13 documents, less d04 which was replaced.
    res = await coll.deleteMany({ kind: 'many', even: true });
    check(res.deletedCount === 12, 'deleteMany deleted 12', res.deletedCount);
    n = await coll.countDocuments({});
    check(n === 13, 'count after deleteMany', n);
    n = await coll.countDocuments({ kind: 'many' });
    check(n === 12, 'countDocuments with a filter', n);

    // aggregate $match + $sort
    const agg = await coll.aggregate([
      { $match: { kind: 'many', n: { $gte: 10 } } },
      { $sort: { n: -1 } },
    ]).toArray();
    const ns = agg.map((d) => d.n);
    check(sameJSON(ns, [23, 21, 19, 17, 15, 13, 11]), 'aggregate $match+$sort', ns);

    // findOneAndUpdate with upsert, then again on the upserted document
    doc = await coll.findOneAndUpdate(
      { _id: 'u1' },
      { $inc: { v: 1 }, $setOnInsert: { created: true } },
      { upsert: true, returnDocument: 'after' },
    );
    check(sameJSON(sorted(doc), sorted({ _id: 'u1', v: 1, created: true })), 'findOneAndUpdate upsert', doc);
    doc = await coll.findOneAndUpdate(
      { _id: 'u1' },
      { $inc: { v: 1 }, $setOnInsert: { created: false } },
      { upsert: true, returnDocument: 'after' },
    );
    check(sameJSON(sorted(doc), sorted({ _id: 'u1', v: 2, created: true })), 'findOneAndUpdate on existing', doc);
    n = await coll.countDocuments({});
    check(n === 14, 'count after upsert', n);

    // drop the database
    const ok = await client.db(dbName).dropDatabase();
    check(ok === true, 'dropDatabase', ok);
    dropped = true;
    const { databases } = await client.db('admin').admin().listDatabases({ nameOnly: true });
    const names = databases.map((d) => d.name);
    check(!names.includes(dbName), 'database dropped', names);
  } finally {
    if (connected && !dropped) {
      await client.db(dbName).dropDatabase().catch(() => {});
    }
    await client.close();
  }
}

async function main(argv) {
  const direct = argv.includes('--direct');
  const args = argv.filter((a) => a !== '--direct');
  if (args.length !== 1) {
    console.error('usage: node node_smoke.js [--direct] URI');
    return 2;
  }
  const mode = direct ? 'direct' : 'proxy';
  try {
    await run(args[0], direct);
  } catch (e) {
    if (e instanceof Failure) {
      console.error(`FAIL (node, ${mode}): ${e.message}`);
    } else {
      console.error(`FAIL (node, ${mode}): ${e && e.name}: ${e && e.message}`);
    }
    return 1;
  }
  console.log(`node ${mode}: all checks passed`);
  console.log(`ok: ${checks} checks`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e) => { console.error('FAIL (node): unexpected error:', e); process.exitCode = 1; },
);
