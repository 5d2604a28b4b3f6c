//! pinfold-client against real peers. Debian's `docker-registry` (distribution 2.8; the tests
//! fail, not skip, without it) is the registry: anonymous, htpasswd Basic, and `auth: token`
//! behind a JWT-signing realm. Small axum apps on 127.0.0.1:0 play what distribution cannot be
//! made to do: redirects to another host, tags pagination, rate limits, stalled bodies, and
//! token realms whose behaviour the test controls.

mod basic_auth;
mod errors;
mod harness;
mod jwt_realm;
mod pull;
mod push;
mod redirect;
mod tags;
mod token;
