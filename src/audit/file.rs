//! The file sink: JSON lines appended to one file, rotated by size or age.
//!
//! Rotation renames the current file to `<name>.<UTC timestamp>` (e.g.
//! `audit.jsonl.20261122T101500.123Z`) and starts a new one; the chain simply continues, so the
//! first record of the new file links to the last record of the rotated one. `ddlgate audit
//! verify` checks a set of files given in that order (rotated files sort by name).
//!
//! At start-up ddlgate continues the chain of an existing file (or of the newest rotated one
//! when the current file is absent). A file that ends in the middle of a line is refused: the
//! chain cannot continue from a line that is not whole, and nothing is overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Sink;
use super::chain::ChainState;

/// Appends audit lines to a file.
#[derive(Debug)]
pub(crate) struct FileSink {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    opened: Instant,
    rotate_bytes: Option<u64>,
    rotate_after: Option<Duration>,
}

impl FileSink {
    /// Opens (creating) `path` for appending, and reads where its chain stands.
    pub(crate) fn open(
        path: &Path,
        rotate_bytes: Option<u64>,
        rotate_after: Option<Duration>,
    ) -> Result<(Self, ChainState), String> {
        let describe = |e: io::Error| format!("cannot open the audit log {}: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(describe)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(describe)?;
        let size = file.metadata().map_err(describe)?.len();
        let chain = if size > 0 {
            chain_of(&mut file, path)?
        } else {
            match newest_rotated(path) {
                Some(rotated) => {
                    let mut f = File::open(&rotated).map_err(describe)?;
                    chain_of(&mut f, &rotated)?
                }
                None => ChainState::default(),
            }
        };
        Ok((
            Self {
                path: path.to_owned(),
                file,
                size,
                opened: Instant::now(),
                rotate_bytes,
                rotate_after,
            },
            chain,
        ))
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now())
            .to_string()
            .replace(['-', ':'], "");
        let mut target = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let mut n = 1;
        while target.exists() {
            target = PathBuf::from(format!("{}.{stamp}-{n}", self.path.display()));
            n += 1;
        }
        fs::rename(&self.path, &target)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)?;
        self.size = 0;
        self.opened = Instant::now();
        Ok(())
    }
}

impl Sink for FileSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let due = self.size > 0
            && (self
                .rotate_bytes
                .is_some_and(|max| self.size.saturating_add(line.len() as u64 + 1) > max)
                || self
                    .rotate_after
                    .is_some_and(|age| self.opened.elapsed() >= age));
        if due {
            self.rotate()?;
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        if let Err(e) = self.file.write_all(&buf) {
            // A partial line would break the chain for every later line: cut it off again.
            let _ = self.file.set_len(self.size);
            return Err(e);
        }
        self.size = self.size.saturating_add(buf.len() as u64);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// The chain after the last line of `file`.
fn chain_of(file: &mut File, path: &Path) -> Result<ChainState, String> {
    let last = last_line(file)
        .map_err(|e| format!("cannot read the audit log {}: {e}", path.display()))?;
    match last {
        LastLine::Empty => Ok(ChainState::default()),
        LastLine::Incomplete => Err(format!(
            "the audit log {} ends in the middle of a line (a crash while writing, or a truncated copy); check it with `ddlgate audit verify`, then move it away to start a new trail",
            path.display()
        )),
        LastLine::Whole(line) => ChainState::after_line(&line)
            .map_err(|e| format!("cannot continue the audit log {}: {e}", path.display())),
    }
}

enum LastLine {
    Empty,
    Incomplete,
    Whole(Vec<u8>),
}

/// Reads the last line of a file from its end.
fn last_line(file: &mut File) -> io::Result<LastLine> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(LastLine::Empty);
    }
    let mut tail = Vec::new();
    let mut pos = len;
    let chunk = 64 * 1024u64;
    loop {
        let start = pos.saturating_sub(chunk);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0u8; usize::try_from(pos - start).unwrap_or(0)];
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail = buf;
        pos = start;
        if tail.last() != Some(&b'\n') {
            return Ok(LastLine::Incomplete);
        }
        let body = &tail[..tail.len() - 1];
        if let Some(nl) = body.iter().rposition(|b| *b == b'\n') {
            return Ok(LastLine::Whole(body[nl + 1..].to_vec()));
        }
        if pos == 0 {
            return Ok(LastLine::Whole(body.to_vec()));
        }
    }
}

/// The newest `<path>.<stamp>` file next to `path`.
fn newest_rotated(path: &Path) -> Option<PathBuf> {
    rotated_files(path).pop()
}

/// The rotated files of `path`, oldest first.
pub(crate) fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{name}.");
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}
