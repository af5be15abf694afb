package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// PodImage is the image of every pod CreatePod makes. Nothing pulls it: no
// kubelet runs.
const PodImage = "socklb.test/none"

// PodContainerName is the name of the single container of a CreatePod pod.
const PodContainerName = "app"

// TerminatingGracePeriod is the grace period DeletePod gives a non-forced
// deletion. With no kubelet to finish it, the pod stays Terminating (and its
// endpoints terminating) until it is force-deleted or its namespace goes.
const TerminatingGracePeriod = 10 * time.Minute

// PodSpec describes a pod for CreatePod.
type PodSpec struct {
	Namespace string
	Name      string
	Labels    map[string]string
	// NodeName must name a Node (see EnsureNode): the EndpointSlice
	// controller skips pods on unknown nodes.
	NodeName string
	// IP is the pod's IPv4 or IPv6 address. For dual stack give IPs instead
	// (one address per family, the first being the primary); if both are
	// set, IP must equal IPs[0].
	IP             string
	IPs            []string
	ContainerPorts []corev1.ContainerPort
}

// EnsureNode creates a Node named name, if it does not exist, and marks it
// Ready through the status subresource. It has no taints, so nothing in the
// control plane treats its pods as unschedulable or evictable.
func EnsureNode(ctx context.Context, client kubernetes.Interface, name string) (*corev1.Node, error) {
	return EnsureNodeWithAddresses(ctx, client, name, nil)
}

// EnsureNodeWithAddresses is EnsureNode that also writes status.addresses
// (replacing any there were), as a kubelet reports its InternalIPs: an agent
// in cluster mode takes its node addresses, and so its NodePort frontends,
// from them.
func EnsureNodeWithAddresses(ctx context.Context, client kubernetes.Interface, name string, addresses []corev1.NodeAddress) (*corev1.Node, error) {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				corev1.LabelHostname: name,
				corev1.LabelOSStable: "linux",
			},
		},
	}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating node %s: %w", name, err)
	}
	now := metav1.Now()
	status := map[string]any{
		"conditions": []map[string]any{{
			"type":               corev1.NodeReady,
			"status":             corev1.ConditionTrue,
			"reason":             "KubeletReady",
			"message":            "fake node of the socklb test control plane",
			"lastHeartbeatTime":  now,
			"lastTransitionTime": now,
		}},
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return nil, fmt.Errorf("encoding status of node %s: %w", name, err)
	}
	updated, err := client.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return nil, fmt.Errorf("marking node %s ready: %w", name, err)
	}
	if addresses != nil {
		if updated, err = setNodeAddresses(ctx, client, name, addresses); err != nil {
			return nil, err
		}
	}
	return removeNotReadyTaint(ctx, client, updated)
}

// setNodeAddresses replaces status.addresses with a JSON merge patch: a
// strategic merge patch merges that list by type, which cannot hold an IPv4
// and an IPv6 InternalIP side by side.
func setNodeAddresses(ctx context.Context, client kubernetes.Interface, name string, addresses []corev1.NodeAddress) (*corev1.Node, error) {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"addresses": addresses}})
	if err != nil {
		return nil, fmt.Errorf("encoding addresses of node %s: %w", name, err)
	}
	updated, err := client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return nil, fmt.Errorf("setting addresses of node %s: %w", name, err)
	}
	return updated, nil
}

