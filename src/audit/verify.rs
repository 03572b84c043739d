//! `ddlgate audit verify`: checks the hash chain of one or more audit files, in the order given
//! (rotated files first, oldest first, then the current one), and names the first bad line.
//!
//! What a broken chain looks like, and what is reported:
//! - a line that is not a whole JSON record, or lacks `seq`/`prev`: **edited** (or, for the
//!   last line of a file without its newline, **truncated**);
//! - `prev` of a line does not match the SHA-256 of the line before it while `seq` follows on:
//!   the line before was **edited**;
//! - `seq` jumps forward: records were **deleted** (lines, or a whole rotated file);
//! - `seq` repeats or goes back: a line was **inserted** (or lines reordered);
//! - the first record of the first file has `seq` 1 but `prev` is not the genesis value:
//!   **edited**.
//!
//! A chain is only as strong as its anchor: whoever can rewrite every line from some point on
//! can make a consistent chain, and lines removed from the end of the newest file leave no
//! trace in it. Ship the trail off the machine (stdout sink, Postgres table) and compare.

use std::path::{Path, PathBuf};

use super::chain::{GENESIS, hash};

/// What `verify` found wrong first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {kind}: {detail}", path.display())]
pub(crate) struct Broken {
    /// The file.
    pub path: PathBuf,
    /// The line (1-based) that is bad.
    pub line: usize,
    /// `edited`, `inserted`, `deleted` or `truncated`.
    pub kind: &'static str,
    /// What exactly.
    pub detail: String,
}

/// What an intact chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Records checked.
    pub records: u64,
    /// `seq` of the first record.
    pub first_seq: Option<u64>,
    /// `seq` of the last record.
    pub last_seq: Option<u64>,
    /// Files read.
    pub files: usize,
}

/// Checks the chain through `paths` in order.
pub(crate) fn verify(paths: &[PathBuf]) -> Result<Result<Summary, Broken>, std::io::Error> {
    let mut summary = Summary {
        records: 0,
        first_seq: None,
        last_seq: None,
        files: 0,
    };
    // The previous line's seq and hash, and where it was.
    let mut previous: Option<(u64, String, PathBuf, usize)> = None;
    for path in paths {
        let bytes = std::fs::read(path)?;
        summary.files += 1;
        let ends_with_newline = bytes.last() == Some(&b'\n');
        let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        if ends_with_newline || bytes.is_empty() {
            lines.pop();
        }
        let count = lines.len();
        for (n, line) in lines.into_iter().enumerate() {
            let number = n + 1;
            let broken = |kind: &'static str, detail: String| Broken {
                path: path.clone(),
                line: number,
                kind,
                detail,
            };
            let last_without_newline = number == count && !ends_with_newline;
            let Some((seq, prev)) = parse(line) else {
                return Ok(Err(if last_without_newline {
                    broken(
                        "truncated",
                        "the file ends in the middle of a record".to_owned(),
                    )
                } else {
                    broken(
                        "edited",
                        "not a whole audit record (JSON with seq and prev)".to_owned(),
                    )
                }));
            };
            match &previous {
                None => {
                    if seq == 1 && prev != GENESIS {
                        return Ok(Err(broken(
                            "edited",
                            "the first record of the trail must have prev = 64 zeros".to_owned(),
                        )));
                    }
                }
                Some((last_seq, last_hash, last_path, last_line)) => {
                    let expected = last_seq.saturating_add(1);
                    if seq > expected {
                        return Ok(Err(broken(
                            "deleted",
                            format!(
                                "seq {seq} follows seq {last_seq}: records {expected}..{} are missing",
                                seq - 1
                            ),
                        )));
                    }
                    if seq < expected {
                        return Ok(Err(broken(
                            "inserted",
                            format!(
                                "seq {seq} after seq {last_seq}: a record was inserted here or lines were reordered"
                            ),
                        )));
                    }
                    if prev != *last_hash {
                        return Ok(Err(Broken {
                            path: last_path.clone(),
                            line: *last_line,
                            kind: "edited",
                            detail: format!(
                                "its SHA-256 is not the prev of the next record (seq {seq})"
                            ),
                        }));
                    }
                }
            }
            if last_without_newline {
                return Ok(Err(broken(
                    "truncated",
                    "the last record has no newline: the file was cut".to_owned(),
                )));
            }
            summary.records += 1;
            summary.first_seq.get_or_insert(seq);
            summary.last_seq = Some(seq);
            previous = Some((seq, hash(line), path.clone(), number));
        }
    }
    Ok(Ok(summary))
}

/// `seq` and `prev` of a line, if it is a record.
fn parse(line: &[u8]) -> Option<(u64, String)> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let seq = value.get("seq")?.as_u64()?;
    let prev = value.get("prev")?.as_str()?.to_owned();
    (prev.len() == 64).then_some((seq, prev))
}

