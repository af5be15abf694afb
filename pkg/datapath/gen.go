package datapath

// The socket hooks' object. -no-global-types: its maps' types are pkg/lbmap's
// (generated once, from bpf/lb_layouts.c), and the loader hands it the maps
// lbmap created, so this package owns programs and lbmap owns layouts.
//
// The include path for <asm/types.h> is Debian's multiarch one; the object is
// built for little-endian BPF only, which is what amd64 and arm64 nodes run.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package datapath -no-global-types sock ../../bpf/sock_lb.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package datapath -no-global-types nodeport ../../bpf/nodeport.c
