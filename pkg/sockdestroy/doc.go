// Package sockdestroy destroys connected UDP sockets that socklb sent to a
// backend which is no longer one of their Service's, so that a DNS-like
// client gets an error at once and reconnects, instead of sending into the
// void (UDP never notices a peer is gone).
//
// After a sync that may have taken UDP backends away, Targets picks the
// sockets from the per-socket reverse-NAT map (each entry there is a socket
// socklb translated: its cookie, the backend and the Service), and a BPF
// socket iterator (bpf/sock_destroy.c) walks the UDP sockets of every
// network namespace, calling bpf_sock_destroy (Linux 6.5+) on the connected
// ones named. Unconnected sockets are never destroyed: that would change
// their source port under the application, and the sendmsg hooks already
// send their next datagram to a live backend.
//
// A frontend that appears also ends the connected UDP sockets whose peer is
// that VIP itself: they connected before the Service had a frontend (or
// before socklb ran), were never translated, and would otherwise send to the
// bare VIP forever (kubernetes#48370, the stale conntrack entry of a Service
// that had no endpoints). A Service that exists but has no endpoints needs
// nothing: its connects and sends are refused, so no socket is left behind.
//
// On a kernel without bpf_sock_destroy, Load returns an error matching
// ebpf.ErrNotSupported and the agent says once what it cannot do; such
// sockets then keep sending to the old backend's address until the
// application reconnects.
package sockdestroy
