// Package brokerstop shuts down an embedded mochi-mqtt server without the
// deadlock its own Close can hit: Server.Close closes each listener's
// clients through Clients.GetByListener, which takes the clients' read lock
// twice (it calls Len under RLock); a client disconnecting at that moment
// asks for the write lock between the two and both wait forever. Close here
// detaches the listeners first, stops every client through GetAll (one read
// lock) and only then calls Server.Close, which has no listener left to
// walk.
//
// Server.Close also waits on a WaitGroup to which every accepted connection
// adds itself when its goroutine starts; a connection accepted just before
// the listener closed can add itself while Close waits, which the race
// detector reports. Close therefore gives such connections a moment to
// register after the listeners are closed.
package brokerstop

import (
	"errors"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// ErrShutdown is the reason given to clients stopped by Close.
var ErrShutdown = errors.New("broker shutting down")

// settle is how long connections accepted before the listeners closed get
// to register with the server.
const settle = 50 * time.Millisecond

// Close stops srv: its listeners with the given ids, all its clients, and
// the server itself.
func Close(srv *mqtt.Server, listenerIDs ...string) error {
	for _, id := range listenerIDs {
		if l, ok := srv.Listeners.Get(id); ok {
			srv.Listeners.Delete(id)
			l.Close(func(string) {})
		}
	}
	time.Sleep(settle)
	for _, cl := range srv.Clients.GetAll() {
		cl.Stop(ErrShutdown)
	}
	return srv.Close()
}
