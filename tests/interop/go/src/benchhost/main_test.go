package main

import (
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestBucketsRoundTrip(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<22; v++ {
		i := bucketOf(v)
		if i < prev || i > prev+1 {
			t.Fatalf("bucket of %d is %d after %d", v, i, prev)
		}
		prev = i
		hi := highestOf(i)
		if hi < v || float64(hi-v) > float64(v)/128 {
			t.Fatalf("value %d: bucket %d tops at %d (error over 1/128)", v, i, hi)
		}
	}
	if got := bucketOf(maxValue); got != maxBuckets-1 {
		t.Fatalf("bucketOf(maxValue) = %d, want %d", got, maxBuckets-1)
	}
}

func TestQuantilesOfKnownValues(t *testing.T) {
	var h histogram
	for v := uint64(1); v <= 1000; v++ {
		h.record(v)
	}
	// Exact below 256, within 0.8 % above.
	for _, c := range []struct {
		q    float64
		want uint64
	}{{0.1, 100}, {0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}} {
		got := h.quantile(c.q)
		if got < c.want || float64(got-c.want) > float64(c.want)/128 {
			t.Errorf("quantile(%v) = %d, want %d (+0.8 %%)", c.q, got, c.want)
		}
	}
	if h.max != 1000 || h.mean() != 500.5 {
		t.Errorf("max %d mean %v", h.max, h.mean())
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Error("empty histogram")
	}
}

func TestMergeAndRandom(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	var a, b histogram
	var all []uint64
	for i := 0; i < 100000; i++ {
		v := uint64(r.ExpFloat64() * 300)
		if i%1000 == 0 {
			v = uint64(r.Int63n(20_000_000))
		}
		all = append(all, v)
		if i%2 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	a.merge(&b)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := all[int(q*float64(len(all)))-1]
		got := a.quantile(q)
		if got < want || float64(got-want) > float64(want)/128+1 {
			t.Errorf("q %v: got %d want %d", q, got, want)
		}
	}
	if len(a.counts) > maxBuckets {
		t.Errorf("%d buckets", len(a.counts))
	}
	a.record(1 << 50) // clamped
	if a.max != maxValue {
		t.Errorf("max %d", a.max)
	}
}

func TestArgs(t *testing.T) {
	o, help, err := parseArgs([]string{"--", "./p"})
	if err != nil || help {
		t.Fatal(err)
	}
	d := defaultOptions()
	if o.seconds != d.seconds || o.warmup != time.Second || o.concurrency != 1 || o.size != 1024 ||
		o.mode != modeEcho || o.automtls || o.json || o.cookieKey != "BASIC_PLUGIN" || o.cookieValue != "hello" || o.program != "./p" {
		t.Fatalf("defaults: %+v", o)
	}
	o, _, err = parseArgs(strings.Fields("--automtls --json --cookie A=B --seconds 2.5 --warmup=0 --concurrency 32 --size 64KiB --mode download -- ./p --x y"))
	if err != nil {
		t.Fatal(err)
	}
	if !o.automtls || !o.json || o.cookieKey != "A" || o.cookieValue != "B" || o.seconds != 2500*time.Millisecond ||
		o.warmup != 0 || o.concurrency != 32 || o.size != 65536 || o.mode != modeDownload || o.program != "./p" ||
		strings.Join(o.args, " ") != "--x y" {
		t.Fatalf("%+v", o)
	}
	for in, want := range map[string]int{"0": 0, "64K": 65536, "1M": 1 << 20, "1MiB": 1 << 20, "4095MiB": 4095 << 20} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("size %q: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"4096MiB", "x", "-1", "1GiB", ""} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("size %q accepted", bad)
		}
	}
	for _, bad := range [][]string{
		{}, {"--seconds", "0", "--", "p"}, {"--warmup", "-1", "--", "p"}, {"--concurrency", "0", "--", "p"},
		{"--mode", "x", "--", "p"}, {"--cookie", "A", "--", "p"}, {"--cookie", "=B", "--", "p"},
		{"--json=yes", "--", "p"}, {"--threads", "1", "--", "p"}, {"--bogus", "--", "p"}, {"--seconds"}, {"--"},
	} {
		if _, _, err := parseArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, help, _ := parseArgs([]string{"--seconds", "1", "-h", "--", "p"}); !help {
		t.Error("-h")
	}
}

func TestResultLineShape(t *testing.T) {
	tl := &tally{calls: 1000}
	for v := uint64(1); v <= 1000; v++ {
		tl.hist.record(v)
	}
	tl.bytes = 1000 << 20
	now := time.Now()
	r := report{
		opts:   options{seconds: 2 * time.Second, mode: modeEcho},
		launch: 3250 * time.Microsecond,
		total:  tl,
		start:  snapshot{at: now, host: sample{100, 1}, hostOK: true},
		end:    snapshot{at: now.Add(2 * time.Second), host: sample{290, 8000}, hostOK: true},
	}
	// 500 and 990 sit in 2-µs buckets (256..511, 512..1023): reported as their tops.
	want := `RESULT {"req_per_s":500.0, "p50_us":501, "p99_us":991, "p999_us":999, "launch_to_first_call_ms":3.250, ` +
		`"host_rss_kb":8000, "plugin_rss_kb":null, "host_cpu_pct":95.0, "plugin_cpu_pct":null, "errors":0}`
	if got := r.resultLine(); got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
	r.opts.mode = modeDownload
	if got := r.resultLine(); !strings.HasPrefix(got, `RESULT {"req_per_s":500.0, "mib_per_s":500.0, "p50_us":501, `) {
		t.Errorf("download: %s", got)
	}
}

func TestProcParsing(t *testing.T) {
	stat := "4242 (kv plugin) x) S 4200 4242 4200 0 -1 4194304 1200 0 0 0 250 75 0 0 20 0 3 0 123456 12345678 1500 1 1 1\n"
	if n, ok := cpuTicks(stat); !ok || n != 325 {
		t.Errorf("cpuTicks %d %v", n, ok)
	}
	if n, ok := rssKB("Name:\tx\nVmRSS:\t    6012 kB\n"); !ok || n != 6012 {
		t.Errorf("rss %d %v", n, ok)
	}
	if s, ok := readSample("self"); !ok || s.rssKB == 0 {
		t.Errorf("self %+v %v", s, ok)
	}
	if _, ok := machineBusyTicks(); !ok {
		t.Error("/proc/stat")
	}
}
