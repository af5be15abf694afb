package dir

import (
	"bytes"
	"slices"
	"sync"
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
	p := yamlParsers.Get().(*yamlParser)
	defer p.release()
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
	return p.appendJSON(make([]byte, 0, len(doc)+len(doc)/4), root), true
}

// yamlLine is one line of content: its indentation and its text without
// the indentation and trailing spaces.
type yamlLine struct {
	indent int
	text   []byte
}

// yamlParser reads one document into a tree whose nodes and entries are
// indexes into its own slices, and parsers are reused: a Service or an
// EndpointSlice has dozens of nodes, and allocating each, with slices grown
// entry by entry, was half of what decoding a file allocated
// (BenchmarkDecodeFile: 14.3 KB per file, 7.3 KB since), garbage the
// collector paid for at every cold start.
type yamlParser struct {
	lines   []yamlLine
	next    int         // the first line not read yet
	depth   int         // of the collection being read
	open    []yamlEntry // the entries of the collections being read, innermost last
	values  []yamlValue // every node
	entries []yamlEntry // the entries of every closed collection
}

var yamlParsers = sync.Pool{New: func() any { return new(yamlParser) }}

// maxPooledLines bounds the documents whose parser is reused: one of a
// large document would keep its large slices.
const maxPooledLines = 4096

// release empties p, which holds slices of the document, and returns it to
// the pool.
func (p *yamlParser) release() {
	if cap(p.lines) > maxPooledLines {
		return
	}
	clear(p.lines)
	clear(p.open)
	clear(p.values)
	clear(p.entries)
	*p = yamlParser{lines: p.lines[:0], open: p.open[:0], values: p.values[:0], entries: p.entries[:0]}
	yamlParsers.Put(p)
}

// value adds a node and returns its index.
func (p *yamlParser) value(kind yamlKind, text []byte) int32 {
	p.values = append(p.values, yamlValue{kind: kind, text: text})
	return int32(len(p.values) - 1)
}

// close ends the collection whose entries are p.open[mark:]: a mapping's
// keys are sorted, as JSON is written, and a key given twice is left to
// go-yaml (strict mode refuses it).
func (p *yamlParser) close(kind yamlKind, mark int) (int32, bool) {
	open := p.open[mark:]
	if kind == yamlMapping {
		slices.SortFunc(open, func(a, b yamlEntry) int { return bytes.Compare(a.key, b.key) })
		for i := 1; i < len(open); i++ {
			if bytes.Equal(open[i-1].key, open[i].key) {
				return 0, false
			}
		}
	}
	v := p.value(kind, nil)
	p.values[v].first, p.values[v].count = int32(len(p.entries)), int32(len(open))
	p.entries = append(p.entries, open...)
	p.open = p.open[:mark]
	return v, true
}

// maxYAMLDepth is the deepest nesting the fast path reads, of block and
// flow collections each: a Service nests a dozen levels, and a file of
// 16 MiB of "[" must not recurse as deep (go-yaml refuses it with its own
// limit).
const maxYAMLDepth = 64

// yamlValue is a parsed node: a scalar's text (JSON as it is for literals,
// a string to quote otherwise), or a collection.
type yamlValue struct {
	kind yamlKind
	text []byte
	// first and count are a collection's entries in the parser's: a
	// mapping's sorted by key, a sequence's without keys.
	first, count int32
}

type yamlEntry struct {
	key   []byte
	value int32
}

type yamlKind uint8

const (
	yamlLiteral yamlKind = iota // true, false, null, an integer: JSON as written
	yamlString
	yamlMapping
	yamlSequence
)

var yamlNullText = []byte("null")

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
func (p *yamlParser) block(indent int) (int32, bool) {
	if isSequenceItem(p.lines[p.next].text) {
		return p.sequence(indent)
	}
	return p.mapping(indent)
}

func isSequenceItem(text []byte) bool {
	return text[0] == '-' && (len(text) == 1 || text[1] == ' ')
}

