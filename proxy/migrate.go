package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/flags"
)

// What the proxy does on a migrated namespace, by phase (see flags/README.md). The proxy reads
// it from the flags' Policy (flags.PolicyFor, the phase table as code), computed once per flag
// generation and connection, and compares no phase names itself:
//
//   - WriteConverge none (off): the proxy only forwards.
//   - every other phase: each write is forwarded to the old store unchanged; the keys it
//     touches (from the request and its reply) are converged to the new store. A statement
//     whose filter names no _id is journaled, so the change-stream path closes the gap.
//   - WriteConverge async (shadow): converged after the client has its reply.
//   - WriteConverge sync (dual, cutover, finalized): the keys matching an unkeyed statement's
//     filter are read before the write, and every key is converged before the client gets its
//     reply. When that converge fails, the keys are journaled (they converge when the new
//     store is back) and the client sees, by OnConvergeFailure: old_reply (dual), the reply of
//     the old store, unchanged (the old store is the system of record); write_concern_error
//     (cutover, finalized), that reply with a writeConcernError (code 64, WriteConcernFailed)
//     saying the write is in the old store but not yet in the new.
//   - BlockWrites (write_block): writes fail with NotWritablePrimary and the
//     RetryableWriteError label, so drivers retry them; unacknowledged (w:0) writes close the
//     connection instead.
//   - ReadsFromNew (read_source=new in cutover, finalized): a find that only looks documents
//     up by _id is answered from the new store, reverse-transformed; every other read goes to
//     old, and so does a look-up of a key whose converge failed on this proxy in the last
//     minute.
//   - ShadowReadPercent (shadow_read_percent): that share of finds is compared against the new
//     store off the request path.

// ShadowWriter converges the keys a write touched (shadow.Writer). The proxy calls it no more
// once Server.Shutdown or Server.Close has returned, deferred converges included, so a writer
// is closed after the server.
type ShadowWriter interface {
	// Async converges keys without blocking: what cannot be converged now is journaled.
	Async(keys []adapters.Key, op string)
	// Sync converges keys before returning; on failure, or when ctx ends first (the client
	// hung up, the proxy is stopping), the keys are journaled and an error returned.
	Sync(ctx context.Context, keys []adapters.Key, op string) error
	// Unkeyed journals a write whose keys are unknown.
	Unkeyed(ctx context.Context, op string, filter bson.Raw)
}

// ShadowReader compares sampled documents of the old store with the new one (shadow.Comparer).
// Submit must not block and must copy what it keeps.
type ShadowReader interface {
	Submit(docs []bson.Raw) bool
}

// NewReader reads documents from the new store in the old store's shape (shadow.Engine).
type NewReader interface {
	ReadNew(ctx context.Context, keys []adapters.Key) ([]bson.D, error)
}

// FlagSource evaluates a migration's flags (flags.Evaluator). Generation changes whenever the
// flags may have changed, so a connection re-evaluates only then.
type FlagSource interface {
	Evaluate(ctx context.Context, c flags.Context) flags.Values
	Generation() uint64
}

// Migration is a namespace whose writes and reads the proxy takes part in.
type Migration struct {
	// Name is the migration's name: flags are evaluated for it. Required.
	Name string
	// Database and Collection are the old store's namespace. Required.
	Database, Collection string
	// Writer converges written keys. Required.
	Writer ShadowWriter
	// Reader compares sampled find replies; without it shadow_read_percent has no effect.
	Reader ShadowReader
	// New serves key look-ups when read_source is new; without it every read goes to old.
	New NewReader
	// PreRead returns the keys of the old documents matching filter, at most limit+1 of them;
	// without it unkeyed writes in dual and cutover are left to the journal. See MongoPreRead.
	PreRead func(ctx context.Context, filter bson.Raw, limit int) ([]adapters.Key, error)
	// PreReadLimit is the most keys a pre-read converges; a filter matching more is left to
	// the journal. Default 10000.
	PreReadLimit int
	// Timeout bounds a pre-read, a synchronous converge, and a read from the new store;
	// each also ends when the client's connection closes. Default 5s.
	Timeout time.Duration
}

