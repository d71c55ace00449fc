package ingest

import (
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"
)

// PprofRoutes are the Go runtime profiles (net/http/pprof's endpoints
// under /debug/pprof/, without the index page) as Admin routes, so that only an operator reaches
// them: CPU profile, heap, allocations, goroutines, blocking, mutexes and
// execution trace.
func PprofRoutes() map[string]fasthttp.RequestHandler {
	routes := make(map[string]fasthttp.RequestHandler)
	for _, p := range []string{
		"cmdline", "profile", "symbol", "trace",
		"allocs", "block", "goroutine", "heap", "mutex", "threadcreate",
	} {
		routes["/debug/pprof/"+p] = pprofhandler.PprofHandler
	}
	return routes
}
