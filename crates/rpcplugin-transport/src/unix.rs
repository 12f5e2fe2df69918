//! The Unix-socket transport: where sockets go, their permissions, and their removal.

use rpcplugin_core::Code;
use std::fs::{self, Permissions};
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;

use nix::unistd::Gid;
use rpcplugin_core::{Error, Network, Result};
use tokio::net::UnixListener;

use crate::Transport;
use crate::listener::Listener;
use crate::socket_dir::{self, NAME_ATTEMPTS, SocketDir};

/// The longest Unix socket path the platform accepts, in bytes.
///
/// `sun_path` holds 108 bytes on Linux and 104 on macOS and the BSDs, one of which
/// is the terminating NUL. Longer paths fail to bind with an obscure error (or, on
/// some systems, are silently truncated), so binding checks first and explains.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const MAX_UNIX_PATH: usize = 107;

/// The longest Unix socket path the platform accepts, in bytes.
///
/// `sun_path` holds 108 bytes on Linux and 104 on macOS and the BSDs, one of which
/// is the terminating NUL. Longer paths fail to bind with an obscure error (or, on
/// some systems, are silently truncated), so binding checks first and explains.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const MAX_UNIX_PATH: usize = 103;

/// The socket's name inside a private directory the transport made itself: the
/// directory is unique, so the name need not be.
const PRIVATE_SOCKET_NAME: &str = "plugin.sock";

/// Binds Unix domain sockets.
///
/// Without [`dir`](Self::dir) each bind makes a private [`SocketDir`] under
/// [`std::env::temp_dir`] and binds `plugin.sock` inside it; the [`Listener`]
/// removes both when dropped. With `dir` (the directory a host passed in
/// `PLUGIN_UNIX_SOCKET_DIR`) it binds `plugin-<pid>-<n>.sock` directly in that
/// directory, which must exist, and removes only the socket.
///
/// Sockets are mode `0600`; with [`group`](Self::group) they are `0660` and owned
/// by that group, so a host running as another user in the group can connect.
#[derive(Debug, Clone, Default)]
pub struct UnixTransport {
    dir: Option<PathBuf>,
    path: Option<PathBuf>,
    group: Option<String>,
}

impl UnixTransport {
    /// A transport binding in a fresh private directory under the temp dir.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds in `dir` (typically `PLUGIN_UNIX_SOCKET_DIR`) instead of a private
    /// directory of its own. The directory must already exist.
    #[must_use]
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Binds exactly `path` (pyvider-rpcplugin's `PLUGIN_SERVER_UNIX_SOCKET_PATH`)
    /// instead of a generated name; wins over [`dir`](Self::dir). A stale socket
    /// there (nobody listening) is replaced; a live one is `transport.address_in_use`.
    /// The socket is made `0600` (or `0660`) just after it is bound: keep its
    /// directory private to the user, since for that moment the umask decides.
    #[must_use]
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Gives sockets (and a private directory, if one is made) to `group`, a group
    /// name or a numeric gid (typically `PLUGIN_UNIX_SOCKET_GROUP`). An empty
    /// string means no group, as in go-plugin.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    async fn bind_unix(&self) -> Result<Listener> {
        // Resolve the group before creating anything, so a typo leaves no debris.
        let gid = socket_dir::resolve_optional_group(self.group.as_deref())?;
        if let Some(path) = &self.path {
            let (listener, socket) = bind_socket(path, gid).await?;
            return Ok(Listener::unix(listener, socket, None));
        }
        match &self.dir {
            None => {
                let dir = SocketDir::create_with(None, gid, 0o710)?;
                let path = dir.path().join(PRIVATE_SOCKET_NAME);
                // On error `dir` drops here and is removed with whatever is inside.
                let (listener, socket) = bind_socket(&path, gid).await?;
                Ok(Listener::unix(listener, socket, Some(dir)))
            }
            Some(dir) => {
                check_dir(dir)?;
                let pid = std::process::id();
                let mut last_err = None;
                for _ in 0..NAME_ATTEMPTS {
                    let n = socket_dir::next_counter();
                    let path = dir.join(format!("plugin-{pid}-{n}.sock"));
                    match bind_socket(&path, gid).await {
                        Ok((listener, socket)) => {
                            return Ok(Listener::unix(listener, socket, None));
                        }
                        // Someone with our pid (another pid namespace sharing the
                        // directory) is serving on this name: try the next one.
                        Err(e) if e.code() == ADDR_IN_USE => last_err = Some(e),
                        Err(e) => return Err(e),
                    }
                }
                Err(last_err.unwrap_or_else(|| Error::new(ADDR_IN_USE, "no free socket name")))
            }
        }
    }
}

