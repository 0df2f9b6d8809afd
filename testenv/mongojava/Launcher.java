package tandem.testenv;

import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.AbstractCursor;
import de.bwaldvogel.mongo.backend.Cursor;
import de.bwaldvogel.mongo.backend.CursorRegistry;
import de.bwaldvogel.mongo.backend.aggregation.Aggregation;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.bson.BsonTimestamp;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.exception.MongoServerError;
import de.bwaldvogel.mongo.oplog.NoopOplog;
import de.bwaldvogel.mongo.oplog.Oplog;

import io.netty.channel.Channel;

import org.h2.mvstore.MVStore;

/**
 * Starts mongo-java-server for tandem's change-stream tests and prints "PORT n" once it listens.
 *
 * <p>Usage: {@code java -cp classes:lib/* tandem.testenv.Launcher [DATA_FILE]}: an H2 file whose data
 * and oplog survive a restart, or nothing for an in-memory server.
 *
 * <p>The server's own oplog differs from MongoDB's in what the tests depend on, so this launcher
 * replaces it (see {@link MongoLikeOplog}) and reports wire version 17 (MongoDB 6.0), which the Go
 * driver v2 accepts. It also adds one command, {@code {tandemTrimOplog: 1}} on admin, that forgets
 * the oplog as a capped oplog forgets its oldest entries, so that a test can provoke
 * ChangeStreamHistoryLost.
 */
public final class Launcher {

