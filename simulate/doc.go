// Package simulate generates synthetic omnichannel traffic for Unico: a
// seeded population of customers with messy, overlapping identifiers, and a
// deterministic stream of Segment-compatible messages that their visits to
// stores, kiosks, web and app sessions, contact-center calls and in-store
// presence sensors would produce.
//
// The same seed always yields the same population and, with a simulated
// clock, byte-identical messages. Alongside the messages the package keeps
// the ground truth: for every person, the exact identifiers (normalised as
// the edge's protocol.Mapper normalises them) that accepted events attached
// to that person, and the orders and revenue expected in their profile.
// Identifiers that several people share on purpose (family e-mail addresses,
// a store's generic loyalty card, a POS terminal's anonymous id) are marked
// as shared in the truth.
//
// Messages are written with an append-only JSON encoder into reusable
// buffers, so one goroutine can build batches at load-test rates. Run sends
// batches to edge agents over HTTP (POST /v1/batch), honouring Retry-After
// on 429 and 503.
package simulate
