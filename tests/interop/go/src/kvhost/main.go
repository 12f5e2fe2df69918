// kv-host: a go-plugin 1.0.1 host that runs any KV plugin (go-plugin's
// classic gRPC KV example contract), the Go reference peer for rpcplugin's
// plugins.
//
//	kv-host [--automtls] [--cookie KEY=VALUE] [--strict-shutdown] -- PLUGIN_COMMAND [ARGS...]
//
// It launches the plugin with plugin.NewClient (gRPC only, handshake
// BASIC_PLUGIN=hello / version 1 unless --cookie overrides it, AutoMTLS
// only with --automtls, StartTimeout 20 s), pings it (grpc.health.v1,
// service "plugin"), dispenses "kv", puts hello=world, gets it back,
// prints the value on stdout, then client.Kill() and checks the plugin
// process is gone. Exit 0 only if all of that worked; otherwise one
// "FAIL: ..." line on stderr and exit 1. An overall 30 s deadline kills
// the plugin and exits 1, so it never hangs.
//
// --strict-shutdown additionally fails when the plugin did not exit by
// itself after go-plugin's GRPCController.Shutdown (go-plugin then
// SIGKILLs it after a 2 s grace period).
//
//	kv-host --reattach JSON
//
// attaches to a plugin that is already running (go-plugin's ReattachConfig,
// read from Terraform's TF_REATTACH_PROVIDERS entry shape that rpcplugin's
// debug mode prints), puts and gets as above, and exits without Kill (in
// go-plugin 1.0.1 a reattached client's Kill would send Shutdown): exit 0
// only if the value matched and the plugin is still running.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"kvproto"
)

const (
	overallDeadline = 30 * time.Second
	startTimeout    = 20 * time.Second
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kv-host [--automtls] [--cookie KEY=VALUE] [--strict-shutdown] [--ping-only] -- PLUGIN_COMMAND [ARGS...]")
	os.Exit(2)
}

var (
	mu        sync.Mutex
	failed    bool
	pluginCmd *exec.Cmd
	pluginPid int
)

// fail prints one FAIL line, kills the plugin if it runs, exits 1. Safe to
// call from any goroutine; the first caller wins.
func fail(format string, args ...interface{}) {
	mu.Lock()
	if failed {
		mu.Unlock()
		select {} // another goroutine is already exiting
	}
	failed = true
	pid := pluginPid
	cmd := pluginCmd
	mu.Unlock()
	// One line, whatever the error text (go-plugin's errors span lines).
	msg := strings.Join(strings.Fields(fmt.Sprintf(format, args...)), " ")
	fmt.Fprintf(os.Stderr, "FAIL: %s\n", msg)
	if pid == 0 && cmd != nil && cmd.Process != nil { // start still in progress
		pid = cmd.Process.Pid
	}
	if pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	os.Exit(1)
}

