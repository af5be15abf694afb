package sockdestroy

// The socket-destroying iterator. -no-global-types: its key type is
// pkg/lbmap's (struct lb_sock_key, generated once from bpf/lb_layouts.c).
//
// The include path for <asm/types.h> is Debian's multiarch one; the object is
// built for little-endian BPF only, which is what amd64 and arm64 nodes run.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package sockdestroy -no-global-types destroy ../../bpf/sock_destroy.c
