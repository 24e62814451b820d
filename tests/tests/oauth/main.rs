//! Third-party app authentication over real sockets: the OAuth2 token endpoint (client
//! credentials, RFC 6749 errors), bearer use on `GET /v1/whoami`, expiry, introspection and
//! revocation; OAuth1-signed requests with replay and clock-skew refusals; scopes; rate
//! limits; and apps registered through the admin API and `odoo-gateway apps`.

mod apps;
mod common;
mod oauth1;
mod oauth2;
