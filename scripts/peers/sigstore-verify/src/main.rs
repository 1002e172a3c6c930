//! `sigstore-verify REFERENCE KEY.pub`: finds the cosign signature image
//! of REFERENCE (a plain-HTTP registry on 127.0.0.1), keeps the signature
//! layers over its digest, and requires one signed by KEY. Exit 0 when
//! verified, 1 otherwise.

use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
use sigstore::cosign::CosignCapabilities;
use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, reference, key] = args.as_slice() else {
        eprintln!("usage: sigstore-verify REFERENCE KEY.pub");
        std::process::exit(2);
    };
    match verify(reference, key).await {
        Ok(layers) => println!("verified {reference} ({layers} signature layers)"),
        Err(e) => {
            eprintln!("sigstore-verify: {reference}: {e}");
            std::process::exit(1);
        }
    }
}

/// The number of signature layers over the image's digest.
async fn verify(reference: &str, key: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let image: OciReference = reference.parse()?;
    let key = std::fs::read(key)?;
    let config = ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    };
    let mut client = sigstore::cosign::ClientBuilder::default()
        .with_oci_client_config(config)
        .build()?;
    let auth = &Auth::Anonymous;
    // Finds the image's digest and its signature image, as cosign does.
    let layers = client.trusted_signature_layers(auth, &image).await?;
    let constraints: VerificationConstraintVec = vec![Box::new(PublicKeyVerifier::try_from(&key)?)];
    sigstore::cosign::verify_constraints(&layers, constraints.iter()).map_err(|e| {
        format!(
            "{} constraint(s) not satisfied",
            e.unsatisfied_constraints.len()
        )
    })?;
    Ok(layers.len())
}
