//! End-to-end tests with real registry clients (skopeo, the Docker engine) and real backing
//! services (PostgreSQL).

mod auth;
mod disaster;
mod docker;
mod export_import;
mod postgres;
mod skopeo;