impl Transport for UnixTransport {
    fn network(&self) -> Network {
        Network::Unix
    }

    fn bind(&self) -> Pin<Box<dyn Future<Output = Result<Listener>> + Send + '_>> {
        Box::pin(self.bind_unix())
    }
}

const ADDR_IN_USE: Code = Code::TransportAddressInUse;

/// The directory a host handed over must exist: creating it ourselves would hide
/// a host/plugin mismatch and leave a directory nobody removes.
fn check_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::new(
            Code::TransportSocketDirMissing,
            format!("socket directory {} is not a directory", dir.display()),
        )
        .with_hint("set PLUGIN_UNIX_SOCKET_DIR to a directory, or unset it")),
        Err(e) => Err(Error::new(
            Code::TransportSocketDirMissing,
            format!("socket directory {} is not usable", dir.display()),
        )
        .with_source(e)
        .with_hint(
            "PLUGIN_UNIX_SOCKET_DIR must name an existing directory (the host creates it); \
             fix or unset it",
        )),
    }
}

/// Fails with an explanation when `path` cannot fit in `sun_path`.
pub(crate) fn check_path_len(path: &Path) -> Result<()> {
    let len = path.as_os_str().len();
    if len > MAX_UNIX_PATH {
        return Err(Error::new(
            Code::TransportSocketPathTooLong,
            format!(
                "socket path \"{}\" is {len} bytes, over the {MAX_UNIX_PATH}-byte limit for unix sockets",
                path.display()
            ),
        )
        .with_hint("set PLUGIN_UNIX_SOCKET_DIR (or TMPDIR) to a shorter directory such as /tmp"));
    }
    Ok(())
}

/// A bound socket file: removed on drop, but only while it is still the file we
/// bound (same device and inode), so a socket someone else rebound at the same
/// path after we were done is left alone.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    id: Option<(u64, u64)>,
    armed: bool,
}

impl SocketFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket now; later calls (and Drop) do nothing.
    pub(crate) fn remove(&mut self) -> io::Result<()> {
        if !std::mem::replace(&mut self.armed, false) {
            return Ok(());
        }
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if self.id.is_none_or(|id| id == (meta.dev(), meta.ino())) => {
                match fs::remove_file(&self.path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                }
            }
            Ok(_) => {
                tracing::debug!(path = %self.path.display(), "socket was replaced; leaving it");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove socket file");
        }
    }
}

/// Binds at exactly `path`, replacing a stale socket, then sets the mode (and group).
pub(crate) async fn bind_socket(
    path: &Path,
    gid: Option<Gid>,
) -> Result<(UnixListener, SocketFile)> {
    check_path_len(path)?;
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            remove_if_stale(path, e).await?;
            UnixListener::bind(path).map_err(|e| bind_error(path, e))?
        }
        Err(e) => return Err(bind_error(path, e)),
    };
    let id = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
    // From here the file is ours: any error below drops `socket`, removing it.
    let mut socket = SocketFile {
        path: path.to_owned(),
        id,
        armed: true,
    };
    // The socket was created with the umask's mode; narrow it. The window before
    // this is closed by the directory, which only we (and the group) can enter.
    let mode = match gid {
        Some(gid) => {
            socket_dir::chgrp(path, gid)?;
            0o660
        }
        None => 0o600,
    };
    if let Err(e) = fs::set_permissions(path, Permissions::from_mode(mode)) {
        let _ = socket.remove();
        return Err(Error::new(
            Code::TransportBind,
            format!("cannot set mode {mode:o} on socket {}", path.display()),
        )
        .with_source(e));
    }
    Ok((listener, socket))
}

