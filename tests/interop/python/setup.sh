#!/usr/bin/env bash
# Set up the Python side of the interop tests.
#
#   tests/interop/python/setup.sh VENVDIR
#
# Creates a virtualenv at VENVDIR (python3 -m venv), installs the pinned
# pyvider-rpcplugin 0.5.5 stack from requirements.txt, and generates the Python
# code for kv.proto and bench.proto into VENVDIR/kvgen (kv_pb2.py,
# kv_pb2_grpc.py, bench_pb2.py, bench_pb2_grpc.py) with the protoc bundled in
# grpcio-tools. kv_plugin.py, kv_host.py and bench_host.py find that directory
# through sys.prefix, so run them with VENVDIR/bin/python.
#
# Idempotent: a stamp file (VENVDIR/.rpcplugin-interop-stamp) records a hash of
# requirements.txt, kv.proto, bench.proto and this script; when it matches and the
# generated files exist, the script exits at once.
#
# Environment: PYTHON (default python3) picks the interpreter for the venv.
# Progress goes to stderr; nothing is printed on stdout.
set -euo pipefail

log() { printf 'setup.sh: %s\n' "$*" >&2; }

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 VENVDIR" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$1"
case "$venv" in
    /*) ;;
    *) venv="$(pwd)/$venv" ;;
esac
python="${PYTHON:-python3}"
req="$here/requirements.txt"
proto="$here/kv.proto"
bench_proto="$here/bench.proto"
gendir="$venv/kvgen"
stamp="$venv/.rpcplugin-interop-stamp"

want_stamp="$(cat "$req" "$proto" "$bench_proto" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ] \
    && [ -f "$gendir/kv_pb2.py" ] && [ -f "$gendir/kv_pb2_grpc.py" ] \
    && [ -f "$gendir/bench_pb2.py" ] && [ -f "$gendir/bench_pb2_grpc.py" ]; then
    log "up to date: $venv (stamp matches; delete $stamp to force a rebuild)"
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    log "creating virtualenv: $python -m venv $venv"
    "$python" -m venv "$venv"
else
    log "reusing existing virtualenv: $venv"
fi
rm -f "$stamp"

log "installing pinned packages from $req"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet --require-virtualenv -r "$req" >&2

log "installed: $("$venv/bin/python" -m pip freeze --disable-pip-version-check \
    | grep -iE '^(pyvider-rpcplugin|provide-foundation|grpcio|grpcio-tools|grpcio-health-checking|protobuf|cryptography)==' \
    | tr '\n' ' ')"

log "generating Python code for kv.proto and bench.proto into $gendir"
rm -rf "$gendir.tmp"
mkdir -p "$gendir.tmp"
cp "$proto" "$gendir.tmp/kv.proto"
cp "$bench_proto" "$gendir.tmp/bench.proto"
(
    cd "$gendir.tmp"
    # -I. with bare file names keeps the descriptors' file names ("kv.proto",
    # "bench.proto") and makes kv_pb2_grpc.py do a top-level `import kv_pb2`
    # (bench_pb2_grpc.py likewise).
    "$venv/bin/python" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. kv.proto bench.proto
)
rm -f "$gendir.tmp/kv.proto" "$gendir.tmp/bench.proto"
rm -rf "$gendir"
mv "$gendir.tmp" "$gendir"

log "checking the generated code imports"
PYTHONPATH="$gendir" "$venv/bin/python" -c 'import kv_pb2, kv_pb2_grpc, bench_pb2, bench_pb2_grpc, pyvider.rpcplugin; assert kv_pb2.DESCRIPTOR.services_by_name["KV"].full_name == "proto.KV"; assert bench_pb2.DESCRIPTOR.services_by_name["Bench"].full_name == "bench.v1.Bench"'

printf '%s\n' "$want_stamp" > "$stamp"
log "done: run plugins/hosts with $venv/bin/python"
