//! Private directories for Unix sockets, unique names, and socket-group resolution.
//!
//! A socket's own permissions are not enough on every platform (some BSDs ignore
//! them), and between `bind` and `chmod` a socket briefly has the umask's mode; a
//! directory only its owner (and optionally one group) can enter closes both gaps.

use rpcplugin_core::Code;
use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::unistd::{Gid, Group};
use rpcplugin_core::{Error, Result};

/// How many names to try before giving up when every candidate already exists.
/// Names embed the pid and a process-wide counter, so a clash means another process
/// with the same pid (another pid namespace) shares the directory; a few retries
/// are plenty, and the bound keeps a broken filesystem from looping forever.
pub(crate) const NAME_ATTEMPTS: u32 = 16;

/// Process-wide counter so two binds in one process never pick the same name.
static NEXT_NAME: AtomicU64 = AtomicU64::new(0);

/// The next value of the process-wide name counter.
pub(crate) fn next_counter() -> u64 {
    NEXT_NAME.fetch_add(1, Ordering::Relaxed)
}

/// A private directory for sockets.
///
/// Created with mode `0700`, or `0710` and owned by a group when one is given (the
/// group may reach sockets inside but not list or add entries), under a unique
/// name. Dropping it removes the directory and everything in it; [`close`] does the
/// same and reports failures, where `Drop` can only log them.
///
/// A host makes one and passes its path to the plugin as `PLUGIN_UNIX_SOCKET_DIR`;
/// a plugin given no directory makes its own (see
/// [`UnixTransport`](crate::UnixTransport)).
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// use rpcplugin_transport::SocketDir;
///
/// let parent = tempfile::tempdir().unwrap();
/// let dir = SocketDir::create(Some(parent.path()), None).unwrap();
/// let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
/// assert_eq!(mode & 0o777, 0o700);
/// let path = dir.path().to_owned();
/// dir.close().unwrap();
/// assert!(!path.exists());
/// ```
///
/// [`close`]: SocketDir::close
#[derive(Debug)]
pub struct SocketDir {
    path: PathBuf,
    /// False once `close` has run, so `Drop` does not try (and warn) a second time.
    armed: bool,
}

impl SocketDir {
    /// Creates a private directory under `parent` (default: [`std::env::temp_dir`]).
    ///
    /// With `group` (a group name or a numeric gid) the directory is given to that
    /// group with mode `0710`, so its members can connect to sockets inside;
    /// without, it is `0700`. `parent` must exist.
    ///
    /// # Errors
    ///
    /// `transport.unknown_group` (Config) when `group` names no group;
    /// `transport.socket_dir` when the directory cannot be created;
    /// `transport.socket_group` (Security) when it cannot be given to `group`.
    pub fn create(parent: Option<&Path>, group: Option<&str>) -> Result<Self> {
        let gid = resolve_optional_group(group)?;
        Self::create_with(parent, gid, 0o710)
    }

    /// Like [`create`](Self::create), but the group may also create entries:
    /// mode `0770` and owned by `group`.
    ///
    /// This is what go-plugin's host does when the plugin runs as a different user
    /// in `group` (for example in a container): the plugin must be able to bind its
    /// socket inside the directory the host made.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create).
    pub fn create_group_writable(parent: Option<&Path>, group: &str) -> Result<Self> {
        let gid = resolve_group(group)?;
        Self::create_with(parent, Some(gid), 0o770)
    }

    /// The directory's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and its contents now, reporting failures.
    ///
    /// A directory that is already gone is not an error: whoever removed it did
    /// the job.
    ///
    /// # Errors
    ///
    /// `transport.socket_dir_remove` with the io error as source.
    pub fn close(mut self) -> Result<()> {
        self.armed = false;
        remove_dir(&self.path)
    }

    pub(crate) fn create_with(
        parent: Option<&Path>,
        gid: Option<Gid>,
        group_mode: u32,
    ) -> Result<Self> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let pid = std::process::id();
        let mut last_err = None;
        for _ in 0..NAME_ATTEMPTS {
            let path = parent.join(format!("rpcplugin-{pid}-{}-{:x}", next_counter(), nanos()));
            // `create`, not `create_all`: failing on an existing name is what makes
            // the directory ours (mkdir never follows a planted symlink).
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    // Owned from here on: an error below drops it, removing it.
                    let dir = Self { path, armed: true };
                    dir.restrict(gid, group_mode)?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => return Err(create_error(&parent, e)),
            }
        }
        Err(create_error(
            &parent,
            last_err.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)),
        ))
    }

    /// Sets the final mode explicitly: `DirBuilder::mode` is filtered by the umask,
    /// and the group bits must only appear after the group is set.
    fn restrict(&self, gid: Option<Gid>, group_mode: u32) -> Result<()> {
        let mode = match gid {
            Some(gid) => {
                chgrp(&self.path, gid)?;
                group_mode
            }
            None => 0o700,
        };
        fs::set_permissions(&self.path, Permissions::from_mode(mode)).map_err(|e| {
            Error::new(
                Code::TransportSocketDir,
                format!(
                    "cannot set permissions {mode:o} on socket directory {}",
                    self.path.display()
                ),
            )
            .with_source(e)
        })
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = remove_dir(&self.path)
        {
            tracing::warn!(
                path = %self.path.display(),
                error = %rpcplugin_core::render(&e),
                "cannot remove socket directory"
            );
        }
    }
}

