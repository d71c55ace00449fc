// Package ui serves the hub's web UI for HQ marketers: a single page that
// looks profiles up by identifier and shows their identifiers, traits with
// lineage, computed traits, consent, timeline and merge history, plus the
// edges and store statistics. It talks to /api/v1/ with the admin token the
// user enters (kept in the browser's session storage).
//
// The page is plain HTML, CSS and JavaScript embedded in the binary: no
// build step and nothing fetched from outside the hub, so it works on a
// machine without internet access. Every response carries a strict
// Content-Security-Policy that allows only the hub's own scripts, styles
// and API.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is the policy sent with every UI response: only the
// hub's own files and API, no inline scripts or styles, no framing.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

// contentTypes are the types of the files the UI ships, set explicitly so
// that they do not depend on the host's MIME tables.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".ico":  "image/x-icon",
}

// Handler serves the UI.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		name := r.URL.Path
		if name == "" || name[len(name)-1] == '/' {
			name += "index.html"
		}
		if ct, ok := contentTypes[path.Ext(name)]; ok {
			h.Set("Content-Type", ct)
		}
		files.ServeHTTP(w, r)
	})
}
