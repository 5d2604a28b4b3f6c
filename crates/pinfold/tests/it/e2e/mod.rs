//! End-to-end tests with real registry clients (skopeo, the Docker engine) and real backing
//! services (PostgreSQL, Garage).

mod auth;
mod disaster;
mod docker;
mod export_import;
mod object_storage;
mod postgres;
mod replicas;
mod skopeo;
