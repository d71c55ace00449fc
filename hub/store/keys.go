package store

import (
	"encoding/binary"
	"strings"

	"github.com/unico-cdp/unico/protocol"
)

// Key layout. Every key starts with one byte naming its table.
//
//	e <event id>                               → event (protocol.MarshalEvent)
//	n <type> 0 <value>                         → node: the identifier's profile and flags
//	p <profile id>                             → profile record
//	t <profile id> 0 <occurred ns:8> <event id> → a page of timeline entries, this one the
//	                                             newest (appendPage); empty: this entry
//	                                             alone (stores before pages, re-partitions)
//	x <type> 0 <value> 0 <event id>             → cross reference: the identifier is in an
//	                                             event held by another profile
//	m <profile id> 0 <seq:8>                   → merge record
//	r <profile id>                             → id of the profile it was merged into
//	s <tenant> 0 <edge>                        → edge state
//	c <name>                                   → counter (8 bytes)
//	l <seq:8>                                  → change log: profiles a transaction changed or
//	                                             deleted, with their change versions (changes.go)
//	d <profile id>                             → change mark of stores written before the log
//	                                             (version:8), read and cleared like log entries
//	g <sha256 of identifiers:16>               → smallest id of an event with those identifiers
//	                                             whose links were refused (see repeat.go)
const (
	tEvent     = 'e'
	tNode      = 'n'
	tProfile   = 'p'
	tTimeline  = 't'
	tCross     = 'x'
	tMerge     = 'm'
	tRedirect  = 'r'
	tEdge      = 's'
	tCounter   = 'c'
	tDirty     = 'd'
	tChangeLog = 'l'
	tSignature = 'g'
)

func dirtyKey(pid string) []byte { return append([]byte{tDirty}, pid...) }

func eventKey(id string) []byte { return append([]byte{tEvent}, id...) }

func identKey(table byte, x protocol.Identifier) []byte {
	k := make([]byte, 0, 2+len(x.Type)+len(x.Value))
	k = append(k, table)
	k = append(k, x.Type...)
	k = append(k, 0)
	return append(k, x.Value...)
}

func nodeKey(x protocol.Identifier) []byte { return identKey(tNode, x) }

// parseNodeKey returns the identifier of a node key.
func parseNodeKey(k string) (protocol.Identifier, bool) {
	if len(k) < 2 || k[0] != tNode {
		return protocol.Identifier{}, false
	}
	typ, value, ok := strings.Cut(k[1:], "\x00")
	return protocol.Identifier{Type: typ, Value: value}, ok
}

func crossPrefix(x protocol.Identifier) []byte { return append(identKey(tCross, x), 0) }

func crossKey(x protocol.Identifier, eventID string) []byte {
	k := make([]byte, 0, 3+len(x.Type)+len(x.Value)+len(eventID))
	k = append(k, tCross)
	k = append(k, x.Type...)
	k = append(k, 0)
	k = append(k, x.Value...)
	k = append(k, 0)
	return append(k, eventID...)
}

func profileKey(id string) []byte { return append([]byte{tProfile}, id...) }

// prefixed returns table, pid and a 0, with room for more bytes.
func prefixed(table byte, pid string, more int) []byte {
	k := make([]byte, 0, 2+len(pid)+more)
	k = append(k, table)
	k = append(k, pid...)
	return append(k, 0)
}

func timelinePrefix(pid string) []byte { return prefixed(tTimeline, pid, 0) }

// timelinePrefixLen is the length of timelinePrefix(pid).
func timelinePrefixLen(pid string) int { return 2 + len(pid) }

// timelineKey returns the key of entry e in pid's timeline.
func timelineKey(pid string, e tlEntry) []byte {
	k := prefixed(tTimeline, pid, 8+len(e.ID))
	k = binary.BigEndian.AppendUint64(k, uint64(e.At))
	return append(k, e.ID...)
}

// timelineEntry returns the entry of timeline key k under prefix.
func timelineEntry(prefix, k []byte) tlEntry {
	return tlEntry{At: int64(binary.BigEndian.Uint64(k[len(prefix):])), ID: string(k[len(prefix)+8:])}
}

func mergePrefix(pid string) []byte { return prefixed(tMerge, pid, 0) }

func mergeKey(pid string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(prefixed(tMerge, pid, 8), seq)
}

func redirectKey(pid string) []byte { return append([]byte{tRedirect}, pid...) }

func edgeKey(tenant, edge string) []byte {
	k := append([]byte{tEdge}, tenant...)
	k = append(k, 0)
	return append(k, edge...)
}

func counterKey(name string) []byte { return append([]byte{tCounter}, name...) }