// mapping reads the entries of a block mapping at indent.
func (p *yamlParser) mapping(indent int) (int32, bool) {
	if p.depth++; p.depth > maxYAMLDepth {
		return 0, false
	}
	defer func() { p.depth-- }()
	mark := len(p.open)
	for p.next < len(p.lines) {
		line := p.lines[p.next]
		if line.indent < indent || (line.indent == indent && isSequenceItem(line.text)) {
			break // the parent's, or invalid: the caller sees lines left
		}
		if line.indent > indent {
			return 0, false // a continuation line
		}
		key, rest, ok := splitEntry(line.text)
		if !ok {
			return 0, false
		}
		p.next++
		var v int32
		switch {
		case len(rest) > 0:
			v, ok = p.parseInline(rest)
		case p.next < len(p.lines) && p.lines[p.next].indent > indent:
			v, ok = p.block(p.lines[p.next].indent)
		case p.next < len(p.lines) && p.lines[p.next].indent == indent && isSequenceItem(p.lines[p.next].text):
			v, ok = p.sequence(indent) // a sequence may sit at its key's indentation
		default:
			v = p.value(yamlLiteral, yamlNullText)
		}
		if !ok {
			return 0, false
		}
		p.open = append(p.open, yamlEntry{key, v})
	}
	return p.close(yamlMapping, mark)
}

// sequence reads the items of a block sequence at indent.
func (p *yamlParser) sequence(indent int) (int32, bool) {
	if p.depth++; p.depth > maxYAMLDepth {
		return 0, false
	}
	defer func() { p.depth-- }()
	mark := len(p.open)
	for p.next < len(p.lines) {
		line := p.lines[p.next]
		if line.indent < indent || (line.indent == indent && !isSequenceItem(line.text)) {
			break
		}
		if line.indent > indent {
			return 0, false
		}
		rest := bytes.TrimLeft(line.text[1:], " ")
		var v int32
		ok := true
		switch {
		case len(rest) == 0:
			p.next++
			v = p.value(yamlLiteral, yamlNullText)
			if p.next < len(p.lines) && p.lines[p.next].indent > indent {
				v, ok = p.block(p.lines[p.next].indent)
			}
		case isSequenceItem(rest):
			return 0, false // "- - a": left to go-yaml
		case startsEntry(rest):
			// "- key: value": a mapping whose keys line up with this key.
			p.lines[p.next] = yamlLine{indent + len(line.text) - len(rest), rest}
			v, ok = p.mapping(indent + len(line.text) - len(rest))
		default:
			p.next++
			v, ok = p.parseInline(rest)
		}
		if !ok {
			return 0, false
		}
		p.open = append(p.open, yamlEntry{value: v})
	}
	return p.close(yamlSequence, mark)
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
func (p *yamlParser) parseInline(text []byte) (int32, bool) {
	v, pos, ok := p.parseFlow(text, 0, 0)
	return v, ok && pos == len(text)
}

// parseFlow reads the value at text[pos:], inside depth flow collections,
// and returns where it ends, spaces after it skipped.
func (p *yamlParser) parseFlow(text []byte, pos int, depth int) (int32, int, bool) {
	if pos >= len(text) || depth >= maxYAMLDepth {
		return 0, pos, false
	}
	inFlow := depth > 0
	switch text[pos] {
	case '{':
		return p.parseFlowCollection(text, pos, depth+1, yamlMapping, '}')
	case '[':
		return p.parseFlowCollection(text, pos, depth+1, yamlSequence, ']')
	case '"', '\'':
		end := bytes.IndexByte(text[pos+1:], text[pos])
		if end < 0 {
			return 0, pos, false
		}
		s := text[pos+1 : pos+1+end]
		pos += end + 2
		if text[pos-1] == '\'' && pos < len(text) && text[pos] == '\'' {
			return 0, pos, false // '' is an escaped quote
		}
		if text[pos-1] == '"' && bytes.IndexByte(s, '\\') >= 0 {
			return 0, pos, false // escapes
		}
		return p.value(yamlString, s), skipSpaces(text, pos), true
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
			return 0, pos, false
		}
		pos++
	}
	v, ok := p.plainScalar(bytes.TrimRight(text[start:pos], " "))
	return v, pos, ok
}