// MongoPreRead returns a Migration.PreRead that reads the _id of matching documents from coll.
func MongoPreRead(coll *mongo.Collection) func(ctx context.Context, filter bson.Raw, limit int) ([]adapters.Key, error) {
	return func(ctx context.Context, filter bson.Raw, limit int) ([]adapters.Key, error) {
		opts := options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit) + 1)
		cur, err := coll.Find(ctx, filter, opts)
		if err != nil {
			return nil, err
		}
		defer cur.Close(ctx)
		var keys []adapters.Key
		for cur.Next(ctx) {
			v, err := keyValue(cur.Current.Lookup("_id"))
			if err != nil {
				return nil, err
			}
			keys = append(keys, v)
		}
		return keys, cur.Err()
	}
}

// Routes are the migrated namespaces of a proxy and the flags that steer them.
type Routes struct {
	flags  FlagSource
	tenant string
	byNS   map[string]map[string]*route // database → collection → route
	all    []*route
}

type route struct {
	idx     int
	m       *Migration
	ns      string
	actions map[string]prometheus.Counter
	// unconverged holds the keys (adapters.KeyString) whose synchronous converge failed here
	// lately: until one converges again, or the entry expires, look-ups of them go to old,
	// which has their latest state, instead of new, which may not.
	unconverged *expirable.LRU[string, struct{}]
}

// Bounds of a route's unconverged keys: more than this many are evicted oldest first, and an
// entry expires after unconvergedTTL (the journal worker has converged it by then, or the
// new store is down and reads from it fail and fall back anyway).
const (
	unconvergedKeys = 100_000
	unconvergedTTL  = time.Minute
)

// Actions counted by tandem_proxy_migration_requests_total.
const (
	actConverged    = "converged"      // a write's keys were handed to the shadow writer
	actSyncFailed   = "sync_failed"    // a synchronous converge failed; the keys were journaled
	actUnkeyed      = "unkeyed"        // a statement named no key and was journaled
	actPreRead      = "pre_read"       // an unkeyed statement's keys were read before the write
	actWriteBlocked = "write_blocked"  // a write was refused by write_block
	actReadNew      = "read_new"       // a key look-up was answered from the new store
	actReadFallback = "read_fallback"  // a key look-up could not be served from new and went to old
	actSampled      = "shadow_read"    // a find reply was sampled for comparison
	actSampleDrop   = "shadow_dropped" // a sampled reply was dropped: the comparer was busy
	actBadWrite     = "unparsed_write" // a write the proxy could not parse (forwarded as is)
)

var migrationActions = []string{actConverged, actSyncFailed, actUnkeyed, actPreRead, actWriteBlocked,
	actReadNew, actReadFallback, actSampled, actSampleDrop, actBadWrite}

// NewRoutes checks the migrations and indexes them by namespace. tenant is passed to every
// flag evaluation (empty for none).
func NewRoutes(fs FlagSource, tenant string, ms ...*Migration) (*Routes, error) {
	if fs == nil {
		return nil, errors.New("proxy: routes need a flag source")
	}
	r := &Routes{flags: fs, tenant: tenant, byNS: map[string]map[string]*route{}}
	for i, m := range ms {
		switch {
		case m == nil:
			return nil, fmt.Errorf("proxy: migration %d is nil", i)
		case m.Name == "":
			return nil, fmt.Errorf("proxy: migration %d has no name", i)
		case m.Database == "" || m.Collection == "":
			return nil, fmt.Errorf("proxy: migration %s: database and collection are required", m.Name)
		case m.Writer == nil:
			return nil, fmt.Errorf("proxy: migration %s: a shadow writer is required", m.Name)
		}
		if r.byNS[m.Database][m.Collection] != nil {
			return nil, fmt.Errorf("proxy: migrations %s and %s both claim %s.%s",
				r.byNS[m.Database][m.Collection].m.Name, m.Name, m.Database, m.Collection)
		}
		if m.PreReadLimit <= 0 {
			m.PreReadLimit = 10000
		}
		if m.Timeout <= 0 {
			m.Timeout = 5 * time.Second
		}
		rt := &route{idx: len(r.all), m: m, ns: m.Database + "." + m.Collection,
			unconverged: expirable.NewLRU[string, struct{}](unconvergedKeys, nil, unconvergedTTL)}
		if r.byNS[m.Database] == nil {
			r.byNS[m.Database] = map[string]*route{}
		}
		r.byNS[m.Database][m.Collection] = rt
		r.all = append(r.all, rt)
	}
	return r, nil
}

