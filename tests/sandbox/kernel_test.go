package sandbox

import "testing"

func TestReleaseAtLeast(t *testing.T) {
	cases := []struct {
		name, release, version string
		want                   bool
	}{
		{"older minor", "6.1.0-50-cloud-amd64", "6.6", false},
		{"same minor", "6.6.0", "6.6", true},
		{"newer minor, two digits", "6.12.117+deb13-cloud-amd64", "6.6", true},
		{"older major", "5.10.0-32-cloud-amd64", "6.1", false},
		{"newer major", "6.18.0", "5.15", true},
		{"no patch level", "6.6-rc1", "6.6", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := releaseAtLeast(c.release, c.version)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("releaseAtLeast(%q, %q) = %v, want %v", c.release, c.version, got, c.want)
			}
		})
	}
	if _, err := releaseAtLeast("garbage", "6.6"); err == nil {
		t.Errorf("releaseAtLeast(garbage) gave no error")
	}
}