    public static void main(String[] args) throws Exception {
        MVStore store = args.length > 0 ? new MVStore.Builder().fileName(args[0]).open() : new MVStore.Builder().open();
        Backend backend = new Backend(store);
        backend.version(new Version());
        MongoServer server = new MongoServer(backend);
        server.enableOplog();
        server.bind("127.0.0.1", 0);
        System.out.println("PORT " + server.getLocalAddress().getPort());
        System.out.flush();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.shutdownNow();
            backend.close();
        }));
        Thread.currentThread().join();
    }

    /** MongoDB 6.0's version and wire version. */
    static final class Version implements MongoVersion {
        @Override
        public List<Integer> getVersionArray() {
            return List.of(6, 0, 0);
        }

        @Override
        public int getWireVersion() {
            return 17;
        }
    }

    /**
     * The H2 backend with {@link MongoLikeOplog}, oplog entries for findAndModify (the server writes
     * none), and the trim command. Writes are serialized so that the look-up around a findAndModify
     * sees the document the command changes.
     */
    static final class Backend extends H2Backend {
        private final Object writes = new Object();
        private MongoLikeOplog mongoLike;

        Backend(MVStore store) {
            super(store);
        }

        @Override
        protected Oplog createOplog() {
            MongoDatabase local = resolveDatabase("local");
            @SuppressWarnings("unchecked")
            MongoCollection<Document> coll = (MongoCollection<Document>) local.resolveCollection(OPLOG_COLLECTION_NAME, false);
            if (coll == null) {
                @SuppressWarnings("unchecked")
                MongoCollection<Document> created = (MongoCollection<Document>) local.createCollectionOrThrowIfExists(OPLOG_COLLECTION_NAME);
                coll = created;
            }
            mongoLike = new MongoLikeOplog(this, coll, getCursorRegistry());
            return mongoLike;
        }

        @Override
        public Document handleCommand(Channel channel, String databaseName, String command, Document query) {
            if (command.equalsIgnoreCase("tandemTrimOplog")) {
                BsonTimestamp oldest = mongoLike.trim();
                Document reply = new Document("ok", 1.0);
                reply.put("oldest", oldest);
                return reply;
            }
            if (!isWrite(command)) {
                return super.handleCommand(channel, databaseName, command, query);
            }
            synchronized (writes) {
                if (command.equalsIgnoreCase("findAndModify")) {
                    return findAndModify(channel, databaseName, command, query);
                }
                return super.handleCommand(channel, databaseName, command, query);
            }
        }

        private static boolean isWrite(String command) {
            switch (command.toLowerCase()) {
                case "insert": case "update": case "delete": case "findandmodify": case "drop": case "dropdatabase":
                    return true;
                default:
                    return false;
            }
        }

        /**
         * Runs findAndModify and records what MongoDB records for it: an update or replace of the
         * matched document (only when it changed), its delete, or the insert of an upserted one.
         */
        private Document findAndModify(Channel channel, String databaseName, String command, Document query) {
            String collName = query.get(command).toString();
            String ns = databaseName + "." + collName;
            Document filter = query.containsKey("query") ? (Document) query.get("query") : new Document();
            Document before = first(databaseName, collName, filter, (Document) query.get("sort"));
            Document reply = super.handleCommand(channel, databaseName, command, query);
            boolean remove = Boolean.TRUE.equals(query.get("remove")) || Integer.valueOf(1).equals(query.get("remove"));
            if (before != null) {
                Object id = before.get("_id");
                if (remove) {
                    mongoLike.handleDelete(ns, filter, List.of(id));
                    return reply;
                }
                Document after = first(databaseName, collName, new Document("_id", id), null);
                if (after != null && !after.equals(before)) {
                    mongoLike.handleUpdate(ns, filter, (Document) query.get("update"), List.of(id));
                }
                return reply;
            }
            if (!remove && isTrue(query.get("upsert"))) {
                Document created = first(databaseName, collName, filter, (Document) query.get("sort"));
                if (created != null) {
                    mongoLike.handleInsert(ns, List.of(created));
                }
            }
            return reply;
        }

        private static boolean isTrue(Object v) {
            return Boolean.TRUE.equals(v) || (v instanceof Number && ((Number) v).intValue() != 0);
        }

        private Document first(String databaseName, String collName, Document filter, Document sort) {
            MongoCollection<?> coll = resolveDatabase(databaseName).resolveCollection(collName, false);
            if (coll == null) {
                return null;
            }
            Document q = new Document("query", filter);
            if (sort != null) {
                q.put("orderby", sort);
            }
            for (Document d : coll.handleQuery(q, 0, 1)) {
                return d.cloneDeeply();
            }
            return null;
        }
    }

    /**
     * An oplog whose change events follow MongoDB's documented format for what the tests use:
     * documentKey is {_id} for every operation (the server's own puts an update's spec there), a
     * replacement is a "replace" event with its fullDocument, an update carries updateDescription
     * (from $set and $unset only), every event has ns and wallTime, and dropping the collection
     * ends its stream with "drop" then "invalidate". A resume point older than the oldest entry
     * after a trim fails with ChangeStreamHistoryLost (286), as MongoDB's does once its capped
     * oplog has rolled past it.
     */
    static final class MongoLikeOplog implements Oplog {
        private final Backend backend;
        private final MongoCollection<Document> coll;
        private final CursorRegistry cursors;
        private final UUID ui = UUID.randomUUID();
        private final AtomicInteger inc = new AtomicInteger();

        MongoLikeOplog(Backend backend, MongoCollection<Document> coll, CursorRegistry cursors) {
            this.backend = backend;
            this.coll = coll;
            this.cursors = cursors;
            // After a restart on the same file, timestamps must go on growing within the second.
            coll.queryAllAsStream().map(MongoLikeOplog::ts).max(BsonTimestamp::compareTo)
                .ifPresent(t -> inc.set(t.getInc()));
        }

        private synchronized Document entry(String op, String ns) {
            Instant now = Instant.now();
            return new Document("ts", new BsonTimestamp(now, inc.incrementAndGet()))
                .append("t", 1L).append("v", 2L).append("op", op).append("ns", ns)
                .append("ui", ui).append("wall", now);
        }

        private boolean isOplog(String ns) {
            return coll.getFullName().equals(ns);
        }

        @Override
        public void handleInsert(String ns, List<Document> documents) {
            if (isOplog(ns)) {
                return;
            }
            for (Document d : documents) {
                coll.addDocument(entry("i", ns).append("o", d.cloneDeeply()).append("o2", new Document("_id", d.get("_id"))));
            }
        }

        @Override
        public void handleUpdate(String ns, Document selector, Document update, List<Object> ids) {
            if (isOplog(ns)) {
                return;
            }
            for (Object id : ids) {
                coll.addDocument(entry("u", ns).append("o", update == null ? new Document() : update.cloneDeeply())
                    .append("o2", new Document("_id", id)));
            }
        }

        @Override
        public void handleDelete(String ns, Document query, List<Object> ids) {
            if (isOplog(ns)) {
                return;
            }
            for (Object id : ids) {
                coll.addDocument(entry("d", ns).append("o", new Document("_id", id)));
            }
        }

        @Override
        public void handleDropCollection(String ns) {
            if (isOplog(ns)) {
                return;
            }
            String db = ns.substring(0, ns.indexOf('.'));
            coll.addDocument(entry("c", db + ".$cmd").append("o", new Document("drop", ns.substring(ns.indexOf('.') + 1))));
        }

        /** Forgets every entry, leaving a no-op entry as the oldest; returns its timestamp. */
        synchronized BsonTimestamp trim() {
            coll.deleteDocuments(new Document(), 0, NoopOplog.get());
            Document marker = entry("n", "").append("o", new Document("msg", "trimmed by tandemTrimOplog"));
            coll.addDocument(marker);
            return ts(marker);
        }

        private BsonTimestamp oldest() {
            return coll.queryAllAsStream().map(MongoLikeOplog::ts).min(BsonTimestamp::compareTo).orElse(null);
        }

        private boolean trimmed() {
            return coll.queryAllAsStream().anyMatch(d -> "n".equals(d.get("op")));
        }

        @Override
        public Cursor createCursor(Document changeStream, String ns, Aggregation aggregation) {
            Document resume = (Document) changeStream.get("startAfter");
            if (resume == null) {
                resume = (Document) changeStream.get("resumeAfter");
            }
            BsonTimestamp atTime = (BsonTimestamp) changeStream.get("startAtOperationTime");
            long after; // events strictly after this timestamp value
            BsonTimestamp from;
            if (resume != null) {
                Object data = resume.get("_data");
                if (!(data instanceof String)) {
                    throw new MongoServerError(260, "InvalidResumeToken", "resume token has no string _data");
                }
                try {
                    after = Long.parseUnsignedLong((String) data, 16);
                } catch (NumberFormatException e) {
                    throw new MongoServerError(260, "InvalidResumeToken", "cannot parse resume token " + data);
                }
                from = new BsonTimestamp(after);
            } else if (atTime != null) {
                after = atTime.getValue() - 1;
                from = atTime;
            } else {
                synchronized (this) {
                    after = new BsonTimestamp(Instant.now(), inc.get()).getValue();
                }
                from = null;
            }
            if (from != null && trimmed()) {
                BsonTimestamp oldest = oldest();
                if (oldest != null && from.compareTo(oldest) < 0) {
                    throw new MongoServerError(286, "ChangeStreamHistoryLost",
                        "Resume of change stream was not possible, as the resume point may no longer be in the oplog.");
                }
            }
            String db = ns.substring(0, ns.indexOf('.'));
            String collName = ns.substring(ns.indexOf('.') + 1);
            ChangeCursor c = new ChangeCursor(cursors.generateCursorId(), after,
                pos -> events(changeStream, aggregation, ns, db, collName, pos));
            cursors.add(c);
            return c;
        }

        private Stream<Document> events(Document changeStream, Aggregation aggregation, String ns, String db, String collName, long after) {
            List<Document> entries = coll.queryAllAsStream()
                .filter(d -> ts(d).getValue() > after)
                .filter(d -> ns.equals(d.get("ns")) || isDropOf(d, db, collName))
                .sorted((a, b) -> ts(a).compareTo(ts(b)))
                .collect(Collectors.toList());
            List<Document> out = new ArrayList<>();
            for (Document e : entries) {
                if ("c".equals(e.get("op"))) {
                    out.add(event(e, "drop", db, collName));
                    out.add(event(e, "invalidate", null, null));
                    break;
                }
                out.add(changeEvent(e, changeStream, db, collName));
            }
            return aggregation.runStagesAsStream(out.stream());
        }

        private static boolean isDropOf(Document d, String db, String collName) {
            return "c".equals(d.get("op")) && (db + ".$cmd").equals(d.get("ns"))
                && new Document("drop", collName).equals(d.get("o"));
        }

        private Document event(Document e, String type, String db, String collName) {
            Document ev = new Document("_id", new Document("_data", Long.toHexString(ts(e).getValue())))
                .append("operationType", type)
                .append("clusterTime", ts(e))
                .append("wallTime", e.get("wall"));
            if (db != null) {
                ev.append("ns", new Document("db", db).append("coll", collName));
            }
            return ev;
        }

        private Document changeEvent(Document e, Document changeStream, String db, String collName) {
            Document o = (Document) e.get("o");
            switch ((String) e.get("op")) {
                case "i":
                    return event(e, "insert", db, collName).append("fullDocument", o)
                        .append("documentKey", new Document("_id", o.get("_id")));
                case "d":
                    return event(e, "delete", db, collName).append("documentKey", new Document("_id", o.get("_id")));
                default: // "u"
                    Object id = ((Document) e.get("o2")).get("_id");
                    if (o.keySet().stream().noneMatch(k -> k.startsWith("$"))) {
                        Document full = new Document("_id", id);
                        o.forEach((k, v) -> {
                            if (!k.equals("_id")) {
                                full.put(k, v);
                            }
                        });
                        return event(e, "replace", db, collName).append("documentKey", new Document("_id", id))
                            .append("fullDocument", full);
                    }
                    Document ev = event(e, "update", db, collName).append("documentKey", new Document("_id", id))
                        .append("updateDescription", updateDescription(o));
                    if ("updateLookup".equals(changeStream.get("fullDocument"))) {
                        ev.append("fullDocument", lookUp(db, collName, id));
                    }
                    return ev;
            }
        }

        private static Document updateDescription(Document update) {
            Document set = update.get("$set") instanceof Document ? (Document) update.get("$set") : new Document();
            List<String> removed = new ArrayList<>();
            if (update.get("$unset") instanceof Document) {
                removed.addAll(((Document) update.get("$unset")).keySet());
            }
            return new Document("updatedFields", set).append("removedFields", removed).append("truncatedArrays", List.of());
        }

        private Document lookUp(String db, String collName, Object id) {
            MongoCollection<?> c = backend.resolveDatabase(db).resolveCollection(collName, false);
            if (c == null) {
                return null;
            }
            for (Document d : c.handleQuery(new Document("_id", id), 0, 1)) {
                return d;
            }
            return null;
        }

        private static BsonTimestamp ts(Document d) {
            return (BsonTimestamp) d.get("ts");
        }
    }

    /**
     * A change stream's cursor: each getMore returns the events after the last one it returned,
     * and nothing after an invalidate (MongoDB closes the stream there).
     */
    static final class ChangeCursor extends AbstractCursor {
        private final Function<Long, Stream<Document>> events;
        private long after;
        private boolean ended;

        ChangeCursor(long id, long after, Function<Long, Stream<Document>> events) {
            super(id);
            this.after = after;
            this.events = events;
        }

        @Override
        public boolean isEmpty() {
            return ended;
        }

        @Override
        public synchronized List<Document> takeDocuments(int n) {
            if (ended) {
                return List.of();
            }
            Stream<Document> s = events.apply(after);
            if (n > 0) {
                s = s.limit(n);
            }
            List<Document> docs = s.collect(Collectors.toList());
            List<Document> out = new ArrayList<>(docs.size());
            for (Document d : docs) {
                after = Long.parseUnsignedLong((String) ((Document) d.get("_id")).get("_data"), 16);
                out.add(d);
                if ("invalidate".equals(d.get("operationType"))) {
                    ended = true;
                    break;
                }
            }
            return out;
        }
    }

    private Launcher() {
    }
}
