#!/usr/bin/env python3
"""A pyvider-rpcplugin plugin serving go-plugin's KV example (proto.KV) and the
benchmark service (bench.v1.Bench), as rpcplugin's examples/kv_plugin.rs does.

Launched by a host (go-plugin, rpcplugin's kv_host, or kv_host.py) as

    VENVDIR/bin/python /abs/path/tests/interop/python/kv_plugin.py [options]

where VENVDIR was prepared by setup.sh (the generated kv_pb2 and bench_pb2 code
lives in VENVDIR/kvgen and is found through sys.prefix, so the cwd does not
matter).

- Handshake: magic cookie BASIC_PLUGIN=hello (override with --cookie KEY=VALUE),
  app protocol version 1.
- Transport: pyvider's own negotiation by default (`--transport auto`): it reads
  PLUGIN_SERVER_TRANSPORTS (default "unix,tcp") and takes unix when listed, so a
  plain launch serves on $TMPDIR/pyvider-<pid>.sock; PLUGIN_SERVER_TRANSPORTS=tcp
  gives 127.0.0.1:<ephemeral>. `--transport unix|tcp` fixes it instead.
- TLS: pyvider's auto-mTLS. When the host sets PLUGIN_CLIENT_CERT, the plugin
  generates a P-384 server certificate and puts it in the handshake line
  (pyvider does NOT verify the host's client certificate). Otherwise plaintext.
- KV: values are kept in memory; Get of a missing key returns an empty value.
- Bench (bench.proto, INTEROP.md): Echo returns the request unchanged; Download
  streams `count` messages of `chunk_size` bytes (0xAB, the chunk is built once
  per call, like the Rust kv_plugin's).
- Stops on GRPCController.Shutdown or SIGTERM (pyvider's serve() then calls
  sys.exit(0)); exits 1 without printing a handshake when the cookie is wrong
  or missing (e.g. when run directly by a person).

Nothing but the handshake line is written to stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


_GENERATED_FILES = ("kv_pb2.py", "kv_pb2_grpc.py", "bench_pb2.py", "bench_pb2_grpc.py")


def _find_generated_dir() -> str:
    """Where setup.sh put kv_pb2.py and bench_pb2.py: VENVDIR/kvgen, VENVDIR being sys.prefix."""
    candidates = []
    override = os.environ.get("KV_INTEROP_GEN_DIR")
    if override:
        candidates.append(override)
    candidates.append(os.path.join(sys.prefix, "kvgen"))
    # sys.executable may be a symlink chain; its venv is the directory above bin/.
    candidates.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(sys.executable))), "kvgen"))
    for cand in candidates:
        if all(os.path.isfile(os.path.join(cand, f)) for f in _GENERATED_FILES):
            return cand
    sys.stderr.write(
        "kv_plugin.py: cannot find the generated code (" + ", ".join(_GENERATED_FILES) + ") in any of "
        + ", ".join(candidates)
        + ". Run tests/interop/python/setup.sh VENVDIR and start this script with VENVDIR/bin/python.\n"
    )
    sys.exit(1)


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="pyvider-rpcplugin KV plugin (go-plugin KV example) + bench.v1.Bench")
    p.add_argument("--cookie", default="BASIC_PLUGIN=hello", help="magic cookie KEY=VALUE (default BASIC_PLUGIN=hello)")
    p.add_argument(
        "--transport",
        choices=("auto", "unix", "tcp"),
        default="auto",
        help="auto = pyvider negotiation via PLUGIN_SERVER_TRANSPORTS (unix preferred)",
    )
    args = p.parse_args()
    if "=" not in args.cookie or args.cookie.startswith("="):
        p.error("--cookie must be KEY=VALUE")
    return args


def main() -> None:
    args = _parse_args()
    cookie_key, cookie_value = args.cookie.split("=", 1)

    sys.path.insert(0, _find_generated_dir())
    import grpc  # noqa: F401  (imported for its side effects before the generated code)
    import bench_pb2
    import bench_pb2_grpc
    import kv_pb2
    import kv_pb2_grpc
    from pyvider.rpcplugin import RPCPluginProtocol, RPCPluginServer, configure, plugin_server

    # The library default cookie is PLUGIN_MAGIC_COOKIE=test_cookie_value.
    # Do NOT pass protocol_version= to configure(): it also changes handshake
    # field 1 (core version), which must stay 1.
    configure(magic_cookie_key=cookie_key, magic_cookie=cookie_value)

    class KVServicer(kv_pb2_grpc.KVServicer):
        def __init__(self) -> None:
            self._store: dict[str, bytes] = {}

        async def Get(self, request, context):  # noqa: N802 (gRPC method name)
            return kv_pb2.GetResponse(value=self._store.get(request.key, b""))

        async def Put(self, request, context):  # noqa: N802
            self._store[request.key] = bytes(request.value)
            return kv_pb2.Empty()

    class BenchServicer(bench_pb2_grpc.BenchServicer):
        async def Echo(self, request, context):  # noqa: N802 (gRPC method name)
            return request

        async def Download(self, request, context):  # noqa: N802
            chunk = bench_pb2.Payload(data=b"\xab" * request.chunk_size)
            for _ in range(request.count):
                yield chunk

    class KVProtocol(RPCPluginProtocol):
        # service_name: health also answers SERVING for "proto.KV".
        service_name = "proto.KV"
        # The app protocol version this plugin serves (handshake field 2).
        protocol_version = 1

        async def get_grpc_descriptors(self):
            return kv_pb2.DESCRIPTOR, "proto.KV"

        async def add_to_server(self, server, handler) -> None:
            kv_pb2_grpc.add_KVServicer_to_server(handler, server)
            # The benchmark service on the same server (pyvider serves whatever
            # add_to_server registers).
            bench_pb2_grpc.add_BenchServicer_to_server(BenchServicer(), server)

    server_config = {
        "PLUGIN_MAGIC_COOKIE_KEY": cookie_key,
        "PLUGIN_MAGIC_COOKIE_VALUE": cookie_value,
    }

    async def serve() -> None:
        # Built inside the running loop: RPCPluginServer creates asyncio
        # futures/events in its constructor.
        protocol = KVProtocol()
        handler = KVServicer()
        if args.transport == "auto":
            server = RPCPluginServer(protocol=protocol, handler=handler, config=server_config, transport=None)
        else:
            server = plugin_server(protocol=protocol, handler=handler, transport=args.transport, config=server_config)
        # serve() calls sys.exit itself: 0 after a clean stop, 1 on a startup
        # fault (bad cookie, bad PLUGIN_PROTOCOL_VERSIONS, ...).
        await server.serve()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