// WithRoutes makes the proxy take part in the writes and reads of the routes' namespaces.
func WithRoutes(r *Routes) Option { return func(c *config) { c.routes = r } }

// lookup finds the route of a namespace without allocating.
func (r *Routes) lookup(db, coll []byte) *route {
	if r == nil || len(coll) == 0 {
		return nil
	}
	return r.byNS[string(db)][string(coll)]
}

// bindMetrics resolves each route's action counters once.
func (r *Routes) bindMetrics(m *Metrics) {
	for _, rt := range r.all {
		rt.actions = make(map[string]prometheus.Counter, len(migrationActions))
		for _, a := range migrationActions {
			rt.actions[a] = m.migration.WithLabelValues(rt.m.Name, a)
		}
	}
}

func (rt *route) count(action string) { rt.actions[action].Inc() }

// cachedFlags are a connection's last evaluation of one migration's flags, and their policy.
type cachedFlags struct {
	gen uint64
	ok  bool
	pol flags.Policy
}

// interception is what the reply loop must do for a request on a migrated namespace.
type interception struct {
	r      *route
	pol    flags.Policy
	op     string
	keys   []adapters.Key
	sync   bool // converge before the client gets the reply
	sample bool // compare the find reply against the new store
}

// policyFor returns the policy of rt's flags on this connection, evaluating the flags and
// computing the policy only when the flag source changed since the last evaluation.
func (c *conn) policyFor(ctx context.Context, rt *route) flags.Policy {
	rs := c.s.cfg.routes
	if c.flagCache == nil {
		c.flagCache = make([]cachedFlags, len(rs.all))
	}
	gen := rs.flags.Generation()
	cf := &c.flagCache[rt.idx]
	if !cf.ok || cf.gen != gen {
		cf.pol = flags.PolicyFor(rs.flags.Evaluate(ctx, flags.Context{
			Migration: rt.m.Name, Database: rt.m.Database, Collection: rt.m.Collection,
			App: c.app, Tenant: rs.tenant,
		}))
		cf.gen, cf.ok = gen, true
	}
	return cf.pol
}

// errBlockedUnacknowledged ends a connection that sent an unacknowledged write while writes
// are blocked: there is no reply to carry the error, and the write must not be applied.
var errBlockedUnacknowledged = errors.New("unacknowledged write while writes are blocked")

// intercept decides what happens to a request on a migrated namespace before it is forwarded.
// It returns handled when it has answered the request itself, and an interception when the
// reply loop has work to do.
// ctx is the connection's.
func (c *conn) intercept(ctx context.Context, rt *route, msg *Message, requestID int32) (*interception, bool, error) {
	switch string(msg.Name) {
	case "insert", "update", "delete", "findAndModify", "findandmodify":
		return c.interceptWrite(ctx, rt, msg, requestID)
	case "find":
		return c.interceptFind(ctx, rt, msg, requestID)
	}
	return nil, false, nil
}

