//! Publisher keys and signatures (ed25519, through ring).

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::PackageError;
use crate::file::Signature;

const CONTEXT: &[u8] = b"allama package v1\n";
const PUBLIC_PREFIX: &str = "ed25519:";
const PRIVATE_HEADER: &str = "allama-ed25519-private-key:";

/// A publisher's public key, written `ed25519:<64 hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", hex::encode(self.0))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hexpart = s
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or_else(|| format!("a public key starts with `{PUBLIC_PREFIX}`"))?;
        let bytes = hex::decode(hexpart).map_err(|_| "the key is not hexadecimal".to_string())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "an ed25519 public key is 32 bytes (64 hex digits)".to_string())?;
        Ok(PublicKey(key))
    }
}

/// A publisher's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A new random key; returns it and its PKCS#8 file contents.
    pub fn generate() -> Result<(SigningKey, String), PackageError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| PackageError::Key("could not generate a key".into()))?;
        let text = format!("{PRIVATE_HEADER}{}\n", hex::encode(pkcs8.as_ref()));
        Ok((Self::from_file_text(&text)?, text))
    }

    /// Read a key file written by [`SigningKey::generate`].
    pub fn from_file_text(text: &str) -> Result<SigningKey, PackageError> {
        let hexpart = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(PRIVATE_HEADER))
            .ok_or_else(|| {
                PackageError::Key(format!(
                    "not an Allama private key file (expected a line starting `{PRIVATE_HEADER}`)"
                ))
            })?;
        let der = hex::decode(hexpart)
            .map_err(|_| PackageError::Key("the private key is not hexadecimal".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| PackageError::Key(format!("invalid private key: {e}")))?;
        Ok(SigningKey { pair })
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(
            self.pair
                .public_key()
                .as_ref()
                .try_into()
                .expect("ed25519 keys are 32 bytes"),
        )
    }

    /// Sign a package body.
    pub fn sign(&self, body: &[u8]) -> Signature {
        let sig = self.pair.sign(&message(body));
        Signature {
            public_key: self.public_key().0,
            signature: sig.as_ref().try_into().expect("64 bytes"),
        }
    }
}

/// What is signed: a context string and the body's SHA-256.
fn message(body: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(digest.as_ref());
    m
}

/// Whether `sig` is a valid signature of `body` by its key.
pub fn verify(body: &[u8], sig: &Signature) -> bool {
    UnparsedPublicKey::new(&ED25519, sig.public_key)
        .verify(&message(body), &sig.signature)
        .is_ok()
}

/// The same as [`verify`] for many signatures, hashing the body once.
pub fn verify_all(body: &[u8], sigs: &[Signature]) -> Vec<bool> {
    let m = message(body);
    sigs.iter()
        .map(|s| {
            UnparsedPublicKey::new(&ED25519, s.public_key)
                .verify(&m, &s.signature)
                .is_ok()
        })
        .collect()
}
