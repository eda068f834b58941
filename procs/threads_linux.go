package procs

import (
	"runtime"
	"sync"
)

// ReserveThreads makes sure the Go runtime has at least n threads besides the ones busy
// now, and leaves them idle. The runtime never ends an idle thread, and takes one from
// that pool before it asks the kernel for a new one; a process the kernel refuses a thread
// it asks for is ended by the runtime ("fatal error: newosproc"). A daemon that uses up the
// container's pids (a fork bomb, a leak) would otherwise take PID 1 down with it the next
// time the runtime wanted one more thread to run a goroutine or to stand in for one
// blocked in a system call.
//
// Each goroutine below holds a thread (LockOSThread) until all of them hold one, so n
// threads exist at once (idle ones are used first, new ones made for the rest); unlocked
// again, they go back to the idle pool. Measured with n = 2: 1 or 2 more threads than
// before in /proc/PID/status, and 2-3 idle ones in GODEBUG=schedtrace.
func ReserveThreads(n int) {
	var held sync.WaitGroup
	release := make(chan struct{})
	var done sync.WaitGroup
	for range n {
		held.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			held.Done()
			<-release
			runtime.UnlockOSThread() // the thread stays, idle: a goroutine that ends locked takes its thread with it
		}()
	}
	held.Wait()
	close(release)
	done.Wait()
}
