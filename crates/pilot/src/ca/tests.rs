//! The CA on its own: roots made and reused, `cacerts` directories loaded, and what a
//! signed workload certificate holds.
//!
//! `testdata/rsa-cacerts` is an Istio-style plugged-in intermediate made with OpenSSL
//! 3 (`genrsa -traditional`, so both keys are PKCS#1 as Istio's samples are; 100-year
//! validity): a root, an intermediate it signed, and `cert-chain.pem` = intermediate +
//! root, as Istio's `tools/certs` Makefile writes it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mizzen_xds::ca::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;

fn sleep_id() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "sleep").unwrap()
}

/// A fresh key and a CSR naming `uri` (none when `None`).
fn csr(uri: Option<&str>) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(uri) = uri {
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    }
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// Verifies `chain` (leaf first, root last) with webpki as an mTLS server verifies a
/// client's certificate.
fn verify(chain: &[String], root: &str) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(root)).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        roots.into(),
        rustls::crypto::ring::default_provider().into(),
    )
    .build()
    .unwrap();
    let intermediates: Vec<_> = chain[1..chain.len() - 1].iter().map(|p| der(p)).collect();
    verifier
        .verify_client_cert(&der(&chain[0]), &intermediates, UnixTime::now())
        .expect("the chain verifies against the root");
}

fn uris(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(uri) => Some((*uri).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn lifetime(pem: &str) -> Duration {
    let der = der(pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let validity = cert.validity();
    Duration::from_secs((validity.not_after.timestamp() - validity.not_before.timestamp()) as u64)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_self_made_root_is_kept_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let first = Ca::load_or_create(&ca_dir, "cluster.local").unwrap();
    assert_eq!(mode(&ca_dir.join(CA_KEY)), 0o600, "the key is private");
    assert_eq!(mode(&ca_dir), 0o700);
    assert_eq!(
        std::fs::read_to_string(ca_dir.join(ROOT_CERT)).unwrap(),
        first.root_pem()
    );
    let again = Ca::load_or_create(&ca_dir, "cluster.local").unwrap();
    assert_eq!(again.root_pem(), first.root_pem(), "the root is reused");

    // A certificate signed after the restart verifies against the first root.
    let signed = again.sign_workload(&csr(None), &sleep_id(), None).unwrap();
    verify(&signed.chain, first.root_pem());
}

#[test]
fn a_workload_certificate_names_the_caller_for_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), "cluster.local").unwrap();
    let id = sleep_id();
    let signed = ca
        .sign_workload(&csr(Some(&id.to_string())), &id, None)
        .unwrap();
    assert_eq!(signed.chain.len(), 2, "the leaf, then the root");
    assert_eq!(signed.chain[1], ca.root_pem());
    let leaf_der = der(&signed.chain[0]);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    assert_eq!(uris(&leaf), ["spiffe://cluster.local/ns/default/sa/sleep"]);
    assert!(!leaf.is_ca());
    assert_eq!(lifetime(&signed.chain[0]), Duration::from_secs(24 * 3600));
    verify(&signed.chain, ca.root_pem());

    // A CSR without a URI gets the caller's identity all the same.
    let signed = ca.sign_workload(&csr(None), &id, None).unwrap();
    let leaf_der = der(&signed.chain[0]);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    assert_eq!(uris(&leaf), [id.to_string()]);
}

