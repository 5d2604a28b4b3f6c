//! End-to-end tests with real registry clients (skopeo, the Docker engine) and real backing
//! services (PostgreSQL).

mod auth;
mod docker;
mod postgres;
mod skopeo;
