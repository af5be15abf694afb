package lbmap

// The layouts object: every map and type of bpf/lib, no program. Every
// struct and enum is given -type, so Go gets each mirror and typed constant
// once; the identifiers stay unexported and layout.go names them.
//
// The include path for <asm/types.h> is Debian's multiarch one; the object is
// built for little-endian BPF only, which is what amd64 and arm64 nodes run.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package lbmap -type lb_service_key -type lb_service_value -type lb_backend -type lb_rev_nat_value -type lb_service_name -type lb_sock_key -type lb_sock_rev_nat_value -type lb_sock_backend_value -type lb_scope -type lb_service_flags -type lb_backend_state -type lb_reason -type lb_flow_key -type lb_flow -type lb_node_cfg -type lb_source_range_key -type lb_flow_dir -type lb_flow_flags -type lb_backend_flags -type lb_refuse_kind -type lb_refuse_key -type lb_affinity_key -type lb_affinity_value -type lb_monitor_event -type lb_monitor_verdict -type lb_monitor_hook -type lb_monitor_cfg -type lb_sock_state layouts ../../bpf/lb_layouts.c
