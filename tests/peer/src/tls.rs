//! HTTPS for peers: a throwaway CA and a server certificate for the names a
//! test needs (the vendor's real host names), so the client under test does
//! real TLS with real name checks.

use std::sync::Arc;

use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};

/// A server configuration for `names`, and the PEM of the CA that issued it.
pub(crate) fn server_config(names: &[&str]) -> (Arc<rustls::ServerConfig>, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key generation");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Allama test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-signed CA");
    let leaf_key = rcgen::KeyPair::generate().expect("key generation");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = rcgen::CertificateParams::new(names)
        .expect("valid names")
        .signed_by(&leaf_key, &*ca)
        .expect("signing");
    let chain = vec![CertificateDer::from(leaf.der().to_vec()), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("default TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("a valid certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(config), ca.pem())
}
