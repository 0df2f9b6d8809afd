package main

import (
	"io"
	"net"
	"sync"
)

// forwarder is the floor for any proxy: a raw TCP byte forwarder that dials the upstream for
// each client connection and copies bytes both ways with io.Copy, with no parsing and no logic.
// On Linux, io.Copy between two *net.TCPConn uses splice(2).
type forwarder struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startForwarder(upstream string) (*forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &forwarder{ln: ln, upstream: upstream, conns: make(map[net.Conn]struct{})}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

func (f *forwarder) Addr() string { return f.ln.Addr().String() }

func (f *forwarder) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go f.handle(c)
	}
}

func (f *forwarder) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	for _, c := range cs {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *forwarder) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		delete(f.conns, c)
		c.Close()
	}
}

func (f *forwarder) handle(client net.Conn) {
	defer f.wg.Done()
	up, err := net.Dial("tcp", f.upstream)
	if err != nil {
		client.Close()
		return
	}
	if !f.track(client, up) {
		client.Close()
		up.Close()
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, client)
		close(done)
	}()
	_, _ = io.Copy(client, up)
	f.untrack(client, up) // unblocks the other direction
	<-done
}

// Close stops accepting, closes every connection and waits for the copy loops.
func (f *forwarder) Close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.ln.Close()
	f.wg.Wait()
}
