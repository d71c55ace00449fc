package protocol

import (
	"reflect"
	"strings"
	"testing"
)

// TestShapesMatchTypes keeps the density shapes in step with the message
// types: msgpack decodes a struct from an array of exactly as many values
// as it has encoded fields, so a shape with a stale field count or index
// would let array-form messages skip the density check.
func TestShapesMatchTypes(t *testing.T) {
	for _, c := range []struct {
		name string
		typ  reflect.Type
		sh   *shape
	}{
		{"event", reflect.TypeFor[Event](), eventShape},
		{"batch", reflect.TypeFor[Batch](), batchShape},
		{"profile", reflect.TypeFor[ProfileSnapshot](), profileShape},
		{"snapshot", reflect.TypeFor[SnapshotBatch](), snapshotShape},
		{"command", reflect.TypeFor[Command](), commandShape},
	} {
		var keys []string
		for f := range c.typ.Fields() {
			tag, _, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
			if !f.IsExported() || tag == "-" {
				continue
			}
			keys = append(keys, tag)
		}
		if len(keys) != c.sh.fields {
			t.Errorf("%s: shape has %d fields, the type encodes %d (%v)", c.name, c.sh.fields, len(keys), keys)
		}
		for _, a := range c.sh.arrays {
			if a.index >= len(keys) || keys[a.index] != a.key {
				t.Errorf("%s: shape puts %q at index %d; the type's fields are %v", c.name, a.key, a.index, keys)
			}
		}
	}
}
