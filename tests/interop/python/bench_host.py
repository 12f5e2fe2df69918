#!/usr/bin/env python3
"""A pyvider-rpcplugin load generator for bench.v1.Bench: the Python twin of
`rpcplugin bench` (crates/rpcplugin-cli), same command line, same output.

    VENVDIR/bin/python bench_host.py [--automtls] [--cookie KEY=VALUE] [--seconds N]
        [--warmup SECS] [--concurrency C] [--size BYTES] [--mode echo|download]
        [--json] -- PLUGIN_COMMAND [ARGS...]

It launches PLUGIN_COMMAND with pyvider's host API (plugin_client, as kv_host.py
does), times launch to the first Echo reply, then drives Echo (or Download) from C
asyncio tasks sharing the one grpc.aio channel pyvider opened, for a warm-up and
then a measured window, samples CPU and memory of both processes over the window,
stops the plugin (GRPCController.Shutdown, then close()) and checks it is gone.
Output: a table (stdout, or stderr with --json), then one line on stdout:

    RESULT {"req_per_s":..., "p50_us":..., "p99_us":..., "p999_us":...,
            "launch_to_first_call_ms":..., "host_rss_kb":..., "plugin_rss_kb":...,
            "host_cpu_pct":..., "plugin_cpu_pct":..., "errors":0}

(`"mib_per_s"` follows req_per_s in download mode). Exit 0 only if no call failed
and the plugin process is gone; 1 otherwise; 2 for a bad command line.

Fairness: nothing is added to what a pyvider user runs. The event loop is the
standard asyncio one (pyvider 0.5.5 does not install uvloop), the channel is the
one pyvider creates (its options, its StreamStdio stream), no interceptors. The
only settings changed from pyvider's defaults are the ones the contract requires
or that matter only on failure: the cookie, auto-mTLS off unless --automtls,
no relaunch retries, a 5 s channel-ready timeout.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time

PROG = "bench_host.py"

USAGE = f"""\
{PROG}: launch a plugin with pyvider-rpcplugin's host API, measure launch to first
call, then drive bench.v1.Bench from concurrent asyncio tasks and report
throughput, latency, CPU and memory. The Python twin of `rpcplugin bench`.

Usage:
    VENVDIR/bin/python {PROG} [OPTIONS] -- PLUGIN_COMMAND [ARGS...]

