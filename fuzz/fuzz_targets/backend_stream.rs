//! The server's byte stream, cut at arbitrary points: the scanner must report the same frames
//! whatever the cuts, never claim bytes it has not seen, and the readers of the messages ddlgate
//! looks into (ReadyForQuery, ParameterStatus, BackendKeyData, authentication requests,
//! ErrorResponse) must answer every body with a value or an error.
#![no_main]

use ddlgate::internals::protocol::{
    BackendKey, BackendScanner, TxStatus, authentication_code, parameter_status, sasl_mechanisms,
};
use libfuzzer_sys::fuzz_target;

fn read_inspected(tag: u8, body: &[u8]) {
    match tag {
        b'Z' => {
            let _ = TxStatus::from_ready_for_query(body);
        }
        b'S' => {
            let _ = parameter_status(body);
        }
        b'K' => {
            let _ = BackendKey::from_backend_key_data(body);
        }
        _ => {}
    }
}

fn scan(data: &[u8], cuts: &[usize]) -> Result<(Vec<(u8, Vec<u8>)>, usize, (u64, bool)), String> {
    let mut scanner = BackendScanner::new(1 << 16);
    let mut seen = Vec::new();
    let mut done = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        let visible = &data[done..cut.max(done).min(data.len())];
        let n = scanner
            .scan(visible, |m| {
                read_inspected(m.tag, m.body);
                seen.push((m.tag, m.body.to_vec()));
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        assert!(n <= visible.len(), "claimed bytes it has not seen");
        done += n;
    }
    Ok((seen, done, scanner.pipeline()))
}

fuzz_target!(|data: &[u8]| {
    let (head, stream) = data.split_at(data.len().min(4));
    let cuts: Vec<usize> = head
        .iter()
        .scan(0usize, |at, b| {
            *at += usize::from(*b);
            Some(*at)
        })
        .collect();
    // Every frame of the stream through the other readers, as the handshake would see them.
    let mut at = 0;
    while stream.len() >= at + 5 {
        let tag = stream[at];
        let len = u32::from_be_bytes([
            stream[at + 1],
            stream[at + 2],
            stream[at + 3],
            stream[at + 4],
        ]) as usize;
        let Some(end) = (at + 1)
            .checked_add(len)
            .filter(|e| *e <= stream.len() && len >= 4)
        else {
            break;
        };
        let body = &stream[at + 5..end];
        match tag {
            b'R' => {
                let _ = authentication_code(body);
                let _ = sasl_mechanisms(body);
            }
            b'E' | b'N' => {
                if let Ok(fields) = ddlgate::internals::protocol::Fields::decode(body) {
                    let _ = fields.message();
                    let _ = fields.is_fatal();
                }
            }
            b'D' => {
                let _ = ddlgate::internals::protocol::data_row(body);
            }
            b'C' => {
                let _ = ddlgate::internals::protocol::command_tag(body);
            }
            _ => {}
        }
        at = end;
    }
    let whole = scan(stream, &[]);
    let pieces = scan(stream, &cuts);
    if let (Ok(w), Ok(p)) = (&whole, &pieces) {
        assert_eq!(w, p, "the cut changed what the scanner saw");
    }
});
