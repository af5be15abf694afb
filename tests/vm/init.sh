#!/bin/busybox sh
# The kernel matrix's guest init (tests/vm): mounts what the tests need the
# way a host has it (cgroup2, a bpffs, /run for the named netns), loads the
# modules the tests use, runs each test binary of vm/suite with CI=true (a
# missing requirement fails rather than skips) and powers off. Results go to
# the second serial port, framed by "@@@" lines; the first one is the
# kernel's console. The memlock rlimit keeps the kernel's default: lifting
# it is the agent's job (5.10 charges BPF maps to it).
/bin/busybox --install -s /bin
export PATH=/usr/bin:/usr/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /sys/fs/cgroup /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
echo /bin/modprobe >/proc/sys/kernel/modprobe

stty -F /dev/ttyS1 raw -echo
exec 3>/dev/ttyS1
report() { echo "@@@ $* $(cut -d' ' -f1 /proc/uptime)" >&3; }
report booted "$(uname -r)"

ip link set lo up
for m in $(cat /vm/modules); do
	modprobe "$m" || report module-failed "$m"
done

export CI=true SOCKLB_TEST_BINARIES=/vm/helpers TMPDIR=/tmp HOME=/tmp
while read -r name run skip timeout; do
	report begin "$name"
	set -- -test.v=test2json -test.count=1 -test.timeout="$timeout"
	[ "$run" != - ] && set -- "$@" -test.run "$run"
	[ "$skip" != - ] && set -- "$@" -test.skip "$skip"
	(cd /tmp && "/vm/tests/$name.test" "$@") >&3 2>&1
	rc=$?
	echo >&3
	report end "$name" "$rc"
done </vm/suite
report done
sync
poweroff -f