func main() {
	automtls := false
	strictShutdown := false
	pingOnly := false
	reattachJSON := ""
	cookieKey, cookieValue := kvproto.Handshake.MagicCookieKey, kvproto.Handshake.MagicCookieValue
	args := os.Args[1:]
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			args = args[1:]
			break
		}
		if !strings.HasPrefix(a, "-") {
			break
		}
		args = args[1:]
		switch {
		case a == "--automtls":
			automtls = true
		case a == "--strict-shutdown":
			strictShutdown = true
		case a == "--ping-only":
			// For plugins that serve no KV (a plugin author's own proto): start,
			// health check, stop.
			pingOnly = true
		case a == "--reattach":
			if len(args) == 0 {
				usage()
			}
			reattachJSON, args = args[0], args[1:]
		case a == "--cookie" || strings.HasPrefix(a, "--cookie="):
			var kv string
			if a == "--cookie" {
				if len(args) == 0 {
					usage()
				}
				kv, args = args[0], args[1:]
			} else {
				kv = strings.TrimPrefix(a, "--cookie=")
			}
			i := strings.IndexByte(kv, '=')
			if i <= 0 {
				fmt.Fprintf(os.Stderr, "kv-host: --cookie wants KEY=VALUE, got %q\n", kv)
				usage()
			}
			cookieKey, cookieValue = kv[:i], kv[i+1:]
		case a == "-h" || a == "--help":
			usage()
		default:
			fmt.Fprintf(os.Stderr, "kv-host: unknown option %q\n", a)
			usage()
		}
	}
	if len(args) == 0 && reattachJSON == "" {
		usage()
	}

	// Never hang: one deadline for everything, and the same on a signal.
	time.AfterFunc(overallDeadline, func() {
		fail("overall deadline of %s exceeded; plugin killed", overallDeadline)
	})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fail("interrupted by %s; plugin killed", s)
	}()

	level := hclog.Debug
	if l := os.Getenv("KV_HOST_LOG_LEVEL"); l != "" {
		level = hclog.LevelFromString(l)
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:   "kv-host",
		Level:  level,
		Output: os.Stderr,
	})

	if reattachJSON != "" {
		reattach(reattachJSON, cookieKey, cookieValue, logger)
		return
	}

	cmd := exec.Command(args[0], args[1:]...)
	mu.Lock()
	pluginCmd = cmd
	mu.Unlock()

	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  kvproto.Handshake.ProtocolVersion,
			MagicCookieKey:   cookieKey,
			MagicCookieValue: cookieValue,
		},
		Plugins:          map[string]plugin.Plugin{"kv": &kvproto.KVGRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         automtls,
		StartTimeout:     startTimeout,
		Logger:           logger,
	})

	// Any failure after this point: Kill (bounded by the deadline), then FAIL.
	check := func(err error, what string) {
		if err != nil {
			fmt.Fprintf(os.Stderr, "kv-host: %s failed; killing plugin\n", what)
			client.Kill()
			fail("%s: %v", what, err)
		}
	}

	t0 := time.Now()
	_, err := client.Start()
	check(err, "start plugin")
	if rc := client.ReattachConfig(); rc != nil {
		mu.Lock()
		pluginPid = rc.Pid
		mu.Unlock()
	}
	mu.Lock()
	pid := pluginPid
	mu.Unlock()
	logger.Info("plugin started", "pid", pid, "protocol", client.Protocol(), "automtls", automtls,
		"elapsed", time.Since(t0))

	rpc, err := client.Client()
	check(err, "connect to plugin")
	check(rpc.Ping(), "ping (grpc.health.v1 Check, service \"plugin\")")

	if pingOnly {
		fmt.Println("SERVING")
	} else {
		raw, err := rpc.Dispense("kv")
		check(err, "dispense \"kv\"")
		kv, ok := raw.(kvproto.KV)
		if !ok {
			check(fmt.Errorf("dispensed %T, not a KV", raw), "dispense \"kv\"")
		}

		check(kv.Put("hello", []byte("world")), "KV.Put(hello, world)")
		value, err := kv.Get("hello")
		check(err, "KV.Get(hello)")
		fmt.Println(string(value))
		if string(value) != "world" {
			check(fmt.Errorf("got %q, want %q", value, "world"), "KV.Get(hello)")
		}
	}

	t1 := time.Now()
	client.Kill()
	killTook := time.Since(t1)
	if !client.Exited() {
		fail("plugin process (pid %d) has not exited after client.Kill()", pid)
	}
	if pid > 0 {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			fail("plugin process (pid %d) still exists after client.Kill() (kill -0: %v)", pid, err)
		}
	}
	how := "unknown"
	killed := false
	if ps := cmd.ProcessState; ps != nil {
		how = ps.String()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			killed = true
		}
	}
	if killed {
		fmt.Fprintf(os.Stderr, "kv-host: plugin did not exit after Shutdown; go-plugin SIGKILLed it (%s, Kill took %s)\n",
			how, killTook.Round(time.Millisecond))
		if strictShutdown {
			fail("plugin did not exit gracefully after GRPCController.Shutdown (--strict-shutdown)")
		}
	} else {
		fmt.Fprintf(os.Stderr, "kv-host: plugin exited (%s) %s after Kill\n", how, killTook.Round(time.Millisecond))
	}
	fmt.Fprintln(os.Stderr, "kv-host: OK")
	os.Exit(0)
}

// reattach attaches to a running plugin from its reattach JSON (Terraform's
// TF_REATTACH_PROVIDERS entry: Protocol, ProtocolVersion, Pid, Addr{Network,
// String}), puts and gets, and leaves the plugin running.
func reattach(text, cookieKey, cookieValue string, logger hclog.Logger) {
	var rc struct {
		Protocol        string
		ProtocolVersion int
		Pid             int
		Addr            struct{ Network, String string }
		ServerCert      string
	}
	if err := json.Unmarshal([]byte(text), &rc); err != nil {
		fail("reattach JSON: %v", err)
	}
	if rc.ServerCert != "" {
		fail("the plugin serves TLS; go-plugin 1.0.1 reattach carries no TLS configuration")
	}
	var addr net.Addr
	var err error
	switch rc.Addr.Network {
	case "unix":
		addr, err = net.ResolveUnixAddr("unix", rc.Addr.String)
	case "tcp":
		addr, err = net.ResolveTCPAddr("tcp", rc.Addr.String)
	default:
		err = fmt.Errorf("unknown network %q", rc.Addr.Network)
	}
	if err != nil {
		fail("reattach address: %v", err)
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  uint(rc.ProtocolVersion),
			MagicCookieKey:   cookieKey,
			MagicCookieValue: cookieValue,
		},
		Plugins:          map[string]plugin.Plugin{"kv": &kvproto.KVGRPCPlugin{}},
		Reattach:         &plugin.ReattachConfig{Protocol: plugin.Protocol(rc.Protocol), Addr: addr, Pid: rc.Pid},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
	})
	rpc, err := client.Client()
	if err != nil {
		fail("reattach to pid %d at %s: %v", rc.Pid, addr, err)
	}
	if err := rpc.Ping(); err != nil {
		fail("ping: %v", err)
	}
	raw, err := rpc.Dispense("kv")
	if err != nil {
		fail("dispense \"kv\": %v", err)
	}
	kv := raw.(kvproto.KV)
	if err := kv.Put("hello", []byte("world")); err != nil {
		fail("KV.Put(hello, world): %v", err)
	}
	value, err := kv.Get("hello")
	if err != nil {
		fail("KV.Get(hello): %v", err)
	}
	fmt.Println(string(value))
	if string(value) != "world" {
		fail("KV.Get(hello): got %q, want %q", value, "world")
	}
	// No Kill and no Close: in go-plugin 1.0.1 both send Shutdown.
	if err := syscall.Kill(rc.Pid, 0); err != nil {
		fail("the plugin (pid %d) is gone after the host's calls: %v", rc.Pid, err)
	}
	fmt.Fprintf(os.Stderr, "kv-host: reattached to pid %d and left it running\n", rc.Pid)
	os.Exit(0)
}
