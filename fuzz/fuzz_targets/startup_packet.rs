//! The first packet of a connection (StartupMessage, SSLRequest, GSSENCRequest,
//! CancelRequest): any bytes get a packet or an error, and a decoded StartupMessage encodes
//! back to one that decodes the same.
#![no_main]

use bytes::Bytes;
use ddlgate::internals::protocol::{StartupPacket, decode_startup, encode_startup, packet_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = packet_len([data[0], data[1], data[2], data[3]]);
    }
    if let Ok(StartupPacket::Startup(message)) = decode_startup(Bytes::copy_from_slice(data)) {
        let params: Vec<(&str, &str)> = message
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let encoded = encode_startup(&params);
        match decode_startup(encoded) {
            Ok(StartupPacket::Startup(again)) => assert_eq!(again.params, message.params),
            other => panic!("re-encoded startup packet decodes as {other:?}"),
        }
    }
});
