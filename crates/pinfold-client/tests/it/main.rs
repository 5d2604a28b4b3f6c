//! pinfold-client against real peers: Debian's `docker-registry` (distribution 2.8) for the
//! registry side, small axum apps on 127.0.0.1:0 for what distribution cannot be made to do
//! (redirects to another host, opaque token realms).

mod basic_auth;
mod errors;
mod harness;
mod jwt_realm;
mod pull;
mod redirect;
mod tags;
mod token;
