//! How pilot fetches RequestAuthentication `jwksUri`s: the flag `mizzen pilot` and
//! `mizzen up` share. istiod's environment (`PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`,
//! `JWKS_RESOLVER_INSECURE_SKIP_VERIFY`) is read by pilot itself.

use std::path::PathBuf;

use mizzen_pilot::server::JwksOptions;
use mizzen_pilot::server::jwks::ExtraRootCaError;

/// Trust for `https://` issuers beyond the system's roots.
#[derive(Debug, Clone, clap::Args)]
pub struct JwksArgs {
    /// Trust the CAs in this PEM file for https:// jwksUri issuers, beside the system's
    /// roots (istiod reads them from /cacerts/extra.pem, Istio's chart value
    /// `pilot.jwksResolverExtraRootCA`).
    #[arg(long, value_name = "FILE")]
    pub jwks_resolver_extra_root_ca: Option<PathBuf>,
}

impl JwksArgs {
    /// istiod's options from the environment, with the extra CAs given.
    pub fn options(&self) -> Result<JwksOptions, ExtraRootCaError> {
        let mut options = JwksOptions::from_env();
        if let Some(path) = &self.jwks_resolver_extra_root_ca {
            options.trust_extra_root_ca(path)?;
        }
        Ok(options)
    }
}
