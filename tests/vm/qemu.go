package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// vmConfig is how every guest is started.
type vmConfig struct {
	memMB int
	cpus  int
}

// bootResult is what one guest left: its two serial logs and how it ended.
type bootResult struct {
	console string // path of the kernel console log (ttyS0)
	results string // path of the results log (ttyS1)
	wall    time.Duration
	err     error // qemu failed, or the timeout killed it
}

// accelArgs are the qemu options of an accelerator: kvm with the host's CPU,
// or tcg's emulation (multi-threaded, one host thread per vCPU) of the
// richest CPU model it has.
func accelArgs(accel string) []string {
	if accel == "kvm" {
		return []string{"-accel", "kvm", "-cpu", "host"}
	}
	return []string{"-accel", "tcg,thread=multi", "-cpu", "max"}
}

// boot runs kernel vmlinuz with initrd under qemu until the guest powers off
// or timeout passes, logging into dir.
func boot(ctx context.Context, cfg vmConfig, accel, vmlinuz, initrd, dir string, timeout time.Duration) bootResult {
	r := bootResult{console: filepath.Join(dir, "console.log"), results: filepath.Join(dir, "results.log")}
	for _, p := range []string{r.console, r.results} {
		os.Remove(p)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append(accelArgs(accel),
		"-nodefaults", "-no-reboot", "-display", "none",
		"-m", strconv.Itoa(cfg.memMB), "-smp", strconv.Itoa(cfg.cpus),
		"-kernel", vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 oops=panic rdinit=/init",
		"-serial", "file:"+r.console, "-serial", "file:"+r.results)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r.wall = time.Since(start)
	switch {
	case ctx.Err() != nil:
		r.err = fmt.Errorf("guest still running after %s: killed", timeout)
	case err != nil:
		r.err = fmt.Errorf("qemu: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return r
}

// probeKVM boots k with a tiny initramfs under kvm: kvm is used only if the
// guest comes up and reports within the timeout (on these machines -cpu host
// fails at once, "failed to set MSR 0x10a", and other CPU models hang).
func probeKVM(ctx context.Context, cfg vmConfig, k *kernel, busybox, dir string) (bool, string) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false, "no /dev/kvm"
	}
	initrd := filepath.Join(dir, "probe.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		return false, err.Error()
	}
	c := newCpioWriter(f)
	err = errors.Join(c.addBytes("init", []byte(probeInit), 0o755), c.addFile("bin/busybox", busybox), c.mkdirAll("proc"), c.mkdirAll("dev"), c.close(), f.Close())
	if err != nil {
		return false, err.Error()
	}
	r := boot(ctx, cfg, "kvm", k.vmlinuz, initrd, dir, 20*time.Second)
	log, _ := os.ReadFile(r.results)
	if r.err == nil && strings.Contains(string(log), "@@@ booted") {
		return true, fmt.Sprintf("probe boot took %s", r.wall.Round(time.Second))
	}
	reason := "probe guest did not report"
	if r.err != nil {
		reason = r.err.Error()
	}
	return false, reason
}

const probeInit = `#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo "@@@ booted" >/dev/ttyS1
/bin/busybox poweroff -f
`
