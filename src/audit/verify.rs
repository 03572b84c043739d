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
//! - the trail does not start at seq 1 (with `prev` 64 zeros): records were cut from its
//!   **head** — unless the caller says where it is meant to start (`--from-seq`, `--after`:
//!   older rotated files removed on purpose);
//! - an anchor (`serve --audit-anchor`) names a head the trail does not reach, or whose hash
//!   differs: records were cut from its **tail** (or the end was rewritten).
//!
//! A trail written to standard output starts a new chain (seq 1, `prev` zeros) each time
//! ddlgate starts; records carry the process's `run` id, so joined logs of several runs verify
//! run by run instead of reporting an insertion at each restart.
//!
//! A chain is only as strong as its anchor: whoever can rewrite every line from some point on
//! can make a consistent chain. Keep the anchor file (or the Postgres-table copy, or the log
//! shipper's copy of stdout) where the trail's writer cannot rewrite it, and compare.

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

/// Where the trail is expected to start and end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Expect {
    /// The `seq` of the first record (default 1).
    pub from_seq: Option<u64>,
    /// The `prev` of the first record (the hash of the last record before it).
    pub after: Option<String>,
    /// The head an anchor recorded last: `seq`, hash, `run`.
    pub anchor: Option<Anchor>,
}

/// A chain head written to an anchor file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Anchor {
    /// `seq` of the head.
    pub seq: u64,
    /// SHA-256 of its line.
    pub hash: String,
    /// The run that wrote it.
    pub run: String,
}

/// The last head recorded in an anchor file (one JSON object per line).
pub(crate) fn read_anchor(path: &Path) -> Result<Anchor, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the anchor {}: {e}", path.display()))?;
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| format!("the anchor {} is empty", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(last)
        .map_err(|e| format!("the anchor {}'s last line is not JSON: {e}", path.display()))?;
    let field = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    Ok(Anchor {
        seq: v
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("the anchor {} has no seq", path.display()))?,
        hash: field("hash").ok_or_else(|| format!("the anchor {} has no hash", path.display()))?,
        run: field("run").unwrap_or_default(),
    })
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
    /// Chains in the trail: more than one when runs that each started their own chain
    /// (standard output) were joined.
    pub runs: usize,
    /// The anchor's head was found in the trail with its hash.
    pub anchored: bool,
}

/// Checks the chain through `paths` in order.
#[cfg(test)]
pub(crate) fn verify(paths: &[PathBuf]) -> Result<Result<Summary, Broken>, std::io::Error> {
    verify_expecting(paths, &Expect::default())
}

