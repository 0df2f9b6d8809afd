package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Relay forwards TCP connections to an address until it is cut: then it drops every
// connection and refuses new ones. Tests put one between a client and a real server to make
// an outage.
type Relay struct {
	// Addr is the relay's host:port.
	Addr string

	mu   sync.Mutex
	down bool
	live map[net.Conn]struct{}
}

// StartRelay listens on a loopback port and relays to upstream until the test ends.
func StartRelay(t testing.TB, upstream string) *Relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	r := &Relay{Addr: l.Addr().String(), live: map[net.Conn]struct{}{}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			down := r.down
			r.mu.Unlock()
			if down {
				_ = c.Close()
				continue
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			r.track(c, up)
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
	return r
}

func (r *Relay) track(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		r.live[c] = struct{}{}
	}
}

// Cut drops every connection and refuses new ones (down), or accepts them again.
func (r *Relay) Cut(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
	if down {
		for c := range r.live {
			_ = c.Close()
		}
		r.live = map[net.Conn]struct{}{}
	}
}
