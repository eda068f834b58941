package procs

import (
	"runtime"
	"sync"
)

// ReserveThreads makes the Go runtime start n more OS threads now and keep them idle. The
// runtime never ends an idle thread, and it takes one from that pool before it asks the
// kernel for a new one; a process the kernel refuses a thread it asks for is ended by the
// runtime ("fatal error: newosproc"). A daemon that uses up the container's pids (a fork
// bomb, a leak) would otherwise take PID 1 down with it the next time the runtime wanted
// one more thread to run a goroutine or to stand in for one blocked in a system call.
//
// Each goroutine below holds its thread (LockOSThread) until all of them hold one, so n
// distinct threads exist at once; unlocked again, they go to the idle pool.
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
