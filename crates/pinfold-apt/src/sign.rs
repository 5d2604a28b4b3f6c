//! OpenPGP signing of `Release` files: `InRelease` (clearsigned) and `Release.gpg` (detached,
//! armored), with rpgp.
//!
//! The key is Ed25519 (OpenPGP v4, algorithm EdDSA, which `gpgv` and `sqv` both verify and apt
//! has accepted since Debian 10) and every signature hashes with SHA-256: apt 2.7+ warns about,
//! and apt 3 rejects, SHA-1 signatures. A configured RSA key must have at least 3072 bits, the
//! smallest size apt 3 accepts without a warning.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, KeyType,
    SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, Password, PublicKeyTrait};

/// Smallest RSA modulus accepted for a configured key.
pub const MIN_RSA_BITS: usize = 3072;

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The text is not an armored OpenPGP secret key, or rpgp failed.
    #[error("OpenPGP: {0}")]
    Pgp(#[from] pgp::errors::Error),
    /// The key's algorithm is not one apt accepts for repository signatures.
    #[error("signing key algorithm {0:?} is not accepted (use Ed25519, or RSA of at least {MIN_RSA_BITS} bits)")]
    Algorithm(PublicKeyAlgorithm),
    /// An RSA key is smaller than [`MIN_RSA_BITS`].
    #[error("RSA signing key has {0} bits, fewer than the {MIN_RSA_BITS} apt accepts")]
    RsaTooSmall(usize),
    /// The key is protected by a passphrase; Pinfold signs unattended.
    #[error("the signing key is passphrase-protected; configure an unprotected key")]
    Protected,
    /// No signature of the message verifies with the given keys.
    #[error("no signature verifies with the configured key")]
    BadSignature,
    /// The only verifying signature uses a hash apt no longer trusts (MD5, SHA-1).
    #[error("the signature uses the weak hash {0:?}")]
    WeakHash(HashAlgorithm),
}

/// Parses armored public key(s) and returns how many there are (an upstream key is checked
/// when a mirror is created, not at its first sync).
///
/// # Errors
/// [`SignError::Pgp`] when the text holds no parsable public key.
pub fn parse_public_keys(keys_armored: &str) -> Result<usize, SignError> {
    let (keys, _) = SignedPublicKey::from_string_many(keys_armored)?;
    let mut count = 0;
    for key in keys {
        key?.verify()?;
        count += 1;
    }
    if count == 0 {
        return Err(SignError::BadSignature);
    }
    Ok(count)
}

/// Verifies a clearsigned message (an upstream `InRelease`) with the armored public key(s)
/// `keys_armored` (primary keys and their subkeys) and returns the signed text, `\n` line
/// endings, ending with a newline. What is outside the signature is never returned.
///
/// # Errors
/// [`SignError::Pgp`] for text that is not a clearsigned message or keys that do not parse;
/// [`SignError::BadSignature`] when no signature verifies; [`SignError::WeakHash`] for a
/// signature hashed with MD5 or SHA-1 (apt 3 rejects those too).
pub fn verify_clearsigned(message: &str, keys_armored: &str) -> Result<String, SignError> {
    let (message, _) = CleartextSignedMessage::from_string(message)?;
    let (keys, _) = SignedPublicKey::from_string_many(keys_armored)?;
    let mut weak = None;
    for key in keys {
        let key = key?;
        let mut found = vec![message.verify(&key.primary_key).ok()];
        found.extend(
            key.public_subkeys
                .iter()
                .map(|sub| message.verify(&sub.key).ok()),
        );
        for signature in found.into_iter().flatten() {
            match signature.hash_alg() {
                Some(h @ (HashAlgorithm::Md5 | HashAlgorithm::Sha1))
                | Some(h @ HashAlgorithm::Ripemd160) => weak = Some(h),
                _ => {
                    // The line break before the signature belongs to the framework (RFC 9580
                    // §7.1), so the signed text lacks the file's final newline: put it back.
                    let mut text = message.signed_text().replace("\r\n", "\n");
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    return Ok(text);
                }
            }
        }
    }
    Err(weak.map_or(SignError::BadSignature, SignError::WeakHash))
}

/// A repository signing key: the secret key and its self-signed public key.
#[derive(Clone)]
pub struct SigningKey {
    secret: SignedSecretKey,
    public: SignedPublicKey,
}

impl std::fmt::Debug for SigningKey {
    /// Shows only the fingerprint: secret material never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl SigningKey {
    /// Generates a new Ed25519 key with one user id (e.g. `Pinfold APT <apt@host>`).
    ///
    /// # Errors
    /// [`SignError::Pgp`] if rpgp fails (it should not for these parameters).
    pub fn generate(user_id: &str) -> Result<SigningKey, SignError> {
        let mut rng = rand::thread_rng();
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(user_id.into())
            .preferred_hash_algorithms([HashAlgorithm::Sha256].as_slice().into())
            .build()
            .map_err(|e| {
                SignError::Pgp(pgp::errors::Error::Message {
                    message: e.to_string(),
                    backtrace: None,
                })
            })?;
        let secret = params
            .generate(&mut rng)?
            .sign(&mut rng, &Password::empty())?;
        SigningKey::from_secret(secret)
    }

