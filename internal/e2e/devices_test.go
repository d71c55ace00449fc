package e2e

import (
	"fmt"
	"os/exec"
	"slices"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/unico-cdp/unico/edge/devices"
	bridge "github.com/unico-cdp/unico/firmware-bridge"
)

// TestSensorFramesReachTheProfile: a shopper's app identifies through the
// HTTP API with its beacon id; a presence sensor in the store then sees the
// beacon, publishing binary frames to the agent's device listener. The hub
// ends up with presence.enter, presence.zone_dwell and presence.exit events
// on that shopper's profile. Frames go through Debian's mosquitto_pub when
// it is installed, else through a Go MQTT client.
func TestSensorFramesReachTheProfile(t *testing.T) {
	binaries(t)
	dir := t.TempDir()
	hub := startHub(t, dir+"/hub")
	devPort := freePort(t)
	dev := bridge.DeviceID{0x24, 0x6f, 0x28, 0, 0, 0, 0, 0x42}
	creds := dir + "/devices.txt"
	writeFile(t, creds, dev.String()+" sensor-pass\n")
	edge := startEdge(t, dir+"/edge", "store-s", hub.mqtt,
		"--device-mqtt-addr", fmt.Sprintf("127.0.0.1:%d", devPort), "--device-credentials", creds,
		"--presence-zones", "1=entrance,3=shoes", "--presence-min-dwell", "1s", "--presence-exit-timeout", "3s",
		"--identifier-rules", "traits.beacon_id=beacon_id")

	beacon := bridge.HexBytes{0xbe, 0xac, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55}
	edge.mustPost(t, map[string]any{"type": "identify", "messageId": "app-ident", "userId": "u-ana",
		"traits": map[string]any{"beacon_id": beacon.String()}, "context": map[string]any{"channel": "mobile"}})

	// Two frames: the beacon at the entrance, seen every 2 s for the last
	// 4 s, then in the shoes zone; then nothing, so the session ends.
	frames := [][]byte{
		encodeFrame(t, dev, 0, 10_000,
			bridge.Sighting{Kind: bridge.KindBeaconID, ID: beacon, RSSI: -55, Zone: 1, AgeMS: 4000},
			bridge.Sighting{Kind: bridge.KindBeaconID, ID: beacon, RSSI: -54, Zone: 1, AgeMS: 2000},
			bridge.Sighting{Kind: bridge.KindBeaconID, ID: beacon, RSSI: -52, Zone: 1}),
		encodeFrame(t, dev, 1, 10_100, bridge.Sighting{Kind: bridge.KindBeaconID, ID: beacon, RSSI: -60, Zone: 3}),
	}
	topic := devices.TopicPrefix + dev.String() + devices.TopicSuffix
	publish := publishWithGo
	if _, err := exec.LookPath("mosquitto_pub"); err == nil {
		publish = publishWithMosquittoPub
	} else {
		t.Log("mosquitto_pub not installed: publishing with a Go MQTT client")
	}
	for _, f := range frames {
		publish(t, devPort, dev.String(), "sensor-pass", topic, f)
	}

	var p profileJSON
	waitFor(t, 60*time.Second, "the shopper's profile", func() bool {
		return hub.get(t, "/api/v1/profiles?identifier=user_id:u-ana", &p) == 200
	})
	var names []string
	seen := -1
	waitFor(t, 60*time.Second, "enter, dwell and exit on the shopper's profile", func() bool {
		var tl struct {
			Events []struct {
				Name       string         `json:"name"`
				Channel    string         `json:"channel"`
				Properties map[string]any `json:"properties"`
			} `json:"events"`
		}
		hub.get(t, "/api/v1/profiles/"+p.ID+"/events?limit=100", &tl)
		names = names[:0]
		for _, e := range tl.Events {
			if e.Channel == "iot" {
				names = append(names, e.Name)
			}
		}
		if len(names) != seen {
			seen = len(names)
			t.Logf("iot events on the profile: %v (%d events in all)", names, len(tl.Events))
		}
		return slices.Contains(names, bridge.EventEnter) && slices.Contains(names, bridge.EventZoneDwell) && slices.Contains(names, bridge.EventExit)
	})
	// The device shows in the agent's registry.
	var st struct {
		Devices []bridge.DeviceInfo `json:"devices"`
	}
	getJSON(t, fmt.Sprintf("http://127.0.0.1:%d/v1/status", edge.http), &st)
	if len(st.Devices) != 1 || st.Devices[0].DeviceID != dev.String() || st.Devices[0].Frames != 2 {
		t.Fatalf("device registry: %+v", st.Devices)
	}
}

func encodeFrame(t *testing.T, dev bridge.DeviceID, seq uint32, uptime uint64, ss ...bridge.Sighting) []byte {
	t.Helper()
	var recs []bridge.Record
	for _, s := range ss {
		recs = append(recs, bridge.Record{Type: bridge.RecordSighting, Sighting: s})
	}
	b, err := bridge.Encode(&bridge.Frame{Version: bridge.Version, Type: bridge.FrameReport, DeviceID: dev, BootID: 99, Seq: seq, UptimeMS: uptime, Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func publishWithGo(t *testing.T, port int, user, pass, topic string, payload []byte) {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", port)).
		SetClientID("sensor-" + user).SetUsername(user).SetPassword(pass).SetWriteTimeout(10 * time.Second))
	waitFor(t, 30*time.Second, "the device listener", func() bool {
		tok := c.Connect()
		return tok.WaitTimeout(5*time.Second) && tok.Error() == nil
	})
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("publish frame: %v", tok.Error())
	}
}

func publishWithMosquittoPub(t *testing.T, port int, user, pass, topic string, payload []byte) {
	t.Helper()
	f := t.TempDir() + "/frame.bin"
	writeFile(t, f, string(payload))
	waitFor(t, 30*time.Second, "mosquitto_pub to deliver the frame", func() bool {
		out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-u", user, "-P", pass,
			"-i", "sensor-"+user, "-q", "1", "-t", topic, "-f", f).CombinedOutput()
		if err != nil {
			t.Logf("mosquitto_pub: %v: %s", err, out)
		}
		return err == nil
	})
}
