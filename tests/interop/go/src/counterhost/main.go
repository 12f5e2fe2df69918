// counter-host: the bidirectional example's host on go-plugin 1.0.1, the Go
// reference peer for rpcplugin plugins that use the broker.
//
//	counter-host [--automtls] [--no-serve-helper] [--cookie KEY=VALUE] -- PLUGIN_COMMAND [ARGS...]
//
// It starts the plugin (gRPC only, handshake BASIC_PLUGIN=hello / version 1,
// AutoMTLS only with --automtls), dispenses "counter", and puts 1 then 2
// under "hello", each time serving its own AddHelper through the broker
// (AcceptAndServe) for the plugin to call back. It prints "hello = 3", then
// (unless --no-serve-helper) asks the plugin to serve an AddHelper, dials its
// broker id and prints "plugin helper: 40 + 2 = 42". Then client.Kill() and a
// check that the plugin is gone. Exit 0 only if all of that worked and the
// plugin called the host's helper twice; otherwise one "FAIL: ..." line on
// stderr and exit 1. An overall 30 s deadline kills the plugin and exits 1.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"counterproto"
)

const (
	overallDeadline = 30 * time.Second
	startTimeout    = 20 * time.Second
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: counter-host [--automtls] [--no-serve-helper] [--cookie KEY=VALUE] -- PLUGIN_COMMAND [ARGS...]")
	os.Exit(2)
}

var pluginPid int64

func fail(format string, args ...interface{}) {
	msg := strings.Join(strings.Fields(fmt.Sprintf(format, args...)), " ")
	fmt.Fprintf(os.Stderr, "FAIL: %s\n", msg)
	if pid := atomic.LoadInt64(&pluginPid); pid > 0 {
		_ = syscall.Kill(int(pid), syscall.SIGKILL)
	}
	os.Exit(1)
}

// hostAdder is the host's AddHelper; it counts the plugin's calls.
type hostAdder struct{ calls int64 }

func (h *hostAdder) Sum(a, b int64) (int64, error) {
	atomic.AddInt64(&h.calls, 1)
	return a + b, nil
}

func main() {
	automtls, serveHelper := false, true
	cookieKey, cookieValue := counterproto.Handshake.MagicCookieKey, counterproto.Handshake.MagicCookieValue
	args := os.Args[1:]
	for len(args) > 0 && args[0] != "--" {
		switch a := args[0]; a {
		case "--automtls":
			automtls = true
		case "--no-serve-helper":
			serveHelper = false
		case "--cookie":
			if len(args) < 2 || strings.IndexByte(args[1], '=') <= 0 {
				usage()
			}
			kv := args[1]
			cookieKey, cookieValue = kv[:strings.IndexByte(kv, '=')], kv[strings.IndexByte(kv, '=')+1:]
			args = args[1:]
		default:
			fmt.Fprintf(os.Stderr, "counter-host: unknown option %q\n", a)
			usage()
		}
		args = args[1:]
	}
	if len(args) < 2 {
		usage()
	}
	args = args[1:]
	time.AfterFunc(overallDeadline, func() { fail("overall deadline of %s exceeded; plugin killed", overallDeadline) })

	level := hclog.Debug
	if l := os.Getenv("KV_HOST_LOG_LEVEL"); l != "" {
		level = hclog.LevelFromString(l)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "counter-host", Level: level, Output: os.Stderr})
	cmd := exec.Command(args[0], args[1:]...)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  counterproto.Handshake.ProtocolVersion,
			MagicCookieKey:   cookieKey,
			MagicCookieValue: cookieValue,
		},
		Plugins:          map[string]plugin.Plugin{"counter": &counterproto.CounterGRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         automtls,
		StartTimeout:     startTimeout,
		Logger:           logger,
	})
	check := func(err error, what string) {
		if err != nil {
			client.Kill()
			fail("%s: %v", what, err)
		}
	}
	_, err := client.Start()
	check(err, "start plugin")
	pid := 0
	if rc := client.ReattachConfig(); rc != nil {
		pid = rc.Pid
		atomic.StoreInt64(&pluginPid, int64(pid))
	}
	rpc, err := client.Client()
	check(err, "connect to plugin")
	raw, err := rpc.Dispense("counter")
	check(err, "dispense \"counter\"")
	counter, ok := raw.(counterproto.Counter)
	if !ok {
		check(fmt.Errorf("dispensed %T, not a Counter", raw), "dispense \"counter\"")
	}

	adder := &hostAdder{}
	check(counter.Put("hello", 1, adder), "Counter.Put(hello, 1) with the host's AddHelper")
	check(counter.Put("hello", 2, adder), "Counter.Put(hello, 2) with the host's AddHelper")
	value, err := counter.Get("hello")
	check(err, "Counter.Get(hello)")
	fmt.Printf("hello = %d\n", value)
	if value != 3 {
		check(fmt.Errorf("got %d, want 3", value), "Counter.Get(hello)")
	}
	if calls := atomic.LoadInt64(&adder.calls); calls != 2 {
		check(fmt.Errorf("the plugin called the host's AddHelper %d times, want 2", calls), "callbacks")
	}
	if serveHelper {
		helper, err := counter.ServeHelper()
		check(err, "Counter.ServeHelper and broker Dial")
		r, err := helper.Sum(40, 2)
		check(err, "AddHelper.Sum on the plugin's helper")
		fmt.Printf("plugin helper: 40 + 2 = %d\n", r)
		if r != 42 {
			check(fmt.Errorf("got %d, want 42", r), "AddHelper.Sum(40, 2)")
		}
	}

	client.Kill()
	if !client.Exited() {
		fail("plugin process (pid %d) has not exited after client.Kill()", pid)
	}
	if pid > 0 {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			fail("plugin process (pid %d) still exists after client.Kill() (kill -0: %v)", pid, err)
		}
	}
	fmt.Fprintln(os.Stderr, "counter-host: OK")
	os.Exit(0)
}
