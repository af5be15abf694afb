package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// guestLog is the results port's content, split at the init's "@@@" lines.
type guestLog struct {
	booted     bool
	bootUptime float64 // guest seconds since the kernel started, at init's start
	doneUptime float64 // ... when the last test binary ended (0: never)
	pkgs       map[string]*pkgOutput
	order      []string
	notes      []string // module-failed and other init reports
}

// pkgOutput is one test binary's -test.v=test2json output.
type pkgOutput struct {
	out     bytes.Buffer
	ended   bool
	exit    int
	seconds float64
}

// parseGuestLog splits the results port's log. Init writes
// "@@@ booted <release> <uptime>", "@@@ begin <name> <uptime>",
// "@@@ end <name> <exit> <uptime>", "@@@ done <uptime>".
func parseGuestLog(data []byte) guestLog {
	g := guestLog{pkgs: map[string]*pkgOutput{}}
	var cur *pkgOutput
	var begun float64
	sc := bufio.NewScanner(bytes.NewReader(bytes.ReplaceAll(data, []byte("\r"), nil)))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if !strings.HasPrefix(line, "@@@ ") || len(f) < 2 {
			if cur != nil {
				cur.out.WriteString(line + "\n")
			}
			continue
		}
		up, _ := strconv.ParseFloat(f[len(f)-1], 64)
		switch {
		case f[1] == "booted":
			g.booted, g.bootUptime = true, up
		case f[1] == "begin" && len(f) == 4:
			cur, begun = &pkgOutput{}, up
			g.pkgs[f[2]] = cur
			g.order = append(g.order, f[2])
		case f[1] == "end" && len(f) == 5 && cur != nil:
			cur.ended, cur.seconds = true, up-begun
			cur.exit, _ = strconv.Atoi(f[3])
			cur = nil
		case f[1] == "done":
			g.doneUptime = up
		default:
			g.notes = append(g.notes, strings.Join(f[1:len(f)-1], " "))
		}
	}
	return g
}

// testResult is one top-level test of one package on one kernel.
type testResult struct {
	pkg     string // "tests/e2e"
	name    string
	status  string // "pass", "fail", "skip"
	elapsed float64
	output  []string // the test's output lines (its subtests' included)
}

// testEvent is a line of test2json.
type testEvent struct {
	Action string
	Test   string
	Output string
}

// pkgResults converts one test binary's output with go tool test2json and
// returns its top-level tests in the order they started. A binary that
// exited non-zero with no failing test (a panic, a timeout, a crash), or
// that never ended, adds a failed pseudo-test named after what happened.
func pkgResults(pkg string, p *pkgOutput) ([]testResult, error) {
	cmd := exec.Command("go", "tool", "test2json", "-p", pkg)
	cmd.Stdin = bytes.NewReader(p.out.Bytes())
	js, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool test2json: %w", err)
	}
	return collectEvents(pkg, js, p), nil
}

// resultLine is a test's closing line: test2json leaves Elapsed out of the
// events of a -test.v=test2json stream, so it is read from there.
var resultLine = regexp.MustCompile(`^\s*--- (?:PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)

func collectEvents(pkg string, js []byte, p *pkgOutput) []testResult {
	byName := map[string]*testResult{}
	var order []string
	var pkgLines []string
	dec := json.NewDecoder(bytes.NewReader(js))
	for {
		var e testEvent
		if dec.Decode(&e) != nil {
			break
		}
		top, _, _ := strings.Cut(e.Test, "/")
		if top == "" {
			if e.Action == "output" {
				pkgLines = append(pkgLines, strings.TrimRight(e.Output, "\n"))
			}
			continue
		}
		r := byName[top]
		if r == nil {
			r = &testResult{pkg: pkg, name: top, status: "fail"} // no result line: it never finished
			byName[top] = r
			order = append(order, top)
		}
		switch {
		case e.Action == "output":
			line := strings.TrimRight(e.Output, "\n")
			r.output = append(r.output, line)
			if m := resultLine.FindStringSubmatch(line); m != nil && m[1] == top {
				r.elapsed, _ = strconv.ParseFloat(m[2], 64)
			}
		case e.Test == top && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
			r.status = e.Action
		}
	}
	out := make([]testResult, 0, len(order)+1)
	failed := false
	for _, n := range order {
		out = append(out, *byName[n])
		failed = failed || byName[n].status == "fail"
	}
	switch {
	case !p.ended:
		out = append(out, testResult{pkg: pkg, name: "(test binary did not finish: the guest died or timed out)", status: "fail", output: pkgLines})
	case p.exit != 0 && !failed:
		out = append(out, testResult{pkg: pkg, name: fmt.Sprintf("(test binary exited %d)", p.exit), status: "fail", output: pkgLines})
	}
	return out
}

// counts tallies results by status.
func counts(rs []testResult) (pass, skip, fail int) {
	for _, r := range rs {
		switch r.status {
		case "pass":
			pass++
		case "skip":
			skip++
		default:
			fail++
		}
	}
	return
}
