#!/usr/bin/env bash
# Build the Go go-plugin interop peers: OUTDIR/kv-plugin (proto.KV and
# bench.v1.Bench), kv-host, bench-host (the go-plugin load generator),
# counter-plugin and counter-host (the bidirectional example), and
# mux-counter-host and mux-counter-plugin (go-plugin 1.6's multiplexed broker
# by hand, on hashicorp/yamux), and probe-plugin (tries files, programs and TCP
# ports on request, to see a host's sandbox confine a Go plugin).
#
#   tests/interop/go/build.sh OUTDIR
#
# Offline, GOPATH mode, against Debian's Go packages (go-plugin 1.0.1, grpc-go
# 1.33, protobuf). Installs the missing Debian packages with apt-get (needs
# root) and skips apt entirely when everything is already installed.
# Idempotent: a rebuild with nothing changed takes a second or two.
set -euo pipefail

log() { printf 'go-interop build: %s\n' "$*" >&2; }

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
OUTDIR="$(cd "$1" && pwd)"

# ---------------------------------------------------------------- packages
# golang-github-golang-protobuf-1-5-dev is named explicitly: grpc-dev accepts
# 1-3 or 1-5 and apt would otherwise pick 1-3 (the APIv1-only one).
PKGS=(
    golang-go
    golang-github-hashicorp-go-plugin-dev
    golang-github-hashicorp-go-hclog-dev
    golang-google-grpc-dev
    golang-google-protobuf-dev
    golang-github-golang-protobuf-1-5-dev
    golang-google-genproto-dev
    golang-golang-x-net-dev
    golang-github-hashicorp-yamux-dev
)
missing=()
for p in "${PKGS[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    if [ "$status" != "install ok installed" ]; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    log "missing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        log "FAIL: not root, cannot apt-get install; run: apt-get install -y ${missing[*]}"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get update"
    apt-get update -q >&2
    log "apt-get install -y ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
else
    log "all Debian packages present, skipping apt"
fi

# ---------------------------------------------------------------- GOPATH
# OUTDIR/gopath/src is a fresh copy of tests/interop/go/src (packages
# kvproto, kvplugin, kvhost, benchproto, benchhost, counterproto, counterplugin,
# counterhost, muxhost, muxplugin, probeplugin); Debian's Go sources come second in GOPATH.
GOP="$OUTDIR/gopath"
mkdir -p "$GOP/src" "$GOP/cache"
rm -rf "$GOP/src.new"
cp -R "$HERE/src" "$GOP/src.new"
rm -rf "$GOP/src"
mv "$GOP/src.new" "$GOP/src"

export GO111MODULE=off
export GOPATH="$GOP:/usr/share/gocode"
export GOFLAGS=
export GOPROXY=off
export GOCACHE="$GOP/cache"
export CGO_ENABLED=0

GO="$(command -v go || true)"
if [ -z "$GO" ] && [ -x /usr/lib/go/bin/go ]; then GO=/usr/lib/go/bin/go; fi
if [ -z "$GO" ]; then log "FAIL: go not found"; exit 1; fi

log "$("$GO" version), GOPATH=$GOPATH"
for b in kvplugin:kv-plugin kvhost:kv-host benchhost:bench-host counterplugin:counter-plugin counterhost:counter-host muxhost:mux-counter-host muxplugin:mux-counter-plugin probeplugin:probe-plugin; do
    pkg="${b%%:*}"; out="${b##*:}"
    log "go build -o $OUTDIR/$out $pkg"
    (cd "$GOP/src/$pkg" && "$GO" build -o "$OUTDIR/$out.tmp" .)
    mv -f "$OUTDIR/$out.tmp" "$OUTDIR/$out"
done
log "built $OUTDIR/kv-plugin, kv-host, bench-host, counter-plugin, counter-host, mux-counter-host, mux-counter-plugin and probe-plugin"