// removeNotReadyTaint does what the node-lifecycle controller would do once
// the node reports Ready: the TaintNodesByCondition admission plugin taints
// every new Node not-ready, and that controller does not run here (it would
// evict the pods of nodes that send no heartbeats).
func removeNotReadyTaint(ctx context.Context, client kubernetes.Interface, node *corev1.Node) (*corev1.Node, error) {
	for attempt := 0; ; attempt++ {
		kept := make([]corev1.Taint, 0, len(node.Spec.Taints))
		for _, taint := range node.Spec.Taints {
			if taint.Key != corev1.TaintNodeNotReady {
				kept = append(kept, taint)
			}
		}
		if len(kept) == len(node.Spec.Taints) {
			return node, nil
		}
		node = node.DeepCopy()
		node.Spec.Taints = kept
		updated, err := client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
		if err == nil {
			return updated, nil
		}
		if !apierrors.IsConflict(err) || attempt >= 5 {
			return nil, fmt.Errorf("removing the not-ready taint from node %s: %w", node.Name, err)
		}
		if node, err = client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{}); err != nil {
			return nil, fmt.Errorf("reading node %s: %w", node.Name, err)
		}
	}
}

// CreatePod creates a pod bound to spec.NodeName and then, in place of a
// kubelet, writes its status through the status subresource: Running, the
// given IPs, and Ready/ContainersReady true. The real EndpointSlice
// controller then lists it as a ready endpoint of any Service selecting it.
func CreatePod(ctx context.Context, client kubernetes.Interface, spec PodSpec) (*corev1.Pod, error) {
	if spec.Namespace == "" || spec.Name == "" || spec.NodeName == "" {
		return nil, fmt.Errorf("creating pod %s/%s: namespace, name and node name are required", spec.Namespace, spec.Name)
	}
	podIPs, err := podIPList(spec)
	if err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	noGracePeriod := int64(0)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: spec.Namespace,
			Name:      spec.Name,
			Labels:    spec.Labels,
		},
		Spec: corev1.PodSpec{
			NodeName: spec.NodeName,
			// Zero lets a namespace deletion remove the pod at once; with a
			// grace period nothing would ever finish it and the namespace
			// would hang in Terminating.
			TerminationGracePeriodSeconds: &noGracePeriod,
			Containers: []corev1.Container{{
				Name:  PodContainerName,
				Image: PodImage,
				Ports: spec.ContainerPorts,
			}},
		},
	}
	if _, err := client.CoreV1().Pods(spec.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}

	now := metav1.Now()
	podIPObjects := make([]map[string]string, 0, len(podIPs))
	for _, ip := range podIPs {
		podIPObjects = append(podIPObjects, map[string]string{"ip": ip})
	}
	conditions := []map[string]any{
		condition(corev1.PodScheduled, true, now),
		condition(corev1.PodInitialized, true, now),
		condition(corev1.ContainersReady, true, now),
		condition(corev1.PodReady, true, now),
	}
	patch, err := json.Marshal(map[string]any{
		"status": map[string]any{
			"phase":      corev1.PodRunning,
			"podIP":      podIPs[0],
			"podIPs":     podIPObjects,
			"startTime":  now,
			"conditions": conditions,
			"containerStatuses": []map[string]any{{
				"name":         PodContainerName,
				"image":        PodImage,
				"imageID":      "",
				"ready":        true,
				"started":      true,
				"restartCount": 0,
				"state":        map[string]any{"running": map[string]any{"startedAt": now}},
			}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding status of pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	running, err := client.CoreV1().Pods(spec.Namespace).Patch(ctx, spec.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		// A pod without status would sit in the namespace as Pending and
		// confuse the next attempt; remove it so the call can be retried.
		deleteErr := DeletePod(context.WithoutCancel(ctx), client, spec.Namespace, spec.Name, true)
		return nil, errors.Join(fmt.Errorf("setting status of pod %s/%s: %w", spec.Namespace, spec.Name, err), deleteErr)
	}
	return running, nil
}

func podIPList(spec PodSpec) ([]string, error) {
	ips := spec.IPs
	if len(ips) == 0 {
		if spec.IP == "" {
			return nil, errors.New("IP or IPs is required: the EndpointSlice controller skips pods without one")
		}
		ips = []string{spec.IP}
	} else if spec.IP != "" && spec.IP != ips[0] {
		return nil, fmt.Errorf("IP %s differs from the primary address IPs[0] %s", spec.IP, ips[0])
	}
	if len(ips) > 2 {
		return nil, fmt.Errorf("%d pod IPs given; a pod has at most one per family", len(ips))
	}
	families := map[bool]bool{}
	for _, ip := range ips {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, fmt.Errorf("parsing pod IP: %w", err)
		}
		if families[addr.Is4()] {
			return nil, fmt.Errorf("pod IPs %v hold two addresses of one family", ips)
		}
		families[addr.Is4()] = true
	}
	return ips, nil
}

func condition(conditionType corev1.PodConditionType, status bool, now metav1.Time) map[string]any {
	value := corev1.ConditionFalse
	if status {
		value = corev1.ConditionTrue
	}
	return map[string]any{
		"type":               conditionType,
		"status":             value,
		"lastTransitionTime": now,
	}
}

// SetPodReady sets the Ready and ContainersReady conditions, and the
// container's ready flag, through the status subresource, as a kubelet
// would after a readiness probe changed.
func SetPodReady(ctx context.Context, client kubernetes.Interface, namespace, name string, ready bool) error {
	now := metav1.Now()
	// A strategic merge patch merges conditions by type and container
	// statuses by name, so the other conditions stay as they are.
	patch, err := json.Marshal(map[string]any{
		"status": map[string]any{
			"conditions": []map[string]any{
				condition(corev1.ContainersReady, ready, now),
				condition(corev1.PodReady, ready, now),
			},
			"containerStatuses": []map[string]any{{
				"name":  PodContainerName,
				"ready": ready,
			}},
		},
	})
	if err != nil {
		return fmt.Errorf("encoding readiness of pod %s/%s: %w", namespace, name, err)
	}
	if _, err := client.CoreV1().Pods(namespace).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("setting ready=%t on pod %s/%s: %w", ready, namespace, name, err)
	}
	return nil
}

// DeletePod deletes a pod. force removes it from the API at once. Without
// force it gets TerminatingGracePeriod and, with no kubelet to finish it,
// stays Terminating: its endpoints turn terminating (serving as long as the
// pod is Ready) until a forced delete removes it. Such a pod also blocks the
// namespace controller, which never shortens a pending grace period; remove
// namespaces with DeleteNamespace. A pod that is already gone is not an
// error.
func DeletePod(ctx context.Context, client kubernetes.Interface, namespace, name string, force bool) error {
	gracePeriodSeconds := int64(TerminatingGracePeriod / time.Second)
	if force {
		gracePeriodSeconds = 0
	}
	err := client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &gracePeriodSeconds})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting pod %s/%s (force=%t): %w", namespace, name, force, err)
	}
	return nil
}