    /// Reads an armored secret key (`gpg --export-secret-keys --armor`, or [`Self::to_armored`]).
    ///
    /// # Errors
    /// [`SignError::Pgp`] for text that is not a secret key; [`SignError::Algorithm`],
    /// [`SignError::RsaTooSmall`] or [`SignError::Protected`] for a key apt would not accept or
    /// Pinfold cannot use unattended.
    pub fn from_armored(text: &str) -> Result<SigningKey, SignError> {
        let (secret, _) = SignedSecretKey::from_string(text)?;
        SigningKey::from_secret(secret)
    }

    fn from_secret(secret: SignedSecretKey) -> Result<SigningKey, SignError> {
        secret.verify()?;
        let public = secret.signed_public_key();
        match secret.algorithm() {
            PublicKeyAlgorithm::EdDSALegacy | PublicKeyAlgorithm::Ed25519 => {}
            PublicKeyAlgorithm::RSA => {
                // The serialised RSA parameters start with the modulus as an OpenPGP MPI,
                // whose first two bytes are its length in bits (RFC 9580 §3.2).
                let bits = public
                    .primary_key
                    .public_params()
                    .to_bytes()?
                    .get(..2)
                    .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                if bits < MIN_RSA_BITS {
                    return Err(SignError::RsaTooSmall(bits));
                }
            }
            other => return Err(SignError::Algorithm(other)),
        }
        if secret.secret_params().is_encrypted() {
            return Err(SignError::Protected);
        }
        Ok(SigningKey { secret, public })
    }

    /// Loads the key stored at `path`, or generates one and stores it there (mode 0600, written
    /// to a temp file, fsynced and renamed, then the directory fsynced) when the file does not
    /// exist. Returns the key and whether it was generated.
    ///
    /// Not through pinfold-store: a secret key is not content-addressed and must not be
    /// readable by others.
    ///
    /// # Errors
    /// [`SignError::Io`] when the file cannot be read or written; errors of
    /// [`Self::from_armored`] when it holds no usable key.
    pub fn load_or_generate(path: &Path, user_id: &str) -> Result<(SigningKey, bool), SignError> {
        match fs::read_to_string(path) {
            Ok(text) => return Ok((SigningKey::from_armored(&text)?, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(io_error("read", path, source)),
        }
        let key = SigningKey::generate(user_id)?;
        let armored = key.to_armored()?;
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| io_error("create directory", dir, e))?;
        let temp = path.with_extension("tmp");
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(armored.as_bytes())?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, path)?;
            File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_error("write", path, e)
        })?;
        Ok((key, true))
    }

    /// The secret key, armored (for backups and [`Self::from_armored`]).
    ///
    /// # Errors
    /// [`SignError::Pgp`] if serialising fails.
    pub fn to_armored(&self) -> Result<String, SignError> {
        Ok(self.secret.to_armored_string(ArmorOptions::default())?)
    }

    /// The public key, armored: what clients put in `/etc/apt/keyrings/<name>.asc` and name in
    /// `signed-by=`.
    ///
    /// # Errors
    /// [`SignError::Pgp`] if serialising fails.
    pub fn public_key_armored(&self) -> Result<String, SignError> {
        Ok(self.public.to_armored_string(ArmorOptions::default())?)
    }

    /// The public key as binary OpenPGP packets (a `.gpg` keyring file for `signed-by=`).
    ///
    /// # Errors
    /// [`SignError::Pgp`] if serialising fails.
    pub fn public_key_binary(&self) -> Result<Vec<u8>, SignError> {
        Ok(self.public.to_bytes()?)
    }

    /// The key's fingerprint, upper-case hex (as `gpg --fingerprint` shows it, without spaces).
    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.public.fingerprint())
    }

    /// `text` clearsigned (`InRelease`), SHA-256.
    ///
    /// # Errors
    /// [`SignError::Pgp`] if signing fails.
    pub fn clearsign(&self, text: &str) -> Result<String, SignError> {
        let message = CleartextSignedMessage::new_many(text, |normalized| {
            let signature = DetachedSignature::sign_text_data(
                rand::thread_rng(),
                &*self.secret,
                &Password::empty(),
                HashAlgorithm::Sha256,
                normalized.as_bytes(),
            )?;
            Ok(vec![signature.signature])
        })?;
        Ok(message.to_armored_string(ArmorOptions::default())?)
    }

    /// An armored detached binary signature of `data` (`Release.gpg`), SHA-256.
    ///
    /// # Errors
    /// [`SignError::Pgp`] if signing fails.
    pub fn detached_sign(&self, data: &[u8]) -> Result<String, SignError> {
        let signature = DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &*self.secret,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
        )?;
        Ok(signature.to_armored_string(ArmorOptions::default())?)
    }
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> SignError {
    SignError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}
