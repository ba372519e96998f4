package projections

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// errMsgpack is wrapped by every metadata decoding error.
var errMsgpack = errors.New("malformed msgpack metadata")

// decodeMetadata decodes the metadata field of a stream entry written by
// watermill-redisstream's default marshaler: a msgpack map of strings to
// strings (vmihailenco/msgpack's encoding of message.Metadata). Nil keys or
// values are read as empty strings; anything else is an error. It never
// panics on untrusted input.
func decodeMetadata(b []byte) (map[string]string, error) {
	d := msgpackDecoder{b: b}
	n, null, err := d.mapLen()
	if err != nil {
		return nil, err
	}
	if null {
		return nil, nil
	}
	// Every entry takes at least two bytes: a hostile length cannot make
	// us allocate more than the input allows.
	if n > len(d.b)/2 {
		return nil, fmt.Errorf("%w: map of %d entries in %d bytes", errMsgpack, n, len(b))
	}
	md := make(map[string]string, n)
	for range n {
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		v, err := d.str()
		if err != nil {
			return nil, err
		}
		md[k] = v
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errMsgpack, len(d.b))
	}
	return md, nil
}

type msgpackDecoder struct{ b []byte }

func (d *msgpackDecoder) byte() (byte, error) {
	if len(d.b) == 0 {
		return 0, fmt.Errorf("%w: unexpected end", errMsgpack)
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c, nil
}

// uint reads a big-endian unsigned integer of size bytes.
func (d *msgpackDecoder) uint(size int) (int, error) {
	if len(d.b) < size {
		return 0, fmt.Errorf("%w: unexpected end", errMsgpack)
	}
	var n uint64
	switch size {
	case 1:
		n = uint64(d.b[0])
	case 2:
		n = uint64(binary.BigEndian.Uint16(d.b))
	case 4:
		n = uint64(binary.BigEndian.Uint32(d.b))
	}
	d.b = d.b[size:]
	if n > uint64(maxMsgpackLen) {
		return 0, fmt.Errorf("%w: length %d too large", errMsgpack, n)
	}
	return int(n), nil
}

// maxMsgpackLen bounds one length read from the input.
const maxMsgpackLen = 1 << 30

func (d *msgpackDecoder) mapLen() (n int, null bool, err error) {
	c, err := d.byte()
	if err != nil {
		return 0, false, err
	}
	switch {
	case c == 0xc0:
		return 0, true, nil
	case c&0xf0 == 0x80:
		return int(c & 0x0f), false, nil
	case c == 0xde:
		n, err = d.uint(2)
	case c == 0xdf:
		n, err = d.uint(4)
	default:
		return 0, false, fmt.Errorf("%w: want a map, got type byte 0x%02x", errMsgpack, c)
	}
	return n, false, err
}

// str reads a str, bin or nil value as a string.
func (d *msgpackDecoder) str() (string, error) {
	c, err := d.byte()
	if err != nil {
		return "", err
	}
	var n int
	switch {
	case c == 0xc0:
		return "", nil
	case c&0xe0 == 0xa0:
		n = int(c & 0x1f)
	case c == 0xd9, c == 0xc4:
		n, err = d.uint(1)
	case c == 0xda, c == 0xc5:
		n, err = d.uint(2)
	case c == 0xdb, c == 0xc6:
		n, err = d.uint(4)
	default:
		return "", fmt.Errorf("%w: want a string, got type byte 0x%02x", errMsgpack, c)
	}
	if err != nil {
		return "", err
	}
	if len(d.b) < n {
		return "", fmt.Errorf("%w: string of %d bytes, %d left", errMsgpack, n, len(d.b))
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s, nil
}

// encodeMetadata encodes md as msgpack in the form decodeMetadata and
// watermill-redisstream's default unmarshaler read, for the entries this
// package writes itself (dead letters and the in-memory log). An empty md
// gives nil, as the marshaler writes it.
func encodeMetadata(md map[string]string) []byte {
	if len(md) == 0 {
		return nil
	}
	b := make([]byte, 0, 16*len(md))
	switch n := len(md); {
	case n < 16:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0xde)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0xdf)
		b = binary.BigEndian.AppendUint32(b, uint32(n))
	}
	for k, v := range md {
		b = appendStr(appendStr(b, k), v)
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= 0xff:
		b = append(b, 0xd9, byte(n))
	case n <= 0xffff:
		b = append(b, 0xda)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0xdb)
		b = binary.BigEndian.AppendUint32(b, uint32(n))
	}
	return append(b, s...)
}
