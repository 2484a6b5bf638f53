//! Why a token fails, in Envoy's words (its `jwt_verify_lib` status texts, which the
//! client reads as the 401 body).

/// A token that is missing or not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JwtError {
    #[error("Jwt is missing")]
    Missing,
    #[error("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")]
    BadFormat,
    #[error("Jwt header is an invalid Base64url encoded")]
    HeaderBadBase64,
    #[error("Jwt header is an invalid JSON")]
    HeaderBadJson,
    #[error("Jwt header [alg] field is required and must be a string")]
    HeaderBadAlg,
    #[error("Jwt payload is an invalid Base64url encoded")]
    PayloadBadBase64,
    #[error("Jwt payload is an invalid JSON")]
    PayloadBadJson,
    #[error("Jwt signature is an invalid Base64url encoded")]
    SignatureBadBase64,
    #[error("Jwt issuer is not configured")]
    UnknownIssuer,
    #[error("Jwt not yet valid")]
    NotYetValid,
    #[error("Jwt is expired")]
    Expired,
    #[error("Audiences in Jwt are not allowed")]
    AudienceNotAllowed,
    #[error("Jwks remote fetch is failed")]
    JwksFetchFailed,
    #[error("Jwks doesn't have key to match kid or alg from Jwt")]
    NoMatchingKey,
    #[error("Jwt verification fails")]
    VerificationFails,
}
