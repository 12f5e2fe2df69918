//! Starting a plugin, in phases: resolve the settings, verify the executable, spawn
//! it, read and check its handshake line, connect, check its health.
//!
//! Each phase is a function of its own. From the spawn on, a [`Spawned`] guard owns
//! the process and its socket directory: a failure in any later phase drops it,
//! which ends the process and removes the directory. The [`PluginClient`] is built
//! once, at the end, from finished parts.

use rpcplugin_core::Code;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rpcplugin_config::{Environment, Settings};
use rpcplugin_core::{Error, Network, Result};
use rpcplugin_crypto::Sha256;
use rpcplugin_handshake::{MagicCookie, PluginEnv};
use rpcplugin_transport::SocketDir;
use tokio::process::Command;

use crate::spawned::Spawned;
use crate::tls::HostTls;
use crate::{
    Builder, PluginClient, Sandbox, StartTimings, connect, handshake, launch, sandbox, tls,
};

/// [`Builder::start`]: the settings, then attempts, retried as the settings say.
pub(crate) async fn start(builder: Builder) -> Result<PluginClient> {
    let resolved = Resolved::new(&builder)?;
    let settings = &resolved.settings;
    let retries = if settings.client_retry_enabled {
        settings.client_max_retries
    } else {
        0
    };
    let backoff = crate::Backoff {
        initial: settings.client_initial_backoff,
        multiplier: settings.client_backoff_multiplier,
        max: settings.client_max_backoff,
        spread: 0.0,
        jitter: settings.client_retry_jitter,
    };
    let first = tokio::time::Instant::now();
    let mut failures: Vec<Error> = Vec::new();
    loop {
        let err = match attempt(&builder, &resolved).await {
            Ok(mut client) => {
                builder.metrics.start(&resolved.name, "ok");
                client.metrics = builder.metrics.clone();
                return Ok(client);
            }
            Err(err) => {
                builder.metrics.start(&resolved.name, err.code().as_str());
                err
            }
        };
        let done = failures.len() as u32;
        if done >= retries || !retryable(&err) {
            return Err(with_attempts(err, failures, None));
        }
        let delay = backoff.delay(done + 1);
        if first.elapsed() + delay > settings.client_retry_total_timeout {
            let why = format!(
                "no more attempts: the next would start after PLUGIN_CLIENT_RETRY_TOTAL_TIMEOUT ({:?})",
                settings.client_retry_total_timeout
            );
            return Err(with_attempts(err, failures, Some(why)));
        }
        tracing::warn!(
            plugin = %resolved.name,
            attempt = done + 1,
            retry_in = ?delay,
            error = %err,
            "plugin start failed; retrying"
        );
        failures.push(err);
        tokio::time::sleep(delay).await;
    }
}

/// Whether another launch could end differently. Refusals that a retry cannot
/// change are not: configuration, security (TLS, checksum), a malformed or
/// incompatible handshake, and a plugin that refused the magic cookie.
fn retryable(err: &Error) -> bool {
    use rpcplugin_core::ErrorKind;
    match err.code() {
        Code::HandshakePluginExited => !err.hint().is_some_and(|h| h.contains("magic cookie")),
        Code::ProcessSpawn => false,
        _ => matches!(
            err.kind(),
            ErrorKind::Process | ErrorKind::Timeout | ErrorKind::Transport | ErrorKind::Protocol
        ),
    }
}

/// The last error, with the earlier attempts' failures listed in its message.
fn with_attempts(last: Error, earlier: Vec<Error>, why: Option<String>) -> Error {
    if earlier.is_empty() && why.is_none() {
        return last;
    }
    let mut message = format!(
        "{} (attempt {} of the start",
        last.message(),
        earlier.len() + 1
    );
    for (i, e) in earlier.iter().enumerate() {
        message.push_str(&format!("; attempt {}: {}", i + 1, e.message()));
    }
    message.push(')');
    if let Some(why) = why {
        message.push_str(&format!("; {why}"));
    }
    // The last error's message is in this one already: as a source it would be
    // printed twice.
    let mut err = Error::new(last.code(), message);
    if let Some(hint) = last.hint() {
        err = err.with_hint(hint.to_owned());
    }
    err
}

