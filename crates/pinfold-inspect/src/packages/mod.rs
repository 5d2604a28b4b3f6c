//! The OS packages installed in an image's root filesystem, read from the package manager's own
//! database, so `pinfold diff` can say which packages changed between two images.
//!
//! Only dpkg (Debian, Ubuntu, distroless) exists yet: [`dpkg`].

pub mod dpkg;
