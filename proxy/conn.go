package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// Reasons a connection ends that are not failures of the peer.
var (
	errIdle     = errors.New("idle timeout")
	errDraining = errors.New("server shutting down")
)

// HostUnreachable is the MongoDB error code a client gets when the proxy cannot reach the
// upstream; drivers treat it as retryable.
const codeHostUnreachable = 6

// conn is one client connection and the upstream connection pinned to it. Two loops run per
// connection: requests flow client → upstream and replies upstream → client independently, so a
// request may get several replies (exhaust, moreToCome) and a moreToCome request none.
//
// Each connection has a context, passed to serve, that ends when the connection closes: when
// the client or the upstream hangs up, when a shutdown closes it, or when the server's own
// context ends (Shutdown giving up, Close). The pre-reads, synchronous converges, flag
// evaluations and reads from the new store of its requests run under it, so none of them
// holds up a closed connection or a shutdown.
type conn struct {
	s      *Server
	id     uint64
	client net.Conn
	up     net.Conn
	log    *slog.Logger
	cancel context.CancelFunc // ends the connection's context; called by close

	requests frameReader // client → upstream; used only by relayRequests
	replies  frameReader // upstream → client; used only by relayReplies
	helloBuf []byte      // scratch for rewritten hello replies; used only by relayReplies
	replyBuf []byte      // scratch for rewritten write replies; used only by relayReplies
	txnBuf   []byte      // scratch for requests re-encoded without txnNumber; used only by relayRequests

	// standalone is set while the upstream is a standalone mongod, which refuses txnNumber
	// (standalone.go): from the monitor's topology at dial, then from each hello reply.
	standalone atomic.Bool

	// Used only by relayRequests.
	app       string        // client.application.name from the handshake
	helloSeen bool          // the handshake hello has been read
	flagCache []cachedFlags // by route index

	wmu sync.Mutex // serializes writes to the client (replies, and answers the proxy makes itself)

	mu       sync.Mutex
	pending  map[int32]pendingRequest // requests awaiting a reply, by the requestID a reply answers
	work     int                      // requests (not hellos) whose last reply has not reached the client
	drained  chan struct{}            // closed when work drops to zero during a drain
	draining atomic.Bool
	closed   bool // guarded by mu; up is set under mu too
}

// pendingRequest is what the reply loop needs to know about the request a reply answers.
type pendingRequest struct {
	start   time.Time
	metrics *commandMetrics
	hello   bool
	ic      *interception // set for requests on a migrated namespace with work on their reply
}

// newConn returns a connection whose context cancel ends; close calls it.
func newConn(s *Server, nc net.Conn, id uint64, cancel context.CancelFunc) *conn {
	return &conn{
		s:       s,
		id:      id,
		client:  nc,
		log:     s.cfg.log.With("conn", id, "remote", nc.RemoteAddr().String()),
		cancel:  cancel,
		pending: make(map[int32]pendingRequest),
	}
}

// serve runs the connection until either side closes it, an error occurs, or a shutdown drains
// it. ctx is the connection's context (see conn).
func (c *conn) serve(ctx context.Context) {
	defer c.s.untrack(c)
	defer c.close()
	m := c.s.cfg.metrics
	if tc, ok := c.client.(*tls.Conn); ok {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			m.error(errKindTLSHandshake)
			c.log.Warn("client TLS handshake failed", "err", err)
			return
		}
	}
	up, target, err := c.s.upstream.dial(ctx)
	if err != nil {
		m.error(errKindUpstreamDial)
		c.log.Warn("upstream unreachable; refusing connection", "err", err)
		c.refuse(err)
		return
	}
	if !c.setUpstream(up) {
		return // closed by a shutdown while dialling
	}
	c.standalone.Store(target.standalone)
	c.requests.r = c.client
	c.replies.r = up
	debug := c.log.Enabled(ctx, slog.LevelDebug)
	if debug {
		c.log.Debug("connection open", "upstream", up.RemoteAddr().String())
	}

	replyErr := make(chan error, 1)
	go func() {
		err := c.relayReplies(ctx)
		// Without an upstream the request loop cannot go on: unblock its read.
		c.close()
		replyErr <- err
	}()
	err = c.relayRequests(ctx)
	if errors.Is(err, errDraining) {
		// Let the replies to requests already forwarded reach the client.
		select {
		case <-c.drainDone():
		case rerr := <-replyErr:
			replyErr <- rerr
		}
	}
	c.close()
	rerr := <-replyErr
	switch {
	case err == nil || errors.Is(err, errDraining):
		if debug {
			c.log.Debug("connection closed", "reason", reasonOf(err, rerr))
		}
	case errors.Is(err, errIdle):
		m.error(errKindIdleTimeout)
		c.log.Info("connection closed after idle timeout", "idle_timeout", c.s.cfg.idleTimeout)
	default:
		c.log.Warn("connection closed", "err", err)
	}
	if rerr != nil && err == nil {
		c.log.Warn("connection closed", "err", rerr)
	}
}

