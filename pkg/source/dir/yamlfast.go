package dir

import (
	"bytes"
	"slices"
)

// fastYAMLToJSON converts the YAML that Service and EndpointSlice files are
// made of, in a fraction of go-yaml's time (go-yaml was two fifths of a
// cold start's CPU at 30,000 Services): block mappings and sequences, one-line
// flow collections, and scalars whose type cannot be in doubt (strings of
// letters, digits and ./_-:, true and false, decimal integers, dotted
// numbers such as IPv4 addresses, and quoted strings without escapes). It
// says ok only for a document it read whole; anything else (comments after
// content, block scalars, anchors, tags, other booleans and nulls, floats,
// escapes, tabs, non-ASCII, duplicate keys, anything malformed) is left to
// go-yaml, which also gives the error messages. Its output is what
// yamlToJSONStrict's go-yaml path gives, byte for byte: FuzzYAMLToJSON
// compares both with sigs.k8s.io/yaml.
func fastYAMLToJSON(doc []byte) ([]byte, bool) {
	p := yamlParser{}
	if !p.split(doc) {
		return nil, false
	}
	if len(p.lines) == 0 {
		return []byte("null"), true // blank or comments only, as the end of a file after its last ---
	}
	root, ok := p.block(p.lines[0].indent)
	if !ok || p.next != len(p.lines) {
		return nil, false
	}
	return root.appendJSON(make([]byte, 0, len(doc)+len(doc)/4))
}

// yamlLine is one line of content: its indentation and its text without
// the indentation and trailing spaces.
type yamlLine struct {
	indent int
	text   []byte
}

type yamlParser struct {
	lines []yamlLine
	next  int // the first line not read yet
	depth int // of the collection being read
}

// maxYAMLDepth is the deepest nesting the fast path reads, of block and
// flow collections each: a Service nests a dozen levels, and a file of
// 16 MiB of "[" must not recurse as deep (go-yaml refuses it with its own
// limit).
const maxYAMLDepth = 64

// yamlValue is a parsed node: a scalar's text (JSON as it is for literals,
// a string to quote otherwise), or a collection.
type yamlValue struct {
	kind  yamlKind
	text  []byte
	keys  [][]byte // of a mapping, parallel to items
	items []*yamlValue
}

type yamlKind uint8

const (
	yamlLiteral yamlKind = iota // true, false, null, an integer: JSON as written
	yamlString
	yamlMapping
	yamlSequence
)

var yamlNull = &yamlValue{kind: yamlLiteral, text: []byte("null")}

// split cuts doc into lines of content, leaving out blank lines and whole
// comment lines; it refuses bytes whose meaning the fast path does not
// handle.
func (p *yamlParser) split(doc []byte) bool {
	for len(doc) > 0 {
		line := doc
		if i := bytes.IndexByte(doc, '\n'); i >= 0 {
			line, doc = doc[:i], doc[i+1:]
		} else {
			doc = nil
		}
		for _, b := range line {
			if b < 0x20 || b >= 0x7f {
				return false // tabs, CR, non-ASCII (even in a comment: it may not be UTF-8)
			}
		}
		indent := 0
		for indent < len(line) && line[indent] == ' ' {
			indent++
		}
		text := bytes.TrimRight(line[indent:], " ")
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		if bytes.IndexByte(text, '#') >= 0 {
			return false // a comment after content, or a '#' in a scalar
		}
		p.lines = append(p.lines, yamlLine{indent, text})
	}
	return true
}

// block reads the mapping or sequence that starts at the next line, whose
// indentation is indent.
func (p *yamlParser) block(indent int) (*yamlValue, bool) {
	if isSequenceItem(p.lines[p.next].text) {
		return p.sequence(indent)
	}
	return p.mapping(indent)
}

func isSequenceItem(text []byte) bool {
	return text[0] == '-' && (len(text) == 1 || text[1] == ' ')
}

// mapping reads the entries of a block mapping at indent.
func (p *yamlParser) mapping(indent int) (*yamlValue, bool) {
	if p.depth++; p.depth > maxYAMLDepth {
		return nil, false
	}
	defer func() { p.depth-- }()
	m := &yamlValue{kind: yamlMapping}
	for p.next < len(p.lines) {
		line := p.lines[p.next]
		if line.indent < indent || (line.indent == indent && isSequenceItem(line.text)) {
			break // the parent's, or invalid: the caller sees lines left
		}
		if line.indent > indent {
			return nil, false // a continuation line
		}
		key, rest, ok := splitEntry(line.text)
		if !ok {
			return nil, false
		}
		p.next++
		var v *yamlValue
		switch {
		case len(rest) > 0:
			v, ok = parseInline(rest)
		case p.next < len(p.lines) && p.lines[p.next].indent > indent:
			v, ok = p.block(p.lines[p.next].indent)
		case p.next < len(p.lines) && p.lines[p.next].indent == indent && isSequenceItem(p.lines[p.next].text):
			v, ok = p.sequence(indent) // a sequence may sit at its key's indentation
		default:
			v = yamlNull
		}
		if !ok {
			return nil, false
		}
		m.keys, m.items = append(m.keys, key), append(m.items, v)
	}
	return m, true
}

