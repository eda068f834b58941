package config

import (
	"strconv"
	"strings"
)

// lineOf finds the line of data that sets key, in the form the errors name keys: "grace",
// "daemon[2].ready.tcp" (the line of daemon[2]'s `ready`), "daemon[2]" (its [[daemon]]
// header). BurntSushi/toml keeps key positions to itself and has one per key name, not per
// array entry, so the errors found after decoding (bad durations, signals, users, unknown
// keys, `after`) would name the key but not the line. It reads statements only: text inside
// strings, multi-line arrays and inline tables, and comments are skipped. 0 when the key
// is not found as a plain `key =` or `key.sub =` of that table (dotted table headers, say):
// the error then goes without a line, as before.
func lineOf(data []byte, key string) int {
	table, index, name := "", -1, key
	if head, rest, ok := strings.Cut(key, "["); ok {
		idx, after, ok := strings.Cut(rest, "]")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil || strings.Contains(head, ".") {
			return 0
		}
		table, index, name = head, n, strings.TrimPrefix(after, ".")
	}
	name, _, _ = strings.Cut(name, ".")
	curTable, curIndex, count := "", -1, map[string]int{}
	var s scanner
	for lineNo, line := range strings.Split(string(data), "\n") {
		if s.inside() {
			s.scan(line)
			continue
		}
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || trimmed[0] == '#':
			continue
		case strings.HasPrefix(trimmed, "[["):
			curTable, _, _ = strings.Cut(strings.TrimPrefix(trimmed, "[["), "]]")
			curTable = unquote(curTable)
			curIndex = count[curTable]
			count[curTable]++
			if curTable == table && curIndex == index && name == "" {
				return lineNo + 1
			}
			continue
		case trimmed[0] == '[':
			curTable, _, _ = strings.Cut(trimmed[1:], "]")
			curTable, curIndex = unquote(curTable), -1
			continue
		}
		k, _, _ := strings.Cut(trimmed, "=")
		first, _, _ := strings.Cut(k, ".")
		if curTable == table && curIndex == index && unquote(first) == name {
			return lineNo + 1
		}
		s.scan(line)
	}
	return 0
}

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// scanner follows what a TOML line leaves open for the next: a multi-line string, or
// arrays and inline tables (depth). Enough to tell statement lines from the rest.
type scanner struct {
	depth     int
	multiline string // `"""` or `'''` while inside one
}

func (s *scanner) inside() bool { return s.depth > 0 || s.multiline != "" }

func (s *scanner) scan(line string) {
	for i := 0; i < len(line); i++ {
		if s.multiline != "" {
			if strings.HasPrefix(line[i:], s.multiline) {
				i += 2
				s.multiline = ""
			} else if s.multiline == `"""` && line[i] == '\\' {
				i++
			}
			continue
		}
		switch c := line[i]; {
		case c == '#':
			return
		case strings.HasPrefix(line[i:], `"""`) || strings.HasPrefix(line[i:], `'''`):
			s.multiline = line[i : i+3]
			i += 2
		case c == '"' || c == '\'':
			// A one-line string: to its closing quote (basic strings have escapes).
			for i++; i < len(line) && line[i] != c; i++ {
				if c == '"' && line[i] == '\\' {
					i++
				}
			}
		case c == '[' || c == '{':
			s.depth++
		case c == ']' || c == '}':
			if s.depth > 0 {
				s.depth--
			}
		}
	}
}