func reasonOf(errs ...error) string {
	for _, e := range errs {
		if e != nil {
			return e.Error()
		}
	}
	return "client closed"
}

// relayRequests forwards frames from the client to the upstream until the client closes, sends
// a frame that cannot be forwarded, idles out, or a drain stops it.
func (c *conn) relayRequests(ctx context.Context) error {
	m := c.s.cfg.metrics
	idle := c.s.cfg.idleTimeout
	debug := c.log.Enabled(ctx, slog.LevelDebug)
	for {
		if idle > 0 && !c.draining.Load() {
			_ = c.client.SetReadDeadline(time.Now().Add(idle))
		}
		frame, h, err := c.requests.next()
		if err != nil {
			if c.draining.Load() && isTimeout(err) {
				return errDraining
			}
			if !c.requests.partial {
				if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
					return nil
				}
				if isTimeout(err) {
					// Idle means no request and no reply pending: a slow query or a
					// streaming hello (replies every few seconds, no requests) is not idle.
					if c.awaiting() > 0 {
						continue
					}
					return errIdle
				}
			}
			if isFrameError(err) {
				m.error(errKindBadFrame)
			} else {
				m.error(errKindClientIO)
			}
			return fmt.Errorf("reading request: %w", err)
		}
		msg, err := decode(frame)
		if err == nil && msg.OpCode == wiremessage.OpReply {
			err = fmt.Errorf("%w: clients may not send OP_REPLY", ErrUnsupportedOpcode)
		}
		if err != nil {
			m.error(errKindBadFrame)
			return fmt.Errorf("request %d (%d bytes): %w", h.requestID, len(frame), err)
		}
		cm := m.command(msg.Name)
		cm.requests.Inc()
		m.bytesIn.Add(float64(len(frame)))
		if debug {
			c.log.Debug("request", "id", h.requestID, "command", string(msg.Name), "db", string(msg.Database),
				"collection", string(msg.Collection()), "bytes", len(frame), "compressor", msg.Compressor.String())
		}
		hello := isHello(msg.Name)
		if hello && !c.helloSeen {
			c.helloSeen = true
			c.app = appName(msg.Body)
		}
		var ic *interception
		if rs := c.s.cfg.routes; rs != nil && msg.OpCode == wiremessage.OpMsg {
			if rt := rs.lookup(msg.Database, msg.Collection()); rt != nil {
				start := time.Now()
				var handled bool
				if ic, handled, err = c.intercept(ctx, rt, &msg, h.requestID); err != nil {
					return fmt.Errorf("request %d on %s: %w", h.requestID, rt.ns, err)
				}
				if handled {
					cm.duration.Observe(time.Since(start).Seconds())
					continue
				}
			}
		}
		if c.standalone.Load() && retryableWrite(&msg) {
			if c.txnBuf, err = withoutTxnNumber(c.txnBuf, h, &msg); err != nil {
				m.error(errKindBadFrame)
				return fmt.Errorf("request %d: removing txnNumber for a standalone upstream: %w", h.requestID, err)
			}
			frame = c.txnBuf
			if debug {
				c.log.Debug("txnNumber removed for a standalone upstream", "id", h.requestID, "command", string(msg.Name))
			}
		}
		if !msg.MoreToCome() {
			c.addPending(h.requestID, pendingRequest{start: time.Now(), metrics: cm, hello: hello, ic: ic})
		}
		if _, err := c.up.Write(frame); err != nil {
			m.error(errKindUpstreamIO)
			return fmt.Errorf("forwarding request %d to upstream: %w", h.requestID, err)
		}
		if cap(c.txnBuf) > keepBuffer {
			c.txnBuf = nil
		}
	}
}

