// bench-host: go-plugin 1.0.1's load generator, the Go counterpart of
// `rpcplugin bench` (same command line, same RESULT line), so that go-plugin
// and rpcplugin hosts are measured against the same plugins side by side.
//
//	bench-host [--automtls] [--cookie KEY=VALUE] [--seconds N] [--warmup SECS]
//	    [--concurrency C] [--size BYTES] [--mode echo|download] [--json]
//	    -- PLUGIN_COMMAND [ARGS...]
//
// It launches the plugin with plugin.NewClient (gRPC only, handshake
// BASIC_PLUGIN=hello / version 1 unless --cookie overrides it, AutoMTLS only
// with --automtls, StartTimeout 20 s, an hclog logger at warn on stderr),
// dispenses "bench" (benchproto.BenchClient on go-plugin's one gRPC
// connection) and times launch to the first Echo reply. Then C goroutines
// call Echo (or Download) in a loop over that connection: calls that finish
// during the warm-up are not counted, calls that finish inside the window
// [start, start+seconds] are; each has a 10 s deadline. It reads CPU and RSS
// of both processes from /proc around the window, then client.Kill().
//
// Output: a table (stderr with --json, stdout otherwise), then one line on
// stdout: RESULT {"req_per_s":..., ...}. Exit 0 only if no call failed and
// the plugin process is gone; usage errors exit 2; anything else exits 1.
// An overall deadline of seconds+warmup+30 s SIGKILLs the plugin and exits 1.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"benchproto"
)

const (
	startTimeout    = 20 * time.Second
	callTimeout     = 10 * time.Second
	deadlineSlack   = 30 * time.Second
	bytesPerCall    = 1 << 20 // Download: about 1 MiB per call
	echoByte        = 0x5A
	stragglerWindow = callTimeout + time.Second
	killGrace       = 5 * time.Second // go-plugin's own grace is 2 s
)

var (
	mu        sync.Mutex
	exiting   bool
	pluginCmd *exec.Cmd
	pluginPid int
)

// fail writes "error: ..." to stderr, SIGKILLs the plugin if it runs and
// exits 1. Safe from any goroutine; the first caller wins.
func fail(format string, args ...interface{}) {
	mu.Lock()
	if exiting {
		mu.Unlock()
		select {}
	}
	exiting = true
	pid, cmd := pluginPid, pluginCmd
	mu.Unlock()
	fmt.Fprintf(os.Stderr, "error: %s\n", fmt.Sprintf(format, args...))
	if pid == 0 && cmd != nil && cmd.Process != nil { // start still in progress
		pid = cmd.Process.Pid
	}
	if pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	os.Exit(1)
}

// messagesPerCall is the Download count: about 1 MiB per call, at least 1.
func messagesPerCall(size int) uint32 {
	if size == 0 {
		return 1
	}
	n := bytesPerCall / size
	if n < 1 {
		n = 1
	}
	return uint32(n)
}

// tally is one goroutine's counts, merged at the end (nothing shared on the
// hot path). The padding keeps two goroutines' counters off one cache line.
type tally struct {
	_          [64]byte
	hist       histogram
	calls      uint64
	errors     uint64
	bytes      uint64
	messages   uint64
	firstErr   string
	firstErrAt time.Time
	_          [64]byte
}

func (t *tally) fail(err error) {
	t.errors++
	if t.firstErr == "" {
		t.firstErr = strings.Join(strings.Fields(err.Error()), " ")
		t.firstErrAt = time.Now()
	}
}

type workload struct {
	mode     mode
	payload  []byte
	download benchproto.DownloadRequest
}

// drive calls until windowEnd; counts the calls that succeed and finish
// inside [windowStart, windowEnd].
func drive(client benchproto.BenchClient, w *workload, windowStart, windowEnd time.Time) *tally {
	t := new(tally)
	// One request message per goroutine, built once: grpc-go only reads it
	// (protobuf writes its size cache into it, hence not shared).
	echoReq := &benchproto.Payload{Data: w.payload}
	dlReq := &benchproto.DownloadRequest{ChunkSize: w.download.ChunkSize, Count: w.download.Count}
	bg := context.Background()
	for {
		started := time.Now()
		if !started.Before(windowEnd) {
			return t
		}
		var got, msgs uint64
		var err error
		ctx, cancel := context.WithTimeout(bg, callTimeout)
		if w.mode == modeEcho {
			var resp *benchproto.Payload
			resp, err = client.Echo(ctx, echoReq)
			if err == nil {
				got, msgs = uint64(len(resp.Data)), 1
				if len(resp.Data) != len(w.payload) {
					err = fmt.Errorf("Echo returned %d bytes for %d", len(resp.Data), len(w.payload))
				}
			}
		} else {
			got, msgs, err = download(ctx, client, dlReq)
		}
		cancel()
		done := time.Now()
		if err != nil {
			t.fail(err)
			continue
		}
		if done.Before(windowStart) || done.After(windowEnd) {
			continue
		}
		us := done.Sub(started).Microseconds()
		if us < 1 {
			us = 1
		}
		t.hist.record(uint64(us))
		t.calls++
		t.bytes += got
		t.messages += msgs
	}
}

