package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

const usageText = `bench-host: go-plugin 1.0.1's load generator. Launches a plugin, measures
launch to first call, then drives bench.v1.Bench from concurrent goroutines and
reports throughput, latency, CPU and memory: the contract of rpcplugin bench.

Usage:
    bench-host [OPTIONS] -- PLUGIN_COMMAND [ARGS...]

Options:
    --automtls           ask for AutoMTLS (default: plaintext)
    --cookie KEY=VALUE   the plugin's magic cookie [default: BASIC_PLUGIN=hello]
    --seconds N          length of the measured window [default: 5]
    --warmup SECS        calls before the window, not counted [default: 1]
    --concurrency C      goroutines sharing go-plugin's one connection [default: 1]
    --size BYTES         payload (echo) or chunk (download) size; K, KiB, M and
                         MiB suffixes allowed [default: 1024]
    --mode echo|download unary Echo calls, or Download streams of ~1 MiB per call
                         [default: echo]
    --json               print only the RESULT line on stdout (the table goes to stderr)
    -h, --help           print this help

Output: a table, then one line ` + "`RESULT {json}`" + ` with req_per_s, p50_us, p99_us,
p999_us, launch_to_first_call_ms, host_rss_kb, plugin_rss_kb, host_cpu_pct,
plugin_cpu_pct, errors (and mib_per_s in download mode). The exit status is 0 only
if no call failed and the plugin was stopped; 1 otherwise; 2 for a bad command line.
The host runs on GOMAXPROCS threads (Go's default: one per core).

Example:
    bench-host --seconds 5 --concurrency 32 -- ./kv-plugin
`

type mode int

const (
	modeEcho mode = iota
	modeDownload
)

func (m mode) String() string {
	if m == modeDownload {
		return "download"
	}
	return "echo"
}

type options struct {
	automtls    bool
	cookieKey   string
	cookieValue string
	seconds     time.Duration
	warmup      time.Duration
	concurrency int
	size        int
	mode        mode
	json        bool
	program     string
	args        []string
}

func defaultOptions() options {
	return options{
		cookieKey:   "BASIC_PLUGIN",
		cookieValue: "hello",
		seconds:     5 * time.Second,
		warmup:      time.Second,
		concurrency: 1,
		size:        1024,
		mode:        modeEcho,
	}
}

// usageError is a command line that cannot be run: what is wrong and what to do.
type usageError struct{ message, hint string }

func (e *usageError) Error() string {
	return fmt.Sprintf("error: %s\n  hint: %s", e.message, e.hint)
}

func uerr(hint, format string, args ...interface{}) *usageError {
	return &usageError{message: fmt.Sprintf(format, args...), hint: hint}
}

const (
	maxConcurrency = 100000
	// Durations beyond this would overflow the overall deadline.
	maxSeconds = 1e7
	helpHint   = "run `bench-host --help` for the options"
)