// DeleteNamespace deletes a namespace and waits until it is gone,
// force-deleting pods left Terminating by DeletePod, which the namespace
// controller would otherwise wait for forever. It takes about 5 s even for an
// empty namespace: the namespace controller waits that long before acting on
// a deletion. Tests that only need isolation can leave namespaces to Stop.
func DeleteNamespace(ctx context.Context, client kubernetes.Interface, name string) error {
	// Removing Terminating pods first spares the namespace controller a
	// failed pass and its retry back-off.
	if err := forceDeleteTerminatingPods(ctx, client, name); err != nil {
		return err
	}
	err := client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting namespace %s: %w", name, err)
	}
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		namespace, err := client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("checking whether namespace %s is gone: %w", name, err)
		}
		// A pod deleted gracefully while the namespace was going away.
		if err := forceDeleteTerminatingPods(ctx, client, name); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for namespace %s to be deleted: %w (conditions: %v)", name, ctx.Err(), namespace.Status.Conditions)
		case <-ticker.C:
		}
	}
}

func forceDeleteTerminatingPods(ctx context.Context, client kubernetes.Interface, namespace string) error {
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing pods of namespace %s: %w", namespace, err)
	}
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp == nil {
			continue
		}
		if err := DeletePod(ctx, client, namespace, pod.Name, true); err != nil {
			return err
		}
	}
	return nil
}
