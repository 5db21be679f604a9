//! Encryption at rest: AES-256-GCM envelope encryption.
//!
//! - The **master key** (32 bytes) lives in a file outside the database; it only
//!   wraps data keys. Its id is an HMAC fingerprint, so the database can say which
//!   master key wrapped a data key without holding anything secret.
//! - **Data keys** are random 256-bit keys, stored only wrapped, each with an id.
//!   One is active per tenant; older ones stay for reading.
//! - Every **body** is sealed with the active data key under a fresh random nonce;
//!   the associated data binds tenant, type, id and version, so a ciphertext copied
//!   into another row fails authentication instead of decrypting.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hmac, rand};
use base64::Engine;
use hearth_store::{SealedBody, Store, StoreError, WrappedKey};

const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key: {0}")]
    BadMasterKey(String),
    #[error(
        "data key {key_id} was wrapped by master key {wrapped_by}, but the configured master key is {configured}"
    )]
    WrongMasterKey {
        key_id: String,
        wrapped_by: String,
        configured: String,
    },
    #[error("data key {0} is not known")]
    UnknownKey(String),
    #[error(
        "stored ciphertext failed authentication: it was altered or does not belong to this row ({0})"
    )]
    Integrity(String),
    #[error("the system random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    rand::fill(&mut buf).map_err(|_| CryptoError::Random)?;
    Ok(buf)
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::BadMasterKey("not a 256-bit key".into()))
}

fn seal_with(
    key: &LessSafeKey,
    aad: &[u8],
    mut data: Vec<u8>,
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let nonce: [u8; NONCE_LEN] = random()?;
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut data,
    )
    .map_err(|_| CryptoError::Random)?;
    Ok((nonce.to_vec(), data))
}

fn open_with(key: &LessSafeKey, aad: &[u8], nonce: &[u8], mut data: Vec<u8>) -> Option<Vec<u8>> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let len = key
        .open_in_place(nonce, Aad::from(aad), &mut data)
        .ok()?
        .len();
    data.truncate(len);
    Some(data)
}

/// The key-encryption key. Never logged, never stored in the database.
pub struct MasterKey {
    key: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    /// Accepts the 32 raw bytes, or their base64 text (whitespace around it is ignored).
    pub fn from_file_contents(contents: &[u8]) -> Result<Self, CryptoError> {
        if contents.len() == KEY_LEN {
            return Self::from_raw(contents);
        }
        let text = std::str::from_utf8(contents)
            .map_err(|_| CryptoError::BadMasterKey("must be 32 raw bytes or base64 text".into()))?
            .trim();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| CryptoError::BadMasterKey("must be 32 raw bytes or base64 text".into()))?;
        if raw.len() != KEY_LEN {
            return Err(CryptoError::BadMasterKey(format!(
                "decodes to {} bytes; 32 are needed",
                raw.len()
            )));
        }
        Self::from_raw(&raw)
    }

    fn from_raw(raw: &[u8]) -> Result<Self, CryptoError> {
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, raw),
            b"hearth master key id",
        );
        let id = tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Ok(MasterKey {
            key: aead_key(raw)?,
            id: format!("mk-{id}"),
        })
    }

    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let contents = std::fs::read(path)
            .map_err(|e| CryptoError::BadMasterKey(format!("cannot read the key file: {e}")))?;
        Self::from_file_contents(&contents)
    }

    /// Writes a new random key as base64 to `path` (mode 0600, never overwriting).
    pub fn generate_file(path: &Path) -> Result<Self, CryptoError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let raw: [u8; KEY_LEN] = random()?;
        let text = base64::engine::general_purpose::STANDARD.encode(raw);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| CryptoError::BadMasterKey(format!("cannot create the key file: {e}")))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| CryptoError::BadMasterKey(format!("cannot write the key file: {e}")))?;
        Self::from_raw(&raw)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn wrap_aad(tenant: &str, key_id: &str) -> Vec<u8> {
        [
            b"hearth-dek-v1\0",
            tenant.as_bytes(),
            b"\0",
            key_id.as_bytes(),
        ]
        .concat()
    }

    fn wrap(&self, tenant: &str, key_id: &str, raw: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (nonce, ct) = seal_with(&self.key, &Self::wrap_aad(tenant, key_id), raw.to_vec())?;
        Ok([nonce, ct].concat())
    }

    /// The raw key material of a wrapped key.
    fn unwrap(&self, tenant: &str, k: &WrappedKey) -> Result<Vec<u8>, CryptoError> {
        if k.master_key_id != self.id {
            return Err(CryptoError::WrongMasterKey {
                key_id: k.key_id.clone(),
                wrapped_by: k.master_key_id.clone(),
                configured: self.id.clone(),
            });
        }
        let (nonce, ct) = k.wrapped.split_at(NONCE_LEN.min(k.wrapped.len()));
        let raw = open_with(
            &self.key,
            &Self::wrap_aad(tenant, &k.key_id),
            nonce,
            ct.to_vec(),
        )
        .ok_or_else(|| CryptoError::Integrity(format!("data key {}", k.key_id)))?;
        Ok(raw)
    }
}

