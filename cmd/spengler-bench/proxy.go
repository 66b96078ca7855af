package main

import (
	"net"
	"sync"
	"sync/atomic"
)

// countingProxy forwards loopback TCP connections to a server and counts
// round trips: a burst of bytes from the client that follows bytes from the
// server (or opens the connection) is one more request.
type countingProxy struct {
	ln     net.Listener
	target string
	count  atomic.Int64
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
}

func newCountingProxy(target string) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	return p, nil
}

func (p *countingProxy) addr() string { return p.ln.Addr().String() }

// requests returns the round trips counted so far, over all connections.
func (p *countingProxy) requests() int64 { return p.count.Load() }

func (p *countingProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.track(c, s)
		var answered atomic.Bool
		answered.Store(true)
		p.wg.Go(func() {
			p.pump(s, c, func() {
				if answered.Swap(false) {
					p.count.Add(1)
				}
			})
		})
		p.wg.Go(func() { p.pump(c, s, func() { answered.Store(true) }) })
	}
}

// pump copies src to dst, calling seen for every read, and closes both
// when either side ends.
func (p *countingProxy) pump(dst, src net.Conn, seen func()) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			seen()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
	p.mu.Lock()
	delete(p.conns, src)
	delete(p.conns, dst)
	p.mu.Unlock()
}

func (p *countingProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = true
	}
}

// close stops accepting, closes every connection and waits for the pumps.
func (p *countingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
