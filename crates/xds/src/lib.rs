//! xDS plumbing: ADS server and client, type URLs, versions, nonces, ACK/NACK.
