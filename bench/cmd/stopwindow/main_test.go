package main

import (
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	const patience = time.Second
	for _, tc := range []struct {
		lived       time.Duration
		status      int
		wroteStderr bool
		want        Outcome
	}{
		{10 * time.Millisecond, 0, true, Stopped},
		{10 * time.Millisecond, 143, false, Stopped},
		{10 * time.Millisecond, 2, false, Exit2},
		{10 * time.Millisecond, 2, true, Stopped}, // a real configuration error says so
		{patience, 0, true, Lost},                 // ran until its service ended
		{2 * patience, 2, false, Lost},
	} {
		if got := classify(tc.lived, patience, tc.status, tc.wroteStderr); got != tc.want {
			t.Errorf("classify(%v, status %d, stderr %v) = %s, want %s", tc.lived, tc.status, tc.wroteStderr, got, tc.want)
		}
	}
}