/// Checks the chain through `paths` in order, against where it is expected to start and end.
#[expect(
    clippy::too_many_lines,
    reason = "one pass over the lines; each check names its finding"
)]
pub(crate) fn verify_expecting(
    paths: &[PathBuf],
    expect: &Expect,
) -> Result<Result<Summary, Broken>, std::io::Error> {
    let mut summary = Summary {
        records: 0,
        first_seq: None,
        last_seq: None,
        files: 0,
        runs: 0,
        anchored: false,
    };
    // The previous line's seq, hash and run, and where it was.
    let mut previous: Option<(u64, String, String, PathBuf, usize)> = None;
    let mut last_place: Option<(PathBuf, usize)> = None;
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
            let Some((seq, prev, run)) = parse(line) else {
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
            // A run that started its own chain (standard output) after another one.
            let new_run = previous.as_ref().is_some_and(|(_, _, last_run, ..)| {
                seq == 1 && prev == GENESIS && *last_run != run
            });
            if new_run {
                previous = None;
            }
            match &previous {
                None if summary.runs > 0 || new_run => {
                    summary.runs += 1;
                }
                None => {
                    summary.runs += 1;
                    let from = expect.from_seq.unwrap_or(1);
                    if seq != from {
                        return Ok(Err(broken(
                            "truncated",
                            format!(
                                "the trail starts at seq {seq} (prev {prev}), not at seq {from}: the records before it are missing (if older files were removed on purpose, verify with --from-seq {seq} --after {prev})"
                            ),
                        )));
                    }
                    match expect.after.as_deref() {
                        Some(after) if prev != after => {
                            return Ok(Err(broken(
                                "truncated",
                                format!(
                                    "the first record's prev is {prev}, not {after}: the trail does not continue the one expected"
                                ),
                            )));
                        }
                        None if from == 1 && prev != GENESIS => {
                            return Ok(Err(broken(
                                "edited",
                                "the first record of the trail must have prev = 64 zeros"
                                    .to_owned(),
                            )));
                        }
                        _ => {}
                    }
                }
                Some((last_seq, last_hash, _, last_path, last_line)) => {
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
            let line_hash = hash(line);
            if let Some(anchor) = &expect.anchor
                && anchor.seq == seq
                && (anchor.run.is_empty() || run.is_empty() || anchor.run == run)
            {
                if anchor.hash != line_hash {
                    return Ok(Err(broken(
                        "edited",
                        format!(
                            "the anchor recorded seq {seq} with hash {}, this line's is {line_hash}",
                            anchor.hash
                        ),
                    )));
                }
                summary.anchored = true;
            }
            previous = Some((seq, line_hash, run, path.clone(), number));
            last_place = Some((path.clone(), number));
        }
    }
    if let Some(anchor) = &expect.anchor
        && !summary.anchored
    {
        let (path, line) =
            last_place.unwrap_or_else(|| (paths.first().cloned().unwrap_or_default(), 0));
        return Ok(Err(Broken {
            path,
            line,
            kind: "truncated",
            detail: format!(
                "the anchor recorded seq {} (hash {}), which the trail does not reach: it ends at seq {}; records were cut from its end",
                anchor.seq,
                anchor.hash,
                summary
                    .last_seq
                    .map_or_else(|| "none".to_owned(), |s| s.to_string())
            ),
        }));
    }
    Ok(Ok(summary))
}

/// `seq`, `prev` and `run` of a line, if it is a record.
fn parse(line: &[u8]) -> Option<(u64, String, String)> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let seq = value.get("seq")?.as_u64()?;
    let prev = value.get("prev")?.as_str()?.to_owned();
    let run = value
        .get("run")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    (prev.len() == 64).then_some((seq, prev, run))
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

    /// Lines of one chain written by a process with `run` id (as on standard output).
    fn run_lines(run: &str, n: usize) -> Vec<String> {
        let mut chain = ChainState::default();
        (0..n)
            .map(|i| {
                let mut r = Record::new(event::STATEMENT, 1);
                r.run = run.to_owned();
                r.sql = Some(format!("ALTER TABLE r{i} ADD COLUMN c int"));
                let line = chain.seal(&mut r).unwrap();
                chain.advance(&line, r.seq);
                String::from_utf8(line).unwrap()
            })
            .collect()
    }

    /// Records cut from the head: reported, with the options that accept it when it was on
    /// purpose; those options checked in turn.
    #[test]
    fn a_trail_cut_at_the_head_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 6, None);
        let all = lines(&files[0]);
        write(&files[0], &all[3..]);
        let broken = verify(&files).unwrap().unwrap_err();
        assert_eq!((broken.line, broken.kind), (1, "truncated"));
        assert!(broken.detail.contains("starts at seq 4"), "{broken}");
        assert!(broken.detail.contains("--from-seq 4 --after"), "{broken}");
        let prev_of_4 = crate::audit::chain::hash(all[2].as_bytes());
        let expect = Expect {
            from_seq: Some(4),
            after: Some(prev_of_4),
            anchor: None,
        };
        let summary = verify_expecting(&files, &expect).unwrap().unwrap();
        assert_eq!((summary.first_seq, summary.last_seq), (Some(4), Some(6)));
        let wrong = Expect {
            from_seq: Some(4),
            after: Some("f".repeat(64)),
            anchor: None,
        };
        assert_eq!(
            verify_expecting(&files, &wrong).unwrap().unwrap_err().kind,
            "truncated"
        );
    }

    /// An anchor names the head: a trail that stops short of it, or reaches it with another
    /// line, is reported; the whole trail verifies with it.
    #[test]
    fn a_trail_cut_at_the_tail_is_found_by_its_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 6, None);
        let all = lines(&files[0]);
        let anchor_path = dir.path().join("anchor.jsonl");
        std::fs::write(
            &anchor_path,
            format!(
                "{{\"seq\":5,\"hash\":\"x\"}}\n{{\"seq\":6,\"hash\":\"{}\",\"run\":\"\"}}\n",
                crate::audit::chain::hash(all[5].as_bytes())
            ),
        )
        .unwrap();
        let expect = Expect {
            anchor: Some(read_anchor(&anchor_path).unwrap()),
            ..Expect::default()
        };
        assert!(verify_expecting(&files, &expect).unwrap().unwrap().anchored);
        write(&files[0], &all[..4]);
        let broken = verify_expecting(&files, &expect).unwrap().unwrap_err();
        assert_eq!(broken.kind, "truncated");
        assert!(broken.detail.contains("ends at seq 4"), "{broken}");
        assert!(
            verify(&files).unwrap().is_ok(),
            "without the anchor nothing shows"
        );
    }

    /// Standard-output chains of several runs, joined: each run verifies on its own; the same
    /// run starting over is an insertion.
    #[test]
    fn joined_runs_verify_run_by_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("joined.jsonl");
        let mut joined = run_lines("aaaa", 3);
        joined.extend(run_lines("bbbb", 2));
        write(&path, &joined);
        let summary = verify(std::slice::from_ref(&path)).unwrap().unwrap();
        assert_eq!((summary.records, summary.runs), (5, 2));
        let mut same = run_lines("aaaa", 3);
        same.extend(run_lines("aaaa", 2));
        write(&path, &same);
        assert_eq!(verify(&[path]).unwrap().unwrap_err().kind, "inserted");
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