/// One launch: verify, spawn, handshake, connect, health.
async fn attempt(builder: &Builder, resolved: &Resolved) -> Result<PluginClient> {
    let program = verify(&builder.program, &resolved.env, builder.checksum).await?;
    let spawning = Instant::now();
    let mut spawned = spawn(builder, resolved, &program).await?;
    let line = spawned.read_handshake(resolved.handshake_timeout).await?;
    let handshake_read = Instant::now();
    let announced = handshake::check(
        &spawned.name,
        &line,
        &builder.versions,
        &resolved.settings.client_transports,
        &builder.connectors,
        &spawned.tail.lines(),
    )?;
    let connected = connect::launched(builder, resolved, &spawned, &announced, &line).await?;
    let connected_at = Instant::now();
    connect::check_health(
        &spawned.name,
        &connected.channel,
        &connected.target,
        resolved.settings.channel_ready_timeout,
    )
    .await?;
    let timings = StartTimings {
        handshake: handshake_read - spawning,
        connect: connected_at - handshake_read,
        health: connected_at.elapsed(),
    };
    let mut client =
        spawned.into_client(announced, connected, resolved.grace, builder.stdio.clone());
    client.timings = Some(timings);
    Ok(client)
}

/// The settings of one start, resolved once: what the builder was given wins over
/// the settings (environment variables over the config file), and the host's TLS
/// is decided. Nothing has touched the file system or started yet.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) env: Environment,
    pub(crate) settings: Settings,
    /// The plugin's name in logs and errors.
    pub(crate) name: String,
    pub(crate) cookie: MagicCookie,
    pub(crate) handshake_timeout: Duration,
    /// How long each stop step waits.
    pub(crate) grace: Duration,
    pub(crate) host_tls: HostTls,
    /// The plugin's sandbox: the builder's choice, else `PLUGIN_SANDBOX`'s.
    pub(crate) sandbox: Option<Sandbox>,
}

impl Resolved {
    /// Resolve settings: the first phase, and the one a configuration mistake
    /// fails in.
    pub(crate) fn new(builder: &Builder) -> Result<Self> {
        let env = builder
            .environment
            .clone()
            .unwrap_or_else(Environment::capture);
        let loaded = Settings::resolve(&env, builder.config_file.as_deref(), &builder.overlay)?;
        rpcplugin_config::report(loaded.notices());
        let settings = loaded.into_settings();
        let name = builder.display_name();
        let Some((key, value)) = settings.magic_cookie(builder.cookie.clone()) else {
            return Err(Error::new(Code::ConfigMissingCookie, "no magic cookie configured for this host")
                .with_hint("call .handshake(KEY, VALUE) on the client builder with the plugin's cookie (go-plugin's KV example: BASIC_PLUGIN=hello)"));
        };
        if builder.versions.is_empty() {
            return Err(Error::new(
                Code::ConfigNoVersions,
                "the host speaks no app protocol version",
            )
            .with_hint("call .protocol_versions([1]) on the client builder"));
        }
        let host_tls = tls::resolve(&builder.tls, &settings)?;
        let sandbox = match &builder.sandbox {
            Some(choice) => choice.clone(),
            None => Sandbox::from_settings(&settings),
        };
        Ok(Self {
            sandbox,
            cookie: MagicCookie::new(key, value)?,
            handshake_timeout: settings.handshake_timeout,
            grace: settings.shutdown_grace,
            host_tls,
            env,
            settings,
            name,
        })
    }
}

/// Verify: with a checksum, hashes the executable and returns the path that was
/// hashed, which is the path to run (so the file checked is the file started);
/// without one, the program as given.
pub(crate) async fn verify(
    program: &OsStr,
    env: &Environment,
    checksum: Option<Sha256>,
) -> Result<OsString> {
    let Some(expected) = checksum else {
        return Ok(program.to_owned());
    };
    // Hashing a large executable takes milliseconds of blocking reads: keep them
    // off the async worker.
    let (program, env) = (program.to_owned(), env.clone());
    tokio::task::spawn_blocking(move || verify_checksum(&program, &env, &expected))
        .await
        .map_err(|e| {
            Error::new(
                Code::SecurityChecksumRead,
                "the checksum of the plugin could not be computed",
            )
            .with_source(e)
        })?
}

