//! The `probe` step (not written yet).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the probe step is not implemented yet")]
    NotImplemented,
}

pub fn run(_input: &[u8], _out: &Path) -> Result<(), Error> {
    Err(Error::NotImplemented)
}