// sequence reads the items of a block sequence at indent.
func (p *yamlParser) sequence(indent int) (*yamlValue, bool) {
	if p.depth++; p.depth > maxYAMLDepth {
		return nil, false
	}
	defer func() { p.depth-- }()
	s := &yamlValue{kind: yamlSequence}
	for p.next < len(p.lines) {
		line := p.lines[p.next]
		if line.indent < indent || (line.indent == indent && !isSequenceItem(line.text)) {
			break
		}
		if line.indent > indent {
			return nil, false
		}
		rest := bytes.TrimLeft(line.text[1:], " ")
		var v *yamlValue
		ok := true
		switch {
		case len(rest) == 0:
			p.next++
			v = yamlNull
			if p.next < len(p.lines) && p.lines[p.next].indent > indent {
				v, ok = p.block(p.lines[p.next].indent)
			}
		case isSequenceItem(rest):
			return nil, false // "- - a": left to go-yaml
		case startsEntry(rest):
			// "- key: value": a mapping whose keys line up with this key.
			p.lines[p.next] = yamlLine{indent + len(line.text) - len(rest), rest}
			v, ok = p.mapping(indent + len(line.text) - len(rest))
		default:
			p.next++
			v, ok = parseInline(rest)
		}
		if !ok {
			return nil, false
		}
		s.items = append(s.items, v)
	}
	return s, true
}

// startsEntry says whether text begins with a mapping key: a plain key
// followed by ": " or a colon ending the line.
func startsEntry(text []byte) bool {
	if text[0] == '{' || text[0] == '[' || text[0] == '"' || text[0] == '\'' {
		return false // a flow collection or a quoted scalar (a quoted key is left to go-yaml)
	}
	_, _, ok := splitEntry(text)
	return ok
}

// splitEntry splits "key: rest" or "key:" into the key and the rest.
func splitEntry(text []byte) (key, rest []byte, ok bool) {
	for i := 0; i < len(text); i++ {
		if text[i] == ':' && (i+1 == len(text) || text[i+1] == ' ') {
			key = text[:i]
			if !isPlainKey(key) {
				return nil, nil, false
			}
			return key, bytes.TrimLeft(text[i+1:], " "), true
		}
	}
	return nil, nil, false
}

// parseInline reads text, the rest of a line, as one flow collection or
// scalar.
func parseInline(text []byte) (*yamlValue, bool) {
	v, pos, ok := parseFlow(text, 0, 0)
	return v, ok && pos == len(text)
}

// parseFlow reads the value at text[pos:], inside depth flow collections,
// and returns where it ends, spaces after it skipped.
func parseFlow(text []byte, pos int, depth int) (*yamlValue, int, bool) {
	if pos >= len(text) || depth >= maxYAMLDepth {
		return nil, pos, false
	}
	inFlow := depth > 0
	switch text[pos] {
	case '{':
		return parseFlowCollection(text, pos, depth+1, yamlMapping, '}')
	case '[':
		return parseFlowCollection(text, pos, depth+1, yamlSequence, ']')
	case '"', '\'':
		end := bytes.IndexByte(text[pos+1:], text[pos])
		if end < 0 {
			return nil, pos, false
		}
		s := text[pos+1 : pos+1+end]
		pos += end + 2
		if text[pos-1] == '\'' && pos < len(text) && text[pos] == '\'' {
			return nil, pos, false // '' is an escaped quote
		}
		if text[pos-1] == '"' && bytes.IndexByte(s, '\\') >= 0 {
			return nil, pos, false // escapes
		}
		return &yamlValue{kind: yamlString, text: s}, skipSpaces(text, pos), true
	}
	start := pos
	for pos < len(text) {
		b := text[pos]
		if inFlow && (b == ',' || b == '[' || b == ']' || b == '{' || b == '}') {
			break
		}
		if b == ':' && (inFlow || pos+1 == len(text) || text[pos+1] == ' ') {
			// A mapping where a scalar belongs, or a colon in a flow
			// scalar, where go-yaml's reading of it is subtle.
			return nil, pos, false
		}
		pos++
	}
	v, ok := plainScalar(bytes.TrimRight(text[start:pos], " "))
	return v, pos, ok
}

// parseFlowCollection reads "{k: v, ...}" or "[v, ...]" from text[pos].
func parseFlowCollection(text []byte, pos, depth int, kind yamlKind, closer byte) (*yamlValue, int, bool) {
	c := &yamlValue{kind: kind}
	pos = skipSpaces(text, pos+1)
	if pos < len(text) && text[pos] == closer {
		return c, skipSpaces(text, pos+1), true
	}
	for pos < len(text) {
		if kind == yamlMapping {
			end := pos
			for end < len(text) && text[end] != ':' && text[end] != ',' && text[end] != '}' {
				end++
			}
			if end+1 >= len(text) || text[end] != ':' || text[end+1] != ' ' || !isPlainKey(text[pos:end]) {
				return nil, pos, false
			}
			c.keys = append(c.keys, text[pos:end])
			pos = skipSpaces(text, end+1)
		}
		v, next, ok := parseFlow(text, pos, depth)
		if !ok {
			return nil, pos, false
		}
		c.items = append(c.items, v)
		pos = next
		switch {
		case pos < len(text) && text[pos] == closer:
			return c, skipSpaces(text, pos+1), true
		case pos < len(text) && text[pos] == ',':
			pos = skipSpaces(text, pos+1)
			if pos < len(text) && text[pos] == closer {
				return nil, pos, false // a trailing comma
			}
		default:
			return nil, pos, false
		}
	}
	return nil, pos, false // not closed on this line
}

