#!/usr/bin/env python3
"""A pyvider-rpcplugin host that drives any go-plugin KV plugin (proto.KV).

    VENVDIR/bin/python kv_host.py [--mtls] [--cookie KEY=VALUE] [--verbose] -- PLUGIN_COMMAND [ARGS...]

Launches PLUGIN_COMMAND through pyvider-rpcplugin's client, puts hello=world over
proto.KV, gets it back, prints the value (`world`) on stdout, stops the plugin
(GRPCController.Shutdown via shutdown_plugin(), then close()), checks the plugin
process is gone, and exits 0 only if everything matched. On any failure it
writes one `FAIL: ...` line to stderr (plus the plugin's recent stderr, if any)
and exits 1. An overall 30 s deadline (KV_HOST_DEADLINE_S) kills the plugin
process and exits 1, whatever pyvider is doing.

- Cookie: BASIC_PLUGIN=hello unless --cookie (pyvider's default would be
  PLUGIN_MAGIC_COOKIE=test_cookie_value).
- TLS: plaintext unless --mtls (pyvider's host default is auto-mTLS ON). With
  --mtls the host generates a P-384 client certificate, sends it as
  PLUGIN_CLIENT_CERT, and REQUIRES the plugin to answer with a server
  certificate: pyvider alone would silently fall back to plaintext.
- Retries: off. pyvider's default relaunches a failing plugin up to 3 more
  times; go-plugin never does, and a test wants the first failure.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

DEFAULT_DEADLINE_S = 30.0
CHILD_PIDS: set[int] = set()  # every plugin pid we have seen, for the watchdog
FAILURES: list[str] = []  # reported last, after pyvider's own log output


def fail(msg: str, now: bool = False) -> None:
    msg = " ".join(msg.split())  # one line, whatever the exception text
    if now:
        sys.stderr.write(f"FAIL: {msg}\n")
        sys.stderr.flush()
    else:
        FAILURES.append(msg)


def usage(msg: str) -> None:
    sys.stderr.write(
        f"kv_host.py: {msg}\n"
        "usage: kv_host.py [--mtls] [--cookie KEY=VALUE] [--verbose] -- PLUGIN_COMMAND [ARGS...]\n"
    )
    sys.exit(2)


def parse_args(argv: list[str]) -> tuple[bool, str, str, bool, list[str]]:
    if argv[:1] in (["-h"], ["--help"]):
        usage("help")
    if "--" not in argv:
        usage("missing `--` before the plugin command")
    split = argv.index("--")
    opts, command = argv[:split], argv[split + 1 :]
    if not command:
        usage("no plugin command after `--`")
    mtls = False
    verbose = False
    cookie = "BASIC_PLUGIN=hello"
    i = 0
    while i < len(opts):
        o = opts[i]
        if o == "--mtls":
            mtls = True
        elif o in ("-h", "--help"):
            usage("help")
        elif o in ("-v", "--verbose"):
            verbose = True
        elif o == "--cookie":
            if i + 1 >= len(opts):
                usage("--cookie needs KEY=VALUE")
            i += 1
            cookie = opts[i]
        elif o.startswith("--cookie="):
            cookie = o[len("--cookie=") :]
        else:
            usage(f"unknown option {o!r}")
        i += 1
    if "=" not in cookie or cookie.startswith("="):
        usage("--cookie must be KEY=VALUE")
    key, value = cookie.split("=", 1)
    return mtls, key, value, verbose, command


def _become_subreaper() -> None:
    """Adopt orphaned descendants (Linux PR_SET_CHILD_SUBREAPER), best effort.

    A plugin started through a wrapper (`sh -c '...'`) can leave grandchildren
    behind when the wrapper is killed; as a subreaper they are re-parented to us
    instead of init, so _descendants() still sees them and we can kill them.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # noqa: BLE001
        pass


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            # Fields after the parenthesised comm (which may contain spaces): state ppid ...
            rest = stat.rsplit(")", 1)[1].split()
            table[int(entry)] = (int(rest[1]), rest[0])
        except (OSError, ValueError, IndexError):
            continue
    return table


