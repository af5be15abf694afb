// Package dir runs socklb without an API server: Source reads
// Services, EndpointSlices and Endpoints from a directory of YAML or JSON
// files and watches it for changes, so a demo or a node outside any cluster
// gets Service translation from files a user writes by hand or copies from
// `kubectl get -o yaml`.
//
// What counts, on every read of the directory:
//
//   - Files named *.yaml, *.yml or *.json directly in the directory (not in
//     subdirectories); hidden files and editor leftovers are skipped.
//     Symbolic links are followed, so a mounted ConfigMap works.
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
// A file either counts whole or not at all: if any document in it cannot be
// decoded, none of the file's objects count (not even those of an earlier
// good version of the file) and the error is logged naming the file. That
// makes the outcome of a half-saved edit easy to predict, and the log says
// which file to fix. Unknown fields are only warned about, as kubectl does.
//
// When two files define the same object (kind, namespace, name), the file
// first in lexical order wins and the other definition is logged as an error.
package dir