func (c *conn) interceptWrite(ctx context.Context, rt *route, msg *Message, requestID int32) (*interception, bool, error) {
	p := c.policyFor(ctx, rt)
	if p.WriteConverge == flags.ConvergeNone {
		return nil, false, nil
	}
	if p.BlockWrites {
		rt.count(actWriteBlocked)
		if msg.MoreToCome() {
			return nil, false, errBlockedUnacknowledged
		}
		reply := errorReply(requestID, msg.OpCode, codeNotWritablePrimary, "NotWritablePrimary",
			"tandem proxy: writes to "+rt.ns+" are blocked while migration "+rt.m.Name+" switches stores; retry",
			labelRetryableWrite)
		return nil, true, c.writeClient(reply)
	}
	wi, err := parseWrite(msg)
	if err != nil {
		// The upstream will answer it; whatever it changed is left to the journal's other
		// paths (change streams, verification).
		rt.count(actBadWrite)
		c.log.Warn("write on a migrated collection not understood; forwarded unchanged", "migration", rt.m.Name, "err", err)
		return nil, false, nil
	}
	ic := &interception{r: rt, pol: p, op: wi.op, sync: p.WriteConverge == flags.ConvergeSync}
	for _, rv := range wi.keys {
		k, err := keyValue(rv)
		if err != nil {
			c.log.Warn("unusable key in a write; journaling it as unkeyed", "migration", rt.m.Name, "err", err)
			wi.unkeyed = append(wi.unkeyed, unkeyedWrite{})
			continue
		}
		ic.keys = append(ic.keys, k)
	}
	if wi.missingID {
		// The server generates the _id and does not return it.
		wi.unkeyed = append(wi.unkeyed, unkeyedWrite{})
	}
	for _, u := range wi.unkeyed {
		rt.count(actUnkeyed)
		// Not cut short by the client hanging up: the write may still reach the old store.
		rt.m.Writer.Unkeyed(context.WithoutCancel(ctx), wi.op, u.filter)
		if ic.sync && u.filter != nil && rt.m.PreRead != nil {
			ic.keys = append(ic.keys, c.preRead(ctx, rt, u.filter)...)
		}
	}
	if wi.unacknowledged || wi.inTxn || msg.MoreToCome() {
		// No reply says when the write is visible (unacknowledged), or it becomes visible only
		// at commitTransaction: converge a little later, even if this connection closes
		// meanwhile; Shutdown waits for it (deferred.go). A transaction that commits later
		// still is left to the change-stream path.
		keys, w, op := ic.keys, rt.m.Writer, wi.op
		if len(keys) > 0 {
			c.s.deferred.schedule(delayedConverge, func() { w.Async(keys, op) })
		}
		return nil, false, nil
	}
	return ic, false, nil
}

// delayedConverge is how long after forwarding an unacknowledged or transactional write its
// keys converge.
const delayedConverge = 500 * time.Millisecond

// preRead returns the keys of the documents an unkeyed statement may change, read from the old
// store before the write; none when there are more than the limit (the journal covers them).
// ctx is the connection's: a forced shutdown ends the pre-read at once.
func (c *conn) preRead(ctx context.Context, rt *route, filter bson.Raw) []adapters.Key {
	ctx, cancel := context.WithTimeout(ctx, rt.m.Timeout)
	defer cancel()
	keys, err := rt.m.PreRead(ctx, filter, rt.m.PreReadLimit)
	if err != nil {
		c.log.Warn("reading the keys of an unkeyed write failed; the journal covers it", "migration", rt.m.Name, "err", err)
		return nil
	}
	if len(keys) > rt.m.PreReadLimit {
		c.log.Info("unkeyed write matches more documents than the pre-read limit; the journal covers it",
			"migration", rt.m.Name, "limit", rt.m.PreReadLimit)
		return nil
	}
	rt.count(actPreRead)
	return keys
}

func (c *conn) interceptFind(ctx context.Context, rt *route, msg *Message, requestID int32) (*interception, bool, error) {
	if msg.MoreToCome() {
		return nil, false, nil
	}
	p := c.policyFor(ctx, rt)
	if p.ReadsFromNew && rt.m.New != nil {
		if kl, ok := parseKeyLookup(msg); ok {
			if reply, ok := c.readNew(ctx, rt, kl, requestID); ok {
				rt.count(actReadNew)
				return nil, true, c.writeClient(reply)
			}
			rt.count(actReadFallback)
		}
	}
	if p.ShadowReadPercent > 0 && rt.m.Reader != nil && rand.Float64()*100 < p.ShadowReadPercent {
		return &interception{r: rt, pol: p, op: "find", sample: true}, false, nil
	}
	return nil, false, nil
}

