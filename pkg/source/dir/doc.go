// Package dir runs socklb without an API server: Source reads
// Services, EndpointSlices and Endpoints from a directory of YAML or JSON
// files and watches it for changes, so a demo or a node outside any cluster
// gets Service translation from files a user writes by hand or copies from
// `kubectl get -o yaml`.
//
// What counts, on every read of the directory:
//
//   - Regular files named *.yaml, *.yml or *.json directly in the directory
//     (not in subdirectories); hidden files and editor leftovers are
//     skipped. A symbolic link is followed when its target, all links
//     resolved, is inside the directory (so a mounted ConfigMap works); a
//     link out of it, a FIFO, a device or a directory is refused with a log
//     line naming the entry. A file over Options.MaxFileSize (the agent's
//     --max-file-size, 16 MiB by default) is refused the same way.
//   - Each file may hold several documents separated by "---", and a
//     document may be a List (as `kubectl get -o yaml` writes).
//   - v1 Service, discovery.k8s.io/v1 EndpointSlice and v1 Endpoints; other
//     kinds are logged and ignored. Endpoints are turned into EndpointSlices
//     the way Kubernetes' endpointslicemirroring controller does it, because
//     no controller runs here to do it.
//   - Objects without a namespace are in "default".
//   - No Node object is read: the agent's flags (--node-name, --zone,
//     --node-ip) describe the node, and Snapshot.Node stays nil.
//
// A file counts whole or not at all: if any document in it cannot be
// decoded, the file's last version that decoded still counts (as nginx
// keeps its configuration when a reload fails), and the log says, once per
// failing version and never again at a resync, which file, document and
// line to fix. A file that never decoded counts for nothing. An emptied
// file also keeps its last version, because a rewrite in place starts with
// a truncate: removing the file is what withdraws its objects. A file
// written in place is read once it has been quiet for the debounce period
// (at most 700 ms after its first change), so a rewrite in quick steps is
// read once, whole. After the first read, a file another process holds
// open for writing is not read until it is closed (for at most 10 s; a
// read lease tells, and holds a writer's open back while the file is
// read), and a version written in place that withdraws objects of the
// last good one counts only once the file has been unmodified for a
// second: a slow
// rewrite paused between documents holds valid first documents only, and
// must not withdraw the others' Services meanwhile. Unknown fields are
// only warned about, as kubectl does.
//
// No log line quotes a file: the decoders' messages are kept but the
// values, keys and characters they quote are replaced, and object names are
// logged only when they are valid Kubernetes names.
//
// Each file is read again only when an event names it or stat says it
// changed, and decoded again only when its content did: a change to one
// file of a large directory costs that file, and in a file of many
// documents only the documents whose text changed are decoded again.
//
// When two files define the same object (kind, namespace, name), the file
// first in lexical order wins and the other definition is logged as an error.
package dir
