package lbmap

import "fmt"

// The monitor's layouts (bpf/lib/monitor.h).
type (
	MonitorEvent   = layoutsLbMonitorEvent   // struct lb_monitor_event
	MonitorConfig  = layoutsLbMonitorCfg     // struct lb_monitor_cfg
	MonitorVerdict = layoutsLbMonitorVerdict // enum lb_monitor_verdict
	MonitorHook    = layoutsLbMonitorHook    // enum lb_monitor_hook
)

// Map names of the monitor, also their pin file names.
const (
	MonitorEventsMap = layoutsMapLbMonitorEvents
	MonitorConfigMap = layoutsMapLbMonitorConfig
	MonitorDropsMap  = layoutsMapLbMonitorDrops
)

// SockStorageMap is the socket-local storage of lib/sock_state.h.
const SockStorageMap = layoutsMapLbSockStorage

// SockState is struct lb_sock_state, one socket's socket-local storage.
type SockState = layoutsLbSockState

const (
	VerdictTranslated  = layoutsLbMonitorVerdictLB_MONITOR_TRANSLATED
	VerdictNoEndpoints = layoutsLbMonitorVerdictLB_MONITOR_NO_ENDPOINTS
	VerdictRefused     = layoutsLbMonitorVerdictLB_MONITOR_REFUSED
	VerdictAffinityHit = layoutsLbMonitorVerdictLB_MONITOR_AFFINITY_HIT

	HookConnect = layoutsLbMonitorHookLB_MONITOR_CONNECT
	HookSendmsg = layoutsLbMonitorHookLB_MONITOR_SENDMSG
)

func (v MonitorVerdict) String() string {
	switch v {
	case VerdictTranslated:
		return "translated"
	case VerdictNoEndpoints:
		return "refused-no-endpoints"
	case VerdictRefused:
		return "refused"
	case VerdictAffinityHit:
		return "affinity-hit"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

func (h MonitorHook) String() string {
	switch h {
	case HookConnect:
		return "connect"
	case HookSendmsg:
		return "sendmsg"
	}
	return fmt.Sprintf("hook(%d)", uint8(h))
}
