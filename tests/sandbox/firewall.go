package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// NoFirewallRules fails the test if any node namespace holds a packet
// filter: an nftables table (which also covers iptables-nft) or a legacy
// x_tables table (iptables-legacy, ip6tables-legacy, arptables). socklb must
// work without them. No user-space tool is needed: nftables tables are
// listed over NETLINK_NETFILTER, legacy tables read from
// /proc/thread-self/net/*_tables_names inside the namespace. If a check
// cannot run, the test is skipped, or fails under CI=true.
func (c *Cluster) NoFirewallRules(t testing.TB) {
	t.Helper()
	for _, n := range c.Nodes {
		var found []string
		err := n.Host.Do(func() error {
			var err error
			found, err = firewallTables()
			return err
		})
		if err != nil {
			unmet(t, "cannot check the packet filters of %s: %v", n.Host.Name, err)
			return
		}
		if len(found) > 0 {
			t.Errorf("%s has packet filter tables, want none: %s", n.Host.Name, strings.Join(found, ", "))
		}
	}
}

// firewallTables lists the nftables and legacy x_tables tables of the
// calling thread's network namespace, as "nft <family> <name>" and
// "<proc file>: <name>".
func firewallTables() ([]string, error) {
	found, err := nftTables()
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"ip_tables_names", "ip6_tables_names", "arp_tables_names"} {
		data, err := os.ReadFile("/proc/thread-self/net/" + f)
		if errors.Is(err, os.ErrNotExist) {
			continue // that x_tables family is not built in: it can hold no rule
		}
		if err != nil {
			return nil, err
		}
		for _, name := range strings.Fields(string(data)) {
			found = append(found, f+": "+name)
		}
	}
	return found, nil
}

// nftTables dumps the nftables tables (NFT_MSG_GETTABLE, every family) of
// the calling thread's network namespace. A rule lives in a chain of a
// table, so no table means no rule.
func nftTables() ([]string, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if errors.Is(err, syscall.EPROTONOSUPPORT) {
		return nil, nil // no nfnetlink in this kernel: no nftables rules either
	}
	if err != nil {
		return nil, fmt.Errorf("netlink netfilter socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(5e9))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	msgType := uint16(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE)
	req := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], msgType)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence
	req[16] = unix.AF_UNSPEC                  // nfgenmsg: family, version, res_id
	req[17] = unix.NFNETLINK_V0
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send NFT_MSG_GETTABLE: %w", err)
	}
	return readNftTables(fd)
}

// readNftTables reads the dump's replies up to NLMSG_DONE (bounded).
func readNftTables(fd int) ([]string, error) {
	var found []string
	buf := make([]byte, 1<<16)
	for range 1000 {
		nr, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("read nftables dump: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
		if err != nil {
			return nil, fmt.Errorf("parse nftables dump: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return found, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return nil, fmt.Errorf("nftables dump: %w", syscall.Errno(errno))
					}
				}
			case unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE:
				found = append(found, "nft "+nftTableName(m.Data))
			}
		}
	}
	return nil, errors.New("nftables dump: no NLMSG_DONE after 1000 reads")
}

// nftTableName formats "<family> <name>" from a NEWTABLE message body
// (nfgenmsg, then attributes; NFTA_TABLE_NAME is attribute 1).
func nftTableName(b []byte) string {
	if len(b) < 4 {
		return "?"
	}
	family := b[0]
	name := "?"
	for a := b[4:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a[0:]))
		typ := binary.NativeEndian.Uint16(a[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || l > len(a) {
			break
		}
		if typ == unix.NFTA_TABLE_NAME {
			name = strings.TrimRight(string(a[4:l]), "\x00")
		}
		a = a[min(len(a), (l+3)&^3):]
	}
	return fmt.Sprintf("family %d %s", family, name)
}
