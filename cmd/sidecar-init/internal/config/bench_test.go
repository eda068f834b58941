package config

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParse: reading the table is on PID 1's path from exec to the first spawn. The
// 100-daemon table is the one `make bench` gives sidecar-init at K = 100.
func BenchmarkParse(b *testing.B) {
	var many strings.Builder
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&many, "[[daemon]]\nname = 'svc-%03d'\ncommand = ['/b/svc', '-id', 'svc-%03d']\n\n", i, i)
	}
	for _, bench := range []struct{ name, table string }{{"bundle", good}, {"100-daemons", many.String()}} {
		b.Run(bench.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse("daemons.toml", []byte(bench.table)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