fn remove_dir(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::new(
            Code::TransportSocketDirRemove,
            format!("cannot remove socket directory {}", path.display()),
        )
        .with_source(e)
        .with_hint("remove the directory by hand; nothing uses it any more")),
    }
}

fn create_error(parent: &Path, e: io::Error) -> Error {
    let hint = if e.kind() == io::ErrorKind::NotFound {
        format!(
            "{} does not exist: create it, or set PLUGIN_UNIX_SOCKET_DIR (or TMPDIR) to an existing directory",
            parent.display()
        )
    } else {
        "set PLUGIN_UNIX_SOCKET_DIR (or TMPDIR) to a directory this user can write to".to_owned()
    };
    Error::new(
        Code::TransportSocketDir,
        format!("cannot create a socket directory in {}", parent.display()),
    )
    .with_source(e)
    .with_hint(hint)
}

/// Low bits of the clock: makes names hard to predict across runs that reuse a pid.
fn nanos() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// An empty or blank group means "no group", as go-plugin treats an empty
/// `PLUGIN_UNIX_SOCKET_GROUP`.
pub(crate) fn resolve_optional_group(group: Option<&str>) -> Result<Option<Gid>> {
    match group.map(str::trim) {
        None | Some("") => Ok(None),
        Some(g) => resolve_group(g).map(Some),
    }
}

/// A group name or a numeric gid (as go-plugin accepts both) to a gid.
pub(crate) fn resolve_group(group: &str) -> Result<Gid> {
    let group = group.trim();
    if let Ok(raw) = group.parse::<u32>() {
        return Ok(Gid::from_raw(raw));
    }
    let unknown = || {
        Error::new(
            Code::TransportUnknownGroup,
            format!("unknown socket group \"{group}\""),
        )
        .with_hint(
            "set PLUGIN_UNIX_SOCKET_GROUP to an existing group name or a numeric gid, or unset it",
        )
    };
    match Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(unknown()),
        Err(e) => Err(unknown().with_source(e)),
    }
}

/// Gives `path` to group `gid`, keeping its owner.
pub(crate) fn chgrp(path: &Path, gid: Gid) -> Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid.as_raw())).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::PermissionDenied {
            format!(
                "this user is not a member of group {gid}: add it, or change PLUGIN_UNIX_SOCKET_GROUP"
            )
        } else {
            "check PLUGIN_UNIX_SOCKET_GROUP and the filesystem holding the socket".to_owned()
        };
        Error::new(
            Code::TransportSocketGroup,
            format!("cannot give {} to group {gid}", path.display()),
        )
        .with_source(e)
        .with_hint(hint)
    })
}