// readNew answers a key look-up from the new store; ok is false when it cannot, and the find
// then goes to the old store.
func (c *conn) readNew(ctx context.Context, rt *route, kl keyLookup, requestID int32) ([]byte, bool) {
	keys := make([]adapters.Key, 0, len(kl.keys))
	for _, rv := range kl.keys {
		k, err := keyValue(rv)
		if err != nil {
			return nil, false
		}
		if rt.unconverged.Len() > 0 && rt.unconverged.Contains(adapters.KeyString(k)) {
			return nil, false // new may lag behind old for this key
		}
		keys = append(keys, k)
	}
	ctx, cancel := context.WithTimeout(ctx, rt.m.Timeout)
	defer cancel()
	docs, err := rt.m.New.ReadNew(ctx, keys)
	if err != nil {
		c.log.Warn("reading from the new store failed; serving from old", "migration", rt.m.Name, "err", err)
		return nil, false
	}
	if kl.limit > 0 && int64(len(docs)) > kl.limit {
		docs = docs[:kl.limit]
	}
	reply, err := cursorReply(requestID, rt.ns, docs)
	if err != nil {
		c.log.Warn("encoding a reply from the new store failed; serving from old", "migration", rt.m.Name, "err", err)
		return nil, false
	}
	return reply, true
}

// cursorReply builds the OP_MSG reply of a find whose every document is in the first batch.
func cursorReply(requestID int32, ns string, docs []bson.D) ([]byte, error) {
	b := wiremessage.AppendHeader(nil, 0, wiremessage.NextRequestID(), requestID, wiremessage.OpMsg)
	b = wiremessage.AppendMsgFlags(b, 0)
	b = wiremessage.AppendMsgSectionType(b, wiremessage.SingleDocument)
	start, b := bsoncore.AppendDocumentStart(b)
	cstart, b := bsoncore.AppendDocumentElementStart(b, "cursor")
	astart, b := bsoncore.AppendArrayElementStart(b, "firstBatch")
	for i, d := range docs {
		raw, err := bson.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		b = bsoncore.AppendDocumentElement(b, strconv.Itoa(i), raw)
	}
	b, _ = bsoncore.AppendArrayEnd(b, astart)
	b = bsoncore.AppendInt64Element(b, "id", 0)
	b = bsoncore.AppendStringElement(b, "ns", ns)
	b, _ = bsoncore.AppendDocumentEnd(b, cstart)
	b = bsoncore.AppendDoubleElement(b, "ok", 1)
	b, err := bsoncore.AppendDocumentEnd(b, start)
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint32(b[0:4], uint32(len(b)))
	return b, nil
}

// beforeReply runs in the reply loop before a reply to an intercepted request reaches the
// client; it returns the frame to send (out, or a rewritten reply). ctx is the connection's:
// when the client hangs up, the synchronous converge stops and the writer journals its keys.
func (c *conn) beforeReply(ctx context.Context, ic *interception, msg *Message, h header, out []byte) []byte {
	if !ic.sync || msg.MoreToCome() {
		return out
	}
	keys := append(ic.keys, replyKeyValues(ic.op, msg.Body)...)
	rt := ic.r
	if len(keys) == 0 {
		return out
	}
	sctx, cancel := context.WithTimeout(ctx, rt.m.Timeout)
	err := rt.m.Writer.Sync(sctx, keys, ic.op)
	cancel()
	if err == nil {
		rt.count(actConverged)
		if rt.unconverged.Len() > 0 {
			for _, k := range keys {
				rt.unconverged.Remove(adapters.KeyString(k))
			}
		}
		return out
	}
	rt.count(actSyncFailed)
	for _, k := range keys {
		rt.unconverged.Add(adapters.KeyString(k), struct{}{})
	}
	if ctx.Err() != nil {
		// The reply is still rewritten below: a forced shutdown ends ctx just before it
		// closes the connection, and the reply may yet reach the client.
		c.log.Info("connection closing while converging a write before its reply; its keys are journaled",
			"migration", rt.m.Name, "phase", ic.pol.Phase, "keys", len(keys))
	} else {
		c.log.Warn("converging a write before its reply failed; its keys are journaled",
			"migration", rt.m.Name, "phase", ic.pol.Phase, "keys", len(keys), "err", err)
	}
	if ic.pol.OnConvergeFailure != flags.FailureWriteConcernError {
		return out // the old store's reply, unchanged
	}
	rewritten, rerr := withWriteConcernError(c.replyBuf, h, msg,
		"tandem proxy: the write is in the old store but not yet in the new one (it will converge from the journal): "+err.Error())
	if rerr != nil {
		c.log.Warn("could not add a writeConcernError to a reply; sending it unchanged", "err", rerr)
		return out
	}
	c.replyBuf = rewritten
	return rewritten
}

