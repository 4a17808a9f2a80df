//! Credentials' secrets at rest and in memory: [`Secret`], a value that never shows itself;
//! [`MasterKey`], from `CAIRN_MASTER_KEY` or a key file made with mode 0600 on first use; and
//! sealing, XChaCha20-Poly1305 with a fresh random nonce per write and the credential's id as
//! associated data (a sealed value moved to another credential does not open). A wrong key is
//! an error that says so, never garbage: the AEAD's tag fails.
//!
//! Nonces come from the operating system's generator (`getrandom`), not from the engine's
//! injected entropy: they decide nothing a run does, and must never repeat, also under a
//! seeded simulation.

use std::{
    fmt,
    fs::OpenOptions,
    io::{ErrorKind, Read, Write},
    path::{Path, PathBuf},
};

use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, Generate, Key, KeyInit, Payload},
};
use serde::{Serialize, Serializer};

/// The environment variable holding the master key (64 hex digits).
pub const MASTER_KEY_VAR: &str = "CAIRN_MASTER_KEY";
/// The first byte of a sealed value: the format, so it can change.
const SEALED_V1: u8 = 1;
/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;

/// A secret value (a token, a password). `Debug`, `Display` and `Serialize` show
/// `[redacted]`; only [`expose`](Secret::expose) gives the value, for the request that needs
/// it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself. Put it only where it is used (a header of the request being sent);
    /// never in a step's output, an error or a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

/// Why the master key cannot be had or a sealed value cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// `CAIRN_MASTER_KEY` or the key file does not hold a key.
    #[error(
        "{source_name} does not hold a master key: {why}; a key is 32 bytes written as 64 hex \
         digits (e.g. from `openssl rand -hex 32`)"
    )]
    MalformedKey {
        /// Where the key came from.
        source_name: String,
        /// What is wrong with it.
        why: String,
    },
    /// The key file can be read by others.
    #[error(
        "the key file {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}` \
         (and consider the key leaked if others did read it)"
    )]
    KeyFileOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file could not be read or made.
    #[error("cannot use the key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The engine was built without a master key.
    #[error(
        "no master key is configured, so credentials cannot be read or written; give the engine \
         one (EngineBuilder::master_key), or set {MASTER_KEY_VAR} for the CLI"
    )]
    NoKey,
    /// The sealed value does not open with this key (or was moved to another credential).
    #[error(
        "credential {credential:?} cannot be decrypted with this master key: it was written \
         with another key ({MASTER_KEY_VAR} or the key file changed?). Set the key it was \
         written with; `credentials rotate-key` moves every credential to a new key"
    )]
    WrongKey {
        /// The credential's id.
        credential: String,
    },
    /// The stored bytes are not a sealed value of a format this version knows.
    #[error(
        "credential {credential:?} is stored in an unknown format; was it written by a newer Cairn?"
    )]
    UnknownFormat {
        /// The credential's id.
        credential: String,
    },
}

