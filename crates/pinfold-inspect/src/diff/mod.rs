//! Image comparison.