// afterReply runs in the reply loop after a reply to an intercepted request reached the client.
func (c *conn) afterReply(ic *interception, msg *Message) {
	rt := ic.r
	switch {
	case ic.sample:
		docs := firstBatch(msg.Body)
		if len(docs) == 0 {
			return
		}
		if rt.m.Reader.Submit(docs) {
			rt.count(actSampled)
		} else {
			rt.count(actSampleDrop)
		}
	case !ic.sync:
		keys := append(ic.keys, replyKeyValues(ic.op, msg.Body)...)
		if len(keys) > 0 {
			rt.m.Writer.Async(keys, ic.op)
			rt.count(actConverged)
		}
	}
}

// replyKeyValues returns the keys a write's reply names (upserted _ids, findAndModify values).
func replyKeyValues(op string, reply bsoncore.Document) []adapters.Key {
	rvs := replyKeys(op, reply)
	if len(rvs) == 0 {
		return nil
	}
	out := make([]adapters.Key, 0, len(rvs))
	for _, rv := range rvs {
		if k, err := keyValue(rv); err == nil {
			out = append(out, k)
		}
	}
	return out
}

// firstBatch returns the documents of a find reply's first batch; they point into reply.
func firstBatch(reply bsoncore.Document) []bson.Raw {
	if reply == nil {
		return nil
	}
	v, err := reply.LookupErr("cursor", "firstBatch")
	if err != nil {
		return nil
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return nil
	}
	vals, err := arr.Values()
	if err != nil {
		return nil
	}
	docs := make([]bson.Raw, 0, len(vals))
	for _, dv := range vals {
		if d, ok := dv.DocumentOK(); ok {
			docs = append(docs, bson.Raw(d))
		}
	}
	return docs
}

// withWriteConcernError returns reply (an OP_MSG, possibly compressed) as an uncompressed
// OP_MSG whose document also carries a writeConcernError, unless it already has one.
func withWriteConcernError(dst []byte, h header, reply *Message, errmsg string) ([]byte, error) {
	if reply.OpCode != wiremessage.OpMsg || reply.Body == nil {
		return nil, fmt.Errorf("%w: reply to a write is not an OP_MSG", ErrMalformed)
	}
	if _, found := lookup(reply.Body, "writeConcernError"); found {
		return nil, errors.New("reply already has a writeConcernError")
	}
	dst = dst[:0]
	dst = wiremessage.AppendHeader(dst, 0, h.requestID, h.responseTo, wiremessage.OpMsg)
	dst = wiremessage.AppendMsgFlags(dst, reply.Flags&^flagChecksumPresent)
	dst = wiremessage.AppendMsgSectionType(dst, wiremessage.SingleDocument)
	start, dst := bsoncore.AppendDocumentStart(dst)
	dst = append(dst, reply.Body[4:len(reply.Body)-1]...)
	wstart, dst := bsoncore.AppendDocumentElementStart(dst, "writeConcernError")
	dst = bsoncore.AppendInt32Element(dst, "code", codeWriteConcernFailed)
	dst = bsoncore.AppendStringElement(dst, "codeName", "WriteConcernFailed")
	dst = bsoncore.AppendStringElement(dst, "errmsg", errmsg)
	dst, _ = bsoncore.AppendDocumentEnd(dst, wstart)
	dst, err := bsoncore.AppendDocumentEnd(dst, start)
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint32(dst[0:4], uint32(len(dst)))
	return dst, nil
}

// appName returns client.application.name from a handshake hello, "" when absent.
func appName(body bsoncore.Document) string {
	if body == nil {
		return ""
	}
	v, err := body.LookupErr("client", "application", "name")
	if err != nil {
		return ""
	}
	s, _ := v.StringValueOK()
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// MongoDB error codes the proxy answers with.
const (
	codeNotWritablePrimary = 10107
	codeWriteConcernFailed = 64
	labelRetryableWrite    = "RetryableWriteError"
)
