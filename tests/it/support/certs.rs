//! Certificates generated at test time: one CA, the server certificate PostgreSQL uses, a
//! second certificate from the same CA for ddlgate, and one for a name nobody connects to.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// Paths of the generated PEM files.
#[derive(Debug, Clone)]
pub struct Certs {
    /// The CA certificate that signed all others.
    pub ca: PathBuf,
    /// PostgreSQL's certificate (names: localhost, 127.0.0.1) and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A different certificate with the same names, for ddlgate's client side.
    pub proxy_cert: PathBuf,
    pub proxy_key: PathBuf,
    /// A certificate for `db.invalid` only, to fail hostname checks.
    pub wrong_name_cert: PathBuf,
    pub wrong_name_key: PathBuf,
}

fn leaf(
    names: &[&str],
    issuer: &CertifiedIssuer<'_, KeyPair>,
    dir: &Path,
    stem: &str,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    let cert = params.signed_by(&key, issuer).unwrap();
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// Generates a fresh set into `dir`.
pub fn generate(dir: &Path) -> Certs {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ddlgate test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let (server_cert, server_key) = leaf(&["localhost", "127.0.0.1"], &ca, dir, "server");
    let (proxy_cert, proxy_key) = leaf(&["localhost", "127.0.0.1"], &ca, dir, "proxy");
    let (wrong_name_cert, wrong_name_key) = leaf(&["db.invalid"], &ca, dir, "wrong-name");
    Certs {
        ca: ca_path,
        server_cert,
        server_key,
        proxy_cert,
        proxy_key,
        wrong_name_cert,
        wrong_name_key,
    }
}