/// Removes the socket a plugin process left behind when it died without
/// cleaning up (SIGKILL, a crash, the OOM killer): the announced socket file, if
/// it still exists, is a socket and belongs to this user; and its directory, if it
/// is the private one an rpcplugin plugin with that pid makes
/// (`rpcplugin-<pid>-...`) and is empty then. Call it only once the process has
/// been reaped: a live plugin's socket would be cut off. Returns whether anything
/// was removed. go-plugin's sockets (files in the temporary directory) are
/// removed too; their directories are not theirs to remove.
pub fn remove_stale_socket(socket: &Path, pid: u32) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(meta) = fs::symlink_metadata(socket) else {
        return false;
    };
    if !meta.file_type().is_socket() || meta.uid() != nix::unistd::Uid::effective().as_raw() {
        return false;
    }
    if fs::remove_file(socket).is_err() {
        return false;
    }
    tracing::debug!(socket = %socket.display(), pid, "removed the socket of an exited plugin");
    let private = socket.parent().filter(|dir| {
        dir.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(&format!("rpcplugin-{pid}-")))
    });
    if let Some(dir) = private {
        // Fails harmlessly if something else is in it: then it is not only the
        // plugin's any more.
        let _ = fs::remove_dir(dir);
    }
    true
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn socket_dir_is_private_and_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let dir = SocketDir::create(Some(parent.path()), None).unwrap();
        let path = dir.path().to_owned();
        assert_eq!(path.parent(), Some(parent.path()));
        assert_eq!(mode(&path), 0o700);
        // Contents go too: a socket the plugin left behind must not keep the dir.
        fs::write(path.join("leftover"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn socket_dir_close_removes_and_tolerates_already_gone() {
        let parent = tempfile::tempdir().unwrap();
        let dir = SocketDir::create(Some(parent.path()), None).unwrap();
        let path = dir.path().to_owned();
        dir.close().unwrap();
        assert!(!path.exists());

        let dir = SocketDir::create(Some(parent.path()), None).unwrap();
        fs::remove_dir(dir.path()).unwrap();
        dir.close().unwrap();
    }

    #[test]
    fn socket_dir_names_are_unique() {
        let parent = tempfile::tempdir().unwrap();
        let a = SocketDir::create(Some(parent.path()), None).unwrap();
        let b = SocketDir::create(Some(parent.path()), None).unwrap();
        assert_ne!(a.path(), b.path());
    }

    #[test]
    fn socket_dir_with_group_gid_is_0710_and_group_owned() {
        let parent = tempfile::tempdir().unwrap();
        let gid = nix::unistd::getgid();
        let dir = SocketDir::create(Some(parent.path()), Some(&gid.to_string())).unwrap();
        assert_eq!(mode(dir.path()), 0o710);
        assert_eq!(fs::metadata(dir.path()).unwrap().gid(), gid.as_raw());
    }

    #[test]
    fn socket_dir_group_writable_is_0770() {
        let parent = tempfile::tempdir().unwrap();
        let gid = nix::unistd::getgid();
        let dir = SocketDir::create_group_writable(Some(parent.path()), &gid.to_string()).unwrap();
        assert_eq!(mode(dir.path()), 0o770);
    }

    #[test]
    fn socket_dir_in_missing_parent_explains() {
        let parent = tempfile::tempdir().unwrap();
        let missing = parent.path().join("nope");
        let err = SocketDir::create(Some(&missing), None).unwrap_err();
        assert_eq!(err.code(), Code::TransportSocketDir);
        assert!(err.hint().unwrap().contains("does not exist"));
    }

    #[test]
    fn unknown_group_is_a_config_error_naming_the_variable() {
        let err = resolve_group("rpcplugin-no-such-group-xyz").unwrap_err();
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Config);
        assert_eq!(err.code(), Code::TransportUnknownGroup);
        assert!(err.to_string().contains("rpcplugin-no-such-group-xyz"));
        assert!(err.hint().unwrap().contains("PLUGIN_UNIX_SOCKET_GROUP"));
        // And nothing was created on the way to that error.
        let parent = tempfile::tempdir().unwrap();
        assert!(
            SocketDir::create(Some(parent.path()), Some("rpcplugin-no-such-group-xyz")).is_err()
        );
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn group_resolves_by_name_and_blank_means_none() {
        assert_eq!(resolve_optional_group(Some("  ")).unwrap(), None);
        assert_eq!(resolve_optional_group(None).unwrap(), None);
        let gid = nix::unistd::getgid();
        assert_eq!(resolve_group(&format!(" {gid} ")).unwrap(), gid);
        // Containers may have no name for the primary group; then only gids apply.
        if let Ok(Some(group)) = Group::from_gid(gid) {
            assert_eq!(resolve_group(&group.name).unwrap(), gid);
        }
    }

    #[test]
    fn a_dead_plugins_socket_and_private_directory_are_removed_and_nothing_else() {
        let parent = tempfile::tempdir().unwrap();
        let private = parent.path().join("rpcplugin-4242-0-abc");
        fs::create_dir(&private).unwrap();
        let socket = private.join("plugin.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        assert!(socket.exists(), "a closed listener leaves its file");
        // Another pid's directory is kept, its socket file is not.
        assert!(!remove_stale_socket(&private.join("missing.sock"), 4242));
        let file = parent.path().join("not-a-socket");
        fs::write(&file, b"data").unwrap();
        assert!(!remove_stale_socket(&file, 4242));
        assert!(file.exists());
        assert!(remove_stale_socket(&socket, 4242));
        assert!(!private.exists());

        let other = parent.path().join("rpcplugin-7-0-abc");
        fs::create_dir(&other).unwrap();
        let socket = other.join("plugin.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        assert!(remove_stale_socket(&socket, 4242));
        assert!(!socket.exists());
        assert!(other.exists(), "not the private directory of pid 4242");
    }
}
