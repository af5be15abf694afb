// Package k8s is the agent's cluster source: client-go shared informers on
// Services, EndpointSlices and the agent's own Node, with a change tracker
// that records the previous and current state of each changed object so
// that a sync rebuilds only the Services that changed.
package k8s