/// Hashes the executable that is about to run and returns the path to run, so the
/// file checked is the file started.
fn verify_checksum(program: &OsStr, env: &Environment, expected: &Sha256) -> Result<OsString> {
    let path = resolve_program(program, env).ok_or_else(|| {
        Error::new(
            Code::ProcessSpawn,
            format!("cannot find plugin {}", program.to_string_lossy()),
        )
        .with_hint("give a path to the plugin executable, or put its directory on PATH")
    })?;
    let actual = Sha256::of_file(&path)?;
    if actual != *expected {
        return Err(Error::new(
            Code::SecurityChecksumMismatch,
            format!(
                "plugin {} has SHA-256 {actual}, expected {expected}",
                path.display()
            ),
        )
        .with_hint(
            "the executable is not the one the checksum was taken of: if you rebuilt or \
             upgraded it, record the new checksum (sha256sum PLUGIN); if not, find out who \
             changed it before running it",
        ));
    }
    Ok(path.into_os_string())
}

/// A program with a slash is a path (relative to the host's working directory);
/// a bare name is looked up on the host's PATH, as the spawn would.
fn resolve_program(program: &OsStr, env: &Environment) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let path = Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return std::path::absolute(path).ok();
    }
    let search = env.get("PATH")?;
    std::env::split_paths(search)
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::path::absolute(found).ok())
}

/// Spawn: the private socket directory, then the process; from here the returned
/// guard owns both.
pub(crate) async fn spawn(
    builder: &Builder,
    resolved: &Resolved,
    program: &OsStr,
) -> Result<Spawned> {
    let settings = &resolved.settings;
    let socket_dir = SocketDir::create(
        settings.unix_socket_dir.as_deref(),
        settings.unix_socket_group.as_deref(),
    )?;
    // A failure from here on drops `socket_dir`, which removes it.
    let (program, prepared) = match &resolved.sandbox {
        None => (program.to_owned(), None),
        Some(policy) => {
            let (path, prepared) = prepare_sandbox(policy, resolved, program, socket_dir.path())?;
            (path, Some(prepared))
        }
    };
    let command = plugin_command(builder, resolved, &program, socket_dir.path());
    let (confinement, effective) = match prepared {
        Some(prepared) => (Some(prepared.confinement), Some(prepared.effective)),
        None => (None, None),
    };
    let child = launch::spawn(command, builder.limits, confinement)
        .await
        .map_err(|err| spawn_error(&builder.program, err, effective.is_some()))?;
    if let Some(effective) = &effective {
        tracing::info!(
            plugin = %resolved.name,
            pid = child.id().unwrap_or_default(),
            sandbox = %effective,
            "plugin sandboxed"
        );
    }
    Ok(Spawned::new(
        child,
        resolved.name.clone(),
        socket_dir,
        effective,
    ))
}

/// The sandbox of this start, and the executable to run: resolved to a path first
/// (as the spawn would resolve it), since the sandbox lets exactly that file run.
fn prepare_sandbox(
    policy: &Sandbox,
    resolved: &Resolved,
    program: &OsStr,
    socket_dir: &Path,
) -> Result<(OsString, sandbox::Prepared)> {
    let path = resolve_program(program, &resolved.env).ok_or_else(|| {
        Error::new(
            Code::ProcessSpawn,
            format!("cannot find plugin {}", program.to_string_lossy()),
        )
        .with_hint("give a path to the plugin executable, or put its directory on PATH")
    })?;
    let settings = &resolved.settings;
    // The plugin's own listener: the host's port range, as the plugin binds it
    // (TcpTransport: 0..=0 means a port the system chooses), or any free port.
    // A fixed port (PLUGIN_SERVER_PORT in the host's settings, which the plugin
    // inherits) wins, as it does in the plugin.
    let tcp_bind = settings.client_transports.contains(&Network::Tcp).then(|| {
        match (settings.server_port, settings.min_port, settings.max_port) {
            (Some(port), _, _) => port..=port,
            (None, Some(min), Some(max)) if max > 0 => min.max(1)..=max,
            _ => 0..=0,
        }
    });
    let target = sandbox::Target {
        name: &resolved.name,
        program: &path,
        socket_dir,
        tcp_bind,
    };
    let prepared = sandbox::prepare(policy, &target)?;
    Ok((path.into_os_string(), prepared))
}

