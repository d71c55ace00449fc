package main

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// slowProxy forwards TCP connections to target, delaying every chunk by a
// random latency in [minDelay, maxDelay) in both directions, and can cut
// every open connection (new ones are accepted): a slow, flaky WAN between
// a store and the hub. It generalises internal/e2e's linkProxy.
type slowProxy struct {
	target             string
	minDelay, maxDelay time.Duration
	ln                 net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	rng   *rand.Rand
	wg    sync.WaitGroup
	cuts  atomic.Int64
}

func newSlowProxy(target string, minDelay, maxDelay time.Duration, seed uint64) (*slowProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &slowProxy{target: target, minDelay: minDelay, maxDelay: maxDelay, ln: ln,
		conns: map[net.Conn]struct{}{}, rng: rand.New(rand.NewPCG(seed, 7))}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *slowProxy) addr() string { return p.ln.Addr().String() }

func (p *slowProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

func (p *slowProxy) delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.minDelay + time.Duration(p.rng.Int64N(int64(p.maxDelay-p.minDelay)+1))
}

type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst, each chunk written a random latency after it was
// read; chunks keep their order and a bounded number wait in between.
func (p *slowProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	ch := make(chan chunk, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range ch {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.data); err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
		for range ch {
		}
	}()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			ch <- chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(p.delay())}
		}
		if err != nil {
			break
		}
	}
	close(ch)
	<-done
	p.mu.Lock()
	delete(p.conns, src)
	delete(p.conns, dst)
	p.mu.Unlock()
}

// cut closes every open connection through the proxy.
func (p *slowProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.cuts.Add(1)
}

// close stops accepting, cuts every connection and waits for the copies.
func (p *slowProxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}
