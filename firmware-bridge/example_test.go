package bridge_test

import (
	"fmt"
	"time"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
)

// A device publishes frames; the agent hands each MQTT payload to
// HandleMessage, stores the events it returns, and calls Tick on a timer so
// that people who left get their presence.exit.
func ExampleBridge() {
	br, err := bridge.NewBridge(bridge.Config{ZoneMap: map[uint8]string{3: "shoes"}}, nil)
	if err != nil {
		panic(err)
	}
	payload, _ := bridge.Encode(&bridge.Frame{
		DeviceID: bridge.DeviceID{1, 2, 3, 4, 5, 6, 7, 8}, BootID: 0xb007, Seq: 0, UptimeMS: 60_000,
		Records: []bridge.Record{{Type: bridge.RecordSighting, Sighting: bridge.Sighting{
			Kind: bridge.KindMACHash, ID: bridge.HexBytes{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11}, RSSI: -62, Zone: 3, AgeMS: 2000,
		}}},
	})
	received := time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)

	events, err := br.HandleMessage(payload, received)
	if err != nil {
		panic(err)
	}
	events = append(events, br.Tick(received.Add(5*time.Minute))...)
	for _, e := range events {
		fmt.Println(e.ID, e.Name, e.Identifiers[0], e.OccurredAt.Format(time.TimeOnly), e.Properties["zone"])
	}
	// Output:
	// fw-0102030405060708-0000b007-0-0 presence.enter mac_hash:aabbccddeeff0011 09:59:58 shoes
	// fw-0102030405060708-0000b007-0-0-exit presence.exit mac_hash:aabbccddeeff0011 09:59:58 shoes
}
