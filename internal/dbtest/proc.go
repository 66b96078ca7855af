package dbtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procStat holds the fields of /proc/PID/stat that the harness needs.
type procStat struct {
	state byte
	ppid  int
}

// readProcStat reads /proc/PID/stat.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may itself hold spaces or parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 || len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: too few fields", pid)
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: parent pid: %w", pid, err)
	}
	return procStat{state: fields[0][0], ppid: ppid}, nil
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var kids []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid {
			continue
		}
		st, err := readProcStat(n)
		if err != nil {
			continue // gone meanwhile, or not a process
		}
		if st.ppid == pid {
			kids = append(kids, n)
		}
	}
	return kids, nil
}

// waitStopped waits until pid is in the stopped state, so that it can no longer
// fork, or until it is gone.
func waitStopped(pid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		st, err := readProcStat(pid)
		if err != nil || st.state == 'T' || st.state == 't' || st.state == 'Z' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not stop within %s (state %q)", pid, limit,
				string(st.state))
		}
		time.Sleep(time.Millisecond)
	}
}

// signal sends sig to pid, treating a process that is already gone as success.
func signal(pid int, sig syscall.Signal) error {
	err := syscall.Kill(pid, sig)
	if err == nil || errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return fmt.Errorf("send %s to process %d: %w", sig, pid, err)
}

// ownerFile is written into the directory of every server with the pid of the
// process that runs it, so that a later process can tell its leftovers.
const ownerFile = "dbtest-owner"

// writeOwner records this process as the owner of the server in root.
func writeOwner(root string) error {
	err := os.WriteFile(filepath.Join(root, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644)
	if err != nil {
		return fmt.Errorf("write owner file: %w", err)
	}
	return nil
}

// reapOrphans kills the server processes left behind by harness processes that
// died without closing them. The postmaster dies with its owner (it has a
// parent-death signal), but children it had when frozen stay stopped forever.
// A process is a leftover when its working directory (a data directory) sits in
// a server directory whose owner file names a process that no longer exists.
func reapOrphans() {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err != nil || !filepath.IsAbs(cwd) {
			continue
		}
		cwd = strings.TrimSuffix(cwd, " (deleted)")
		b, err := os.ReadFile(filepath.Join(filepath.Dir(cwd), ownerFile))
		if err != nil {
			continue
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || owner <= 0 || owner == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(owner)); err == nil {
			continue // owner alive, or its pid taken again: leave it
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// reapOrphansOnce runs reapOrphans the first time a server is created.
var reapOrphansOnce sync.Once
