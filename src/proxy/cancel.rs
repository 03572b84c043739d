//! Maps the cancel keys ddlgate hands to clients to the upstream backends they belong to.
//!
//! A client sends its `CancelRequest` on a new connection, possibly while the listener is at
//! its connection limit; the registry lets that connection find the upstream backend to cancel
//! without touching the session it targets. Each client gets ddlgate's own secret, so a key seen
//! on the client side cannot cancel anything when sent to the server directly, and a forged
//! key cannot reach a backend through ddlgate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::protocol::backend::BackendKey;

/// Live sessions' cancel keys.
#[derive(Debug, Default)]
pub(crate) struct CancelRegistry {
    keys: Mutex<HashMap<BackendKey, BackendKey>>,
}

impl CancelRegistry {
    /// Records that `client_key` cancels the upstream backend `upstream_key` until the returned
    /// registration is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        client_key: BackendKey,
        upstream_key: BackendKey,
    ) -> Registration {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(client_key.clone(), upstream_key);
        Registration {
            registry: Arc::clone(self),
            client_key,
        }
    }

    /// The upstream key for a key a client presented, if a live session owns it.
    pub(crate) fn lookup(&self, client_key: &BackendKey) -> Option<BackendKey> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(client_key)
            .cloned()
    }
}

/// Removes its key from the registry when the session ends.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<CancelRegistry>,
    client_key: BackendKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.client_key);
    }
}

/// Makes the key a client is given for a session whose upstream key is `upstream`: the same
/// process id (so `pg_backend_pid()` and the key agree in logs) and a fresh random secret of
/// the same length.
pub(crate) fn client_key_for(upstream: &BackendKey) -> Result<BackendKey, getrandom::Error> {
    let mut secret = vec![0u8; upstream.secret.len()];
    getrandom::fill(&mut secret)?;
    Ok(BackendKey {
        pid: upstream.pid,
        secret: secret.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pid: u32, secret: &[u8]) -> BackendKey {
        BackendKey {
            pid,
            secret: bytes::Bytes::copy_from_slice(secret),
        }
    }

    #[test]
    fn lookup_needs_the_exact_secret_and_ends_with_the_session() {
        let registry = Arc::new(CancelRegistry::default());
        let reg = registry.register(key(1, b"abcd"), key(1, b"real"));
        assert_eq!(registry.lookup(&key(1, b"abcd")), Some(key(1, b"real")));
        assert_eq!(registry.lookup(&key(1, b"abce")), None);
        assert_eq!(registry.lookup(&key(2, b"abcd")), None);
        drop(reg);
        assert_eq!(
            registry.lookup(&key(1, b"abcd")),
            None,
            "gone with the session"
        );
    }

    #[test]
    fn client_key_keeps_pid_and_length_but_not_the_secret() {
        let upstream = key(99, &[7u8; 32]);
        let client = client_key_for(&upstream).unwrap();
        assert_eq!(client.pid, 99);
        assert_eq!(client.secret.len(), 32);
        assert_ne!(client.secret, upstream.secret);
    }
}
