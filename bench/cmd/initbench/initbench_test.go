package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSidecarInitConfig(t *testing.T) {
	got := sidecarInitConfig(services("/b/svc", 2))
	want := "[[daemon]]\nname = 'svc-001'\ncommand = ['/b/svc', '-id', 'svc-001']\n" +
		"\n[[daemon]]\nname = 'svc-002'\ncommand = ['/b/svc', '-id', 'svc-002']\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestSupervisordConfig(t *testing.T) {
	got := supervisordConfig(services("/b/svc", 2))
	for _, want := range []string{
		"[supervisord]\nnodaemon=true\n",
		"\n[program:svc-001]\ncommand=/b/svc -id svc-001\n",
		"\n[program:svc-002]\ncommand=/b/svc -id svc-002\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
}

// TestFanoutScript runs the generated script with a stand-in for the service
// and checks every service was started with its own arguments, a quote in an
// argument included.
func TestFanoutScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run the fan-out script with")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	fake := filepath.Join(dir, "it's a service")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$2\" >>"+shellQuote(out)+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := fanoutScript(services(fake, 3))
	if !strings.HasSuffix(script, "& wait") {
		t.Errorf("script does not wait for the services: %s", script)
	}
	if b, err := exec.Command(sh, "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	text, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(text))
	slices.Sort(got)
	if want := []string{"svc-001", "svc-002", "svc-003"}; !slices.Equal(got, want) {
		t.Errorf("services started: %v, want %v", got, want)
	}
}

func TestSingleChildArgv(t *testing.T) {
	spec := singleChildInit("tini", "tini", "/usr/bin/tini", "tini -- SERVICE", "--")
	one, err := spec.argv("", services("/b/svc", 1))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/usr/bin/tini", "--", "/b/svc", "-id", "svc-001"}; !slices.Equal(one, want) {
		t.Errorf("K = 1: %v, want %v", one, want)
	}
	four, err := spec.argv("", services("/b/svc", 4))
	if err != nil {
		t.Fatal(err)
	}
	if len(four) != 5 || four[2] != "/bin/sh" || four[3] != "-c" {
		t.Errorf("K = 4: %v, want tini -- /bin/sh -c SCRIPT", four)
	}
}

func TestWriteScanDir(t *testing.T) {
	scan := filepath.Join(t.TempDir(), "scan")
	if err := writeScanDir(scan, services("/b/svc", 2)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"svc-001", "svc-002"} {
		target, err := os.Readlink(filepath.Join(scan, name, "run"))
		if err != nil || target != "/b/svc" {
			t.Errorf("%s/run -> %q, %v; want /b/svc", name, target, err)
		}
	}
}

func TestCountStopped(t *testing.T) {
	msgs := []message{
		{kind: 'R', name: "a"}, {kind: 'T', name: "a"}, {kind: 'T', name: "a"}, // a duplicate counts once
		{kind: 'R', name: "b"}, {kind: 'T', name: "c"},
	}
	if got := countStopped(msgs); got != 2 {
		t.Errorf("countStopped = %d, want 2", got)
	}
}

func TestWakeupsSince(t *testing.T) {
	before := activity{switches: map[int]int64{10: 5, 11: 7, 12: 1}}
	// Task 12 exited (its count is lost, as /proc no longer shows it); task
	// 13 was born and counts from zero.
	after := activity{switches: map[int]int64{10: 6, 11: 7, 13: 2}}
	if got := after.wakeupsSince(before); got != 3 {
		t.Errorf("wakeupsSince = %d, want 3", got)
	}
}

func TestParseKs(t *testing.T) {
	got, err := parseKs("4, 100")
	if err != nil || !slices.Equal(got, []int{4, 100}) {
		t.Fatalf("parseKs(\"4, 100\") = %v, %v; want [4 100]", got, err)
	}
	for _, bad := range []string{"", "0", "-1", "4,x"} {
		if _, err := parseKs(bad); err == nil {
			t.Errorf("parseKs(%q) accepted a bad list", bad)
		}
	}
}