/// What a body's ciphertext is bound to.
#[derive(Clone, Copy, Debug)]
pub struct BodyAad<'a> {
    pub tenant: &'a str,
    pub res_type: &'a str,
    pub id: &'a str,
    pub version: i64,
}

impl BodyAad<'_> {
    fn bytes(&self) -> Vec<u8> {
        let version = self.version.to_string();
        let mut out = b"hearth-body-v1".to_vec();
        for part in [self.tenant, self.res_type, self.id, &version] {
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// Key purposes, as stored.
pub const DATA: &str = "data";
pub const SEARCH: &str = "search";
/// Keys the hash chain of audit rows (HMAC-SHA-256): without the master key,
/// an edited row cannot be given a matching hash.
pub const AUDIT: &str = "audit";

/// Length of the keyed hashes kept in the search index.
pub const SEARCH_HASH_LEN: usize = 16;

#[derive(Default)]
struct TenantKeys {
    active: Option<(String, Arc<LessSafeKey>)>,
    keys: HashMap<String, Arc<LessSafeKey>>,
    /// The active search key (keys the hashes of identifying index values).
    search: Option<hmac::Key>,
    /// Audit chain keys by id, and the active one's id.
    audit: HashMap<String, hmac::Key>,
    active_audit: Option<String>,
}

/// The master key and the unwrapped data keys of every tenant seen so far.
pub struct KeyRing {
    master: MasterKey,
    tenants: RwLock<HashMap<String, TenantKeys>>,
}

impl KeyRing {
    pub fn new(master: MasterKey) -> Self {
        KeyRing {
            master,
            tenants: RwLock::new(HashMap::new()),
        }
    }

    pub fn master_key_id(&self) -> &str {
        self.master.id()
    }

    /// Loads a tenant's keys, creating the first data and search keys if missing.
    pub async fn load_tenant(&self, store: &impl Store, tenant: &str) -> Result<(), CryptoError> {
        let mut wrapped = store.data_keys(tenant).await?;
        for purpose in [DATA, SEARCH, AUDIT] {
            if !wrapped.iter().any(|k| k.active && k.purpose == purpose) {
                self.add_key(store, tenant, purpose).await?;
                wrapped = store.data_keys(tenant).await?;
            }
        }
        let mut keys = TenantKeys::default();
        for k in &wrapped {
            let raw = self.master.unwrap(tenant, k)?;
            if k.purpose == SEARCH {
                if k.active {
                    keys.search = Some(hmac::Key::new(hmac::HMAC_SHA256, &raw));
                }
                continue;
            }
            if k.purpose == AUDIT {
                keys.audit
                    .insert(k.key_id.clone(), hmac::Key::new(hmac::HMAC_SHA256, &raw));
                if k.active {
                    keys.active_audit = Some(k.key_id.clone());
                }
                continue;
            }
            let key = Arc::new(aead_key(&raw)?);
            if k.active {
                keys.active = Some((k.key_id.clone(), key.clone()));
            }
            keys.keys.insert(k.key_id.clone(), key);
        }
        self.tenants
            .write()
            .map_err(|_| CryptoError::UnknownKey("key ring poisoned".into()))?
            .insert(tenant.to_owned(), keys);
        Ok(())
    }

    /// Creates a new active key of `purpose` for the tenant (rotation). Older data
    /// keys stay readable.
    pub async fn add_key(
        &self,
        store: &impl Store,
        tenant: &str,
        purpose: &str,
    ) -> Result<String, CryptoError> {
        let raw: [u8; KEY_LEN] = random()?;
        let key_id = format!(
            "{}-{}",
            match purpose {
                SEARCH => "sk",
                AUDIT => "ak",
                _ => "dk",
            },
            random::<8>()?
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let wrapped = WrappedKey {
            key_id: key_id.clone(),
            master_key_id: self.master.id().to_owned(),
            wrapped: self.master.wrap(tenant, &key_id, &raw)?,
            created_at: crate::time::now_micros(),
            active: true,
            purpose: purpose.to_owned(),
        };
        store.add_data_key(tenant, &wrapped).await?;
        if let Ok(mut t) = self.tenants.write() {
            let keys = t.entry(tenant.to_owned()).or_default();
            if purpose == SEARCH {
                keys.search = Some(hmac::Key::new(hmac::HMAC_SHA256, &raw));
            } else if purpose == AUDIT {
                keys.audit
                    .insert(key_id.clone(), hmac::Key::new(hmac::HMAC_SHA256, &raw));
                keys.active_audit = Some(key_id.clone());
            } else {
                let key = Arc::new(aead_key(&raw)?);
                keys.keys.insert(key_id.clone(), key.clone());
                keys.active = Some((key_id.clone(), key));
            }
        }
        Ok(key_id)
    }

    /// The audit chain MAC of `input` under the tenant's audit key `key_id`
    /// (the active one when None), with the id of the key used.
    pub fn audit_mac(
        &self,
        tenant: &str,
        key_id: Option<&str>,
        input: &[u8],
    ) -> Result<(String, Vec<u8>), CryptoError> {
        let t = self
            .tenants
            .read()
            .map_err(|_| CryptoError::UnknownKey("key ring poisoned".into()))?;
        let keys = t
            .get(tenant)
            .ok_or_else(|| CryptoError::UnknownKey(format!("no keys for tenant {tenant}")))?;
        let id = match key_id {
            Some(id) => id.to_owned(),
            None => keys
                .active_audit
                .clone()
                .ok_or_else(|| CryptoError::UnknownKey("no audit key".into()))?,
        };
        let key = keys
            .audit
            .get(&id)
            .ok_or_else(|| CryptoError::UnknownKey(format!("no audit key {id}")))?;
        Ok((id, hmac::sign(key, input).as_ref().to_vec()))
    }

    /// A keyed hash (HMAC-SHA-256 under the tenant's search key, truncated) of an
    /// identifying index value. Equal inputs give equal hashes; without the key the
    /// input cannot be recovered or tested.
    pub fn search_hash(&self, tenant: &str, input: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let t = self
            .tenants
            .read()
            .map_err(|_| CryptoError::UnknownKey("key ring poisoned".into()))?;
        let key = t
            .get(tenant)
            .and_then(|k| k.search.as_ref())
            .ok_or_else(|| CryptoError::UnknownKey(format!("no search key for tenant {tenant}")))?;
        Ok(hmac::sign(key, input).as_ref()[..SEARCH_HASH_LEN].to_vec())
    }

    fn key(&self, tenant: &str, key_id: Option<&str>) -> Option<(String, Arc<LessSafeKey>)> {
        let t = self.tenants.read().ok()?;
        let keys = t.get(tenant)?;
        match key_id {
            None => keys.active.clone(),
            Some(id) => keys.keys.get(id).map(|k| (id.to_owned(), k.clone())),
        }
    }

    /// Encrypts a body with the tenant's active data key.
    pub fn seal(&self, aad: BodyAad<'_>, plaintext: Vec<u8>) -> Result<SealedBody, CryptoError> {
        let (key_id, key) = self.key(aad.tenant, None).ok_or_else(|| {
            CryptoError::UnknownKey(format!("no active key for tenant {}", aad.tenant))
        })?;
        let (nonce, ciphertext) = seal_with(&key, &aad.bytes(), plaintext)?;
        Ok(SealedBody {
            key_id,
            nonce,
            ciphertext,
        })
    }

    /// Encrypts a short token the server hands out and takes back (a page
    /// position holding sort values) under the tenant's active data key,
    /// bound to the tenant and `purpose`: key id length, key id, nonce,
    /// ciphertext.
    pub fn seal_token(
        &self,
        tenant: &str,
        purpose: &str,
        plaintext: Vec<u8>,
    ) -> Result<Vec<u8>, CryptoError> {
        let (key_id, key) = self
            .key(tenant, None)
            .ok_or_else(|| CryptoError::UnknownKey(format!("no active key for tenant {tenant}")))?;
        let id_len = u8::try_from(key_id.len())
            .map_err(|_| CryptoError::UnknownKey("key id too long".into()))?;
        let (nonce, ciphertext) = seal_with(&key, &Self::token_aad(tenant, purpose), plaintext)?;
        Ok([vec![id_len], key_id.into_bytes(), nonce, ciphertext].concat())
    }

    /// The plaintext of a [`KeyRing::seal_token`] token, if it is one of this
    /// tenant's for `purpose` under a key loaded here.
    pub fn open_token(&self, tenant: &str, purpose: &str, token: &[u8]) -> Option<Vec<u8>> {
        let (&id_len, rest) = token.split_first()?;
        let (key_id, rest) = rest.split_at_checked(usize::from(id_len))?;
        let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN)?;
        let (_, key) = self.key(tenant, Some(std::str::from_utf8(key_id).ok()?))?;
        open_with(
            &key,
            &Self::token_aad(tenant, purpose),
            nonce,
            ciphertext.to_vec(),
        )
    }

    fn token_aad(tenant: &str, purpose: &str) -> Vec<u8> {
        [
            b"hearth-token-v1\0",
            tenant.as_bytes(),
            b"\0",
            purpose.as_bytes(),
        ]
        .concat()
    }

    /// Decrypts a body; reloads the tenant's keys once if the key id is new
    /// (another node may have rotated).
    pub async fn open(
        &self,
        store: &impl Store,
        aad: BodyAad<'_>,
        body: &SealedBody,
    ) -> Result<Vec<u8>, CryptoError> {
        let key = match self.key(aad.tenant, Some(&body.key_id)) {
            Some(k) => k,
            None => {
                self.load_tenant(store, aad.tenant).await?;
                self.key(aad.tenant, Some(&body.key_id))
                    .ok_or_else(|| CryptoError::UnknownKey(body.key_id.clone()))?
            }
        };
        open_with(&key.1, &aad.bytes(), &body.nonce, body.ciphertext.clone()).ok_or_else(|| {
            CryptoError::Integrity(format!(
                "{}/{} version {}",
                aad.res_type, aad.id, aad.version
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_accepts_raw_and_base64_only_of_32_bytes() {
        let raw = [7u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        let a = MasterKey::from_file_contents(&raw).unwrap();
        let b = MasterKey::from_file_contents(format!("{b64}\n").as_bytes()).unwrap();
        assert_eq!(a.id(), b.id());
        assert!(MasterKey::from_file_contents(b"c2hvcnQ=").is_err());
        assert!(MasterKey::from_file_contents(b"not base64 at all!").is_err());
        assert!(!format!("{a:?}").contains(&b64));
    }

    #[test]
    fn wrapped_keys_are_bound_to_tenant_and_master() {
        let m = MasterKey::from_file_contents(&[1u8; 32]).unwrap();
        let wrapped = m.wrap("t1", "dk-1", &[9u8; 32]).unwrap();
        let k = WrappedKey {
            key_id: "dk-1".into(),
            master_key_id: m.id().into(),
            wrapped,
            created_at: 0,
            active: true,
            purpose: DATA.into(),
        };
        assert!(m.unwrap("t1", &k).is_ok());
        assert!(matches!(m.unwrap("t2", &k), Err(CryptoError::Integrity(_))));
        let other = MasterKey::from_file_contents(&[2u8; 32]).unwrap();
        assert!(matches!(
            other.unwrap("t1", &k),
            Err(CryptoError::WrongMasterKey { .. })
        ));
    }

    #[test]
    fn bodies_are_bound_to_their_row() {
        let key = aead_key(&[3u8; 32]).unwrap();
        let aad = BodyAad {
            tenant: "default",
            res_type: "Patient",
            id: "a",
            version: 1,
        };
        let (nonce, ct) = seal_with(&key, &aad.bytes(), b"{}".to_vec()).unwrap();
        assert_eq!(
            open_with(&key, &aad.bytes(), &nonce, ct.clone()).unwrap(),
            b"{}"
        );
        for other in [
            BodyAad { id: "b", ..aad },
            BodyAad { version: 2, ..aad },
            BodyAad {
                res_type: "Observation",
                ..aad
            },
            BodyAad {
                tenant: "other",
                ..aad
            },
        ] {
            assert!(open_with(&key, &other.bytes(), &nonce, ct.clone()).is_none());
        }
    }
}
