//! RFC 6962 signed certificate timestamps, as embedded in a certificate:
//! the TLS-encoded list, and the bytes a CT log signs for a
//! precertificate. Small and hand-written: the crates that parse SCTs pull
//! in an X.509 and TLS stack of their own.

use super::KeylessError;

/// One SCT (version 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sct {
    pub log_id: Vec<u8>,
    pub timestamp_ms: u64,
    pub extensions: Vec<u8>,
    /// ASN.1 DER ECDSA signature (the `DigitallySigned` body).
    pub signature: Vec<u8>,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], KeylessError> {
        if self.0.len() < n {
            return Err(KeylessError::BadSct("the SCT list is truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn uint(&mut self, n: usize) -> Result<u64, KeylessError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
    }

    fn vec(&mut self, len_bytes: usize) -> Result<&'a [u8], KeylessError> {
        let n = self.uint(len_bytes)? as usize;
        self.take(n)
    }
}

/// Parses a `SignedCertificateTimestampList`.
pub fn parse_list(bytes: &[u8]) -> Result<Vec<Sct>, KeylessError> {
    let mut outer = Reader(bytes);
    let mut list = Reader(outer.vec(2)?);
    let mut out = Vec::new();
    while !list.0.is_empty() {
        let mut r = Reader(list.vec(2)?);
        let version = r.uint(1)?;
        if version != 0 {
            return Err(KeylessError::BadSct(format!(
                "SCT version {version} is not v1"
            )));
        }
        let log_id = r.take(32)?.to_vec();
        let timestamp_ms = r.uint(8)?;
        let extensions = r.vec(2)?.to_vec();
        let (hash, sig_alg) = (r.uint(1)?, r.uint(1)?);
        // sha256 (4) with ecdsa (3): what Sigstore's CT log signs with.
        if (hash, sig_alg) != (4, 3) {
            return Err(KeylessError::BadSct(format!(
                "SCT signature algorithm ({hash}, {sig_alg}) is not ECDSA with SHA-256"
            )));
        }
        let signature = r.vec(2)?.to_vec();
        out.push(Sct {
            log_id,
            timestamp_ms,
            extensions,
            signature,
        });
    }
    if out.is_empty() {
        return Err(KeylessError::NoSct);
    }
    Ok(out)
}

impl Sct {
    /// The `digitally-signed` input for a precertificate entry.
    pub fn precert_signed_data(&self, issuer_key_hash: &[u8; 32], tbs: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(tbs.len() + 64);
        out.push(0); // version v1
        out.push(0); // signature_type certificate_timestamp
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // entry_type precert_entry
        out.extend_from_slice(issuer_key_hash);
        out.extend_from_slice(&(tbs.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(tbs);
        out.extend_from_slice(&(self.extensions.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.extensions);
        out
    }

    /// Serializes a list of SCTs as RFC 6962 embeds it (for test
    /// authorities and the driver's own test Fulcio).
    pub fn encode_list(scts: &[Sct]) -> Vec<u8> {
        let mut list = Vec::new();
        for s in scts {
            let mut one = vec![0u8];
            one.extend_from_slice(&s.log_id);
            one.extend_from_slice(&s.timestamp_ms.to_be_bytes());
            one.extend_from_slice(&(s.extensions.len() as u16).to_be_bytes());
            one.extend_from_slice(&s.extensions);
            one.extend_from_slice(&[4, 3]);
            one.extend_from_slice(&(s.signature.len() as u16).to_be_bytes());
            one.extend_from_slice(&s.signature);
            list.extend_from_slice(&(one.len() as u16).to_be_bytes());
            list.extend_from_slice(&one);
        }
        let mut out = (list.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&list);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_truncation_is_an_error() {
        let s = Sct {
            log_id: vec![7; 32],
            timestamp_ms: 1_700_000_000_123,
            extensions: vec![],
            signature: vec![0x30, 1, 2],
        };
        let bytes = Sct::encode_list(&[s.clone(), s.clone()]);
        assert_eq!(parse_list(&bytes).unwrap(), vec![s.clone(), s]);
        assert!(parse_list(&bytes[..bytes.len() - 1]).is_err());
        assert!(matches!(parse_list(&[0, 0]), Err(KeylessError::NoSct)));
    }
}
