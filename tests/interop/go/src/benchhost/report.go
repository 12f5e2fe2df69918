package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// report is what a run measured, rendered as rpcplugin bench renders it.
type report struct {
	opts       options
	label      string
	launch     time.Duration
	total      *tally
	perCall    uint32
	start, end snapshot
	stopped    string
	gomaxproc  int
}

const mib = 1024.0 * 1024.0

// disturbedPct: CPU taken by other processes above which the table warns.
const disturbedPct = 10.0

func (r *report) windowSeconds() float64 { return r.opts.seconds.Seconds() }

func rate(amount, seconds float64) float64 {
	if seconds > 0 {
		return amount / seconds
	}
	return 0
}

func (r *report) reqPerS() float64 { return rate(float64(r.total.calls), r.windowSeconds()) }
func (r *report) mibPerS() float64 { return rate(float64(r.total.bytes)/mib, r.windowSeconds()) }

// usage is CPU % and RSS of one process over the window; ok false if unmeasurable.
type usage struct {
	rssKB  uint64
	cpuPct float64
	rssOK  bool
	cpuOK  bool
}

func (r *report) usageOf(start, end sample, startOK, endOK bool) usage {
	u := usage{}
	wall := r.end.at.Sub(r.start.at)
	if endOK {
		u.rssKB, u.rssOK = end.rssKB, true
	}
	if startOK && endOK {
		u.cpuPct, u.cpuOK = ticksPercent(start.cpuTicks, end.cpuTicks, wall), true
	}
	return u
}

func (r *report) host() usage {
	return r.usageOf(r.start.host, r.end.host, r.start.hostOK, r.end.hostOK)
}

func (r *report) plugin() usage {
	return r.usageOf(r.start.plugin, r.end.plugin, r.start.pluginOK, r.end.pluginOK)
}

// number is a JSON number with decimals digits; null for NaN or infinity.
func number(v float64, decimals int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "null"
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// resultLine is the machine line, key for key and format for format the
// line rpcplugin bench prints.
func (r *report) resultLine() string {
	h := &r.total.hist
	host, plug := r.host(), r.plugin()
	optU := func(v uint64, ok bool) string {
		if !ok {
			return "null"
		}
		return strconv.FormatUint(v, 10)
	}
	optF := func(v float64, ok bool) string {
		if !ok {
			return "null"
		}
		return number(v, 1)
	}
	type kv struct{ k, v string }
	fields := []kv{{"req_per_s", number(r.reqPerS(), 1)}}
	if r.opts.mode == modeDownload {
		fields = append(fields, kv{"mib_per_s", number(r.mibPerS(), 1)})
	}
	fields = append(fields,
		kv{"p50_us", strconv.FormatUint(h.quantile(0.5), 10)},
		kv{"p99_us", strconv.FormatUint(h.quantile(0.99), 10)},
		kv{"p999_us", strconv.FormatUint(h.quantile(0.999), 10)},
		kv{"launch_to_first_call_ms", number(r.launch.Seconds()*1000, 3)},
		kv{"host_rss_kb", optU(host.rssKB, host.rssOK)},
		kv{"plugin_rss_kb", optU(plug.rssKB, plug.rssOK)},
		kv{"host_cpu_pct", optF(host.cpuPct, host.cpuOK)},
		kv{"plugin_cpu_pct", optF(plug.cpuPct, plug.cpuOK)},
		kv{"errors", strconv.FormatUint(r.total.errors, 10)},
	)
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = fmt.Sprintf("%q:%s", f.k, f.v)
	}
	return "RESULT {" + strings.Join(parts, ", ") + "}"
}

// table is the human summary, in rpcplugin bench's layout.
func (r *report) table() string {
	var b strings.Builder
	h := &r.total.hist
	what := fmt.Sprintf("Echo of %d B", r.opts.size)
	if r.opts.mode == modeDownload {
		what = fmt.Sprintf("Download of %d x %d B per call", r.perCall, r.opts.size)
	}
	fmt.Fprintf(&b, "bench-host (go-plugin 1.0.1): %s, concurrency %d, GOMAXPROCS %d\n",
		what, r.opts.concurrency, r.gomaxproc)
	row := func(label, value string) { fmt.Fprintf(&b, "  %-22s%s\n", label, value) }
	row("plugin", r.label)
	row("launch to first call", fmt.Sprintf("%.2f ms", r.launch.Seconds()*1000))
	row("window", fmt.Sprintf("%.2f s after %.2f s warm-up", r.windowSeconds(), r.opts.warmup.Seconds()))
	row("calls", fmt.Sprintf("%d ok, %d failed", r.total.calls, r.total.errors))
	row("throughput", fmt.Sprintf("%.0f calls/s", r.reqPerS()))
	if r.opts.mode == modeDownload {
		row("streamed", fmt.Sprintf("%.1f MiB/s, %.0f messages/s", r.mibPerS(),
			rate(float64(r.total.messages), r.windowSeconds())))
	}
	row("latency per call", fmt.Sprintf("p50 %d µs, p90 %d µs, p99 %d µs, p99.9 %d µs, max %d µs, mean %.1f µs",
		h.quantile(0.5), h.quantile(0.9), h.quantile(0.99), h.quantile(0.999), h.max, h.mean()))
	show := func(u usage) string {
		cpu, rss := "?", "?"
		if u.cpuOK {
			cpu = fmt.Sprintf("%.1f %% CPU", u.cpuPct)
		}
		if u.rssOK {
			rss = fmt.Sprintf("%d kB RSS", u.rssKB)
		}
		return cpu + ", " + rss
	}
	host, plug := r.host(), r.plugin()
	row("host", show(host))
	row("plugin process", show(plug))
	if r.start.machineOK && r.end.machineOK {
		others := ticksPercent(r.start.machine, r.end.machine, r.end.at.Sub(r.start.at))
		if host.cpuOK {
			others -= host.cpuPct
		}
		if plug.cpuOK {
			others -= plug.cpuPct
		}
		if others < 0 {
			others = 0
		}
		note := ""
		if others >= disturbedPct {
			note = " (the figures are disturbed: measure on a quiet machine)"
		}
		row("everything else", fmt.Sprintf("%.1f %% CPU%s", others, note))
	}
	row("plugin stopped", r.stopped)
	if r.total.firstErr != "" {
		row("first error", r.total.firstErr)
	}
	return b.String()
}