func skipSpaces(text []byte, pos int) int {
	for pos < len(text) && text[pos] == ' ' {
		pos++
	}
	return pos
}

// plainScalar types an unquoted scalar as go-yaml's resolver would, for the
// forms whose type is certain; ok is false for the rest.
func plainScalar(s []byte) (*yamlValue, bool) {
	switch {
	case len(s) == 0:
		return nil, false
	case string(s) == "true" || string(s) == "false":
		return &yamlValue{kind: yamlLiteral, text: s}, true
	case isPlainWord(s):
		return &yamlValue{kind: yamlString, text: s}, true
	case isDecimalInt(s):
		return &yamlValue{kind: yamlLiteral, text: s}, true
	case isDottedNumbers(s), isUUID(s):
		return &yamlValue{kind: yamlString, text: s}, true
	}
	return nil, false
}

// isUUID says whether s is a UUID (8-4-4-4-12 hexadecimal digits), as
// metadata.uid holds: go-yaml reads none as a timestamp (the year would be
// eight digits) or a number (the dashes), so a string.
func isUUID(s []byte) bool {
	if len(s) != 36 {
		return false
	}
	for i, b := range s {
		switch i {
		case 8, 13, 18, 23:
			if b != '-' {
				return false
			}
		default:
			if !isDigit(b) && !(b >= 'a' && b <= 'f') && !(b >= 'A' && b <= 'F') {
				return false
			}
		}
	}
	return true
}

// isPlainKey says whether s is a key go-yaml reads as this very string
// (a colon, fine in a value, is left out: "a:b: c" is for go-yaml to cut).
func isPlainKey(s []byte) bool {
	return isPlainWord(s) && string(s) != "true" && string(s) != "false" && bytes.IndexByte(s, ':') < 0
}

// isPlainWord says whether s starts with a letter, '_' or '/', holds only
// letters, digits and ./_-: and is none of the words YAML 1.1 reads as
// booleans or null (true and false aside, which plainScalar takes).
func isPlainWord(s []byte) bool {
	if len(s) == 0 || !(isLetter(s[0]) || s[0] == '_' || s[0] == '/') {
		return false
	}
	for _, b := range s {
		if !(isLetter(b) || isDigit(b) || b == '.' || b == '_' || b == '/' || b == '-' || b == ':') {
			return false
		}
	}
	switch string(s) {
	case "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
		"true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL":
		return false
	}
	return true
}

// isDecimalInt says whether s is 0 or a decimal integer without a leading
// zero or plus sign that fits an int64 with room to spare (go-yaml reads a
// leading zero as octal).
func isDecimalInt(s []byte) bool {
	if string(s) == "0" {
		return true
	}
	if s[0] == '-' {
		s = s[1:]
	}
	if len(s) == 0 || len(s) > 18 || s[0] == '0' {
		return false
	}
	return !slices.ContainsFunc(s, func(b byte) bool { return !isDigit(b) })
}

// isDottedNumbers says whether s is three or more groups of digits
// separated by dots (an IPv4 address): neither an integer, a float nor a
// timestamp to go-yaml, so a string.
func isDottedNumbers(s []byte) bool {
	groups := bytes.Split(s, []byte("."))
	if len(groups) < 3 {
		return false
	}
	for _, g := range groups {
		if len(g) == 0 || slices.ContainsFunc(g, func(b byte) bool { return !isDigit(b) }) {
			return false
		}
	}
	return true
}

func isLetter(b byte) bool { return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') }
func isDigit(b byte) bool  { return b >= '0' && b <= '9' }

// appendJSON writes v as appendJSON writes what go-yaml decodes: mapping
// keys sorted; a key given twice is left to go-yaml (strict mode refuses
// it).
func (v *yamlValue) appendJSON(dst []byte) ([]byte, bool) {
	switch v.kind {
	case yamlLiteral:
		return append(dst, v.text...), true
	case yamlString:
		return appendJSONString(dst, string(v.text)), true
	case yamlSequence:
		dst = append(dst, '[')
		for i, item := range v.items {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = item.appendJSON(dst); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	}
	order := make([]int, len(v.keys))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(v.keys[a], v.keys[b]) })
	dst = append(dst, '{')
	for n, i := range order {
		if n > 0 {
			if bytes.Equal(v.keys[order[n-1]], v.keys[i]) {
				return dst, false
			}
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, string(v.keys[i]))
		dst = append(dst, ':')
		var ok bool
		if dst, ok = v.items[i].appendJSON(dst); !ok {
			return dst, false
		}
	}
	return append(dst, '}'), true
}
