//! Per-box passwords for edge boxes that cannot hold a client certificate (brownfield boxes
//! whose firmware does server-verified TLS and a user name and password, nothing more). Such a
//! box connects to the password listener (`[broker.passwords]`, TLS with the broker's
//! certificate), logs in with its tenant id as user name (`boxX0001` for `box-0001`, as for a
//! certificate) and its password; the broker's auth hook checks them here, and the patched
//! rumqttd then confines the connection to `/tenants/{tenant}/` exactly as a certificate would,
//! so ingest's tenant check binds it to its household.
//!
//! The file holds one line per box, `{tenant} {salt} {sha256(salt || password)}` in hex, written
//! by `gateway certs password`. Passwords are 128 random bits made by that command, so one
//! SHA-256 round is enough (there is no dictionary to try) and a reconnect storm of thousands
//! of boxes costs microseconds each. The file is re-read when it changes (at most once per
//! [`RELOAD_EVERY`]): adding a box or revoking one (deleting its line) needs no restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How often a login may look at the file's modification time.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Why the password file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("{path}: cannot be read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Write { path: String, message: String },
}

/// One box's salt and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    salt: [u8; 16],
    hash: [u8; 32],
}

#[derive(Debug)]
struct Loaded {
    entries: HashMap<String, Entry>,
    modified: Option<SystemTime>,
    looked: Instant,
}

/// The password file, re-read when it changes.
#[derive(Debug)]
pub struct PasswordFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl PasswordFile {
    /// Reads `path`; every line must be well formed (the error names the line).
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordError> {
        let (entries, modified) = read(path)?;
        Ok(PasswordFile {
            path: path.to_owned(),
            loaded: Mutex::new(Loaded {
                entries,
                modified,
                looked: Instant::now(),
            }),
        })
    }

    /// Boxes in the file.
    pub fn len(&self) -> usize {
        self.loaded.lock().map_or(0, |l| l.entries.len())
    }

    /// Whether the file holds no box.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `username` (a tenant id) logs in with `password`. A changed file is read again
    /// first; a file that became unreadable or malformed keeps the last good entries (logged).
    pub fn check(&self, username: &str, password: &str) -> bool {
        let Ok(mut loaded) = self.loaded.lock() else {
            return false;
        };
        if loaded.looked.elapsed() >= RELOAD_EVERY {
            loaded.looked = Instant::now();
            let modified = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            if modified != loaded.modified {
                match read(&self.path) {
                    Ok((entries, modified)) => {
                        tracing::info!(file = %self.path.display(), boxes = entries.len(), "box password file read again");
                        loaded.entries = entries;
                        loaded.modified = modified;
                    }
                    Err(error) => {
                        tracing::error!(%error, "the changed box password file is refused; the last good one stays");
                        loaded.modified = modified;
                    }
                }
            }
        }
        let Some(entry) = loaded.entries.get(username) else {
            return false;
        };
        constant_time_eq(&hash(&entry.salt, password), &entry.hash)
    }
}

fn read(path: &Path) -> Result<(HashMap<String, Entry>, Option<SystemTime>), PasswordError> {
    let place = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PasswordError::Read {
        path: place.clone(),
        source,
    })?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut entries = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let fail = |message: String| PasswordError::Line {
            path: place.clone(),
            line: line_no,
            message,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [tenant, salt, digest] = fields[..] else {
            return Err(fail(format!(
                "expected `tenant salt hash`, found {} fields",
                fields.len()
            )));
        };
        if tenant.is_empty() || !tenant.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(fail(format!(
                "{tenant:?} is not a tenant id (ASCII letters and digits)"
            )));
        }
        let salt: [u8; 16] = unhex(salt)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| fail("the salt is not 32 hex digits".to_owned()))?;
        let hash: [u8; 32] = unhex(digest)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| fail("the hash is not 64 hex digits".to_owned()))?;
        if entries
            .insert(tenant.to_owned(), Entry { salt, hash })
            .is_some()
        {
            return Err(fail(format!("tenant {tenant} appears twice")));
        }
    }
    Ok((entries, modified))
}

/// SHA-256 of the salt followed by the password.
fn hash(salt: &[u8; 16], password: &str) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(salt);
    context.update(password.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A new random password for `tenant` and the line that goes into the file for it.
pub fn new_entry(tenant: &str) -> Result<(String, String), PasswordError> {
    use ring::rand::SecureRandom;
    let random = ring::rand::SystemRandom::new();
    let mut secret = [0u8; 16];
    let mut salt = [0u8; 16];
    for buffer in [&mut secret[..], &mut salt[..]] {
        random.fill(buffer).map_err(|_| PasswordError::Write {
            path: "<random>".into(),
            message: "the system's random source failed".into(),
        })?;
    }
    let password = hex(&secret);
    let line = format!("{tenant} {} {}", hex(&salt), hex(&hash(&salt, &password)));
    Ok((password, line))
}

/// Adds a new random password for `tenant` to the file at `path` (created with mode 0600 if
/// missing) and returns the password; refuses a tenant the file already holds.
pub fn add_box(path: &Path, tenant: &str) -> Result<String, PasswordError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let place = path.display().to_string();
    if !tenant.is_empty() && path.exists() {
        let (entries, _) = read(path)?;
        if entries.contains_key(tenant) {
            return Err(PasswordError::Write {
                path: place,
                message: format!(
                    "tenant {tenant} already has a password; delete its line to revoke it first"
                ),
            });
        }
    }
    let (password, line) = new_entry(tenant)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| PasswordError::Write {
            path: place.clone(),
            message: e.to_string(),
        })?;
    writeln!(file, "{line}")
        .and_then(|()| file.sync_all())
        .map_err(|e| PasswordError::Write {
            path: place,
            message: e.to_string(),
        })?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gateway-passwords-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join("box-passwords")
    }

    #[test]
    fn a_box_logs_in_with_its_own_password_only() {
        let path = scratch("login");
        let a = add_box(&path, "boxXa").expect("a");
        let b = add_box(&path, "boxXb").expect("b");
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        let file = PasswordFile::load(&path).expect("load");
        assert_eq!(file.len(), 2);
        assert!(file.check("boxXa", &a));
        assert!(!file.check("boxXa", &b), "box B's password is not box A's");
        assert!(!file.check("boxXc", &a), "an unknown box");
        assert!(!file.check("boxXa", ""));
        assert!(add_box(&path, "boxXa").is_err(), "one password per box");
    }

    #[test]
    fn malformed_lines_are_named() {
        let path = scratch("malformed");
        std::fs::write(&path, "# boxes\n\nboxXa 00 11\n").expect("write");
        let error = PasswordFile::load(&path)
            .expect_err("short salt")
            .to_string();
        assert!(
            error.ends_with(":3: the salt is not 32 hex digits"),
            "{error}"
        );
        std::fs::write(&path, "box-a 00 11\n").expect("write");
        let error = PasswordFile::load(&path).expect_err("tenant").to_string();
        assert!(
            error.contains(":1:") && error.contains("not a tenant id"),
            "{error}"
        );
    }
}
