package datapath

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/socklb/socklb/pkg/lbmap"
)

// The socket object declares its maps itself (the C needs them), but is
// loaded against the maps lbmap creates from the layouts object: every map
// and every lb_ type they share must be the same in both, or the two could
// diverge with Go mirroring only one.
func TestSocketObjectAgreesWithLayouts(t *testing.T) {
	layouts, err := lbmap.LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	sock, err := loadSock()
	if err != nil {
		t.Fatal(err)
	}
	if len(sock.Maps) == 0 {
		t.Fatal("the socket object declares no map")
	}
	for name, ms := range sock.Maps {
		if strings.HasPrefix(name, ".") {
			continue // the object's own .rodata
		}
		t.Run("map "+name, func(t *testing.T) {
			want, ok := layouts.Maps[name]
			if !ok {
				t.Fatalf("map %s is not in the layouts object (bpf/lb_layouts.c must include its header)", name)
			}
			if got, want := describeMap(ms), describeMap(want); got != want {
				t.Errorf("map %s differs:\n socket:  %s\n layouts: %s", name, got, want)
			}
		})
	}
	shared := 0
	for typ, err := range sock.Types.All() {
		if err != nil {
			t.Fatal(err)
		}
		name := typ.TypeName()
		switch typ.(type) {
		case *btf.Struct, *btf.Enum, *btf.Typedef:
		default:
			continue // the map variables: compared as maps above
		}
		if !strings.HasPrefix(name, "lb_") {
			continue
		}
		shared++
		t.Run("type "+name, func(t *testing.T) {
			want, err := layouts.Types.AnyTypeByName(name)
			if err != nil {
				t.Fatalf("type %s is not in the layouts object: %v", name, err)
			}
			if got, want := describe(typ, 0), describe(want, 0); got != want {
				t.Errorf("type %s differs:\n socket:  %s\n layouts: %s", name, got, want)
			}
		})
	}
	if shared == 0 {
		t.Error("the socket object's BTF has no lb_ type to compare")
	}
}

func describeMap(ms *ebpf.MapSpec) string {
	return fmt.Sprintf("%s key=%d:%s value=%d:%s max=%d flags=%#x pinning=%d",
		ms.Type, ms.KeySize, describe(ms.Key, 0), ms.ValueSize, describe(ms.Value, 0), ms.MaxEntries, ms.Flags, ms.Pinning)
}

// describe spells a BTF type out, down through its members, so that two
// types compare equal only when their layouts are the same.
func describe(typ btf.Type, depth int) string {
	if depth > 8 {
		return "..."
	}
	switch v := typ.(type) {
	case nil:
		return "<none>"
	case *btf.Struct:
		var b strings.Builder
		fmt.Fprintf(&b, "struct %s(%d){", v.Name, v.Size)
		for _, m := range v.Members {
			fmt.Fprintf(&b, "%s@%d:%d %s; ", m.Name, m.Offset, m.BitfieldSize, describe(m.Type, depth+1))
		}
		return b.String() + "}"
	case *btf.Enum:
		var b strings.Builder
		fmt.Fprintf(&b, "enum %s(%d,signed=%t){", v.Name, v.Size, v.Signed)
		for _, e := range v.Values {
			fmt.Fprintf(&b, "%s=%d ", e.Name, e.Value)
		}
		return b.String() + "}"
	case *btf.Typedef:
		return v.Name + "=" + describe(v.Type, depth+1)
	case *btf.Int:
		return fmt.Sprintf("int %s(%d,%s)", v.Name, v.Size, v.Encoding)
	case *btf.Array:
		return fmt.Sprintf("[%d]%s", v.Nelems, describe(v.Type, depth+1))
	case *btf.Volatile:
		return "volatile " + describe(v.Type, depth+1)
	case *btf.Const:
		return "const " + describe(v.Type, depth+1)
	}
	return fmt.Sprintf("%T %s", typ, typ.TypeName())
}