def _descendants(include_zombies: bool = False) -> list[int]:
    """All live processes below this one."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if include_zombies or table[child][1] not in ("Z", "X"):
                out.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def start_watchdog(deadline_s: float) -> None:
    """Never hang: at the deadline kill the plugin(s) and exit 1 from a thread.

    os._exit does not wait for pyvider's executor threads (the handshake
    readline and the stderr relay run there and can block on a pipe forever).
    """

    def fire() -> None:
        for msg in FAILURES:
            sys.stderr.write(f"FAIL: {msg}\n")
        fail(f"overall deadline of {deadline_s:g}s exceeded; killing the plugin process", now=True)
        _kill_all(set(CHILD_PIDS) | set(_descendants()))
        sys.stdout.flush()
        os._exit(1)

    t = threading.Timer(deadline_s, fire)
    t.daemon = True
    t.start()


def pid_state(pid: int) -> str | None:
    """None if the process no longer exists, else its /proc state letter (Z = zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return stat.rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def plugin_gone(pid: int) -> bool:
    """True once the plugin process has exited (reaping it if pyvider did not)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return True  # it was a zombie; now it is gone
        # reaped == 0: our child and still running
        return False
    except ChildProcessError:
        pass  # already reaped by pyvider (or not our child)
    return pid_state(pid) in (None, "Z", "X")


def main() -> int:
    mtls, cookie_key, cookie_value, verbose, command = parse_args(sys.argv[1:])
    deadline_s = float(os.environ.get("KV_HOST_DEADLINE_S", DEFAULT_DEADLINE_S))
    _become_subreaper()
    start_watchdog(deadline_s)

    def on_signal(signum, _frame) -> None:
        fail(f"interrupted by signal {signum}; killing the plugin process", now=True)
        _kill_all(set(CHILD_PIDS) | set(_descendants()))
        os._exit(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # pyvider builds its global config from the environment at import time, and
    # the plugin inherits this process's whole environment. Keep inherited TLS
    # settings out of both: the mode is chosen by --mtls alone.
    for var in ("PLUGIN_CLIENT_CERT", "PLUGIN_CLIENT_KEY", "PLUGIN_AUTO_MTLS"):
        os.environ.pop(var, None)
    if verbose:
        os.environ["PROVIDE_LOG_LEVEL"] = "DEBUG"

    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        code = loop.run_until_complete(run(mtls, cookie_key, cookie_value, command))
    except BaseException as e:  # noqa: BLE001 - last-resort report
        fail(f"unexpected {type(e).__name__}: {e}")
        code = 1
    # Nothing we started may outlive us. On success, leftovers are a failure too.
    for _ in range(50):  # allow 0.5 s for exiting processes to finish exiting
        _reap_zombies()
        leftovers = _descendants()
        if not leftovers:
            break
        time.sleep(0.01)
    if leftovers:
        if code == 0:
            fail(
                "processes still running after the plugin was shut down: "
                + ", ".join(f"{p} ({_cmdline(p)})" for p in leftovers)
            )
        else:
            sys.stderr.write(f"kv_host.py: killing leftover processes {leftovers}\n")
        _kill_all(leftovers)
    if code != 0 and not FAILURES:
        FAILURES.append("exit status 1 without a recorded reason")
    for msg in FAILURES:
        sys.stderr.write(f"FAIL: {msg}\n")
    if FAILURES:
        code = 1
    else:
        sys.stderr.write("kv_host.py: OK\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip loop/executor teardown: a pyvider executor thread blocked on a pipe
    # would otherwise keep the interpreter alive.
    os._exit(code)


def server_cert_hint(client) -> str:
    """Explain the known P-521 failure: grpcio (BoringSSL) cannot use go-plugin's server key."""
    cert_b64 = getattr(client, "_server_cert", None)
    if not cert_b64:
        return ""
    try:
        import base64

        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec

        der = base64.b64decode(cert_b64 + "=" * (-len(cert_b64) % 4))
        key = x509.load_der_x509_certificate(der).public_key()
        if isinstance(key, ec.EllipticCurvePublicKey):
            curve = key.curve.name
            if curve == "secp521r1":
                return (
                    " [the plugin's TLS certificate uses P-521 (go-plugin AutoMTLS); grpcio's BoringSSL client"
                    " does not offer the P-521 signature scheme, so pyvider's mTLS cannot reach it - known limitation]"
                )
            return f" [plugin TLS certificate key: {curve}]"
        return f" [plugin TLS certificate key: {type(key).__name__}]"
    except Exception as exc:  # noqa: BLE001
        return f" [could not parse the plugin's certificate: {exc}]"


def stderr_tail(client) -> str:
    tail = list(getattr(client, "_stderr_tail", []) or [])
    if not tail:
        return ""
    return "plugin stderr (last lines):\n" + "\n".join(f"  | {line}" for line in tail[-20:])


async def run(mtls: bool, cookie_key: str, cookie_value: str, command: list[str]) -> int:
    import asyncio

    import grpc

    # kv_plugin.py's helper finds VENVDIR/kvgen through sys.prefix; reuse it
    # (without leaving a __pycache__ in the source tree).
    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from kv_plugin import _find_generated_dir

    sys.path.insert(0, _find_generated_dir())
    import kv_pb2
    import kv_pb2_grpc
    from pyvider.rpcplugin import configure, plugin_client

    configure(
        magic_cookie_key=cookie_key,
        magic_cookie=cookie_value,
        auto_mtls=mtls,
        client_retry_enabled=False,
        # pyvider tries the channel 3 times; 3 x 5 s stays inside the deadline.
        channel_ready_timeout=5.0,
    )

    mode = "auto-mTLS" if mtls else "plaintext"
    sys.stderr.write(f"kv_host.py: launching {command!r} ({mode}, cookie {cookie_key}=...)\n")
    client = plugin_client(command=list(command))
    pid = None
    popen = None
    t0 = time.monotonic()
    try:
        try:
            await client.start()
        except Exception as e:  # noqa: BLE001
            tail = stderr_tail(client)
            if tail:
                sys.stderr.write(tail + "\n")
            fail(f"could not start/handshake with the plugin: {type(e).__name__}: {e}{server_cert_hint(client)}")
            return 1
        proc = getattr(client, "_process", None)
        pid = getattr(proc, "pid", None)
        popen = getattr(proc, "process", None)
        if pid:
            CHILD_PIDS.add(pid)
        sys.stderr.write(
            f"kv_host.py: connected in {1000 * (time.monotonic() - t0):.0f} ms: pid={pid} "
            f"transport={client._transport_name} address={client._address} "
            f"app_version={client._protocol_version} tls={'yes' if client._server_cert else 'no'}\n"
        )

        if mtls and not client._server_cert:
            fail("--mtls was requested but the plugin sent no server certificate (handshake field 6 empty)")
            return 1
        if not mtls and client._server_cert:
            fail("plaintext was requested but the plugin answered with a server certificate")
            return 1

        stub = kv_pb2_grpc.KVStub(client.grpc_channel)
        try:
            await stub.Put(kv_pb2.PutRequest(key="hello", value=b"world"), timeout=10)
            resp = await stub.Get(kv_pb2.GetRequest(key="hello"), timeout=10)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else "?"
            details = e.details() if hasattr(e, "details") else str(e)
            fail(f"KV RPC failed: {code}: {details}")
            return 1
        value = bytes(resp.value)
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            fail(f"Get(hello) returned non-UTF-8 bytes {value!r}")
            return 1
        print(text, flush=True)
        if value != b"world":
            fail(f"Get(hello) returned {value!r}, expected b'world'")
            return 1

        # Shut down: GRPCController.Shutdown, then watch the plugin exit on its
        # own for up to 2 s (go-plugin's host also waits 2 s) before close(),
        # which would otherwise SIGTERM (then SIGKILL) it.
        t_stop = time.monotonic()
        await client.shutdown_plugin()
        exited_alone = False
        while time.monotonic() - t_stop < 2.0:
            if popen is not None and popen.poll() is not None:
                exited_alone = True
                break
            await asyncio.sleep(0.02)
        stop_ms = 1000 * (time.monotonic() - t_stop)
        await client.close()
        if popen is not None and popen.returncode is not None:
            rc = popen.returncode
        else:
            rc = None
        if exited_alone:
            sys.stderr.write(f"kv_host.py: plugin exited after Shutdown in {stop_ms:.0f} ms (exit status {rc})\n")
        else:
            sys.stderr.write(
                f"kv_host.py: plugin still running {stop_ms:.0f} ms after Shutdown; close() terminated it "
                f"(exit status {rc})\n"
            )

        if pid is None:
            fail("could not learn the plugin's pid; cannot check it is gone")
            return 1
        for _ in range(100):  # up to 1 s for the kernel to finish with it
            if plugin_gone(pid):
                break
            await asyncio.sleep(0.01)
        else:
            fail(f"plugin process {pid} is still alive after shutdown_plugin() + close()")
            return 1
        return 0
    finally:
        # Any early return: make sure the plugin does not outlive us.
        if getattr(client, "_process", None) is not None:
            try:
                await asyncio.wait_for(client.close(), timeout=8)
            except Exception:  # noqa: BLE001
                pass
        if pid is not None and not plugin_gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        remove_leftover_socket(client)


def remove_leftover_socket(client) -> None:
    """Remove the plugin's Unix socket if it outlived the plugin, as go-plugin's host does.

    (A pyvider plugin removes its own; a go-plugin plugin that was killed does not.)
    """
    import stat

    address = getattr(client, "_address", None)
    if getattr(client, "_transport_name", None) != "unix" or not address:
        return
    try:
        if stat.S_ISSOCK(os.lstat(address).st_mode):
            time.sleep(0.05)
            os.unlink(address)
            # The running script's name: bench_host.py uses this function too.
            prog = os.path.basename(sys.argv[0])
            sys.stderr.write(f"{prog}: removed the plugin's leftover socket {address}\n")
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