// download reads one whole Download stream.
func download(ctx context.Context, client benchproto.BenchClient, req *benchproto.DownloadRequest) (got, msgs uint64, err error) {
	stream, err := client.Download(ctx, req)
	if err != nil {
		return 0, 0, err
	}
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return got, msgs, err
		}
		got += uint64(len(m.Data))
		msgs++
	}
	if msgs != uint64(req.Count) {
		return got, msgs, fmt.Errorf("Download sent %d messages for %d", msgs, req.Count)
	}
	return got, msgs, nil
}

func main() {
	opts, help, uerr := parseArgs(os.Args[1:])
	if help {
		fmt.Print(usageText)
		os.Exit(0)
	}
	if uerr != nil {
		fmt.Fprintln(os.Stderr, uerr.Error())
		os.Exit(2)
	}

	// Never hang: one deadline for the whole run, and the same on a signal.
	overall := opts.seconds + opts.warmup + deadlineSlack
	time.AfterFunc(overall, func() {
		fail("the run did not finish within %s (seconds + warmup + %s); plugin killed", overall, deadlineSlack)
	})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fail("interrupted by %s; plugin killed", s)
	}()

	logger := hclog.New(&hclog.LoggerOptions{
		Name:   "bench-host",
		Level:  hclog.Warn,
		Output: os.Stderr,
	})
	cmd := exec.Command(opts.program, opts.args...)
	mu.Lock()
	pluginCmd = cmd
	mu.Unlock()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  benchproto.Handshake.ProtocolVersion,
			MagicCookieKey:   opts.cookieKey,
			MagicCookieValue: opts.cookieValue,
		},
		Plugins:          map[string]plugin.Plugin{benchproto.PluginName: &benchproto.BenchGRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         opts.automtls,
		StartTimeout:     startTimeout,
		Logger:           logger,
	})
	check := func(err error, format string, args ...interface{}) {
		if err != nil {
			stop(client, cmd, pluginPid)
			fail("%s: %s", fmt.Sprintf(format, args...), strings.Join(strings.Fields(err.Error()), " "))
		}
	}

	// Launch to first call: from just before the spawn to the first reply.
	t0 := time.Now()
	rpc, err := client.Client()
	if err != nil {
		// go-plugin has already SIGKILLed the process on its error paths
		// (fail kills it again in case); Kill here would only log a
		// misleading "failed to exit gracefully".
		fail("cannot start the plugin %s: %s", opts.program, strings.Join(strings.Fields(err.Error()), " "))
	}
	rc := client.ReattachConfig()
	label := filepath.Base(opts.program)
	if rc != nil {
		mu.Lock()
		pluginPid = rc.Pid
		mu.Unlock()
		label = fmt.Sprintf("%s (pid %d), protocol %d at %s", label, rc.Pid, client.NegotiatedVersion(), rc.Addr)
	}
	if opts.automtls {
		label += ", mutual TLS"
	} else {
		label += ", plaintext"
	}
	raw, err := rpc.Dispense(benchproto.PluginName)
	check(err, "dispense %q", benchproto.PluginName)
	bench, ok := raw.(benchproto.BenchClient)
	if !ok {
		check(fmt.Errorf("dispensed %T", raw), "dispense %q", benchproto.PluginName)
	}
	w := &workload{mode: opts.mode, payload: bytes.Repeat([]byte{echoByte}, opts.size)}
	w.download = benchproto.DownloadRequest{ChunkSize: uint32(opts.size), Count: 1}
	if opts.mode == modeDownload {
		w.download.Count = messagesPerCall(opts.size)
	}
	{
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		resp, err := bench.Echo(ctx, &benchproto.Payload{Data: w.payload})
		cancel()
		if err == nil && len(resp.Data) != opts.size {
			err = fmt.Errorf("Echo returned %d bytes for %d", len(resp.Data), opts.size)
		}
		if err != nil {
			stop(client, cmd, pluginPid)
			fail("the plugin started but its first bench.v1.Bench/Echo call failed: %s\n"+
				"  hint: bench-host measures plugins serving bench.v1.Bench (proto/examples/bench.proto); "+
				"check that this plugin registers that service and answers within 10 s", strings.Join(strings.Fields(err.Error()), " "))
		}
	}
	launch := time.Since(t0)

	mu.Lock()
	pid := pluginPid
	mu.Unlock()
	windowStart := time.Now().Add(opts.warmup)
	windowEnd := windowStart.Add(opts.seconds)
	results := make(chan *tally, opts.concurrency)
	for i := 0; i < opts.concurrency; i++ {
		go func() { results <- drive(bench, w, windowStart, windowEnd) }()
	}
	time.Sleep(time.Until(windowStart))
	start := takeSnapshot(pid)
	time.Sleep(time.Until(windowEnd))
	end := takeSnapshot(pid)

	var total tally
	giveUp := time.NewTimer(time.Until(windowEnd.Add(stragglerWindow)))
	for i := 0; i < opts.concurrency; i++ {
		select {
		case t := <-results:
			total.hist.merge(&t.hist)
			total.calls += t.calls
			total.errors += t.errors
			total.bytes += t.bytes
			total.messages += t.messages
			if t.firstErr != "" && (total.firstErr == "" || t.firstErrAt.Before(total.firstErrAt)) {
				total.firstErr, total.firstErrAt = t.firstErr, t.firstErrAt
			}
		case <-giveUp.C:
			// Cannot happen while calls keep their deadline; counted as a failure.
			left := opts.concurrency - i
			total.errors += uint64(left)
			if total.firstErr == "" {
				total.firstErr = fmt.Sprintf("%d goroutines got no reply within %s after the window; abandoned", left, stragglerWindow)
			}
			i = opts.concurrency
		}
	}

	stopped, stopOK := stop(client, cmd, pid)

	r := report{
		opts:      opts,
		label:     label,
		launch:    launch,
		total:     &total,
		perCall:   w.download.Count,
		start:     start,
		end:       end,
		stopped:   stopped,
		gomaxproc: runtime.GOMAXPROCS(0),
	}
	table, result := r.table(), r.resultLine()
	if opts.json {
		fmt.Fprint(os.Stderr, table)
	} else {
		fmt.Print(table)
	}
	fmt.Println(result)
	mu.Lock()
	exiting = true // the deadline must not fire while we exit normally
	mu.Unlock()
	if total.errors > 0 {
		fmt.Fprintf(os.Stderr, "error: %d calls failed; the first: %s\n", total.errors, total.firstErr)
		os.Exit(1)
	}
	if !stopOK {
		fmt.Fprintf(os.Stderr, "error: the plugin did not stop cleanly: %s\n", stopped)
		os.Exit(1)
	}
	os.Exit(0)
}

