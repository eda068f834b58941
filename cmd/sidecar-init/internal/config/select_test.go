package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestSelect(t *testing.T) {
	cfg, err := Parse("daemons.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"egress", "pipelock", "git-gate", "supervise"}
	for _, tc := range []struct {
		name  string
		value string
		set   bool
		want  []string
	}{
		{"unset: all, in table order", "", false, all},
		{"set but empty: none", "", true, []string{}},
		{"only white space: none", " \t\n ", true, []string{}},
		{"one name", "pipelock", true, []string{"pipelock"}},
		{"commas with spaces", " egress , pipelock ", true, []string{"egress", "pipelock"}},
		{"spaces only", "egress pipelock", true, []string{"egress", "pipelock"}},
		{"duplicates count once", "egress,egress egress", true, []string{"egress"}},
		{"table order, not list order", "supervise,git-gate,egress", true, []string{"egress", "git-gate", "supervise"}},
		{"stray commas", ",,egress,,", true, []string{"egress"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cfg.Select(tc.value, tc.set)
			if err != nil {
				t.Fatal(err)
			}
			names := []string{}
			for _, d := range got {
				names = append(names, d.Name)
			}
			if !reflect.DeepEqual(names, tc.want) {
				t.Errorf("Select(%q) = %v, want %v", tc.value, names, tc.want)
			}
		})
	}
}

func TestSelectUnknown(t *testing.T) {
	cfg, err := Parse("daemons.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Select("egress, mitm ,nope,mitm", true)
	if err == nil {
		t.Fatal("want an error for unknown names")
	}
	for _, piece := range []string{SelectEnv, `"mitm"`, `"nope"`, "egress, pipelock, git-gate, supervise", "daemons.toml"} {
		if !strings.Contains(err.Error(), piece) {
			t.Errorf("error %q lacks %q", err, piece)
		}
	}
	if strings.Count(err.Error(), `"mitm"`) != 1 {
		t.Errorf("an unknown name listed twice should be named once: %q", err)
	}
}

func TestUnselectedAfter(t *testing.T) {
	selected := []Daemon{
		{Name: "egress", After: []string{"pipelock"}},
		{Name: "gate", After: []string{"egress", "keys", "vault"}},
		{Name: "supervise"},
	}
	got := UnselectedAfter(selected)
	want := []Unselected{{"egress", "pipelock"}, {"gate", "keys"}, {"gate", "vault"}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := UnselectedAfter(selected[2:]); got != nil {
		t.Errorf("no after daemons: got %v", got)
	}
}
