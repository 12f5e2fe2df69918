// probe-plugin: a go-plugin 1.0.1 KV plugin that does what each key says,
// with its own rights, so that a host can see what its sandbox lets a Go
// plugin do (examples/sandboxed.rs has the same probe in Rust):
//
//	Put("file:PATH", bytes)   writes bytes to PATH
//	Get("file:PATH")          reads PATH
//	Get("exec:PATH")          runs PATH, answers "exit status: 0"
//	Get("connect:IP:PORT")    opens a TCP connection, answers "connected"
//
// A failure is the call's error with Go's message ("open PATH: permission
// denied"). The confinement itself is the kernel's (Landlock, seccomp), set by
// the host before this program runs: nothing here knows about it.
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	plugin "github.com/hashicorp/go-plugin"

	"kvproto"
)

type probe struct{}

func (probe) Put(key string, value []byte) error {
	if !strings.HasPrefix(key, "file:") {
		return fmt.Errorf("only file:PATH can be put, not %q", key)
	}
	return os.WriteFile(strings.TrimPrefix(key, "file:"), value, 0o600)
}

func (probe) Get(key string) ([]byte, error) {
	switch {
	case strings.HasPrefix(key, "file:"):
		return os.ReadFile(strings.TrimPrefix(key, "file:"))
	case strings.HasPrefix(key, "exec:"):
		if err := exec.Command(strings.TrimPrefix(key, "exec:")).Run(); err != nil {
			return nil, err
		}
		return []byte("exit status: 0"), nil
	case strings.HasPrefix(key, "connect:"):
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(key, "connect:"), 2*time.Second)
		if err != nil {
			return nil, err
		}
		conn.Close()
		return []byte("connected"), nil
	}
	return nil, fmt.Errorf("unknown key %q: expected file:, exec: or connect:", key)
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: kvproto.Handshake,
		Plugins: map[string]plugin.Plugin{
			"kv": &kvproto.KVGRPCPlugin{Impl: probe{}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
	})
}
