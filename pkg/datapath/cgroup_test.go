package datapath

import (
	"bufio"
	"strings"
	"testing"
)

func TestCgroup2RootFromMountinfo(t *testing.T) {
	cases := []struct {
		name      string
		mountinfo string
		want      string
		wantErr   bool
	}{
		{
			name:      "unified host",
			mountinfo: "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
			want:      "/sys/fs/cgroup",
		},
		{
			name: "hybrid host",
			mountinfo: "25 24 0:22 / /sys/fs/cgroup rw shared:5 - tmpfs tmpfs rw,mode=755\n" +
				"26 25 0:23 / /sys/fs/cgroup/unified rw shared:6 - cgroup2 cgroup2 rw\n" +
				"27 25 0:24 / /sys/fs/cgroup/cpu rw shared:7 - cgroup cgroup rw,cpu\n",
			want: "/sys/fs/cgroup/unified",
		},
		{
			name: "a bind mount of a sub-cgroup does not count",
			mountinfo: "40 30 0:26 /kubepods /var/lib/x rw - cgroup2 cgroup2 rw\n" +
				"30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			want: "/sys/fs/cgroup",
		},
		{
			name:      "only a sub-cgroup mounted",
			mountinfo: "40 30 0:26 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			want:      "/sys/fs/cgroup",
		},
		{
			name:      "escaped path",
			mountinfo: `30 23 0:26 / /mnt/my\040cgroup rw - cgroup2 cgroup2 rw` + "\n",
			want:      "/mnt/my cgroup",
		},
		{
			name:      "cgroup v1 only",
			mountinfo: "27 25 0:24 / /sys/fs/cgroup/cpu rw shared:7 - cgroup cgroup rw,cpu\n",
			wantErr:   true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cgroup2RootFrom(bufio.NewScanner(strings.NewReader(tc.mountinfo)))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
