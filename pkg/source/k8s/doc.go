// Package k8s is the agent's cluster source: client-go shared informers on
// Services, EndpointSlices and the agent's own Node, with a change tracker
// that records, per changed object, what the desired state reads of it
// before and now and when the change was triggered, so that a sync rebuilds
// only the Services that changed and can tell how long programming took.
package k8s
