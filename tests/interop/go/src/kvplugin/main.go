// kv-plugin: go-plugin's classic gRPC KV plugin (go-plugin 1.0.1), the Go
// reference peer for rpcplugin's hosts. Values live in memory; Get of a
// missing key returns an empty value. AutoMTLS is handled by go-plugin
// itself when the host sets PLUGIN_CLIENT_CERT. Run directly, go-plugin
// prints "This binary is a plugin..." and exits 1.
//
// It also serves bench.v1.Bench (plugin "bench", package benchproto), as
// rpcplugin's kv_plugin does, so that one Go plugin serves both contracts
// and the load generators (bench-host, rpcplugin bench) can measure it.
package main

import (
	"os"
	"sync"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"benchproto"
	"kvproto"
)

type memKV struct {
	mu     sync.Mutex
	values map[string][]byte
	log    hclog.Logger
}

func (k *memKV) Put(key string, value []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.values[key] = append([]byte(nil), value...)
	k.log.Debug("put", "key", key, "len", len(value))
	return nil
}

func (k *memKV) Get(key string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v := k.values[key] // missing key: empty value, no error
	k.log.Debug("get", "key", key, "found", v != nil)
	return append([]byte{}, v...), nil
}

func main() {
	// Bind the logger to the real stderr now: after the handshake go-plugin
	// 1.0.1 replaces os.Stderr with a pipe that nobody reads.
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "kv-plugin",
		Level:      hclog.Debug,
		Output:     os.Stderr,
		JSONFormat: true,
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: kvproto.Handshake,
		Plugins: map[string]plugin.Plugin{
			"kv":                  &kvproto.KVGRPCPlugin{Impl: &memKV{values: map[string][]byte{}, log: logger}},
			benchproto.PluginName: &benchproto.BenchGRPCPlugin{},
		},
		GRPCServer: plugin.DefaultGRPCServer,
	})
}
