//! Maps the cancel keys ddlgate hands to clients to the upstream backends they belong to.
//!
//! A client sends its `CancelRequest` on a new connection, possibly while the listener is at
//! its connection limit; the registry lets that connection find the upstream backend to cancel
//! without touching the session it targets. Each client gets ddlgate's own secret, so a key seen
//! on the client side cannot cancel anything when sent to the server directly, and a forged
//! key cannot reach a backend through ddlgate.
//!
//! A cancel request also reaches the session itself, as a count it reads when ddlgate is the
//! one waiting (for blockers without queueing, or before a retry): the backend is idle then,
//! and cancelling it would do nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::protocol::backend::BackendKey;

/// Live sessions' cancel keys.
#[derive(Debug, Default)]
pub(crate) struct CancelRegistry {
    keys: Mutex<HashMap<BackendKey, CancelTarget>>,
}

/// What a client's cancel key reaches.
#[derive(Debug, Clone)]
pub(crate) struct CancelTarget {
    /// The upstream backend's key.
    pub(crate) upstream: BackendKey,
    /// Cancel requests the session has received so far.
    pub(crate) requests: Arc<AtomicU64>,
}

impl CancelTarget {
    /// Counts a cancel request for the session.
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::AcqRel);
    }
}

impl CancelRegistry {
    /// Records that `client_key` cancels the upstream backend `upstream_key` until the returned
    /// registration is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        client_key: BackendKey,
        upstream_key: BackendKey,
    ) -> Registration {
        let requests = Arc::new(AtomicU64::new(0));
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                client_key.clone(),
                CancelTarget {
                    upstream: upstream_key,
                    requests: Arc::clone(&requests),
                },
            );
        Registration {
            registry: Arc::clone(self),
            client_key,
            requests,
        }
    }

    /// What a key a client presented reaches, if a live session owns it.
    pub(crate) fn lookup(&self, client_key: &BackendKey) -> Option<CancelTarget> {
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
    requests: Arc<AtomicU64>,
}

impl Registration {
    /// Cancel requests the session has received so far.
    pub(crate) fn cancel_requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }
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
        let target = registry.lookup(&key(1, b"abcd")).unwrap();
        assert_eq!(target.upstream, key(1, b"real"));
        assert_eq!(reg.cancel_requests(), 0);
        target.request();
        assert_eq!(reg.cancel_requests(), 1, "the session sees the request");
        assert!(registry.lookup(&key(1, b"abce")).is_none());
        assert!(registry.lookup(&key(2, b"abcd")).is_none());
        drop(reg);
        assert!(
            registry.lookup(&key(1, b"abcd")).is_none(),
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
