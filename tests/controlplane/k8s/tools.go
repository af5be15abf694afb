//go:build tools

// Package k8s pins the Kubernetes commands that tests/controlplane/build.sh
// builds, so that go.mod and go.sum cover everything they need.
package k8s

import (
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
