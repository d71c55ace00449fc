package protocol

import "time"

// Kind says which message a payload holds. It is the third byte of every
// encoded payload, after the magic byte and the version.
type Kind byte

// Message kinds.
const (
	KindBatch    Kind = 'B'
	KindAck      Kind = 'A'
	KindSnapshot Kind = 'S'
	KindCommand  Kind = 'C'
)

func (k Kind) String() string {
	switch k {
	case KindBatch:
		return "batch"
	case KindAck:
		return "ack"
	case KindSnapshot:
		return "snapshot"
	case KindCommand:
		return "command"
	}
	return "unknown"
}

// Batch carries queued events from one edge to the hub. Sequence numbers are
// assigned by the edge's durable queue; a batch covers the contiguous range
// [FirstSeq, LastSeq]. Events dropped at the edge by an overflow policy leave
// gaps inside the range, so len(Events) may be smaller than the range.
type Batch struct {
	Tenant   string    `msgpack:"tn"`
	EdgeID   string    `msgpack:"ed"`
	FirstSeq uint64    `msgpack:"fs"`
	LastSeq  uint64    `msgpack:"ls"`
	SentAt   time.Time `msgpack:"sa"`
	// Backlog is the edge's queue depth (events) when it sent the batch,
	// so the hub can show how far behind each edge is.
	Backlog int64   `msgpack:"bl,omitempty"`
	Events  []Event `msgpack:"ev"`
	// Raw, when a receiver sets it (see BatchEventBytes), holds the encoded
	// bytes of each event in Events, so that they can be stored without
	// encoding them again. It is never sent.
	Raw [][]byte `msgpack:"-" json:"-"`
}

// AckStatus says what the hub did with a batch.
type AckStatus string

// Ack statuses.
const (
	// AckOK means every event of the batch is durably committed at the hub
	// (or was a duplicate of one that is). The edge may delete the range.
	AckOK AckStatus = "ok"
	// AckRejected means the batch could not be decoded or validated. The
	// edge must not resend it unchanged; it keeps the events and reports
	// them (quarantine) rather than deleting them silently.
	AckRejected AckStatus = "rejected"
	// AckRetry means the hub could not commit now (overload, shutdown).
	// The edge resends later.
	AckRetry AckStatus = "retry"
	// AckResume is an edge's snapshot ack sent when it (re)connects: the
	// seq it has applied, so the hub resends anything after it at once.
	AckResume AckStatus = "resume"
)

// Ack is the hub's application-level acknowledgement of a batch. Only an
// AckOK lets the edge delete queued events; an MQTT PUBACK never does.
type Ack struct {
	EdgeID     string    `msgpack:"ed"`
	FirstSeq   uint64    `msgpack:"fs"`
	LastSeq    uint64    `msgpack:"ls"`
	Status     AckStatus `msgpack:"st"`
	Error      string    `msgpack:"er,omitempty"`
	Accepted   int       `msgpack:"ac"`
	Duplicates int       `msgpack:"du"`
	AckedAt    time.Time `msgpack:"at"`
}

// ProfileSnapshot is the compact view of one profile that the hub pushes to
// the edges that should hold it, for offline personalization.
type ProfileSnapshot struct {
	ProfileID string `msgpack:"id"`
	// Tombstone means the profile left this edge's set, was merged into
	// another or erased: the edge drops it.
	Tombstone   bool            `msgpack:"tb,omitempty"`
	Identifiers []Identifier    `msgpack:"ids,omitempty"`
	Traits      map[string]any  `msgpack:"tr,omitempty"`
	Computed    map[string]any  `msgpack:"cp,omitempty"`
	Segments    []string        `msgpack:"sg,omitempty"`
	Consent     map[string]bool `msgpack:"cs,omitempty"`
	Offers      []Offer         `msgpack:"of,omitempty"`
	UpdatedAt   time.Time       `msgpack:"ua"`
}

// Offer is a next-best offer for a profile.
type Offer struct {
	Product string  `msgpack:"p" json:"product"`
	Score   float64 `msgpack:"s" json:"score"`
	Reason  string  `msgpack:"r,omitempty" json:"reason,omitempty"`
}

// SnapshotBatch carries profile snapshots to one edge. Seq is the edge's
// downlink sequence; the edge applies batches in Seq order and acks the
// highest applied Seq.
type SnapshotBatch struct {
	EdgeID   string            `msgpack:"ed"`
	Seq      uint64            `msgpack:"sq"`
	FullSync bool              `msgpack:"fu,omitempty"`
	Profiles []ProfileSnapshot `msgpack:"pf"`
}

// Command kinds.
const (
	CommandErase = "erase"
)

// Command is an instruction from the hub to an edge, such as the erasure of
// a person from the edge's caches.
type Command struct {
	ID          string       `msgpack:"id"`
	Type        string       `msgpack:"k"`
	ProfileID   string       `msgpack:"pid,omitempty"`
	Identifiers []Identifier `msgpack:"ids,omitempty"`
	IssuedAt    time.Time    `msgpack:"at"`
}