// relayReplies forwards frames from the upstream to the client, rewriting hello replies.
func (c *conn) relayReplies(ctx context.Context) error {
	m := c.s.cfg.metrics
	for {
		frame, h, err := c.replies.next()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil // closed by this side
			}
			if isFrameError(err) {
				m.error(errKindBadReply)
			} else {
				m.error(errKindUpstreamIO)
			}
			return fmt.Errorf("reading upstream reply: %w", err)
		}
		msg, err := decode(frame)
		if err != nil {
			m.error(errKindBadReply)
			return fmt.Errorf("upstream reply to %d: %w", h.responseTo, err)
		}
		p, ok := c.takePending(h.responseTo, h.requestID, msg.MoreToCome())
		last := ok && !msg.MoreToCome()
		out := frame
		if ok {
			if p.hello {
				// Stored before the client sees the reply, so before it can send a write.
				if standalone, ok := standaloneHello(msg.Body); ok {
					c.standalone.Store(standalone)
				}
				if c.helloBuf, err = rewriteHello(c.helloBuf, h, msg); err != nil {
					m.error(errKindHelloRewrite)
					return fmt.Errorf("rewriting hello reply: %w", err)
				}
				out = c.helloBuf
			}
			if p.ic != nil && last {
				out = c.beforeReply(ctx, p.ic, &msg, h, out)
			}
			p.metrics.duration.Observe(time.Since(p.start).Seconds())
			if !replyOK(msg.Body) {
				p.metrics.errors.Inc()
			}
		} else {
			m.error(errKindUnmatchedResp)
			c.log.Debug("reply to an unknown request", "response_to", h.responseTo)
		}
		m.bytesOut.Add(float64(len(out)))
		c.wmu.Lock()
		_, err = c.client.Write(out)
		c.wmu.Unlock()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			m.error(errKindClientIO)
			return fmt.Errorf("writing reply to client: %w", err)
		}
		if ok && last && p.ic != nil {
			c.afterReply(p.ic, &msg)
		}
		if last && !p.hello {
			c.finished() // only now may a drain close the connection
		}
	}
}

// writeClient sends a reply the proxy made itself.
func (c *conn) writeClient(b []byte) error {
	c.s.cfg.metrics.bytesOut.Add(float64(len(b)))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.client.Write(b); err != nil {
		c.s.cfg.metrics.error(errKindClientIO)
		return fmt.Errorf("writing reply to client: %w", err)
	}
	return nil
}

func (c *conn) addPending(id int32, p pendingRequest) {
	c.mu.Lock()
	c.pending[id] = p
	if !p.hello {
		c.work++
	}
	c.mu.Unlock()
}

// takePending removes the request a reply answers. A reply with moreToCome is followed by
// another whose responseTo is this reply's requestID, so the request moves to that key.
func (c *conn) takePending(responseTo, replyID int32, moreToCome bool) (pendingRequest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pending[responseTo]
	if !ok {
		return p, false
	}
	delete(c.pending, responseTo)
	if moreToCome {
		c.pending[replyID] = p
	}
	return p, true
}

// finished records that the last reply to a request (not a hello) has reached the client.
func (c *conn) finished() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.work--
	if c.work == 0 && c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
}

// awaiting returns the number of requests awaiting a reply, hellos included.
func (c *conn) awaiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// inFlight returns the number of requests awaiting a reply, hellos excepted.
func (c *conn) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.work
}

// drainDone returns a channel closed once no request holds up the drain.
func (c *conn) drainDone() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	if c.work == 0 {
		close(ch)
	} else {
		c.drained = ch
	}
	return ch
}

// startDrain stops the request loop at its next read; replies keep flowing.
func (c *conn) startDrain() {
	c.draining.Store(true)
	_ = c.client.SetReadDeadline(time.Now())
}

// setUpstream attaches the dialled upstream connection; it reports false, closing up, when the
// connection was closed meanwhile.
func (c *conn) setUpstream(up net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		up.Close()
		return false
	}
	c.up = up
	return true
}

// close closes both sides and then ends the connection's context, so that work the context
// stops cannot forward anything more; it is safe from any goroutine and more than once.
func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.client.Close()
	if c.up != nil {
		c.up.Close()
	}
	c.cancel()
}

// refuse answers the client's first request with a HostUnreachable error, so that the driver
// reports why at once instead of waiting, then closes the connection.
func (c *conn) refuse(cause error) {
	_ = c.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.requests.r = c.client
	frame, h, err := c.requests.next()
	if err != nil {
		return
	}
	op := h.opCode
	if op == wiremessage.OpCompressed {
		if msg, err := decode(frame); err == nil {
			op = msg.OpCode
		}
	}
	reply := errorReply(h.requestID, op, codeHostUnreachable, "HostUnreachable", "tandem proxy: "+cause.Error())
	_ = c.client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.client.Write(reply)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isFrameError(err error) bool {
	return errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrFrameTooSmall) ||
		errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnsupportedOpcode) || errors.Is(err, io.ErrUnexpectedEOF)
}
