package protocol

import (
	"testing"
	"time"
)

func TestSmokeBatch(t *testing.T) {
	m, err := NewMapper(MapOptions{Source: Source{Tenant: "acme", Edge: "e1"}, DefaultChannel: "pos", DefaultCountryCode: "44"})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"batch":[{"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":"12.5","products":[{"price":"x"}]},"context":{"traits":{"email":" Ana@Example.COM ","phone":"07700 900123"}}}]}`
	_, err = m.Decode(EndpointBatch, []byte(body), nil)
	if err == nil || err.Error() != "batch[0].properties.products[0].price: not a number" {
		t.Fatalf("err = %v", err)
	}
	body = `{"batch":[{"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":"12.5"},"context":{"traits":{"email":" Ana@Example.COM ","phone":"07700 900123"}}}]}`
	evs, err := m.Decode(EndpointBatch, []byte(body), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", evs[0])
	b, err := Marshal(&Batch{EdgeID: "e1", FirstSeq: 1, LastSeq: 1, Events: evs, SentAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	var got Batch
	if err := Unmarshal(b, &got, Limits{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", got.Events[0])
	g := NewIDGen(nil)
	id := g.New()
	tm, ok := IDTime(id)
	t.Log(id, tm, ok, g.New())
}

func TestSmokeRawBatch(t *testing.T) {
	e := Event{ID: "x", Type: TypeTrack, Name: "n", Identifiers: []Identifier{{"user_id", "u"}}, Properties: map[string]any{"revenue": 1.5}}
	raw, err := MarshalEvent(&e)
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalRawBatch("t", "e", 1, 2, time.Now(), [][]byte{raw, raw})
	if err != nil {
		t.Fatal(err)
	}
	var got Batch
	if err := Unmarshal(b, &got, Limits{}); err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != 2 || got.Events[1].Properties["revenue"] != 1.5 || got.LastSeq != 2 {
		t.Fatalf("%+v", got)
	}
}
