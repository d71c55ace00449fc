package protocol

import (
	"time"
)

// Event types. They follow the Segment specification's message types.
const (
	TypeTrack    = "track"
	TypeIdentify = "identify"
	TypePage     = "page"
	TypeScreen   = "screen"
	TypeGroup    = "group"
	TypeAlias    = "alias"
)

// Channels name the kind of touchpoint an event came from.
const (
	ChannelPOS           = "pos"
	ChannelKiosk         = "kiosk"
	ChannelWeb           = "web"
	ChannelApp           = "app"
	ChannelContactCenter = "contact_center"
	ChannelIoT           = "iot"
	ChannelServer        = "server"
	ChannelImport        = "import"
)

// KnownChannel reports whether c is one of the channels Unico knows.
func KnownChannel(c string) bool {
	switch c {
	case ChannelPOS, ChannelKiosk, ChannelWeb, ChannelApp, ChannelContactCenter,
		ChannelIoT, ChannelServer, ChannelImport:
		return true
	}
	return false
}

// Identifier types extracted by default.
const (
	IDUserID      = "user_id"
	IDAnonymousID = "anonymous_id"
	IDEmail       = "email"
	IDPhone       = "phone"
	IDLoyaltyID   = "loyalty_id"
	IDDeviceID    = "device_id"
	IDMACHash     = "mac_hash"
	IDGroupID     = "group_id"
)

// Identifier is one (type, value) pair that names a person or a device, such
// as ("email", "ana@example.com").
type Identifier struct {
	Type  string `msgpack:"t" json:"type"`
	Value string `msgpack:"v" json:"value"`
}

// String returns "type:value".
func (id Identifier) String() string { return id.Type + ":" + id.Value }

// Source says where an event was captured.
type Source struct {
	Tenant string `msgpack:"tn,omitempty" json:"tenant,omitempty"`
	Site   string `msgpack:"st,omitempty" json:"site,omitempty"`
	Edge   string `msgpack:"ed,omitempty" json:"edge,omitempty"`
	Device string `msgpack:"dv,omitempty" json:"device,omitempty"`
}

// Event is the envelope every touchpoint's data is turned into. It is what
// the edge stores, forwards in batches and what the hub resolves into
// profiles.
type Event struct {
	// ID is globally unique. It is the producer's messageId when one was
	// given, otherwise a sortable ID from an IDGen.
	ID string `msgpack:"id" json:"id"`
	// Type is one of the Type* constants.
	Type string `msgpack:"ty" json:"type"`
	// Name is the event name of a track, the page or screen name of a page
	// or screen call.
	Name        string       `msgpack:"n,omitempty" json:"name,omitempty"`
	Channel     string       `msgpack:"ch,omitempty" json:"channel,omitempty"`
	Source      Source       `msgpack:"src" json:"source"`
	Identifiers []Identifier `msgpack:"ids,omitempty" json:"identifiers,omitempty"`
	// PreviousID is the previous identity of an alias call.
	PreviousID string `msgpack:"pid,omitempty" json:"previous_id,omitempty"`
	// GroupID is the account of a group call.
	GroupID    string         `msgpack:"gid,omitempty" json:"group_id,omitempty"`
	Traits     map[string]any `msgpack:"tr,omitempty" json:"traits,omitempty"`
	Properties map[string]any `msgpack:"pr,omitempty" json:"properties,omitempty"`
	// Context keeps the producer's context object minus the parts lifted
	// into other fields (traits, consent).
	Context map[string]any `msgpack:"cx,omitempty" json:"context,omitempty"`
	// Consent maps a purpose ("marketing", "analytics", …) to granted (true)
	// or denied (false).
	Consent    map[string]bool `msgpack:"cs,omitempty" json:"consent,omitempty"`
	OccurredAt time.Time       `msgpack:"oa" json:"occurred_at"`
	ReceivedAt time.Time       `msgpack:"ra" json:"received_at"`
}

// HasIdentifier reports whether e carries the identifier (t, v).
func (e *Event) HasIdentifier(t, v string) bool {
	for _, id := range e.Identifiers {
		if id.Type == t && id.Value == v {
			return true
		}
	}
	return false
}

// AddIdentifier appends (t, v) unless it is empty or already present.
func (e *Event) AddIdentifier(t, v string) {
	if t == "" || v == "" || e.HasIdentifier(t, v) {
		return
	}
	e.Identifiers = append(e.Identifiers, Identifier{Type: t, Value: v})
}
