// Package ui serves the hub's web UI for HQ marketers: a single page that
// looks profiles up by identifier and shows their identifiers, traits with
// lineage, computed traits, consent, timeline and merge history, plus the
// edges and store statistics. It talks to /api/v1/ with the admin token the
// user enters (kept in the browser's session storage).
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the UI.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.FileServerFS(sub)
}
