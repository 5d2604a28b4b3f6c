//! Registry tokens: compact JWTs signed with ES256, as the Docker token authentication
//! specification describes (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`, `access`).
//!
//! Pinfold is both the token issuer (`/v2/token`) and the resource server, so only it needs to
//! verify them: the public key never leaves the process.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::permissions::{Action, Actions, Scope, ScopeTarget};

/// The issuer written into and required from every token.
pub const ISSUER: &str = "pinfold";

/// Why a key could not be loaded or a token was refused. The messages name no secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The key file cannot be read or written.
    #[error("JWT signing key {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not a PKCS#8 P-256 key, or signing failed.
    #[error("JWT signing key is not a PKCS#8 ECDSA P-256 key, or signing failed")]
    Key,
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// Another algorithm than ES256.
    #[error("token algorithm is not ES256")]
    Algorithm,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    Signature,
    /// Issued for another service or by another issuer.
    #[error("token is for another service")]
    Audience,
    /// Past `exp` or before `nbf`.
    #[error("token has expired or is not yet valid")]
    Expired,
}

/// One `access` entry: what the token allows on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name (or `catalog`).
    pub name: String,
    /// Granted actions (`pull`, `push`, ...; `*` for the catalog).
    pub actions: Vec<String>,
}

/// The claims of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer, [`ISSUER`].
    pub iss: String,
    /// Subject: the user name, or empty for anonymous.
    pub sub: String,
    /// Audience: the service name the token is for.
    pub aud: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Not before, unix seconds.
    pub nbf: i64,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Unique id.
    pub jti: String,
    /// What the token allows.
    pub access: Vec<AccessEntry>,
}