/// A socket file nobody listens on (its server died without removing it) may be
/// replaced; a live one, or a file that is not a socket, must not be touched.
async fn remove_if_stale(path: &Path, in_use: io::Error) -> Result<()> {
    let is_socket = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return Err(Error::new(
            ADDR_IN_USE,
            format!("{} exists and is not a socket", path.display()),
        )
        .with_source(in_use)
        .with_hint("remove the file, or choose another socket directory"));
    }
    // tokio's connect is non-blocking: a live server with a full backlog answers
    // EAGAIN (counted as live) instead of blocking us.
    match tokio::net::UnixStream::connect(path).await {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::debug!(path = %path.display(), "removing stale socket");
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(bind_error(path, e)),
                _ => Ok(()),
            }
        }
        _ => Err(Error::new(
            ADDR_IN_USE,
            format!("another process is serving on {}", path.display()),
        )
        .with_source(in_use)
        .with_hint("stop the other process, or choose another socket directory")),
    }
}

fn bind_error(path: &Path, e: io::Error) -> Error {
    let err = Error::new(
        Code::TransportBind,
        format!("cannot bind unix socket {}", path.display()),
    );
    let err = match e.kind() {
        io::ErrorKind::PermissionDenied => err.with_hint(
            "this user cannot create files in the socket directory: \
             set PLUGIN_UNIX_SOCKET_DIR (or TMPDIR) to a writable directory",
        ),
        io::ErrorKind::NotFound => err
            .with_hint("the socket directory disappeared: do not remove it while the plugin runs"),
        _ => err,
    };
    err.with_source(e)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::{Endpoint, Stream, connect};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn unix_path(listener: &Listener) -> PathBuf {
        match listener.endpoint() {
            Endpoint::Unix(p) => p.clone(),
            other => panic!("expected a unix endpoint, got {other}"),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unix_socket_bind_connect_and_echo_both_ways() {
        let listener = UnixTransport::new().bind().await.unwrap();
        assert_eq!(listener.endpoint().network(), Network::Unix);
        let endpoint = listener.endpoint().clone();

        let server = async {
            let mut s = listener.accept().await.unwrap();
            assert!(matches!(s, Stream::Unix(_)));
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"hello");
            s.write_all(b"world").await.unwrap();
            s.flush().await.unwrap();
        };
        let client = async {
            let mut c = connect(&endpoint).await.unwrap();
            c.write_all(b"hello").await.unwrap();
            c.flush().await.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"world");
        };
        tokio::join!(server, client);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unix_socket_is_0600_in_a_0700_dir_and_both_go_on_drop() {
        let listener = UnixTransport::new().bind().await.unwrap();
        let path = unix_path(&listener);
        let dir = path.parent().unwrap().to_owned();
        assert_eq!(path.file_name().unwrap(), "plugin.sock");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert!(dir.starts_with(std::env::temp_dir()));
        drop(listener);
        assert!(!path.exists());
        assert!(!dir.exists());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unix_socket_in_given_dir_removes_socket_keeps_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let a = UnixTransport::new().dir(tmp.path()).bind().await.unwrap();
        let b = UnixTransport::new().dir(tmp.path()).bind().await.unwrap();
        let (pa, pb) = (unix_path(&a), unix_path(&b));
        assert_ne!(pa, pb);
        assert_eq!(pa.parent(), Some(tmp.path()));
        let name = pa.file_name().unwrap().to_str().unwrap();
        let prefix = format!("plugin-{}-", std::process::id());
        assert!(
            name.starts_with(&prefix) && name.ends_with(".sock"),
            "{name}"
        );
        assert_eq!(mode(&pa), 0o600);
        drop(a);
        drop(b);
        assert!(!pa.exists() && !pb.exists());
        assert!(tmp.path().is_dir());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unix_socket_close_reports_and_removes() {
        let listener = UnixTransport::new().bind().await.unwrap();
        let path = unix_path(&listener);
        listener.close().unwrap();
        assert!(!path.exists() && !path.parent().unwrap().exists());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unix_socket_missing_dir_names_the_variable() {
        let tmp = tempfile::tempdir().unwrap();
        let err = UnixTransport::new()
            .dir(tmp.path().join("gone"))
            .bind()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Config);
        assert_eq!(err.code(), Code::TransportSocketDirMissing);
        assert!(err.hint().unwrap().contains("PLUGIN_UNIX_SOCKET_DIR"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unix_socket_path_too_long_explains() {
        let tmp = tempfile::tempdir().unwrap();
        let long = tmp.path().join("d".repeat(MAX_UNIX_PATH));
        fs::create_dir(&long).unwrap();
        let err = UnixTransport::new().dir(&long).bind().await.unwrap_err();
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Transport);
        assert_eq!(err.code(), Code::TransportSocketPathTooLong);
        let msg = err.to_string();
        assert!(msg.contains(&long.display().to_string()), "{msg}");
        assert!(msg.contains("bytes"), "{msg}");
        assert_eq!(
            err.hint(),
            Some("set PLUGIN_UNIX_SOCKET_DIR (or TMPDIR) to a shorter directory such as /tmp")
        );
        assert_eq!(fs::read_dir(&long).unwrap().count(), 0);
    }

    #[test]
    fn unix_socket_path_length_limit_is_exact() {
        let fits = PathBuf::from(format!("/{}", "a".repeat(MAX_UNIX_PATH - 1)));
        assert!(check_path_len(&fits).is_ok());
        let over = PathBuf::from(format!("/{}", "a".repeat(MAX_UNIX_PATH)));
        let err = check_path_len(&over).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("{} bytes", MAX_UNIX_PATH + 1))
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unix_socket_stale_file_is_replaced_live_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");

        // std's listener leaves its file behind when dropped: a stale socket.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (listener, socket) = bind_socket(&path, None).await.unwrap();
        assert_eq!(socket.path(), path);

        // Now it is live: a second bind must refuse rather than steal it.
        let err = bind_socket(&path, None).await.unwrap_err();
        assert_eq!(err.code(), ADDR_IN_USE);
        assert!(path.exists());
        drop((listener, socket));
        assert!(!path.exists());

        // A regular file is never deleted to make room.
        fs::write(&path, b"data").unwrap();
        let err = bind_socket(&path, None).await.unwrap_err();
        assert_eq!(err.code(), ADDR_IN_USE);
        assert_eq!(fs::read(&path).unwrap(), b"data");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unix_socket_group_by_numeric_gid_is_0660() {
        let gid = nix::unistd::getgid();
        let tmp = tempfile::tempdir().unwrap();
        let listener = UnixTransport::new()
            .dir(tmp.path())
            .group(gid.to_string())
            .bind()
            .await
            .unwrap();
        let path = unix_path(&listener);
        assert_eq!(mode(&path), 0o660);
        assert_eq!(fs::metadata(&path).unwrap().gid(), gid.as_raw());

        // Without a dir, the private dir lets the group through too.
        let listener = UnixTransport::new()
            .group(gid.to_string())
            .bind()
            .await
            .unwrap();
        let path = unix_path(&listener);
        assert_eq!(mode(&path), 0o660);
        assert_eq!(mode(path.parent().unwrap()), 0o710);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unix_socket_unknown_group_is_config_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = UnixTransport::new()
            .dir(tmp.path())
            .group("rpcplugin-no-such-group-xyz")
            .bind()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Config);
        assert!(err.hint().unwrap().contains("PLUGIN_UNIX_SOCKET_GROUP"));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