// stop runs client.Kill(), bounded: go-plugin 1.0.1 sends Shutdown without
// a deadline, so a hung plugin would hang Kill. If Kill has not returned
// after killGrace, bench-host SIGKILLs the plugin itself, which fails the
// Shutdown call and lets Kill finish.
func stop(client *plugin.Client, cmd *exec.Cmd, pid int) (string, bool) {
	t1 := time.Now()
	done := make(chan struct{})
	go func() {
		client.Kill()
		close(done)
	}()
	select {
	case <-done:
		return describeStop(client, cmd, pid, time.Since(t1))
	case <-time.After(killGrace):
	}
	if pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case <-done:
	case <-time.After(killGrace):
		return fmt.Sprintf("client.Kill() hung for %s even after bench-host SIGKILLed pid %d", 2*killGrace, pid), false
	}
	status := "unknown status"
	if ps := cmd.ProcessState; ps != nil {
		status = ps.String()
	}
	return fmt.Sprintf("client.Kill() hung for %s (Shutdown unanswered), so bench-host SIGKILLed the plugin: %s",
		killGrace, status), false
}

// describeStop says how client.Kill() ended the plugin; ok is false if the
// process is still there.
func describeStop(client *plugin.Client, cmd *exec.Cmd, pid int, took time.Duration) (string, bool) {
	if !client.Exited() {
		return fmt.Sprintf("still running after client.Kill() (pid %d)", pid), false
	}
	if pid > 0 {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			return fmt.Sprintf("pid %d still exists after client.Kill() (kill -0: %v)", pid, err), false
		}
	}
	how, status := "graceful (Shutdown RPC)", "unknown status"
	if ps := cmd.ProcessState; ps != nil {
		status = ps.String()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			how = "needed SIGKILL (go-plugin's 2 s grace ran out)"
		}
	}
	return fmt.Sprintf("%s, %s, Kill took %s", how, status, took.Round(100*time.Microsecond)), true
}
