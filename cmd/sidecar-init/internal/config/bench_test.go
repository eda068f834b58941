package config

import "testing"

// BenchmarkParse: reading the table is on PID 1's path from exec to the first spawn.
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("daemons.toml", []byte(good)); err != nil {
			b.Fatal(err)
		}
	}
}
