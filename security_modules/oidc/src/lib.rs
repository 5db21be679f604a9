//! OIDC bearer-token validation (to be filled in).
