package dbtest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from a free loopback port to a target address,
// and can stop forwarding like a network that drops every packet. Its methods may
// be called concurrently.
type Proxy struct {
	target string
	ln     net.Listener
	closed chan struct{}
	wg     sync.WaitGroup

	mu    sync.Mutex
	gate  chan struct{} // closed while forwarding; open while blackholed
	conns map[net.Conn]struct{}
	done  bool
}

// NewProxy starts a proxy to target (host:port) on a free loopback port.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start proxy to %q: %w", target, err)
	}
	gate := make(chan struct{})
	close(gate)
	p := &Proxy{
		target: target,
		ln:     ln,
		closed: make(chan struct{}),
		gate:   gate,
		conns:  map[net.Conn]struct{}{},
	}
	p.wg.Go(p.acceptLoop)
	return p, nil
}

// Addr returns the address the proxy listens on.
func (p *Proxy) Addr() string {
	return p.ln.Addr().String()
}

// Port returns the port the proxy listens on.
func (p *Proxy) Port() int {
	return p.ln.Addr().(*net.TCPAddr).Port
}

// Blackhole stops (on) or resumes (off) forwarding. While blackholed, no bytes
// pass in either direction and no connection is closed: bytes already read are
// held and delivered on resume, further ones wait in the kernel's buffers, and new
// connections are accepted but reach the target only on resume.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate: // forwarding
		if on {
			p.gate = make(chan struct{})
		}
	default: // blackholed
		if !on {
			close(p.gate)
		}
	}
}

// Close stops the proxy, closes every connection through it and waits until its
// goroutines have ended.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return nil
	}
	p.done = true
	close(p.closed)
	err := p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("close proxy: %w", err)
	}
	return nil
}

// acceptLoop accepts connections until the listener is closed.
func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-p.closed:
				return
			case <-time.After(10 * time.Millisecond):
				continue
			}
		}
		if !p.track(c) {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// track registers c so that Close closes it; it closes c and returns false once
// the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// untrack forgets c and closes it.
func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

// open waits until forwarding is on and reports false if the proxy closed first.
func (p *Proxy) open() bool {
	p.mu.Lock()
	gate := p.gate
	p.mu.Unlock()
	select {
	case <-gate:
		select {
		case <-p.closed:
			return false
		default:
			return true
		}
	case <-p.closed:
		return false
	}
}

// serve connects client c to the target and forwards both ways until either side
// closes.
func (p *Proxy) serve(c net.Conn) {
	defer p.untrack(c)
	if !p.open() {
		return
	}
	t, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(t) {
		return
	}
	defer p.untrack(t)
	var wg sync.WaitGroup
	wg.Go(func() { p.pump(t, c) })
	wg.Go(func() { p.pump(c, t) })
	wg.Wait()
}

// pump copies from src to dst, passing each chunk only while forwarding is on,
// and closes both when either fails.
func (p *Proxy) pump(dst, src net.Conn) {
	defer func() {
		_ = dst.Close()
		_ = src.Close()
	}()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.open() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
