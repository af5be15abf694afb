package main

import (
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/socklb/socklb/pkg/desired"
)

// problemEvents records a Warning Event on the object of each problem that
// names a reason (an externalIP refused, say), so that `kubectl describe`
// shows why socklb leaves part of a Service out; the returned stop flushes
// and ends the recorder.
func problemEvents(client kubernetes.Interface, nodeName string, log *zap.Logger) (func(*desired.ObjectError), func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	b.StartStructuredLogging(0)
	recorder := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "socklb", Host: nodeName})
	record := func(p *desired.ObjectError) {
		if p.Reason == "" || p.Kind != "Service" {
			return
		}
		ref := &corev1.ObjectReference{APIVersion: "v1", Kind: p.Kind, Namespace: p.Namespace, Name: p.Name}
		recorder.Event(ref, corev1.EventTypeWarning, p.Reason, p.Err.Error())
	}
	return record, b.Shutdown
}
