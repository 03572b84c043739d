//! The client's byte stream after startup, cut at arbitrary points: the frame scanner must
//! find the same messages however the bytes arrive, never read past a frame, and the message
//! readers must answer every body with a value or an error.
#![no_main]

use ddlgate::internals::protocol::{FrontendItem, FrontendScanner};
use libfuzzer_sys::fuzz_target;

/// The largest message the scanner buffers in this target.
const LIMIT: usize = 1 << 16;

fn scan(data: &[u8], cuts: &[usize]) -> Result<Vec<(u8, usize)>, String> {
    let mut scanner = FrontendScanner::new(LIMIT);
    let mut items = Vec::new();
    let mut pos = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        let visible = &data[..cut.max(pos).min(data.len())];
        loop {
            match scanner.next(visible, pos) {
                Ok(Some(FrontendItem::Message { tag, end })) => {
                    assert!(end > pos && end <= visible.len(), "message past the bytes");
                    let body = &visible[pos + 5..end];
                    match tag {
                        b'Q' => {
                            let _ = ddlgate::internals::protocol::query_text(body);
                        }
                        b'P' => {
                            let _ = ddlgate::internals::protocol::Parse::decode(body);
                        }
                        b'B' => {
                            let _ = ddlgate::internals::protocol::Bind::decode(body);
                        }
                        b'E' => {
                            let _ = ddlgate::internals::protocol::execute_portal(body);
                        }
                        b'C' => {
                            let _ = ddlgate::internals::protocol::close_target(body);
                        }
                        _ => {}
                    }
                    items.push((tag, end));
                    pos = end;
                }
                Ok(Some(FrontendItem::CopyChunk { end })) => {
                    assert!(
                        end >= pos && end <= visible.len(),
                        "copy chunk past the bytes"
                    );
                    if end == pos {
                        break;
                    }
                    items.push((b'd', end));
                    pos = end;
                }
                Ok(None) => {
                    let _ = scanner.missing(visible, pos);
                    break;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(items)
}

fuzz_target!(|data: &[u8]| {
    // The first bytes choose where the stream is cut; the rest is the stream.
    let (head, stream) = data.split_at(data.len().min(4));
    let cuts: Vec<usize> = head
        .iter()
        .scan(0usize, |at, b| {
            *at += usize::from(*b);
            Some(*at)
        })
        .collect();
    let whole = scan(stream, &[]);
    let pieces = scan(stream, &cuts);
    // Copy data is reported as it arrives, so only complete messages are compared.
    let messages = |r: &Result<Vec<(u8, usize)>, String>| match r {
        Ok(items) => Ok(items
            .iter()
            .filter(|(t, _)| *t != b'd')
            .copied()
            .collect::<Vec<_>>()),
        Err(e) => Err(e.clone()),
    };
    if whole.is_ok() && pieces.is_ok() {
        assert_eq!(
            messages(&whole),
            messages(&pieces),
            "the cut changed the messages"
        );
    }
});
