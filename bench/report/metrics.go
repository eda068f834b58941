package report

import "fmt"

// Metric IDs as written in the CSV. The harness emits samples under these.
const (
	Startup    = "startup_ms"    // exec of the init → all K services ready
	Shutdown   = "shutdown_ms"   // SIGTERM to PID 1 → the init has exited
	Graceful   = "graceful"      // services that received their stop signal
	Reap       = "reap_ms"       // orphans handed to the init → all reaped
	RSS        = "rss_kib"       // VmRSS of the init plus its per-service helpers
	RSSInit    = "rss_init_kib"  // VmRSS of the init process alone
	RSSAnon    = "rss_anon_kib"  // RssAnon of the init plus helpers
	PSS        = "pss_kib"       // Pss of the init plus helpers
	HWM        = "hwm_kib"       // VmHWM of the init plus helpers
	Wakeups    = "wakeups_per_s" // context switches per second, idle
	CPU        = "cpu_ms_per_s"  // utime+stime per second, idle
	BinarySize = "binary_bytes"  // files the init needs on disk
	kibPerMiB  = 1024
	bytesPerMB = 1e6
)

// Ks are the service counts of the startup and shutdown runs, FootprintKs those
// at which memory is sampled, IdleK the one of the idle run (issue 7).
var (
	Ks          = []int{1, 4, 100}
	FootprintKs = []int{4, 100}
)

const IdleK = 4

// Metric describes one row of the report.
type Metric struct {
	ID      string
	K       int
	Title   string  // e.g. "startup, K = 4"
	About   string  // what exactly was measured
	Unit    string  // of the displayed value
	Scale   float64 // displayed value = raw value × Scale
	Integer bool    // counts: print without decimals
}

// Catalog lists every metric the report can show, in report order. The report
// shows those that have samples, so a quick run without K = 100 just has fewer.
func Catalog() []Metric {
	var ms []Metric
	for _, k := range Ks {
		ms = append(ms, Metric{ID: Startup, K: k, Title: titleK("startup", k), Unit: "ms", Scale: 1,
			About: "From just before fork+exec of the init to the last of the K services reporting ready"})
	}
	for _, k := range Ks {
		ms = append(ms, Metric{ID: Shutdown, K: k, Title: titleK("shutdown", k), Unit: "ms", Scale: 1,
			About: "From SIGTERM to PID 1 until the init has exited (the harness's wait returns, which for every init is once the kernel has also killed and reaped whatever was left in its PID namespace)"})
	}
	for _, k := range Ks {
		ms = append(ms, Metric{ID: Graceful, K: k, Title: titleK("graceful", k), Unit: fmt.Sprintf("of %d", k), Scale: 1, Integer: true,
			About: "Services that received SIGTERM and reported it before the namespace was torn down"})
	}
	ms = append(ms, Metric{ID: Reap, K: 1, Title: "reap orphans", Unit: "ms", Scale: 1,
		About: "From the moment the orphans' parent has exited (all of them already zombies), handing them to PID 1, until PID 1 has reaped every one"})
	for _, k := range FootprintKs {
		about := fmt.Sprintf("after all %d services are ready and a short settle; init plus its per-service helpers (s6-supervise)", k)
		ms = append(ms,
			Metric{ID: RSS, K: k, Title: titleK("RSS", k), Unit: "MiB", Scale: 1.0 / kibPerMiB, About: "VmRSS " + about},
			Metric{ID: RSSInit, K: k, Title: titleK("RSS of the init alone", k), Unit: "MiB", Scale: 1.0 / kibPerMiB, About: "VmRSS of PID 1 only"},
			Metric{ID: RSSAnon, K: k, Title: titleK("RssAnon", k), Unit: "MiB", Scale: 1.0 / kibPerMiB, About: "RssAnon (heap, stacks) " + about},
			Metric{ID: PSS, K: k, Title: titleK("PSS", k), Unit: "MiB", Scale: 1.0 / kibPerMiB, About: "Pss from smaps_rollup " + about},
			Metric{ID: HWM, K: k, Title: titleK("VmHWM (peak RSS)", k), Unit: "MiB", Scale: 1.0 / kibPerMiB, About: "VmHWM " + about},
		)
	}
	ms = append(ms,
		Metric{ID: Wakeups, K: IdleK, Title: titleK("idle wakeups", IdleK), Unit: "/s", Scale: 1,
			About: "Voluntary + involuntary context switches of every thread of the init (and helpers) per second over the idle window"},
		Metric{ID: CPU, K: IdleK, Title: titleK("idle CPU", IdleK), Unit: "ms/s", Scale: 1,
			About: "utime + stime of the init (and helpers) per second over the idle window; resolution one clock tick (10 ms)"},
		Metric{ID: BinarySize, K: 0, Title: "binary size", Unit: "MB", Scale: 1 / bytesPerMB,
			About: "Bytes on disk of the files the init runs (see Binaries); 1 MB = 10^6 bytes"},
	)
	return ms
}

func titleK(name string, k int) string { return fmt.Sprintf("%s, K = %d", name, k) }
