#!/usr/bin/env python3
"""pymongo smoke test for the tandem proxy: CRUD, a multi-batch cursor and the hello rewrite.

Usage: pymongo_smoke.py [--direct] URI

Through the proxy (the default) the server must look like a mongos: hello says
msg "isdbgrid" and carries no replica-set fields, and pymongo sees a sharded topology.
With --direct the script runs against the upstream itself and checks instead that it
does not look like a mongos, so that clients_test.go can compare the two runs.

Exits 1 with a "FAIL: ..." line on the first failed check, prints "ok: N checks" otherwise.
"""

import sys
import uuid

from pymongo import MongoClient, ReturnDocument, monitoring


class Failure(Exception):
    pass


class GetMoreCounter(monitoring.CommandListener):
    def __init__(self):
        self.get_mores = 0

    def started(self, event):
        if event.command_name == "getMore":
            self.get_mores += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


checks = 0


def check(cond, what, got=None):
    global checks
    if not cond:
        raise Failure(what if got is None else "%s (got %r)" % (what, got))
    checks += 1


def run(uri, direct):
    counter = GetMoreCounter()
    client = MongoClient(
        uri,
        serverSelectionTimeoutMS=10000,
        event_listeners=[counter],
        appname="tandem-pymongo-smoke",
    )
    db_name = "smoke_py_" + uuid.uuid4().hex[:12]
    connected = dropped = False
    try:
        # Handshake: the proxy presents itself as a mongos.
        hello = client.admin.command("hello")
        connected = True
        check(hello.get("ok") == 1, "hello ok", hello)
        if direct:
            check(hello.get("msg") != "isdbgrid", "direct hello must not say isdbgrid", hello)
        else:
            check(hello.get("msg") == "isdbgrid", 'hello msg == "isdbgrid"', hello)
            for field in ("hosts", "setName", "me"):
                check(field not in hello, "hello has no %r field" % field, hello)
        topology = client.topology_description.topology_type_name
        if direct:
            check(topology != "Sharded", "direct topology is not Sharded", topology)
        else:
            check(topology == "Sharded", "topology through the proxy is Sharded", topology)

        coll = client[db_name]["things"]

        # insert_one and insert_many
        res = coll.insert_one({"_id": "a0", "kind": "single", "n": -1})
        check(res.inserted_id == "a0", "insert_one inserted_id", res.inserted_id)
        docs = [{"_id": "d%02d" % i, "kind": "many", "n": i, "even": i % 2 == 0} for i in range(25)]
        res = coll.insert_many(docs)
        check(len(res.inserted_ids) == 25, "insert_many inserted 25", len(res.inserted_ids))

        # A cursor in batches of 5: the driver must run getMore.
        before = counter.get_mores
        got = list(coll.find({"kind": "many"}).sort("_id", 1).batch_size(5))
        check(len(got) == 25, "cursor returned 25 documents", len(got))
        ids = [d["_id"] for d in got]
        check(ids == ["d%02d" % i for i in range(25)], "cursor order by _id", ids)
        check(all(d["n"] == i for i, d in enumerate(got)), "cursor documents intact", got)
        get_mores = counter.get_mores - before
        check(get_mores >= 4, "cursor ran at least 4 getMore commands", get_mores)

        # update_one with $set
        res = coll.update_one({"_id": "d03"}, {"$set": {"tag": "x"}})
        check(res.matched_count == 1 and res.modified_count == 1, "update_one matched/modified 1",
              (res.matched_count, res.modified_count))
        doc = coll.find_one({"_id": "d03"})
        check(doc is not None and doc.get("tag") == "x" and doc.get("n") == 3, "update_one result", doc)

        # replace_one
        res = coll.replace_one({"_id": "d04"}, {"kind": "replaced", "n": 104})
        check(res.matched_count == 1 and res.modified_count == 1, "replace_one matched/modified 1",
              (res.matched_count, res.modified_count))
        doc = coll.find_one({"_id": "d04"})
        check(doc == {"_id": "d04", "kind": "replaced", "n": 104}, "replace_one result", doc)

        # delete_one and delete_many
        res = coll.delete_one({"_id": "a0"})
        check(res.deleted_count == 1, "delete_one deleted 1", res.deleted_count)
        n = coll.count_documents({})
        check(n == 25, "count after delete_one", n)
        # Even n in 0..24 is 13 documents, less d04 which was replaced.
        res = coll.delete_many({"kind": "many", "even": True})
        check(res.deleted_count == 12, "delete_many deleted 12", res.deleted_count)
        n = coll.count_documents({})
        check(n == 13, "count after delete_many", n)
        n = coll.count_documents({"kind": "many"})
        check(n == 12, "count_documents with a filter", n)

        # aggregate $match + $sort
        got = list(coll.aggregate([
            {"$match": {"kind": "many", "n": {"$gte": 10}}},
            {"$sort": {"n": -1}},
        ]))
        ns = [d["n"] for d in got]
        check(ns == [23, 21, 19, 17, 15, 13, 11], "aggregate $match+$sort", ns)

        # find_one_and_update with upsert, then again on the upserted document
        doc = coll.find_one_and_update(
            {"_id": "u1"},
            {"$inc": {"v": 1}, "$setOnInsert": {"created": True}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        check(doc == {"_id": "u1", "v": 1, "created": True}, "find_one_and_update upsert", doc)
        doc = coll.find_one_and_update(
            {"_id": "u1"},
            {"$inc": {"v": 1}, "$setOnInsert": {"created": False}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        check(doc == {"_id": "u1", "v": 2, "created": True}, "find_one_and_update on existing", doc)
        n = coll.count_documents({})
        check(n == 14, "count after upsert", n)

        # drop the database
        client.drop_database(db_name)
        dropped = True
        names = client.list_database_names()
        check(db_name not in names, "database dropped", names)
    finally:
        if connected and not dropped:
            try:
                client.drop_database(db_name)
            except Exception:
                pass
        client.close()


def main(argv):
    args = argv[1:]
    direct = "--direct" in args
    args = [a for a in args if a != "--direct"]
    if len(args) != 1:
        print("usage: pymongo_smoke.py [--direct] URI", file=sys.stderr)
        return 2
    mode = "direct" if direct else "proxy"
    try:
        run(args[0], direct)
    except Failure as e:
        print("FAIL (pymongo, %s): %s" % (mode, e), file=sys.stderr)
        return 1
    except Exception as e:  # a driver or server error
        print("FAIL (pymongo, %s): %s: %s" % (mode, type(e).__name__, e), file=sys.stderr)
        return 1
    print("pymongo %s: all checks passed" % mode)
    print("ok: %d checks" % checks)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
