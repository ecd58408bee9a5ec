//! Replacing the executable atomically, keeping the previous one.
//!
//! Every replacement is a `rename(2)` within the executable's directory, so the path always
//! names a complete executable (the old or the new, never half of one), and the directory
//! is fsynced after it so the rename survives a power cut. The running process keeps its
//! own (old) file open as long as it runs: replacing the path does not disturb it.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

/// `<exe>.previous`: where the replaced executable is kept.
pub fn previous_path(executable: &Path) -> PathBuf {
    let mut name = executable
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".previous");
    executable.with_file_name(name)
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a directory's entries (renames, new names) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes `to` name the same contents as `from`, atomically: a hard link (or, where the
/// file system refuses links, a copy flushed to disk) under a temporary name beside `to`,
/// then renamed over it.
fn replace_with_copy_of(from: &Path, to: &Path) -> io::Result<()> {
    let dir = dir_of(to);
    let temp = tempfile::Builder::new()
        .prefix(".imix-swap-")
        .tempfile_in(dir)?
        .into_temp_path();
    let temp_path = temp.to_path_buf();
    // The temporary name is needed free for the link.
    std::fs::remove_file(&temp_path)?;
    if std::fs::hard_link(from, &temp_path).is_err() {
        std::fs::copy(from, &temp_path)?;
        File::open(&temp_path)?.sync_all()?;
    }
    std::fs::rename(&temp_path, to)?;
    // The temporary path was renamed away; nothing is left to clean up.
    let _ = temp.keep();
    Ok(())
}

/// Installs `new_file` (already complete, flushed and executable, in the same directory) as
/// `executable`, keeping the current one as `<executable>.previous`. Order: the previous
/// one is kept first (so a crash leaves either nothing changed, or the old executable in
/// both places), then the new one is renamed into place, then the directory is flushed.
pub fn install(new_file: &Path, executable: &Path) -> io::Result<()> {
    replace_with_copy_of(executable, &previous_path(executable))?;
    std::fs::rename(new_file, executable)?;
    sync_dir(dir_of(executable))
}

/// Puts `<executable>.previous` back as `executable` (atomically; `.previous` stays).
pub fn restore_previous(executable: &Path) -> io::Result<()> {
    let previous = previous_path(executable);
    if !previous.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is missing", previous.display()),
        ));
    }
    replace_with_copy_of(&previous, executable)?;
    sync_dir(dir_of(executable))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn install_keeps_the_previous_and_restore_puts_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("imix-server");
        std::fs::write(&exe, b"old").unwrap();
        let new = dir.path().join(".new");
        std::fs::write(&new, b"new").unwrap();
        install(&new, &exe).unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"new");
        assert_eq!(std::fs::read(previous_path(&exe)).unwrap(), b"old");
        assert!(!new.exists());
        restore_previous(&exe).unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"old");
        assert_eq!(
            previous_path(&exe).file_name().unwrap(),
            "imix-server.previous"
        );
        // Nothing but the two executables is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
