package dir

import (
	"bytes"
	"crypto/sha256"
	goruntime "runtime"
	"slices"
	"sync"
)

// textSum identifies a text (a file's content, one document of it): the
// first half of its SHA-256, as unlikely as the whole to collide between
// two versions of a file (2^-64 for a file of 2^32 documents), in half the
// space.
type textSum [16]byte

func sumOf(text []byte) textSum {
	full := sha256.Sum256(text)
	return textSum(full[:16])
}

func (s textSum) compare(o textSum) int { return bytes.Compare(s[:], o[:]) }

// docIndex locates, in the stored version of a file it was made with, the
// objects of each document by its text: a change to one document of a
// large file then decodes that document only, not the thousands around it.
// Only files of at least indexedDocuments documents have one, and only
// documents that decoding had nothing to say about are in it (a note
// carries the document's position, which may have moved). It is sorted by
// sum: 30,000 documents took 7 MB as a Go map and take 1.2 MB so.
type docIndex []indexedDoc

type indexedDoc struct {
	sum textSum
	docRange
}

// docRange is where one document's objects are in a storedFile.
type docRange struct{ services, slices, endpoints [2]int32 }

// find is where the document with sum is, if the index has it.
func (idx docIndex) find(sum textSum) (docRange, bool) {
	i, ok := slices.BinarySearchFunc(idx, sum, func(d indexedDoc, sum textSum) int { return d.sum.compare(sum) })
	if !ok {
		return docRange{}, false
	}
	return idx[i].docRange, true
}

// indexedDocuments is how many documents a file needs to get a docIndex:
// in a file of one Service and its slice the index would cost more than
// it saves.
const indexedDocuments = 64

// decodedDoc is what one document gave: its objects, stored, and notes.
type decodedDoc struct {
	sum   textSum
	objs  *storedFile
	notes []note
}

// decodeStored decodes a file into what the source keeps, taking the
// objects of each document whose text the previous version (previous,
// with its index) also had from there, and indexes the result if the file
// has at least indexFrom documents (indexedDocuments, but in tests). Any
// document that cannot be decoded fails the whole file.
func decodeStored(name string, data []byte, previous *storedFile, index docIndex, indexFrom int) (*storedFile, []note, docIndex, error) {
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, nil, nil, err
	}
	decoded := make([]decodedDoc, len(docs))
	parts := 1
	if len(docs) >= parallelDocuments {
		parts = goruntime.GOMAXPROCS(0)
	}
	errs := make([]error, parts)
	per := (len(docs) + parts - 1) / parts
	var wg sync.WaitGroup
	for p := range parts {
		from, to := min(p*per, len(docs)), min((p+1)*per, len(docs))
		wg.Go(func() { errs[p] = decodeDocs(name, docs[from:to], decoded[from:to], previous, index) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, nil, nil, err // the first failing document, as read in order
		}
	}
	objs, notes, next := joinDocuments(decoded, len(docs) >= indexFrom)
	return objs, notes, next, nil
}

// decodeDocs decodes docs into out, one for one.
func decodeDocs(name string, docs []document, out []decodedDoc, previous *storedFile, index docIndex) error {
	for i, doc := range docs {
		out[i].sum = sumOf(doc.data)
		if r, ok := index.find(out[i].sum); ok {
			out[i].objs = previous.sub(r)
			continue
		}
		objs := &fileObjects{}
		if err := objs.addDocument(name, doc); err != nil {
			return err
		}
		out[i].objs, out[i].notes = store(objs), objs.notes
	}
	return nil
}

// joinDocuments puts the documents of a file together, in order, and
// indexes them when withIndex is set.
func joinDocuments(decoded []decodedDoc, withIndex bool) (*storedFile, []note, docIndex) {
	var services, endpointSlices, endpoints int
	for _, d := range decoded {
		services, endpointSlices, endpoints = services+len(d.objs.services), endpointSlices+len(d.objs.slices), endpoints+len(d.objs.endpoints)
	}
	objs := &storedFile{
		services:  make([]storedObject, 0, services),
		slices:    make([]storedSlice, 0, endpointSlices),
		endpoints: make([]storedEndpoints, 0, endpoints),
	}
	var notes []note
	var index docIndex
	if withIndex {
		index = make(docIndex, 0, len(decoded))
	}
	for _, d := range decoded {
		var r docRange
		r.services[0], r.slices[0], r.endpoints[0] = int32(len(objs.services)), int32(len(objs.slices)), int32(len(objs.endpoints))
		objs.services = append(objs.services, d.objs.services...)
		objs.slices = append(objs.slices, d.objs.slices...)
		objs.endpoints = append(objs.endpoints, d.objs.endpoints...)
		r.services[1], r.slices[1], r.endpoints[1] = int32(len(objs.services)), int32(len(objs.slices)), int32(len(objs.endpoints))
		notes = append(notes, d.notes...)
		if withIndex && len(d.notes) == 0 {
			index = append(index, indexedDoc{d.sum, r})
		}
	}
	slices.SortFunc(index, func(a, b indexedDoc) int { return a.sum.compare(b.sum) })
	// A document repeated in a file is in the index once: either copy's
	// objects are what its text decodes to.
	index = slices.CompactFunc(index, func(a, b indexedDoc) bool { return a.sum == b.sum })
	return objs, notes, slices.Clip(index)
}

// sub is the objects of one document of st.
func (st *storedFile) sub(r docRange) *storedFile {
	return &storedFile{
		services:  st.services[r.services[0]:r.services[1]],
		slices:    st.slices[r.slices[0]:r.slices[1]],
		endpoints: st.endpoints[r.endpoints[0]:r.endpoints[1]],
	}
}