Options:
    --automtls           ask for AutoMTLS (pyvider's auto-mTLS; default: plaintext)
    --cookie KEY=VALUE   the plugin's magic cookie [default: BASIC_PLUGIN=hello]
    --seconds N          length of the measured window [default: 5]
    --warmup SECS        calls before the window, not counted [default: 1]
    --concurrency C      concurrent tasks sharing one connection [default: 1]
    --size BYTES         payload (echo) or chunk (download) size; K/KiB and M/MiB
                         suffixes allowed (powers of 1024) [default: 1024]
    --mode echo|download unary Echo calls, or Download streams of ~1 MiB per call
                         [default: echo]
    --threads N          accepted for compatibility with `rpcplugin bench` and
                         ignored: this host always runs one asyncio event loop
                         (grpcio's C core keeps its own threads) [default: 0]
    --json               print only the RESULT line on stdout (the table goes to stderr)
    -h, --help           print this help

Output: a table, then one line `RESULT {{json}}` with req_per_s, p50_us, p99_us,
p999_us, launch_to_first_call_ms, host_rss_kb, plugin_rss_kb, host_cpu_pct,
plugin_cpu_pct, errors (and mib_per_s in download mode). The exit status is 0 only
if no call failed and the plugin process is gone.

Example:
    /tmp/pyi/bin/python {PROG} --seconds 5 --concurrency 32 -- ./kv_plugin
"""

#: About how many bytes one Download call moves.
BYTES_PER_DOWNLOAD = 1024 * 1024
#: Deadline of every call, the first Echo included.
CALL_TIMEOUT_S = 10.0
#: The whole run may take seconds + warmup + this, then the plugin tree is killed.
GLOBAL_SLACK_S = 30.0
MAX_CONCURRENCY = 100_000
MAX_THREADS = 1024
MIB = 1024.0 * 1024.0
#: CPU of other processes above which the table calls the figures disturbed.
DISTURBED_PCT = 10.0

CHILD_PIDS: set[int] = set()  # the plugin, for the watchdog and signal handlers
PLUGIN_SOCKETS: list[str] = []  # its Unix socket, removed if the plugin has to be killed


# ---------------------------------------------------------------------------
# Command line (the same rules and messages as crates/rpcplugin-cli/src/args.rs)
# ---------------------------------------------------------------------------


class UsageError(Exception):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Options:
    def __init__(self) -> None:
        self.automtls = False
        self.cookie = ("BASIC_PLUGIN", "hello")
        self.seconds = 5.0
        self.warmup = 1.0
        self.concurrency = 1
        self.size = 1024
        self.mode = "echo"
        self.threads = 0
        self.json = False
        self.command: list[str] = []


def _parse_cookie(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if sep and key and val:
        return key, val
    raise UsageError(
        f"--cookie must be KEY=VALUE, got {value!r}",
        "use the plugin's magic cookie, e.g. --cookie BASIC_PLUGIN=hello",
    )


def _parse_seconds(name: str, value: str, zero_ok: bool) -> float:
    try:
        s = float(value.strip())
    except ValueError:
        s = math.nan
    if math.isfinite(s) and (s > 0 or (zero_ok and s == 0)):
        return s
    what = "a number of seconds (0 or more)" if zero_ok else "a positive number of seconds"
    raise UsageError(f"--{name} must be {what}, got {value!r}", f"for example --{name} 5 or --{name} 0.5")


def _parse_count(name: str, value: str, lo: int, hi: int, example: str) -> int:
    what = "a non-negative integer" if lo == 0 else "a positive integer"
    text = value.strip()
    if text.isascii() and text.isdigit():
        n = int(text)
        if n > hi:
            raise UsageError(f"--{name} must be at most {hi}, got {n}", f"for example {example}")
        if n >= lo:
            return n
    raise UsageError(f"--{name} must be {what}, got {value!r}", f"for example {example}")


def _parse_size(value: str) -> int:
    text = value.strip()
    unit = 1
    for suffix, mult in (("KiB", 1024), ("MiB", 1024 * 1024), ("K", 1024), ("M", 1024 * 1024)):
        if text.endswith(suffix):
            text, unit = text[: -len(suffix)].strip(), mult
            break
    if text.isascii() and text.isdigit() and int(text) * unit <= 0xFFFF_FFFF:
        return int(text) * unit
    raise UsageError(
        f"--size must be a number of bytes up to 4 GiB, got {value!r}",
        "for example --size 1024, --size 64KiB or --size 1MiB",
    )


def _parse_mode(value: str) -> str:
    if value in ("echo", "download"):
        return value
    raise UsageError(
        f"--mode must be echo or download, got {value!r}",
        "--mode echo measures unary calls, --mode download streaming throughput",
    )


def parse_args(argv: list[str]) -> Options | None:
    """Options, or None for --help. Raises UsageError.

    Like lexopt: options come first; the first argument that is not an option (or
    everything after `--`) is the plugin command; `--name=value` is accepted.
    """
    opts = Options()
    takes_value = {"--cookie", "--seconds", "--warmup", "--concurrency", "--size", "--mode", "--threads"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            opts.command = argv[i + 1 :]
            break
        if not arg.startswith("-") or arg == "-":
            opts.command = argv[i:]
            break
        name, eq, inline = arg.partition("=")
        if arg in ("-h", "--help"):
            return None
        if name in ("--automtls", "--json"):
            if eq:
                raise UsageError(
                    f"unexpected argument for option '{name}'", f"run `{PROG} --help` for the options"
                )
            if name == "--automtls":
                opts.automtls = True
            else:
                opts.json = True
        elif name in takes_value:
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise UsageError(f"missing argument for option '{name}'", f"run `{PROG} --help` for the options")
            if name == "--cookie":
                opts.cookie = _parse_cookie(value)
            elif name == "--seconds":
                opts.seconds = _parse_seconds("seconds", value, False)
            elif name == "--warmup":
                opts.warmup = _parse_seconds("warmup", value, True)
            elif name == "--concurrency":
                opts.concurrency = _parse_count("concurrency", value, 1, MAX_CONCURRENCY, "--concurrency 32")
            elif name == "--threads":
                opts.threads = _parse_count(
                    "threads", value, 0, MAX_THREADS, "--threads 1 (or 0 for a single-threaded host)"
                )
            elif name == "--size":
                opts.size = _parse_size(value)
            elif name == "--mode":
                opts.mode = _parse_mode(value)
        else:
            raise UsageError(f"invalid option '{arg}'", f"run `{PROG} --help` for the options")
        i += 1
    if not opts.command:
        raise UsageError(
            "no plugin command given",
            f"put the plugin and its arguments last, after `--`: `{PROG} --concurrency 32 -- ./kv_plugin`",
        )
    return opts


def messages_per_call(size: int) -> int:
    """Messages per Download call: about 1 MiB per call, at least one."""
    if size == 0:
        return 1
    return max(1, BYTES_PER_DOWNLOAD // size)


# ---------------------------------------------------------------------------
# Latency histogram: bounded memory, <= 0.1 % error
# ---------------------------------------------------------------------------


class Histogram:
    """Counts of latencies in µs, HdrHistogram-style.

    Values below 2048 µs have a bucket each; above, each power of two is split into
    1024 buckets (relative error below 0.1 %), up to 2^41 µs (25 days). Percentiles
    are reported as the top of their bucket, as HdrHistogram (the Rust host) does.
    About 40k counters whatever the number of calls.
    """

    SUB = 2048
    HALF = 1024
    MAX_SHIFT = 30

    def __init__(self) -> None:
        self.counts = [0] * (self.SUB + self.MAX_SHIFT * self.HALF)
        self.total = 0
        self.sum = 0
        self.max = 0

    def record(self, v: int) -> None:
        if v < 1:
            v = 1
        self.total += 1
        self.sum += v
        if v > self.max:
            self.max = v
        if v < self.SUB:
            self.counts[v] += 1
            return
        shift = v.bit_length() - 11
        if shift > self.MAX_SHIFT:
            shift, sub = self.MAX_SHIFT, self.SUB - 1
        else:
            sub = v >> shift
        self.counts[self.SUB + (shift - 1) * self.HALF + (sub - self.HALF)] += 1

    def _top(self, index: int) -> int:
        if index < self.SUB:
            return index
        shift = (index - self.SUB) // self.HALF + 1
        sub = (index - self.SUB) % self.HALF + self.HALF
        return ((sub + 1) << shift) - 1

    def quantile(self, q: float) -> int:
        if self.total == 0:
            return 0
        want = max(1, math.ceil(q * self.total - 1e-9))
        seen = 0
        for index, c in enumerate(self.counts):
            if c:
                seen += c
                if seen >= want:
                    return min(self._top(index), self.max)
        return self.max

    def mean(self) -> float:
        return self.sum / self.total if self.total else 0.0


# ---------------------------------------------------------------------------
# /proc
# ---------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_sample(pid: int | str) -> tuple[int, int] | None:
    """(utime+stime ticks, VmRSS kB) of /proc/PID, or None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read().decode(errors="replace")
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                words = line[len("VmRSS:") :].split()
                if len(words) == 2 and words[1] == "kB":
                    return ticks, int(words[0])
        return None
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_ticks() -> int | None:
    """Busy ticks of the whole machine (all cores, steal included) from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu "):
                    v = [int(x) for x in line.split()[1:]]
                    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
                    return user + nice + system + irq + softirq + steal
    except (OSError, ValueError):
        pass
    return None


class Snapshot:
    def __init__(self, plugin_pid: int | None) -> None:
        self.at = time.perf_counter()
        self.host = proc_sample("self")
        self.plugin = proc_sample(plugin_pid) if plugin_pid else None
        self.machine = machine_busy_ticks()


def cpu_pct(start: int, end: int, wall: float) -> float:
    if wall <= 0 or CLK_TCK <= 0:
        return 0.0
    return max(0, end - start) / CLK_TCK / wall * 100.0


# ---------------------------------------------------------------------------
# Output (the same rendering as crates/rpcplugin-cli/src/report.rs)
# ---------------------------------------------------------------------------


def number(value: float | None, decimals: int) -> str:
    if value is None or not math.isfinite(value):
        return "null"
    return f"{value:.{decimals}f}"


def optional(value: int | None) -> str:
    return "null" if value is None else str(value)


class Report:
    def __init__(self) -> None:
        self.opts: Options
        self.plugin = ""
        self.launch_ms = 0.0
        self.calls = 0
        self.errors = 0
        self.first_error: str | None = None
        self.hist = Histogram()
        self.bytes = 0
        self.messages = 0
        self.host_rss: int | None = None
        self.plugin_rss: int | None = None
        self.host_cpu: float | None = None
        self.plugin_cpu: float | None = None
        self.others_cpu: float | None = None
        self.stopped = ""
        self.stop_failed = False

    def fail(self, why: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = " ".join(why.split())

    def rate(self, amount: float) -> float:
        s = self.opts.seconds
        return amount / s if s > 0 else 0.0

    def result_line(self) -> str:
        fields = [("req_per_s", number(self.rate(self.calls), 1))]
        if self.opts.mode == "download":
            fields.append(("mib_per_s", number(self.rate(self.bytes / MIB), 1)))
        fields += [
            ("p50_us", str(self.hist.quantile(0.5))),
            ("p99_us", str(self.hist.quantile(0.99))),
            ("p999_us", str(self.hist.quantile(0.999))),
            ("launch_to_first_call_ms", number(self.launch_ms, 3)),
            ("host_rss_kb", optional(self.host_rss)),
            ("plugin_rss_kb", optional(self.plugin_rss)),
            ("host_cpu_pct", number(self.host_cpu, 1)),
            ("plugin_cpu_pct", number(self.plugin_cpu, 1)),
            ("errors", str(self.errors)),
        ]
        return "RESULT {" + ", ".join(f'"{k}":{v}' for k, v in fields) + "}"

    def table(self) -> str:
        o = self.opts
        h = self.hist
        if o.mode == "echo":
            what = f"Echo of {o.size} B"
        else:
            what = f"Download of {messages_per_call(o.size)} x {o.size} B per call"
        runtime = "one asyncio event loop (pyvider-rpcplugin 0.5.5, grpc.aio)"
        lines = [f"{PROG}: {what}, concurrency {o.concurrency}, {runtime}"]

        def row(label: str, value: str) -> None:
            lines.append(f"  {label:<22}{value}")

        def usage(cpu: float | None, rss: int | None) -> str:
            c = "?" if cpu is None else f"{cpu:.1f} % CPU"
            r = "?" if rss is None else f"{rss} kB RSS"
            return f"{c}, {r}"

        row("plugin", self.plugin)
        row("launch to first call", f"{self.launch_ms:.2f} ms")
        row("window", f"{o.seconds:.2f} s after {o.warmup:.2f} s warm-up")
        row("calls", f"{self.calls} ok, {self.errors} failed")
        row("throughput", f"{self.rate(self.calls):.0f} calls/s")
        if o.mode == "download":
            row("streamed", f"{self.rate(self.bytes / MIB):.1f} MiB/s, {self.rate(self.messages):.0f} messages/s")
        row(
            "latency per call",
            f"p50 {h.quantile(0.5)} µs, p90 {h.quantile(0.9)} µs, p99 {h.quantile(0.99)} µs, "
            f"p99.9 {h.quantile(0.999)} µs, max {h.max} µs, mean {h.mean():.1f} µs",
        )
        row("host", usage(self.host_cpu, self.host_rss))
        row("plugin process", usage(self.plugin_cpu, self.plugin_rss))
        if self.others_cpu is not None:
            note = " (the figures are disturbed: measure on a quiet machine)" if self.others_cpu >= DISTURBED_PCT else ""
            row("everything else", f"{self.others_cpu:.1f} % CPU{note}")
        row("plugin stopped", self.stopped)
        if self.first_error:
            row("first error", self.first_error)
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Process housekeeping (shared with kv_host.py)
# ---------------------------------------------------------------------------


def _import_siblings():
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import kv_host
    import kv_plugin

    return kv_host, kv_plugin


def kill_everything(kv_host) -> None:
    """SIGKILL the plugin and every process below us; remove the socket it leaves."""
    kv_host._kill_all(set(CHILD_PIDS) | set(kv_host._descendants()))
    time.sleep(0.05)
    for path in PLUGIN_SOCKETS:
        try:
            os.unlink(path)
        except OSError:
            pass


def start_watchdog(deadline_s: float, kv_host) -> None:
    """At the deadline, SIGKILL the plugin's process tree and exit 1 from a thread."""

    def fire() -> None:
        sys.stderr.write(
            f"error: the run exceeded its overall deadline of {deadline_s:g} s; killing the plugin process tree\n"
        )
        kill_everything(kv_host)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    t = threading.Timer(deadline_s, fire)
    t.daemon = True
    t.start()


def describe_status(rc: int | None) -> str:
    if rc is None:
        return "exit status unknown"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = "?"
        return f"signal: {-rc} ({name})"
    return f"exit status: {rc}"


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


async def run(opts: Options, kv_host, kv_plugin) -> tuple[Report | None, int]:
    """(report, exit code); report None when nothing was measured."""
    import asyncio

    import grpc

    sys.path.insert(0, kv_plugin._find_generated_dir())
    import bench_pb2
    import bench_pb2_grpc
    from pyvider.rpcplugin import configure, plugin_client

    key, value = opts.cookie
    configure(
        magic_cookie_key=key,
        magic_cookie=value,
        auto_mtls=opts.automtls,
        # go-plugin and rpcplugin never relaunch; a benchmark wants the first failure.
        client_retry_enabled=False,
        channel_ready_timeout=5.0,
    )
    payload = bench_pb2.Payload(data=b"\x5a" * opts.size)
    download = bench_pb2.DownloadRequest(chunk_size=opts.size, count=messages_per_call(opts.size))

    report = Report()
    report.opts = opts
    pid = None
    popen = None

    t0 = time.perf_counter()
    client = plugin_client(command=list(opts.command))
    try:
        try:
            await client.start()
        except Exception as e:  # noqa: BLE001
            tail = kv_host.stderr_tail(client)
            if tail:
                sys.stderr.write(tail + "\n")
            sys.stderr.write(
                f"error: the plugin did not start: {type(e).__name__}: {' '.join(str(e).split())}"
                f"{kv_host.server_cert_hint(client)}\n"
            )
            return None, 1
        proc = getattr(client, "_process", None)
        pid = getattr(proc, "pid", None)
        popen = getattr(proc, "process", None)
        if pid:
            CHILD_PIDS.add(pid)
        if client._transport_name == "unix" and client._address:
            PLUGIN_SOCKETS.append(client._address)
        tls = bool(client._server_cert)
        if opts.automtls and not tls:
            # pyvider would silently use plaintext; rpcplugin's host refuses.
            sys.stderr.write(
                "error: --automtls was asked for but the plugin's handshake carries no certificate "
                "(pyvider would silently fall back to plaintext)\n"
            )
            return None, 1
        if not opts.automtls and tls:
            sys.stderr.write("error: plaintext was asked for but the plugin answered with a certificate\n")
            return None, 1

        stub = bench_pb2_grpc.BenchStub(client.grpc_channel)
        try:
            await stub.Echo(payload, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as e:
            why = f"{e.code()}: {e.details()}" if hasattr(e, "code") else str(e)
            sys.stderr.write(
                f"error: the plugin started but its first bench.v1.Bench/Echo call failed: {why}\n"
                f"  hint: {PROG} measures plugins serving bench.v1.Bench (bench.proto); "
                "check that this plugin registers that service\n"
            )
            return None, 1
        report.launch_ms = (time.perf_counter() - t0) * 1000.0

        name = os.path.basename(opts.command[0])
        report.plugin = (
            f"{name} (pid {pid}), protocol {client._protocol_version} at {client._address}, "
            f"{'mutual TLS' if tls else 'plaintext'}"
        )

        # --- load -------------------------------------------------------------
        loop = asyncio.get_running_loop()
        window_start = time.perf_counter() + opts.warmup
        window_end = window_start + opts.seconds
        hist = report.hist
        now = time.perf_counter

        async def drive_echo() -> None:
            echo = stub.Echo
            want = len(payload.data)
            while True:
                started = now()
                if started >= window_end:
                    return
                try:
                    reply = await echo(payload, timeout=CALL_TIMEOUT_S)
                except grpc.RpcError as e:
                    report.fail(f"{e.code()}: {e.details()}" if hasattr(e, "code") else str(e))
                    continue
                done = now()
                if len(reply.data) != want:
                    report.fail(f"Echo returned {len(reply.data)} bytes for {want}")
                    continue
                if window_start <= done <= window_end:
                    hist.record(int((done - started) * 1e6))
                    report.calls += 1
                    report.bytes += want
                    report.messages += 1

        async def drive_download() -> None:
            call_download = stub.Download
            want = download.count
            while True:
                started = now()
                if started >= window_end:
                    return
                got = nbytes = 0
                try:
                    async for chunk in call_download(download, timeout=CALL_TIMEOUT_S):
                        got += 1
                        nbytes += len(chunk.data)
                except grpc.RpcError as e:
                    report.fail(f"{e.code()}: {e.details()}" if hasattr(e, "code") else str(e))
                    continue
                done = now()
                if got != want:
                    report.fail(f"Download sent {got} messages for {want}")
                    continue
                if window_start <= done <= window_end:
                    hist.record(int((done - started) * 1e6))
                    report.calls += 1
                    report.bytes += nbytes
                    report.messages += got

        drive = drive_echo if opts.mode == "echo" else drive_download
        tasks = [loop.create_task(drive()) for _ in range(opts.concurrency)]

        await asyncio.sleep(max(0.0, window_start - now()))
        start = Snapshot(pid)
        await asyncio.sleep(max(0.0, window_end - now()))
        end = Snapshot(pid)

        # Calls in flight at the end of the window run to completion (each has its
        # 10 s deadline); they are not counted.
        _done, pending = await asyncio.wait(tasks, timeout=CALL_TIMEOUT_S + 1.0)
        for task in pending:
            task.cancel()
            report.fail(f"a call got no reply within {CALL_TIMEOUT_S:g} s after the window ended")
        for task in _done:
            if task.exception() is not None:
                report.fail(f"a load task ended abnormally: {task.exception()!r}")

        wall = end.at - start.at
        report.host_rss = end.host[1] if end.host else None
        report.plugin_rss = end.plugin[1] if end.plugin else None
        if start.host and end.host:
            report.host_cpu = cpu_pct(start.host[0], end.host[0], wall)
        if start.plugin and end.plugin:
            report.plugin_cpu = cpu_pct(start.plugin[0], end.plugin[0], wall)
        if start.machine is not None and end.machine is not None:
            machine = cpu_pct(start.machine, end.machine, wall)
            report.others_cpu = max(0.0, machine - (report.host_cpu or 0.0) - (report.plugin_cpu or 0.0))

        # --- stop, as kv_host.py does ------------------------------------------
        t_stop = time.perf_counter()
        try:
            await asyncio.wait_for(client.shutdown_plugin(), timeout=CALL_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001
            sys.stderr.write(f"{PROG}: Shutdown RPC failed: {type(e).__name__}: {e}\n")
        exited_alone = False
        while time.perf_counter() - t_stop < 2.0:
            if popen is not None and popen.poll() is not None:
                exited_alone = True
                break
            await asyncio.sleep(0.02)
        await client.close()
        rc = popen.returncode if popen is not None else None
        if exited_alone:
            how = "graceful (Shutdown RPC)"
        elif rc is not None and rc == -signal.SIGKILL:
            how = "needed SIGKILL"
        elif rc is not None:
            how = "needed SIGTERM (pyvider close())"
        else:
            how = "stopped"
        report.stopped = f"{how}, {describe_status(rc)}"
        if pid is None:
            report.stopped = "stop failed: the plugin's pid is unknown, cannot check it is gone"
            report.stop_failed = True
            return report, 1
        for _ in range(100):
            if kv_host.plugin_gone(pid):
                break
            await asyncio.sleep(0.01)
        else:
            report.stopped = f"stop failed: plugin process {pid} still alive after shutdown_plugin() + close()"
            report.stop_failed = True
        return report, 0
    finally:
        if getattr(client, "_process", None) is not None:
            try:
                await asyncio.wait_for(client.close(), timeout=8)
            except Exception:  # noqa: BLE001
                pass
        if pid is not None and not kv_host.plugin_gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        kv_host.remove_leftover_socket(client)


def main() -> int:
    try:
        opts = parse_args(sys.argv[1:])
    except UsageError as e:
        sys.stderr.write(f"error: {e.message}\n  hint: {e.hint}\n")
        return 2
    if opts is None:
        sys.stdout.write(USAGE)
        return 0
    if opts.threads != 0:
        sys.stderr.write(f"{PROG}: --threads {opts.threads} ignored: this host runs one asyncio event loop\n")

    kv_host, kv_plugin = _import_siblings()
    kv_host._become_subreaper()
    start_watchdog(opts.seconds + opts.warmup + GLOBAL_SLACK_S, kv_host)

    def on_signal(signum, _frame) -> None:
        sys.stderr.write(f"error: interrupted by signal {signum}; killing the plugin process tree\n")
        kill_everything(kv_host)
        os._exit(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # pyvider reads these at import and the plugin inherits the whole environment;
    # the TLS mode is chosen by --automtls alone (as kv_host.py does).
    for var in ("PLUGIN_CLIENT_CERT", "PLUGIN_CLIENT_KEY", "PLUGIN_AUTO_MTLS"):
        os.environ.pop(var, None)

    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        report, code = loop.run_until_complete(run(opts, kv_host, kv_plugin))
    except BaseException as e:  # noqa: BLE001 - last-resort report
        sys.stderr.write(f"error: unexpected {type(e).__name__}: {e}\n")
        report, code = None, 1

    # Nothing we started may outlive us.
    leftovers: list[int] = []
    for _ in range(50):
        kv_host._reap_zombies()
        leftovers = kv_host._descendants()
        if not leftovers:
            break
        time.sleep(0.01)
    if leftovers:
        if report is not None and not report.stop_failed:
            report.stop_failed = True
            report.stopped += "; left behind: " + ", ".join(f"{p} ({kv_host._cmdline(p)})" for p in leftovers)
        kv_host._kill_all(leftovers)

    if report is not None:
        table = report.table()
        (sys.stderr if opts.json else sys.stdout).write(table)
        sys.stderr.flush()
        sys.stdout.write(report.result_line() + "\n")
        sys.stdout.flush()
        if report.errors > 0:
            sys.stderr.write(f"error: {report.errors} calls failed; the first: {report.first_error}\n")
            code = 1
        if report.stop_failed:
            sys.stderr.write(f"error: the plugin did not stop cleanly: {report.stopped}\n")
            code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: a pyvider executor thread blocked on a pipe would
    # otherwise keep it alive (see kv_host.py).
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
