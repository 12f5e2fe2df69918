//! The ELF interpreter (dynamic loader) of an executable: the one file besides
//! the plugin that the kernel executes to start it, so the only one of the system
//! libraries that needs Landlock's execute right.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// `PT_INTERP`: the program header naming the interpreter.
const PT_INTERP: u32 = 3;
/// A sane bound on the program header table (a typical executable has 10-15).
const MAX_HEADERS: u16 = 512;
/// A sane bound on the interpreter's path.
const MAX_PATH: u64 = 4096;

/// The interpreter `program` names in its `PT_INTERP` header, if it is an ELF
/// file that has one. A statically linked program (Go without cgo), a script or
/// anything unreadable has none.
pub(crate) fn interpreter(program: &Path) -> Option<PathBuf> {
    let mut file = File::open(program).ok()?;
    let mut ident = [0u8; 64];
    file.read_exact(&mut ident).ok()?;
    if ident[..4] != *b"\x7fELF" {
        return None;
    }
    let wide = match ident[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match ident[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16_at = |b: &[u8], at: usize| {
        let bytes = [b[at], b[at + 1]];
        if little {
            u16::from_le_bytes(bytes)
        } else {
            u16::from_be_bytes(bytes)
        }
    };
    let u32_at = |b: &[u8], at: usize| {
        let bytes = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    let u64_at = |b: &[u8], at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&b[at..at + 8]);
        if little {
            u64::from_le_bytes(bytes)
        } else {
            u64::from_be_bytes(bytes)
        }
    };
    // e_phoff, e_phentsize, e_phnum: offsets differ between ELF32 and ELF64.
    let (table, entry_size, count) = if wide {
        (u64_at(&ident, 32), u16_at(&ident, 54), u16_at(&ident, 56))
    } else {
        (
            u64::from(u32_at(&ident, 28)),
            u16_at(&ident, 42),
            u16_at(&ident, 44),
        )
    };
    let needed = if wide { 56 } else { 32 };
    if usize::from(entry_size) < needed || count > MAX_HEADERS {
        return None;
    }
    let mut header = vec![0u8; usize::from(entry_size)];
    for index in 0..u64::from(count) {
        file.seek(SeekFrom::Start(table + index * u64::from(entry_size)))
            .ok()?;
        file.read_exact(&mut header).ok()?;
        if u32_at(&header, 0) != PT_INTERP {
            continue;
        }
        let (offset, size) = if wide {
            (u64_at(&header, 8), u64_at(&header, 32))
        } else {
            (
                u64::from(u32_at(&header, 4)),
                u64::from(u32_at(&header, 16)),
            )
        };
        if size == 0 || size > MAX_PATH {
            return None;
        }
        let mut path = vec![0u8; usize::try_from(size).ok()?];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut path).ok()?;
        // NUL-terminated.
        let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
        path.truncate(end);
        use std::os::unix::ffi::OsStringExt;
        return Some(PathBuf::from(std::ffi::OsString::from_vec(path)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_names_its_loader_and_a_script_names_none() {
        // This test binary is linked dynamically against the C library.
        let loader = interpreter(&std::env::current_exe().unwrap()).expect("a PT_INTERP");
        assert!(loader.is_absolute(), "{loader:?}");
        assert!(
            loader
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ld-"),
            "{loader:?}"
        );
        assert!(loader.exists(), "{loader:?}");

        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("plugin.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        assert_eq!(interpreter(&script), None);
        assert_eq!(interpreter(Path::new("/nonexistent/plugin")), None);
    }
}
