package inspect

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/pkg/lbmap"
)

// FlowView is one connection the north-south datapath translated, from its
// forward entry in the connection table.
type FlowView struct {
	Client    string `json:"client"`
	Frontend  string `json:"frontend"`
	Protocol  string `json:"protocol"`
	Backend   string `json:"backend"`
	BackendID uint32 `json:"backend_id"`
	ServiceID uint32 `json:"service_id"`
	// SNAT is the source the flow leaves this node with toward a remote
	// backend, "" when the backend is local (no SNAT).
	SNAT       string  `json:"snat,omitempty"`
	AgeSeconds float64 `json:"age_seconds"`
	// IdleSeconds is since the client's last packet, to a second: a flow
	// idle for 70 s is over and gives its SNAT port back.
	IdleSeconds float64 `json:"idle_seconds"`
}

// Flows lists the connection table's flows, oldest first.
func Flows(m *lbmap.Maps) ([]FlowView, error) {
	keys, vals, err := lbmap.Dump[lbmap.FlowKey, lbmap.Flow](m.Nat)
	if err != nil {
		return nil, err
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		return nil, fmt.Errorf("read the monotonic clock: %w", err)
	}
	return flowViews(keys, vals, time.Duration(now.Nano())), nil
}

// flowViews decodes the forward entries; now is CLOCK_MONOTONIC, the clock
// of bpf_ktime_get_ns.
func flowViews(keys []lbmap.FlowKey, vals []lbmap.Flow, now time.Duration) []FlowView {
	views := []FlowView{}
	var created []uint64
	for i, k := range keys {
		if k.Dir != lbmap.FlowForward {
			continue
		}
		v := vals[i]
		view := FlowView{
			Client:    k.Src().String(),
			Frontend:  k.Dst().String(),
			Protocol:  lbmap.ProtoString(k.Proto),
			BackendID: v.BackendId,
			ServiceID: v.ServiceId,
		}
		if dst, ok := v.NewDst(); ok {
			view.Backend = dst.String()
		}
		if src, ok := v.NewSrc(); ok {
			view.SNAT = src.String()
		}
		if age := now - time.Duration(v.CreatedNs); age > 0 {
			view.AgeSeconds = age.Round(time.Millisecond).Seconds()
		}
		if idle := now - time.Duration(v.SeenNs); idle > 0 {
			view.IdleSeconds = idle.Round(time.Millisecond).Seconds()
		}
		views = append(views, view)
		created = append(created, v.CreatedNs)
	}
	order := make([]int, len(views))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(created[a], created[b]), cmp.Compare(views[a].Client, views[b].Client))
	})
	sorted := make([]FlowView, len(views))
	for i, j := range order {
		sorted[i] = views[j]
	}
	return sorted
}

// WriteFlows prints views in format f.
func WriteFlows(w io.Writer, f Format, views []FlowView) error {
	if f == JSON {
		return writeJSON(w, views)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tFRONTEND\tPROTO\tBACKEND\tSNAT\tAGE\tIDLE")
	for _, v := range views {
		snat := v.SNAT
		if snat == "" {
			snat = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Client, v.Frontend, v.Protocol, v.Backend, snat,
			seconds(v.AgeSeconds), seconds(v.IdleSeconds))
	}
	return tw.Flush()
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Second)
}