/// The files of a trail in chain order: for a directory or the current file's path, its
/// rotated files oldest first, then the file itself.
pub(crate) fn expand(path: &Path) -> Vec<PathBuf> {
    let mut files = super::file::rotated_files(path);
    if path.exists() {
        files.push(path.to_owned());
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Sink;
    use crate::audit::chain::ChainState;
    use crate::audit::file::FileSink;
    use crate::audit::record::{Record, event};

    /// Writes `n` records through the file sink (rotating every `rotate` bytes) and returns
    /// the files in chain order.
    fn trail(dir: &Path, n: usize, rotate: Option<u64>) -> Vec<PathBuf> {
        let path = dir.join("audit.jsonl");
        let (mut sink, mut chain) = FileSink::open(&path, rotate, None).unwrap();
        for i in 0..n {
            let mut r = Record::new(event::STATEMENT, 7);
            r.sql = Some(format!("ALTER TABLE t{i} ADD COLUMN c int"));
            let line = chain.seal(&mut r).unwrap();
            sink.write_line(&line).unwrap();
            chain.advance(&line, r.seq);
        }
        sink.sync().unwrap();
        expand(&path)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_intact_trail_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 5, None);
        let summary = verify(&files).unwrap().unwrap();
        assert_eq!(summary.records, 5);
        assert_eq!((summary.first_seq, summary.last_seq), (Some(1), Some(5)));
    }

    #[test]
    fn an_edited_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 5, None);
        let mut l = lines(&files[0]);
        l[2] = l[2].replace("ADD COLUMN c int", "ADD COLUMN c bigint");
        write(&files[0], &l);
        let broken = verify(&files).unwrap().unwrap_err();
        assert_eq!((broken.line, broken.kind), (3, "edited"), "{broken}");
    }

    #[test]
    fn a_line_that_is_no_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 3, None);
        let mut l = lines(&files[0]);
        l[1] = "{\"seq\": 2, \"comment\": \"hand-made\"}".to_owned();
        write(&files[0], &l);
        let broken = verify(&files).unwrap().unwrap_err();
        assert_eq!((broken.line, broken.kind), (2, "edited"), "{broken}");
    }

    #[test]
    fn a_deleted_line_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 5, None);
        let mut l = lines(&files[0]);
        l.remove(1);
        write(&files[0], &l);
        let broken = verify(&files).unwrap().unwrap_err();
        assert_eq!((broken.line, broken.kind), (2, "deleted"), "{broken}");
        assert!(
            broken.detail.contains("records 2..2 are missing"),
            "{broken}"
        );
    }

    #[test]
    fn an_inserted_line_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 5, None);
        let mut l = lines(&files[0]);
        let copy = l[1].clone();
        l.insert(3, copy);
        write(&files[0], &l);
        let broken = verify(&files).unwrap().unwrap_err();
        assert_eq!((broken.line, broken.kind), (4, "inserted"), "{broken}");
    }

    #[test]
    fn a_truncated_file_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 3, None);
        let bytes = std::fs::read(&files[0]).unwrap();
        std::fs::write(&files[0], &bytes[..bytes.len() - 20]).unwrap();
        let broken = verify(&files).unwrap().unwrap_err();
        assert_eq!((broken.line, broken.kind), (3, "truncated"), "{broken}");
    }

    #[test]
    fn the_chain_runs_across_rotated_files_and_a_missing_file_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 12, Some(1200));
        assert!(files.len() >= 3, "{files:?}");
        let summary = verify(&files).unwrap().unwrap();
        assert_eq!(summary.records, 12);
        assert_eq!(summary.files, files.len());
        // The first record of a rotated-to file links to the last of the one before.
        let first_of_second = lines(&files[1])[0].clone();
        let last_of_first = lines(&files[0]).pop().unwrap();
        let record: Record = serde_json::from_str(&first_of_second).unwrap();
        assert_eq!(record.prev, hash(last_of_first.as_bytes()));

        let without_middle: Vec<PathBuf> = files
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, p)| p.clone())
            .collect();
        let broken = verify(&without_middle).unwrap().unwrap_err();
        assert_eq!(broken.kind, "deleted", "{broken}");
        assert_eq!(broken.path, files[2]);
    }

    #[test]
    fn the_sink_continues_an_existing_chain_and_refuses_a_cut_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 3, None);
        let (_, chain) = FileSink::open(&files[0], None, None).unwrap();
        assert_eq!(chain.seq, 3);
        assert_eq!(
            chain,
            ChainState::after_line(lines(&files[0])[2].as_bytes()).unwrap()
        );
        let bytes = std::fs::read(&files[0]).unwrap();
        std::fs::write(&files[0], &bytes[..bytes.len() - 5]).unwrap();
        let err = FileSink::open(&files[0], None, None).unwrap_err();
        assert!(err.contains("ends in the middle of a line"), "{err}");
    }
}