// parseArgs reads the arguments after the program name; help is true for
// -h/--help.
func parseArgs(argv []string) (opts options, help bool, err *usageError) {
	opts = defaultOptions()
	i := 0
	for i < len(argv) {
		a := argv[i]
		i++
		if a == "--" {
			if i >= len(argv) {
				break
			}
			opts.program, opts.args = argv[i], argv[i+1:]
			return opts, false, nil
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			opts.program, opts.args = a, argv[i:]
			return opts, false, nil
		}
		name, inline, hasInline := a, "", false
		if strings.HasPrefix(a, "--") {
			if j := strings.IndexByte(a, '='); j >= 0 {
				name, inline, hasInline = a[:j], a[j+1:], true
			}
		}
		value := func() (string, *usageError) {
			if hasInline {
				return inline, nil
			}
			if i >= len(argv) {
				return "", uerr(helpHint, "missing argument for option '%s'", name)
			}
			i++
			return argv[i-1], nil
		}
		flag := func() *usageError {
			if hasInline {
				return uerr(helpHint, "unexpected argument for option '%s'", name)
			}
			return nil
		}
		var v string
		switch name {
		case "-h", "--help":
			return opts, true, nil
		case "--automtls":
			if err = flag(); err != nil {
				return
			}
			opts.automtls = true
		case "--json":
			if err = flag(); err != nil {
				return
			}
			opts.json = true
		case "--cookie":
			if v, err = value(); err != nil {
				return
			}
			j := strings.IndexByte(v, '=')
			if j <= 0 || j == len(v)-1 {
				return opts, false, uerr("use the plugin's magic cookie, e.g. --cookie BASIC_PLUGIN=hello",
					"--cookie must be KEY=VALUE, got %q", v)
			}
			opts.cookieKey, opts.cookieValue = v[:j], v[j+1:]
		case "--seconds", "--warmup":
			if v, err = value(); err != nil {
				return
			}
			var d time.Duration
			if d, err = parseSeconds(name[2:], v, name == "--warmup"); err != nil {
				return
			}
			if name == "--seconds" {
				opts.seconds = d
			} else {
				opts.warmup = d
			}
		case "--concurrency":
			if v, err = value(); err != nil {
				return
			}
			n, perr := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			switch {
			case perr == nil && n > maxConcurrency:
				return opts, false, uerr("for example --concurrency 32", "--concurrency must be at most %d, got %d", maxConcurrency, n)
			case perr != nil || n == 0:
				return opts, false, uerr("for example --concurrency 32", "--concurrency must be a positive integer, got %q", v)
			}
			opts.concurrency = int(n)
		case "--size":
			if v, err = value(); err != nil {
				return
			}
			if opts.size, err = parseSize(v); err != nil {
				return
			}
		case "--mode":
			if v, err = value(); err != nil {
				return
			}
			switch v {
			case "echo":
				opts.mode = modeEcho
			case "download":
				opts.mode = modeDownload
			default:
				return opts, false, uerr("--mode echo measures unary calls, --mode download streaming throughput",
					"--mode must be echo or download, got %q", v)
			}
		case "--threads":
			return opts, false, uerr("the Go host runs on GOMAXPROCS threads (Go's default: one per core); set GOMAXPROCS in the environment to change that",
				"bench-host has no --threads option (rpcplugin bench's runtime option)")
		default:
			return opts, false, uerr(helpHint, "invalid option '%s'", name)
		}
	}
	return opts, false, uerr("put the plugin and its arguments last, after `--`: `bench-host --concurrency 32 -- ./kv-plugin`",
		"no plugin command given")
}

// parseSeconds reads a number of seconds, fractions allowed; zero only if zeroOK.
func parseSeconds(name, v string, zeroOK bool) (time.Duration, *usageError) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && f <= maxSeconds && (f > 0 || (zeroOK && f == 0)) {
		return time.Duration(f * float64(time.Second)), nil
	}
	what := "a positive number of seconds"
	if zeroOK {
		what = "a number of seconds (0 or more)"
	}
	return 0, uerr(fmt.Sprintf("for example --%s 5 or --%s 0.5", name, name), "--%s must be %s, got %q", name, what, v)
}

// parseSize reads bytes with an optional K/KiB (1024) or M/MiB (1024^2)
// suffix; at most 2^32-1, the range of DownloadRequest.chunk_size.
func parseSize(v string) (int, *usageError) {
	t := strings.TrimSpace(v)
	unit := uint64(1)
	for _, s := range []struct {
		suffix string
		unit   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}} {
		if strings.HasSuffix(t, s.suffix) {
			t, unit = strings.TrimSpace(strings.TrimSuffix(t, s.suffix)), s.unit
			break
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err == nil && n <= math.MaxUint32/unit && n*unit <= math.MaxUint32 {
		return int(n * unit), nil
	}
	return 0, uerr("for example --size 1024, --size 64KiB or --size 1MiB",
		"--size must be a number of bytes up to 4 GiB, got %q", v)
}
