//! End-to-end tests with real registry clients: skopeo and the Docker engine.

mod docker;
mod skopeo;
