// Package brokerstop shuts down an embedded mochi-mqtt server without the
// deadlock its own Close can hit: Server.Close closes each listener's
// clients through Clients.GetByListener, which takes the clients' read lock
// twice (it calls Len under RLock); a client disconnecting at that moment
// asks for the write lock between the two and both wait forever. Close here
// detaches the listeners first, stops every client through GetAll (one read
// lock) and only then calls Server.Close, which has no listener left to
// walk.
package brokerstop

import (
	"errors"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// ErrShutdown is the reason given to clients stopped by Close.
var ErrShutdown = errors.New("broker shutting down")

// Close stops srv: its listeners with the given ids, all its clients, and
// the server itself.
func Close(srv *mqtt.Server, listenerIDs ...string) error {
	for _, id := range listenerIDs {
		if l, ok := srv.Listeners.Get(id); ok {
			srv.Listeners.Delete(id)
			l.Close(func(string) {})
		}
	}
	for _, cl := range srv.Clients.GetAll() {
		cl.Stop(ErrShutdown)
	}
	return srv.Close()
}
