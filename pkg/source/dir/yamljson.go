package dir

import (
	"encoding/json"
	"slices"
	"strconv"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// yamlToJSONStrict is sigs.k8s.io/yaml.YAMLToJSONStrict, byte for byte
// (FuzzYAMLToJSON checks it), but writes the JSON straight from the
// parsed document: the library builds a second tree of the document and
// hands it to encoding/json, which was a fifth of a cold start. Anything
// unusual (a key that is not a string, a float, an error) goes to the
// library, so its messages stay the same. Before either, fastYAMLToJSON
// takes the documents it can read whole.
func yamlToJSONStrict(doc []byte) ([]byte, error) {
	if j, ok := fastYAMLToJSON(doc); ok {
		return j, nil
	}
	var obj any
	if yamlv2.UnmarshalStrict(doc, &obj) == nil {
		if j, ok := appendJSON(make([]byte, 0, len(doc)+len(doc)/4), obj); ok {
			return j, nil
		}
	}
	return yaml.YAMLToJSONStrict(doc)
}

// appendJSON appends v, a value go-yaml decoded into an empty interface, as
// encoding/json would write what sigs.k8s.io/yaml makes of it; ok is false
// for what it leaves to the library.
func appendJSON(dst []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), true
	case bool:
		return strconv.AppendBool(dst, v), true
	case int:
		return strconv.AppendInt(dst, int64(v), 10), true
	case int64:
		return strconv.AppendInt(dst, v, 10), true
	case uint64:
		return strconv.AppendUint(dst, v, 10), true
	case string:
		return appendJSONString(dst, v), true
	case []any:
		dst = append(dst, '[')
		for i, item := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendJSON(dst, item); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case map[any]any:
		return appendJSONObject(dst, v)
	}
	return dst, false // floats and whatever else: rare, and encoding/json's formatting is subtle
}

// appendJSONObject writes a mapping with its keys sorted, as encoding/json
// writes a map; only string keys are taken (others, and the keys they
// would collide with, are the library's to convert).
func appendJSONObject(dst []byte, m map[any]any) ([]byte, bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		s, ok := k.(string)
		if !ok {
			return dst, false
		}
		keys = append(keys, s)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		var ok bool
		if dst, ok = appendJSON(dst, m[k]); !ok {
			return dst, false
		}
	}
	return append(dst, '}'), true
}

// appendJSONString quotes s as encoding/json does: printable ASCII other
// than the characters it escapes goes as it is, anything else through
// encoding/json itself.
func appendJSONString(dst []byte, s string) []byte {
	if plainASCII(s) {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	quoted, err := json.Marshal(s)
	if err != nil { // a string always encodes
		panic("encode a string as JSON: " + err.Error())
	}
	return append(dst, quoted...)
}

func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b < 0x20 || b > 0x7e, b == '"', b == '\\', b == '<', b == '>', b == '&':
			return false
		}
	}
	return true
}
