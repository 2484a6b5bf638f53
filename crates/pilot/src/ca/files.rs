//! The CA's files: Istio's `cacerts` layout read, a self-made root written, and private
//! files (keys, tokens) that are never readable by others, not even for an instant.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::CaError;

/// The signing certificate (Istio's `ca-cert.pem`).
pub const CA_CERT: &str = "ca-cert.pem";
/// Its private key (`ca-key.pem`), mode 0600.
pub const CA_KEY: &str = "ca-key.pem";
/// The root every workload trusts (`root-cert.pem`).
pub const ROOT_CERT: &str = "root-cert.pem";
/// The signing certificate's chain up to the root (`cert-chain.pem`), when it is an
/// intermediate.
pub const CERT_CHAIN: &str = "cert-chain.pem";

/// Private files: the owner reads and writes them, nobody else.
const PRIVATE: u32 = 0o600;
/// Public files: certificates.
const PUBLIC: u32 = 0o644;

/// What a `cacerts` directory holds, read but not yet checked.
pub(super) struct CaFiles {
    pub dir: PathBuf,
    pub ca_cert: CertificateDer<'static>,
    pub ca_key: KeyPair,
    pub root: CertificateDer<'static>,
    /// `cert-chain.pem`, when present.
    pub chain: Option<Vec<CertificateDer<'static>>>,
}

impl CaFiles {
    /// Reads Istio's layout from `dir`; `cert-chain.pem` may be absent.
    pub fn read(dir: &Path) -> Result<CaFiles, CaError> {
        let chain_path = dir.join(CERT_CHAIN);
        let chain = match chain_path.exists() {
            true => Some(read_certs(&chain_path)?),
            false => None,
        };
        let ca_cert = one_cert(&dir.join(CA_CERT))?;
        let root = one_cert(&dir.join(ROOT_CERT))?;
        Ok(CaFiles {
            dir: dir.to_owned(),
            ca_key: read_key(&dir.join(CA_KEY))?,
            ca_cert,
            root,
            chain,
        })
    }

    /// The path of `name` in the directory, for messages.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Writes a self-made root into `dir` in the `cacerts` layout: the root is its own
/// signing certificate. The key is written last, so a directory with a key is complete.
pub(super) fn write_root(dir: &Path, cert_pem: &str, key: &KeyPair) -> Result<(), CaError> {
    create_private_dir(dir)?;
    for name in [ROOT_CERT, CA_CERT] {
        write_file(&dir.join(name), cert_pem.as_bytes(), PUBLIC)?;
    }
    write_private(&dir.join(CA_KEY), key.serialize_pem().as_bytes())
}

/// Creates `dir` (and its parents) readable by the owner only, if it does not exist.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CaError::Write {
            path: dir.to_owned(),
            source,
        })
}

/// Writes `path` whole or not at all, mode 0600 from the moment it exists.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    write_file(path, bytes, PRIVATE)
}

/// Writes `bytes` to a new temporary file created with `mode` (so it is never more
/// readable than that), then renames it over `path`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let error = |source| CaError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    // Left over by a crash of this very process id: never reuse its permissions.
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(error)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(error)
}

fn read(path: &Path) -> Result<Vec<u8>, CaError> {
    std::fs::read(path).map_err(|source| CaError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path, reason: impl Into<String>) -> CaError {
    CaError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Every certificate in a PEM file.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certs = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The one certificate of a PEM file.
fn one_cert(path: &Path) -> Result<CertificateDer<'static>, CaError> {
    let mut certs = read_certs(path)?;
    if certs.len() > 1 {
        return Err(invalid(
            path,
            format!("holds {} certificates; expected one", certs.len()),
        ));
    }
    Ok(certs.remove(0))
}

/// A private key in PKCS#8 (`PRIVATE KEY`) or, as `openssl genrsa` of OpenSSL 1.x
/// writes Istio's sample CA keys, PKCS#1 RSA (`RSA PRIVATE KEY`).
fn read_key(path: &Path) -> Result<KeyPair, CaError> {
    let pem = read(path)?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| invalid(path, e.to_string()))?;
    let pkcs8 = match der {
        PrivateKeyDer::Pkcs8(key) => key,
        PrivateKeyDer::Pkcs1(key) => pkcs1_to_pkcs8(key.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(_) => {
            return Err(invalid(
                path,
                "an EC key in SEC1 form (EC PRIVATE KEY) is not supported; convert it with \
                 `openssl pkcs8 -topk8 -nocrypt`",
            ));
        }
        _ => return Err(invalid(path, "an unknown kind of private key")),
    };
    KeyPair::try_from(&pkcs8).map_err(|e| invalid(path, format!("not a usable private key: {e}")))
}

/// Wraps a PKCS#1 RSA key in PKCS#8 (RFC 5208): the version, the rsaEncryption
/// algorithm identifier and the key as an octet string.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> PrivatePkcs8KeyDer<'static> {
    const VERSION_AND_ALGORITHM: &[u8] = &[
        0x02, 0x01, 0x00, // INTEGER 0
        0x30, 0x0d, // SEQUENCE
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, // rsaEncryption
        0x05, 0x00, // NULL
    ];
    let mut octets = vec![0x04];
    der_length(pkcs1.len(), &mut octets);
    octets.extend_from_slice(pkcs1);
    let mut body = VERSION_AND_ALGORITHM.to_vec();
    body.extend_from_slice(&octets);
    let mut der = vec![0x30];
    der_length(body.len(), &mut der);
    der.extend_from_slice(&body);
    PrivatePkcs8KeyDer::from(der)
}

/// A DER length: short form below 128, else the big-endian bytes after their count.
fn der_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn private_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn der_lengths_use_the_short_and_long_forms() {
        let mut out = Vec::new();
        der_length(5, &mut out);
        der_length(0x80, &mut out);
        der_length(0x1234, &mut out);
        assert_eq!(out, [5, 0x81, 0x80, 0x82, 0x12, 0x34]);
    }
}