/// The key every credential is sealed with. `Debug` does not show it.
#[derive(Clone)]
pub struct MasterKey(Key<XChaCha20Poly1305>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> MasterKey {
        MasterKey(Key::<XChaCha20Poly1305>::generate())
    }

    /// The key from `CAIRN_MASTER_KEY` when it is set, else from `key_file`, which is made
    /// (mode 0600, a fresh key) when it does not exist yet.
    pub fn load(key_file: &Path) -> Result<MasterKey, VaultError> {
        match std::env::var(MASTER_KEY_VAR) {
            Ok(text) => MasterKey::from_hex(&text, MASTER_KEY_VAR),
            Err(_) => MasterKey::from_file(key_file),
        }
    }

    /// The key in `path` (64 hex digits), made with mode 0600 if the file does not exist.
    /// Refuses a file other users can read.
    pub fn from_file(path: &Path) -> Result<MasterKey, VaultError> {
        let failed = |source| VaultError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match open_private(path) {
            Ok(mut file) => {
                check_private(path, &file)?;
                let mut text = String::new();
                file.read_to_string(&mut text).map_err(failed)?;
                MasterKey::from_hex(&text, &format!("the key file {}", path.display()))
            }
            Err(error) if error.kind() == ErrorKind::NotFound => {
                let key = MasterKey::generate();
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(failed)?;
                }
                let mut file = create_private(path).map_err(failed)?;
                writeln!(file, "{}", key.to_hex()).map_err(failed)?;
                file.sync_all().map_err(failed)?;
                Ok(key)
            }
            Err(error) => Err(failed(error)),
        }
    }

    /// A key written as 64 hex digits (surrounding blanks ignored); `source_name` names where
    /// it came from in errors (never the text itself).
    pub fn from_hex(text: &str, source_name: &str) -> Result<MasterKey, VaultError> {
        let malformed = |why: String| VaultError::MalformedKey {
            source_name: source_name.to_owned(),
            why,
        };
        let text = text.trim();
        if text.len() != 64 {
            return Err(malformed(format!(
                "it has {} characters, not 64",
                text.len()
            )));
        }
        let mut key = Key::<XChaCha20Poly1305>::default();
        for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).unwrap_or("");
            *byte = u8::from_str_radix(pair, 16)
                .map_err(|_| malformed("it has characters that are not hex digits".into()))?;
        }
        Ok(MasterKey(key))
    }

    /// The key as 64 hex digits, for writing a key file.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// `plaintext` sealed for credential `credential`: format byte, nonce, ciphertext + tag.
    pub fn seal(&self, credential: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XNonce::generate();
        let payload = Payload {
            msg: plaintext,
            aad: credential.as_bytes(),
        };
        let ciphertext = XChaCha20Poly1305::new(&self.0)
            .encrypt(&nonce, payload)
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// The plaintext `sealed` holds, if it was sealed with this key for `credential`.
    pub fn open(&self, credential: &str, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        let (format, rest) = sealed
            .split_first()
            .ok_or_else(|| VaultError::UnknownFormat {
                credential: credential.to_owned(),
            })?;
        if *format != SEALED_V1 || rest.len() < NONCE_LEN {
            return Err(VaultError::UnknownFormat {
                credential: credential.to_owned(),
            });
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| VaultError::UnknownFormat {
            credential: credential.to_owned(),
        })?;
        let payload = Payload {
            msg: ciphertext,
            aad: credential.as_bytes(),
        };
        XChaCha20Poly1305::new(&self.0)
            .decrypt(&nonce, payload)
            .map_err(|_| VaultError::WrongKey {
                credential: credential.to_owned(),
            })
    }
}

/// Where an engine takes its master key from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// This key.
    Key(MasterKey),
    /// `CAIRN_MASTER_KEY` when it is set, else this key file, made on first use (see
    /// [`MasterKey::load`]). Nothing is read or made until a credential is.
    File(PathBuf),
}

/// The engine's master key, loaded on first use and replaced by a rotation.
#[derive(Debug, Default)]
pub(crate) struct Keyring {
    source: Option<KeySource>,
    loaded: std::sync::RwLock<Option<MasterKey>>,
}

impl Keyring {
    pub(crate) fn new(source: Option<KeySource>) -> Keyring {
        Keyring {
            source,
            loaded: std::sync::RwLock::default(),
        }
    }

    /// The key, loading it the first time.
    pub(crate) fn key(&self) -> Result<MasterKey, VaultError> {
        if let Some(key) = &*self.loaded.read().unwrap_or_else(|e| e.into_inner()) {
            return Ok(key.clone());
        }
        let key = match &self.source {
            Some(KeySource::Key(key)) => key.clone(),
            Some(KeySource::File(path)) => MasterKey::load(path)?,
            None => return Err(VaultError::NoKey),
        };
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(key.clone());
        Ok(key)
    }

    /// Uses `key` from now on (after a rotation).
    pub(crate) fn replace(&self, key: MasterKey) {
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }
}

/// Opens an existing file for reading.
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new().read(true).open(path)
}

/// Makes a new file only its owner can read and write.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Refuses a key file that users other than its owner can read or write.
fn check_private(path: &Path, file: &std::fs::File) -> Result<(), VaultError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(|source| VaultError::KeyFile {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(VaultError::KeyFileOpen {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, file);
    Ok(())
}

#[cfg(test)]
#[path = "vault_tests.rs"]
mod tests;