impl Claims {
    /// The `access` claim as a [`Scope`] (exact repository names; unknown actions dropped).
    pub fn scope(&self) -> Scope {
        let entries = self
            .access
            .iter()
            .filter_map(|entry| match entry.kind.as_str() {
                "repository" if !entry.name.contains('*') => Some((
                    ScopeTarget::Repository(entry.name.clone()),
                    entry
                        .actions
                        .iter()
                        .filter_map(|a| a.parse::<Action>().ok())
                        .collect::<Actions>(),
                )),
                "registry" if entry.name == "catalog" => {
                    Some((ScopeTarget::Catalog, Actions::NONE.with(Action::Pull)))
                }
                _ => None,
            })
            .collect();
        Scope { entries }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
}

/// Signs and verifies registry tokens with one ES256 key.
#[derive(Debug)]
pub struct JwtSigner {
    key: EcdsaKeyPair,
    public: Vec<u8>,
    rng: SystemRandom,
}

impl JwtSigner {
    /// Loads the PKCS#8 key at `path`, generating it (mode 0600) when the file does not exist.
    ///
    /// # Errors
    /// [`JwtError::KeyFile`], [`JwtError::Key`].
    pub fn load_or_generate(path: &Path) -> Result<JwtSigner, JwtError> {
        let file_error = |source| JwtError::KeyFile {
            path: path.to_owned(),
            source,
        };
        let rng = SystemRandom::new();
        let pkcs8 = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc =
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                        .map_err(|_| JwtError::Key)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(file_error)?;
                }
                write_private(path, doc.as_ref()).map_err(file_error)?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(file_error(e)),
        };
        JwtSigner::from_pkcs8(&pkcs8)
    }

    /// A signer over a PKCS#8 P-256 key.
    ///
    /// # Errors
    /// [`JwtError::Key`].
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<JwtSigner, JwtError> {
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                .map_err(|_| JwtError::Key)?;
        let public = key.public_key().as_ref().to_vec();
        Ok(JwtSigner { key, public, rng })
    }

    /// A fresh random `jti`.
    ///
    /// # Errors
    /// [`JwtError::Key`] when the random source fails.
    pub fn new_id(&self) -> Result<String, JwtError> {
        let mut id = [0u8; 16];
        self.rng.fill(&mut id).map_err(|_| JwtError::Key)?;
        Ok(URL_SAFE_NO_PAD.encode(id))
    }

    /// The compact JWS of `claims`.
    ///
    /// # Errors
    /// [`JwtError::Key`] when signing fails.
    pub fn sign(&self, claims: &Claims) -> Result<String, JwtError> {
        let header = Header {
            alg: "ES256".into(),
            typ: "JWT".into(),
        };
        let encode = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        let header = serde_json::to_vec(&header).map_err(|_| JwtError::Key)?;
        let body = serde_json::to_vec(claims).map_err(|_| JwtError::Key)?;
        let signing_input = format!("{}.{}", encode(&header), encode(&body));
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| JwtError::Key)?;
        Ok(format!("{signing_input}.{}", encode(sig.as_ref())))
    }

    /// Verifies `token`'s signature, issuer, audience (`service`) and validity at `now` (unix
    /// seconds, 30 s leeway for `nbf`), and returns its claims.
    ///
    /// # Errors
    /// [`JwtError::Malformed`], [`JwtError::Algorithm`], [`JwtError::Signature`],
    /// [`JwtError::Audience`], [`JwtError::Expired`].
    pub fn verify(&self, token: &str, service: &str, now: i64) -> Result<Claims, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| JwtError::Malformed);
        let parsed: Header =
            serde_json::from_slice(&decode(header)?).map_err(|_| JwtError::Malformed)?;
        if parsed.alg != "ES256" {
            return Err(JwtError::Algorithm);
        }
        let signing_input_len = header.len() + 1 + body.len();
        let signing_input = token.get(..signing_input_len).ok_or(JwtError::Malformed)?;
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(signing_input.as_bytes(), &decode(sig)?)
            .map_err(|_| JwtError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&decode(body)?).map_err(|_| JwtError::Malformed)?;
        if claims.iss != ISSUER || claims.aud != service {
            return Err(JwtError::Audience);
        }
        if now >= claims.exp || now + 30 < claims.nbf {
            return Err(JwtError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: "pinfold".into(),
            exp: now + 300,
            nbf: now,
            iat: now,
            jti: "x".into(),
            access: vec![AccessEntry {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into(), "push".into()],
            }],
        }
    }

    #[test]
    fn sign_verify_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth/key.pk8");
        let signer = JwtSigner::load_or_generate(&path).unwrap();
        // The second start loads the same key: tokens survive restarts.
        let again = JwtSigner::load_or_generate(&path).unwrap();
        let now = 1_700_000_000;
        let token = signer.sign(&claims(now)).unwrap();
        assert_eq!(again.verify(&token, "pinfold", now).unwrap(), claims(now));
        let scope = claims(now).scope();
        assert!(scope.allows("team/app", Action::Push));
        assert!(!scope.allows("team/app2", Action::Pull));
        assert!(matches!(
            signer.verify(&token, "other", now),
            Err(JwtError::Audience)
        ));
        assert!(matches!(
            signer.verify(&token, "pinfold", now + 300),
            Err(JwtError::Expired)
        ));
        // Another key's token (forged) does not verify.
        let other = JwtSigner::load_or_generate(&dir.path().join("other.pk8")).unwrap();
        let forged = other.sign(&claims(now)).unwrap();
        assert!(matches!(
            signer.verify(&forged, "pinfold", now),
            Err(JwtError::Signature)
        ));
        // Changed claims under the original signature do not verify.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut wider = claims(now);
        wider.access[0].name = "*".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wider).unwrap());
        assert!(matches!(
            signer.verify(&parts.join("."), "pinfold", now),
            Err(JwtError::Signature)
        ));
        // alg=none is refused before anything else.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert!(matches!(
            signer.verify(&none, "pinfold", now),
            Err(JwtError::Algorithm)
        ));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(matches!(
                signer.verify(bad, "pinfold", now),
                Err(JwtError::Malformed)
            ));
        }
    }
}