/// The plugin's command line and environment: the builder's, then the protocol's
/// variables, which win (as with go-plugin).
fn plugin_command(
    builder: &Builder,
    resolved: &Resolved,
    program: &OsStr,
    socket_dir: &Path,
) -> Command {
    let settings = &resolved.settings;
    let mut plugin_env = PluginEnv::new(resolved.cookie.clone());
    plugin_env.protocol_versions = builder.versions.clone();
    plugin_env.unix_socket_dir = Some(socket_dir.to_owned());
    plugin_env.unix_socket_group = settings.unix_socket_group.clone();
    if let (Some(min), Some(max)) = (settings.min_port, settings.max_port) {
        plugin_env.port_range = Some((min, max));
    }
    plugin_env.client_cert_pem = resolved.host_tls.client_cert_pem();
    plugin_env.multiplex_grpc = builder.multiplex;

    let mut command = Command::new(program);
    command.args(&builder.args);
    if builder.env_clear {
        command.env_clear();
    }
    if resolved.sandbox.is_some() {
        // A sandboxed plugin's temporary files go in its private directory, which
        // it may write and the host removes: go-plugin before 1.5 makes its socket
        // in os.TempDir() whatever PLUGIN_UNIX_SOCKET_DIR says. The builder's
        // TMPDIR, set next, wins (and needs a write path).
        command.env("TMPDIR", socket_dir);
    }
    command.envs(builder.envs.iter().map(|(k, v)| (k, v)));
    // Never hand the host's private key down, and never let a certificate this
    // host inherited (from its own host) stand in for the one it sends.
    command.env_remove("PLUGIN_CLIENT_KEY");
    command.env_remove("PLUGIN_CLIENT_CERT");
    command.envs(plugin_env.to_vars());
    if let Some(dir) = &builder.current_dir {
        command.current_dir(dir);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn spawn_error(program: &OsStr, err: std::io::Error, sandboxed: bool) -> Error {
    let hint = match err.kind() {
        std::io::ErrorKind::NotFound => {
            "check the path to the plugin executable (relative paths are resolved against PATH and the working directory)"
        }
        std::io::ErrorKind::PermissionDenied if sandboxed => {
            "make the plugin file executable (chmod +x); a plugin that is a script needs its \
             interpreter in the sandbox's exec paths (PLUGIN_SANDBOX_EXEC_PATHS, \
             Sandbox::exec_path)"
        }
        std::io::ErrorKind::PermissionDenied => {
            "make the plugin file executable (chmod +x) and check its directory permissions"
        }
        // What else fails between fork and exec of a sandboxed plugin is the
        // sandbox: no_new_privs, Landlock's restrict_self or seccomp.
        _ if sandboxed => {
            return Error::new(
                Code::SecuritySandboxApply,
                format!(
                    "the sandbox could not be applied to plugin {}",
                    program.to_string_lossy()
                ),
            )
            .with_source(err)
            .with_hint(
                "the kernel refused to confine the process; a host that is itself \
                 sandboxed in 16 Landlock layers cannot add one more (E2BIG): start the \
                 host with fewer, or start the plugin without a sandbox",
            );
        }
        _ => "check that the plugin executable can be run on this machine",
    };
    Error::new(
        Code::ProcessSpawn,
        format!("cannot start plugin {}", program.to_string_lossy()),
    )
    .with_source(err)
    .with_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpcplugin_core::Network;

    const COOKIE: [(&str, &str); 2] = [
        ("PLUGIN_MAGIC_COOKIE_KEY", "BASIC_PLUGIN"),
        ("PLUGIN_MAGIC_COOKIE_VALUE", "hello"),
    ];

    fn builder(program: &str, vars: &[(&str, &str)]) -> Builder {
        PluginClient::builder(program).environment(Environment::from_pairs(vars.iter().copied()))
    }

    #[test]
    fn a_host_without_a_cookie_is_refused_before_anything_starts() {
        let err = Resolved::new(&builder("./kv_plugin", &[])).unwrap_err();
        assert_eq!(err.code(), Code::ConfigMissingCookie);
        assert!(err.hint().unwrap().contains(".handshake(KEY, VALUE)"));
        let from_env = Resolved::new(&builder("./kv_plugin", &COOKIE)).unwrap();
        assert_eq!(from_env.cookie.key(), "BASIC_PLUGIN");
    }

    #[test]
    fn a_host_that_speaks_no_version_is_refused() {
        let err =
            Resolved::new(&builder("./kv_plugin", &COOKIE).protocol_versions([])).unwrap_err();
        assert_eq!(err.code(), Code::ConfigNoVersions);
    }

    #[test]
    fn the_builder_wins_over_the_environment() {
        let vars = [
            COOKIE[0],
            COOKIE[1],
            ("PLUGIN_HANDSHAKE_TIMEOUT", "7s"),
            ("PLUGIN_SHUTDOWN_GRACE", "3s"),
            ("PLUGIN_CLIENT_TRANSPORTS", "tcp"),
        ];
        let from_env = Resolved::new(&builder("./kv_plugin", &vars)).unwrap();
        assert_eq!(from_env.handshake_timeout, Duration::from_secs(7));
        assert_eq!(from_env.grace, Duration::from_secs(3));
        assert_eq!(from_env.settings.client_transports, [Network::Tcp]);
        let in_code = builder("./kv_plugin", &vars)
            .handshake("K", "V")
            .handshake_timeout(Duration::from_millis(250))
            .shutdown_grace(Duration::from_secs(1));
        let in_code = Resolved::new(&in_code).unwrap();
        assert_eq!(in_code.handshake_timeout, Duration::from_millis(250));
        assert_eq!(in_code.grace, Duration::from_secs(1));
        assert_eq!(in_code.cookie.key(), "K");
    }

    #[test]
    fn the_name_is_the_executables_file_name_unless_given() {
        let resolved = Resolved::new(&builder("./plugins/kv_plugin", &COOKIE)).unwrap();
        assert_eq!(resolved.name, "kv_plugin");
        let named = Resolved::new(&builder("./plugins/kv_plugin", &COOKIE).name("kv")).unwrap();
        assert_eq!(named.name, "kv");
    }

    #[test]
    fn automtls_sends_a_certificate_unless_turned_off() {
        let on = Resolved::new(&builder("./kv_plugin", &COOKIE)).unwrap();
        assert!(on.host_tls.client_cert_pem().is_some());
        let off = Resolved::new(&builder("./kv_plugin", &COOKIE).auto_mtls(false)).unwrap();
        assert!(off.host_tls.client_cert_pem().is_none());
    }

    #[test]
    fn the_plugin_gets_the_protocol_variables_and_never_the_hosts_key() {
        let builder = builder("./kv_plugin", &COOKIE)
            .protocol_versions([2, 3])
            .env("PLUGIN_CLIENT_KEY", "/home/me/host.key")
            .env("BASIC_PLUGIN", "overridden by the protocol")
            .env("MY_SETTING", "1");
        let resolved = Resolved::new(&builder).unwrap();
        let dir = Path::new("/run/user/1000/plugin-x");
        let command = plugin_command(&builder, &resolved, OsStr::new("./kv_plugin"), dir);
        let envs: Vec<(String, Option<String>)> = command
            .as_std()
            .get_envs()
            .map(|(k, v)| {
                let text = |s: &OsStr| s.to_string_lossy().into_owned();
                (text(k), v.map(text))
            })
            .collect();
        let value = |key: &str| {
            envs.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{key} is not set: {envs:?}"))
        };
        assert_eq!(value("PLUGIN_CLIENT_KEY"), None, "the key is removed");
        assert_eq!(value("BASIC_PLUGIN").as_deref(), Some("hello"));
        assert_eq!(value("PLUGIN_PROTOCOL_VERSIONS").as_deref(), Some("2,3"));
        assert_eq!(
            value("PLUGIN_UNIX_SOCKET_DIR").as_deref(),
            Some("/run/user/1000/plugin-x")
        );
        assert!(
            value("PLUGIN_CLIENT_CERT")
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(value("MY_SETTING").as_deref(), Some("1"));
    }

    /// A file of its own under the temporary directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> Self {
            let dir = std::env::temp_dir().join(format!("rpcplugin-start-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name);
            std::fs::write(&path, contents).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            let _ = std::fs::remove_dir(self.0.parent().unwrap());
        }
    }

    #[tokio::test]
    async fn verify_runs_the_file_it_hashed_and_refuses_another() {
        let file = TempFile::new("plugin-a", b"#!/bin/sh\nexit 0\n");
        let env = Environment::from_pairs([("PATH", file.0.parent().unwrap().to_str().unwrap())]);
        let good = Sha256::of_file(&file.0).unwrap();
        // Without a checksum the program runs as given; with one, the path hashed.
        let as_given = verify(OsStr::new("plugin-a"), &env, None).await.unwrap();
        assert_eq!(as_given, "plugin-a");
        let found = verify(OsStr::new("plugin-a"), &env, Some(good))
            .await
            .unwrap();
        assert_eq!(Path::new(&found), file.0);

        let other = Sha256::of_file(Path::new("/bin/sh")).unwrap();
        let err = verify(file.0.as_os_str(), &env, Some(other))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::SecurityChecksumMismatch);
        assert!(err.to_string().contains(&good.to_string()), "{err}");

        let err = verify(OsStr::new("no-such-plugin"), &env, Some(good))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ProcessSpawn);
    }
}
