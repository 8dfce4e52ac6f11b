//! Integrity: the SHA-256 of exactly the file bytes fed to the model loader, computed as they
//! stream in (a multi-GB file is never held whole), checked against the one the caller asked for
//! before the model is usable.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};

/// A running SHA-256 of a file fed from its first byte on, and the digest it must end at.
pub struct Integrity {
    hasher: Sha256,
    want: [u8; 32],
    /// Bytes hashed so far (the offset the next bytes must start at).
    fed: u64,
}

impl Integrity {
    /// Expects the SHA-256 `want_hex` (64 hex digits).
    pub fn new(want_hex: &str) -> Result<Integrity> {
        let bad = || Error::InvalidRequest(format!("integrity must be 64 hex digits of SHA-256, not {want_hex:?}"));
        if want_hex.len() != 64 || !want_hex.is_ascii() {
            return Err(bad());
        }
        let mut want = [0u8; 32];
        for (i, b) in want.iter_mut().enumerate() {
            *b = u8::from_str_radix(&want_hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Integrity { hasher: Sha256::new(), want, fed: 0 })
    }

    /// Hashes `bytes`, which must be the file's bytes at `offset`, right after those fed before.
    pub fn update(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        if offset != self.fed {
            return Err(Error::Integrity(format!(
                "the model's bytes arrived out of order (at {offset} after {}): they cannot be verified",
                self.fed
            )));
        }
        self.hasher.update(bytes);
        self.fed += bytes.len() as u64;
        Ok(())
    }

    /// Bytes hashed so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// Ok when the bytes fed have the expected digest; an Integrity error naming both otherwise.
    pub fn check(self) -> Result<()> {
        let got = self.hasher.finalize();
        if got.as_slice() == self.want {
            return Ok(());
        }
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        Err(Error::Integrity(format!(
            "the model ({} bytes) has SHA-256 {}, not the {} that integrity asks for; it was not used or kept",
            self.fed,
            hex(&got),
            hex(&self.want)
        )))
    }
}
