package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// maxFailLines bounds the output shown under a failed test.
const maxFailLines = 60

// report writes one TAP line per test per kernel, as the kernel's selftests
// do ("ok N kernel: package: test"; skips carry "# SKIP reason"; a failed
// test's output follows as "# " lines), then the table of kernels and a
// closing count. It returns whether everything passed.
func report(w io.Writer, runs []kernelRun) bool {
	fmt.Fprintln(w, "TAP version 13")
	n := 0
	allOK := true
	for _, kr := range runs {
		if kr.bootErr != "" {
			n++
			allOK = false
			fmt.Fprintf(w, "not ok %d %s: boot # %s\n", n, kr.name, kr.bootErr)
			continue
		}
		for _, r := range kr.results {
			n++
			fmt.Fprintln(w, tapLine(n, kr.name, r))
			if r.status == "fail" {
				allOK = false
				for _, l := range tail(r.output, maxFailLines) {
					fmt.Fprintf(w, "#   %s\n", l)
				}
			}
		}
		for _, note := range kr.notes {
			fmt.Fprintf(w, "# %s: %s\n", kr.name, note)
		}
	}
	fmt.Fprintf(w, "1..%d\n\n", n)
	table(w, runs)
	p, s, f := 0, 0, 0
	for _, kr := range runs {
		kp, ks, kf := counts(kr.results)
		if kr.bootErr != "" {
			kf++
		}
		p, s, f = p+kp, s+ks, f+kf
	}
	fmt.Fprintf(w, "\nmatrix: %d passed, %d failed, %d skipped\n", p, f, s)
	return allOK
}

func tapLine(n int, kernel string, r testResult) string {
	head := fmt.Sprintf("%d %s: %s: %s", n, kernel, r.pkg, r.name)
	switch r.status {
	case "pass":
		return fmt.Sprintf("ok %s # %.2fs", head, r.elapsed)
	case "skip":
		return fmt.Sprintf("ok %s # SKIP %s", head, skipReason(r.output))
	}
	return fmt.Sprintf("not ok %s # FAIL %.2fs", head, r.elapsed)
}

// skipReason is the last line of a skipped test's output that says why
// (t.Skip's message), without the file:line prefix.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		if _, msg, ok := strings.Cut(l, ".go:"); ok {
			if _, m, ok := strings.Cut(msg, ": "); ok {
				return m
			}
		}
		return l
	}
	return ""
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		return append([]string{fmt.Sprintf("... %d lines before", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return lines
}

// table writes one row per kernel: counts, boot and run time, accelerator.
func table(w io.Writer, runs []kernelRun) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "kernel\trelease\taccel\tboot\trun\tpassed\tskipped\tfailed\tresult")
	for _, kr := range runs {
		if kr.bootErr != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\tNOT BOOTED: %s\n", kr.name, kr.release, kr.accel, firstLine(kr.bootErr))
			continue
		}
		p, s, f := counts(kr.results)
		result := "ok"
		if f > 0 {
			result = "FAIL"
		}
		bootTime := "-"
		if kr.name != "host" {
			bootTime = round(kr.boot)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", kr.name, kr.release, kr.accel, bootTime, round(kr.run), p, s, f, result)
	}
	tw.Flush()
}

func round(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
