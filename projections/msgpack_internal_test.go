package projections

import (
	"maps"
	"testing"
)

func FuzzDecodeMetadata(f *testing.F) {
	f.Add([]byte{0x81, 0xa1, 'k', 0xa1, 'v'})
	f.Add(encodeMetadata(map[string]string{"traceparent": "00-x", "name": "OrderPlaced"}))
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		md, err := decodeMetadata(b)
		if err != nil || len(md) == 0 {
			return
		}
		again, err := decodeMetadata(encodeMetadata(md))
		if err != nil || !maps.Equal(md, again) {
			t.Fatalf("round trip of %v: %v, %v", md, again, err)
		}
	})
}
