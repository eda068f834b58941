package supervisor

import (
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

// BenchmarkDeath measures the loop's handling of one reaped daemon (onExits: its
// transitions, the supervisor's, the bookkeeping), with logging off so that no log event
// is counted: issue 7 asks that the reap path allocate nothing per exit beyond that. The
// spawns, the signal and wait4 are outside the timer. Two daemons, so the death is one
// among others, as at a real shutdown or crash.
func BenchmarkDeath(b *testing.B) {
	for _, bench := range []struct {
		name     string
		shutdown bool
	}{{"at-shutdown", true}, {"on-its-own", false}} {
		b.Run(bench.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				s := New(Options{Log: zlog.Nop(), Daemons: []config.Daemon{shDaemon("a", "exec sleep 1000"), shDaemon("b", "exec sleep 1000")}})
				now := time.Now()
				var pgids []int
				for _, d := range s.daemons {
					s.spawn(d, now) // (ready at once: no probe)
					if d.machine.Current() != fsm.DaemonRunning {
						b.Fatalf("%s is %s after its spawn, want running", d.cfg.Name, d.machine.Current())
					}
					pgids = append(pgids, d.pid) // each leads its own group
				}
				pid := s.daemons[0].pid
				if bench.shutdown {
					s.beginShutdown(syscall.SIGTERM)
				} else if err := syscall.Kill(pid, syscall.SIGKILL); err != nil { // (a SIGTERM death waits for a stop signal it may be part of)
					b.Fatal(err)
				}
				var ws unix.WaitStatus
				if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
					b.Fatal(err)
				}
				exits := []procs.Exit{{Pid: pid, Status: ws}}
				b.StartTimer()
				s.onExits(exits)
				b.StopTimer()
				for _, pgid := range pgids {
					_ = syscall.Kill(-pgid, syscall.SIGKILL)
				}
				for {
					if _, err := unix.Wait4(-1, &ws, 0, nil); err != nil {
						break
					}
				}
				b.StartTimer()
			}
		})
	}
}
