package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// sample is one reading of a process's counters from /proc (the same
// figures rpcplugin bench reads): utime+stime in clock ticks, VmRSS in kB.
type sample struct {
	cpuTicks uint64
	rssKB    uint64
}

// clkTck is Linux's USER_HZ, the unit of utime and stime; 100 on every
// architecture Go supports on Linux (sysconf would need cgo).
const clkTck = 100

// readSample reads /proc/<pid>/stat and status ("self" for this process);
// ok is false if the process is gone or the files are not what Linux writes.
func readSample(pid string) (s sample, ok bool) {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return s, false
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return s, false
	}
	ticks, ok1 := cpuTicks(string(stat))
	rss, ok2 := rssKB(string(status))
	return sample{ticks, rss}, ok1 && ok2
}

// cpuTicks is utime + stime (fields 14 and 15) of a /proc/PID/stat text; the
// command name in parentheses may hold spaces and ')'.
func cpuTicks(stat string) (uint64, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + s, true
}

// rssKB is VmRSS in kB of a /proc/PID/status text.
func rssKB(status string) (uint64, bool) {
	for _, line := range strings.Split(status, "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line[len("VmRSS:"):])
			if len(f) != 2 || f[1] != "kB" {
				return 0, false
			}
			v, err := strconv.ParseUint(f[0], 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// machineBusyTicks is the machine's busy time (all cores, steal included)
// from /proc/stat's "cpu " line: user nice system irq softirq steal.
func machineBusyTicks() (uint64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "cpu ") {
			continue
		}
		f := strings.Fields(line)[1:]
		if len(f) < 8 {
			return 0, false
		}
		var v [8]uint64
		for i := 0; i < 8; i++ {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return 0, false
			}
			v[i] = n
		}
		return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], true
	}
	return 0, false
}

// snapshot is both processes' counters and the machine's at one moment.
type snapshot struct {
	at               time.Time
	host, plugin     sample
	hostOK, pluginOK bool
	machine          uint64
	machineOK        bool
}

func takeSnapshot(pluginPid int) snapshot {
	var s snapshot
	s.at = time.Now()
	s.host, s.hostOK = readSample("self")
	if pluginPid > 0 {
		s.plugin, s.pluginOK = readSample(fmt.Sprint(pluginPid))
	}
	s.machine, s.machineOK = machineBusyTicks()
	return s
}

// ticksPercent is the CPU between two tick counts over wall, in percent of
// one core.
func ticksPercent(start, end uint64, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	var d uint64
	if end > start {
		d = end - start
	}
	return float64(d) / clkTck / wall.Seconds() * 100
}
