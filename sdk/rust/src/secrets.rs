//! For the rare action that must read or sign with a secret itself. Most
//! never need this: [`crate::http`] sends secrets by handle.

use crate::backend::{self, Failure};
use crate::{Error, Result};

fn error(f: Failure) -> Error {
    match f {
        Failure::NotFound(m) => Error::internal(m),
        Failure::Denied(m) | Failure::Quota(m) | Failure::Invalid(m) | Failure::Unavailable(m) => {
            Error::denied(m)
        }
    }
}

/// The plaintext (needs `reveal = true` in the grant; audited).
pub fn reveal(name: &str) -> Result<String> {
    backend::reveal(name).map_err(error)
}

/// HMAC-SHA256 of `data` keyed by the secret (needs `hmac = true`).
pub fn hmac_sha256(name: &str, data: &[u8]) -> Result<Vec<u8>> {
    backend::hmac(name, data).map_err(error)
}
