package inspect

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/socklb/socklb/pkg/lbmap"
)

func TestFlows(t *testing.T) {
	client := netip.MustParseAddrPort("192.0.2.10:40000")
	frontend := netip.MustParseAddrPort("198.51.100.1:30080")
	local := lbmap.NewFlow(netip.MustParseAddrPort("10.244.1.5:8080"), netip.AddrPort{}, 1, 7, lbmap.FlowLocal, uint64(10*time.Second))
	remote := lbmap.NewFlow(netip.MustParseAddrPort("10.244.2.5:8080"), netip.MustParseAddrPort("198.51.100.1:61234"), 2, 8, lbmap.FlowSNAT, uint64(5*time.Second))
	keys := []lbmap.FlowKey{
		lbmap.NewFlowKey(client, frontend, 6, lbmap.FlowForward),
		lbmap.NewFlowKey(netip.MustParseAddrPort("10.244.1.5:8080"), client, 6, lbmap.FlowReply),
		lbmap.NewFlowKey(netip.MustParseAddrPort("192.0.2.11:40001"), netip.MustParseAddrPort("198.51.100.1:30081"), 17, lbmap.FlowForward),
	}
	views := flowViews(keys, []lbmap.Flow{local, {}, remote}, 20*time.Second)
	var table bytes.Buffer
	if err := WriteFlows(&table, Table, views); err != nil {
		t.Fatal(err)
	}
	want := "CLIENT            FRONTEND            PROTO  BACKEND          SNAT                AGE  IDLE\n" +
		"192.0.2.11:40001  198.51.100.1:30081  UDP    10.244.2.5:8080  198.51.100.1:61234  15s  15s\n" +
		"192.0.2.10:40000  198.51.100.1:30080  TCP    10.244.1.5:8080  -                   10s  10s\n"
	if table.String() != want {
		t.Errorf("flows table (reply entries left out, oldest first):\n%s\nwant\n%s", table.String(), want)
	}
}
