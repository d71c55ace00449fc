package simulate

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/protocol"
)

// Zone numbers of a simulated store's presence sensors, one sensor per
// zone. ZoneMap names them for the edge agent's --presence-zones.
const (
	ZoneEntrance uint8 = 1 + iota
	ZoneBedding
	ZoneKitchen
	ZoneLighting
	ZoneCheckout
	ZoneCafe
	// NumZones is the number of zones, and of sensors, per store.
	NumZones = int(ZoneCafe)
)

// ZoneMap returns the zone names as the edge agent's --presence-zones
// takes them: "1=entrance,2=bedding,…".
func ZoneMap() string {
	var b strings.Builder
	for i, name := range zones {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i + 1))
		b.WriteByte('=')
		b.WriteString(name)
	}
	return b.String()
}

// Dwell units of a stay, in multiples of the edge's minimum dwell. The
// margins on both sides of 1 keep the bridge's outcome (a zone_dwell event
// or none) independent of transport delays and missed sightings.
const (
	shortStayMin, shortStayMax = 0.2, 0.4
	longStayMin, longStayMax   = 2.0, 3.0
)

// Stay is a part of a visit spent in one zone.
type Stay struct {
	Zone uint8
	// Dwell is the stay's length in units of the edge's minimum dwell
	// (--presence-min-dwell): 2 or more for a stay the bridge reports as
	// presence.zone_dwell, 0.4 or less for a zone only passed through.
	Dwell float64
}

// Visit is one shopper's walk through a store as its presence sensors see
// it: the app's beacon id, or for shoppers without the app the hashed MAC
// address of their phone (a fresh one per visit, as phones randomise it).
type Visit struct {
	Person int
	Store  int
	Kind   bridge.IDKind
	ID     []byte
	Stays  []Stay
}

// Identifier returns the identifier the edge's bridge puts on the visit's
// presence events.
func (v *Visit) Identifier() protocol.Identifier {
	return protocol.Identifier{Type: v.Kind.IdentifierType(), Value: hex.EncodeToString(v.ID)}
}

// Length returns the visit's length in units of the minimum dwell.
func (v *Visit) Length() float64 {
	var l float64
	for _, s := range v.Stays {
		l += s.Dwell
	}
	return l
}

// PlannedEvents returns the presence events the edge's bridge produces for
// the whole visit when it sees every stay as planned: one presence.enter,
// one presence.zone_dwell per long stay and one presence.exit.
func (v *Visit) PlannedEvents() map[string]int64 {
	var dwells int64
	for _, s := range v.Stays {
		if s.Dwell >= 1 {
			dwells++
		}
	}
	return map[string]int64{bridge.EventEnter: 1, bridge.EventZoneDwell: dwells, bridge.EventExit: 1}
}

// visit plans a presence visit for sensor frames. A shopper with the app
// and its beacon on identifies over HTTP with the beacon id, so that the
// hub links the beacon's presence events to the account; other shoppers'
// visits send no message.
func (g *Generator) visit(b []byte, meta *Meta) []byte {
	pi := g.pick(len(g.pop.Persons))
	p := &g.pop.Persons[pi]
	si := g.storeFor(p)
	v := &Visit{Person: pi, Store: si}
	v.Stays = append(v.Stays, Stay{Zone: ZoneEntrance, Dwell: g.span(shortStayMin, shortStayMax)})
	inner := [...]uint8{ZoneBedding, ZoneKitchen, ZoneLighting, ZoneCafe}
	g.rng.Shuffle(len(inner), func(i, j int) { inner[i], inner[j] = inner[j], inner[i] })
	for _, z := range inner[:1+g.rng.IntN(3)] {
		d := g.span(longStayMin, longStayMax)
		if g.rng.IntN(100) < 25 {
			d = g.span(shortStayMin, shortStayMax)
		}
		v.Stays = append(v.Stays, Stay{Zone: z, Dwell: d})
	}
	if g.rng.IntN(100) < 60 {
		v.Stays = append(v.Stays, Stay{Zone: ZoneCheckout, Dwell: g.span(longStayMin, longStayMax)})
	}
	v.Stays = append(v.Stays, Stay{Zone: ZoneEntrance, Dwell: g.span(shortStayMin, shortStayMax)})
	meta.Visit = v
	if p.AppAnonID == "" || g.rng.IntN(100) >= 70 {
		v.Kind = bridge.KindMACHash
		sum := sha256.Sum256([]byte("mac:" + g.seqID("")))
		v.ID = sum[:16]
		meta.Kind, meta.Person, meta.Store = KindPresence, pi, si
		return b
	}
	v.Kind = bridge.KindBeaconID
	v.ID, _ = hex.DecodeString(p.BeaconID)
	st := &g.pop.Stores[si]
	b = g.begin(b, "identify", meta, KindPresence, pi, si)
	b = g.ids(b, meta, p.UserID, p.AppAnonID)
	b = append(b, `,"traits":{"beacon_id":`...)
	b = appendStr(b, p.BeaconID)
	meta.add(bridge.KindBeaconID.IdentifierType(), p.BeaconID)
	if p.LoyaltyID != "" {
		b = appendKeyStr(b, "loyalty_id", p.LoyaltyID)
		meta.add(protocol.IDLoyaltyID, p.LoyaltyID)
	}
	b = append(b, `},"properties":{"store_id":`...)
	b = appendStr(b, st.ID)
	b = append(b, `},"context":{"channel":"mobile","device":{"id":`...)
	b = appendStr(b, p.DeviceID)
	b = append(b, `,"type":"ios"}`...)
	meta.add(protocol.IDDeviceID, p.DeviceID)
	b = appendKeyStr(b, "store_id", st.ID)
	return append(b, "}}"...)
}

// span returns a number drawn uniformly from [lo, hi).
func (g *Generator) span(lo, hi float64) float64 { return lo + g.rng.Float64()*(hi-lo) }
