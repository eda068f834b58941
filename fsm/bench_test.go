package fsm

import "testing"

// BenchmarkDaemonLifecycle measures the transition path one daemon takes from spawn to reap
// at shutdown: five transitions.
func BenchmarkDaemonLifecycle(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		m := NewMachine("bench", DaemonTable(RestartNever))
		for _, e := range []Event{DaemonSpawn, DaemonReady, DaemonStop, DaemonKill, DaemonDied} {
			if _, err := m.Fire(e); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkFire measures one transition on a live machine, the cost the reap path pays per
// daemon death (degraded → degraded: the crash-policy row fired again).
func BenchmarkFire(b *testing.B) {
	b.ReportAllocs()
	m := NewMachine("bench", SupervisorTable)
	if _, err := m.Fire(SupervisorDaemonDied); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.Fire(SupervisorDaemonDied); err != nil {
			b.Fatal(err)
		}
	}
}