// parseFlowCollection reads "{k: v, ...}" or "[v, ...]" from text[pos].
func (p *yamlParser) parseFlowCollection(text []byte, pos, depth int, kind yamlKind, closer byte) (int32, int, bool) {
	mark := len(p.open)
	pos = skipSpaces(text, pos+1)
	if pos < len(text) && text[pos] == closer {
		c, ok := p.close(kind, mark)
		return c, skipSpaces(text, pos+1), ok
	}
	for pos < len(text) {
		var key []byte
		if kind == yamlMapping {
			end := pos
			for end < len(text) && text[end] != ':' && text[end] != ',' && text[end] != '}' {
				end++
			}
			if end+1 >= len(text) || text[end] != ':' || text[end+1] != ' ' || !isPlainKey(text[pos:end]) {
				return 0, pos, false
			}
			key = text[pos:end]
			pos = skipSpaces(text, end+1)
		}
		v, next, ok := p.parseFlow(text, pos, depth)
		if !ok {
			return 0, pos, false
		}
		p.open = append(p.open, yamlEntry{key, v})
		pos = next
		switch {
		case pos < len(text) && text[pos] == closer:
			c, ok := p.close(kind, mark)
			return c, skipSpaces(text, pos+1), ok
		case pos < len(text) && text[pos] == ',':
			pos = skipSpaces(text, pos+1)
			if pos < len(text) && text[pos] == closer {
				return 0, pos, false // a trailing comma
			}
		default:
			return 0, pos, false
		}
	}
	return 0, pos, false // not closed on this line
}

func skipSpaces(text []byte, pos int) int {
	for pos < len(text) && text[pos] == ' ' {
		pos++
	}
	return pos
}

// plainScalar types an unquoted scalar as go-yaml's resolver would, for the
// forms whose type is certain; ok is false for the rest.
func (p *yamlParser) plainScalar(s []byte) (int32, bool) {
	switch {
	case len(s) == 0:
		return 0, false
	case string(s) == "true" || string(s) == "false":
		return p.value(yamlLiteral, s), true
	case isPlainWord(s):
		return p.value(yamlString, s), true
	case isDecimalInt(s):
		return p.value(yamlLiteral, s), true
	case isDottedNumbers(s), isUUID(s):
		return p.value(yamlString, s), true
	}
	return 0, false
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
// A key longer than maxPlainKey is left to go-yaml too, which refuses
// implicit keys of more than 1,024 characters, as YAML has it.
func isPlainKey(s []byte) bool {
	return len(s) <= maxPlainKey && isPlainWord(s) && string(s) != "true" && string(s) != "false" && bytes.IndexByte(s, ':') < 0
}

// maxPlainKey is the longest key the fast path reads; Kubernetes keys are
// at most 317 bytes (a 253-byte prefix, a slash and a 63-byte name).
const maxPlainKey = 1000

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

// appendJSON writes node v as appendJSON writes what go-yaml decodes (its
// mapping keys are sorted already).
func (p *yamlParser) appendJSON(dst []byte, v int32) []byte {
	node := p.values[v]
	switch node.kind {
	case yamlLiteral:
		return append(dst, node.text...)
	case yamlString:
		return appendJSONString(dst, string(node.text))
	}
	open, closer := byte('{'), byte('}')
	if node.kind == yamlSequence {
		open, closer = '[', ']'
	}
	dst = append(dst, open)
	for i, e := range p.entries[node.first : node.first+node.count] {
		if i > 0 {
			dst = append(dst, ',')
		}
		if node.kind == yamlMapping {
			dst = appendJSONString(dst, string(e.key))
			dst = append(dst, ':')
		}
		dst = p.appendJSON(dst, e.value)
	}
	return append(dst, closer)
}