#[test]
fn the_requested_ttl_is_honoured_up_to_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), "cluster.local")
        .unwrap()
        .with_ttl(CertTtl {
            default: Duration::from_secs(3600),
            max: Duration::from_secs(7200),
        });
    let id = sleep_id();
    let short = ca
        .sign_workload(&csr(None), &id, Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(lifetime(&short.chain[0]), Duration::from_secs(10));
    let default = ca.sign_workload(&csr(None), &id, None).unwrap();
    assert_eq!(lifetime(&default.chain[0]), Duration::from_secs(3600));
    let err = ca
        .sign_workload(&csr(None), &id, Some(Duration::from_secs(7201)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "requested TTL 7201s is greater than the max allowed TTL 7200s"
    );
}

#[test]
fn a_csr_for_another_identity_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), "cluster.local").unwrap();
    let other = "spiffe://cluster.local/ns/prod/sa/payments";
    let err = ca
        .sign_workload(&csr(Some(other)), &sleep_id(), None)
        .unwrap_err();
    assert!(matches!(err, SignError::Identity { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the CSR asks for identity spiffe://cluster.local/ns/prod/sa/payments, \
         but the caller is spiffe://cluster.local/ns/default/sa/sleep"
    );
}

#[test]
fn a_csr_that_does_not_parse_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), "cluster.local").unwrap();
    for garbage in [
        "",
        "not a csr",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ] {
        let err = ca.sign_workload(garbage, &sleep_id(), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the CSR is not a valid PEM certificate signing request"),
            "{err}"
        );
    }
}

fn rsa_cacerts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ca/testdata/rsa-cacerts")
}

#[test]
fn an_istio_cacerts_intermediate_signs_with_its_chain() {
    let dir = rsa_cacerts();
    let ca = Ca::load(&dir).unwrap();
    let root = std::fs::read_to_string(dir.join(ROOT_CERT)).unwrap();
    let intermediate = std::fs::read_to_string(dir.join(CA_CERT)).unwrap();
    assert_eq!(der(ca.root_pem()), der(&root));
    let signed = ca.sign_workload(&csr(None), &sleep_id(), None).unwrap();
    // The root that cert-chain.pem repeats appears once, at the end.
    assert_eq!(signed.chain.len(), 3, "leaf, intermediate, root");
    assert_eq!(der(&signed.chain[1]), der(&intermediate));
    assert_eq!(der(&signed.chain[2]), der(&root));
    verify(&signed.chain, &root);
}

/// Writes a `cacerts` directory: a root and an intermediate it signs (`signed_by_root`
/// false makes one signed by an unrelated root), and optionally a wrong key.
fn write_cacerts(dir: &Path, signed_by_root: bool, wrong_key: bool) {
    let ca_params = |name: &str| {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    };
    let root_key = KeyPair::generate().unwrap();
    let root = ca_params("root").self_signed(&root_key).unwrap();
    let other_key = KeyPair::generate().unwrap();
    let signer = if signed_by_root {
        &root_key
    } else {
        &other_key
    };
    let issuer = Issuer::new(ca_params("root"), signer);
    let key = KeyPair::generate().unwrap();
    let intermediate = ca_params("intermediate").signed_by(&key, &issuer).unwrap();
    let stored_key = if wrong_key { &other_key } else { &key };
    std::fs::write(dir.join(ROOT_CERT), root.pem()).unwrap();
    std::fs::write(dir.join(CA_CERT), intermediate.pem()).unwrap();
    std::fs::write(dir.join(CA_KEY), stored_key.serialize_pem()).unwrap();
}

#[test]
fn cert_chain_pem_is_optional() {
    let dir = tempfile::tempdir().unwrap();
    write_cacerts(dir.path(), true, false);
    let ca = Ca::load(dir.path()).unwrap();
    let signed = ca.sign_workload(&csr(None), &sleep_id(), None).unwrap();
    assert_eq!(signed.chain.len(), 3);
    verify(&signed.chain, ca.root_pem());
}

#[test]
fn broken_cacerts_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_cacerts(dir.path(), false, false);
    let err = Ca::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(CA_CERT) && err.contains("does not reach root-cert.pem"),
        "{err}"
    );

    write_cacerts(dir.path(), true, true);
    let err = Ca::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(CA_KEY) && err.contains("is not the key of"),
        "{err}"
    );

    let missing = tempfile::tempdir().unwrap();
    let err = Ca::load(missing.path()).unwrap_err().to_string();
    assert!(
        err.contains(CA_CERT) && err.contains("No such file"),
        "{err}"
    );
}
