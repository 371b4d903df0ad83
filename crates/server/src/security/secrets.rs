//! Signing secrets: encrypted at rest with AES-256-GCM under the server's
//! key (bound to their subscription's name, so a ciphertext moved to another
//! subscription does not decrypt), decrypted on use and cached briefly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::{SignedDuration, Timestamp};
use redrive_core::security::SigningSecret;
use redrive_core::security::signature::GENERATED_SECRET_BYTES;
use redrive_store::{SecretRotation, SigningSecrets, Store};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const FORMAT: &str = "v1:";
const NONCE_BYTES: usize = 12;
/// How long decrypted secrets are reused before the store is asked again
/// (another node may have rotated them).
const CACHE_FOR: Duration = Duration::from_secs(5);

pub struct SecretCipher {
    key: LessSafeKey,
}

impl SecretCipher {
    pub fn new(key: &[u8; 32]) -> anyhow::Result<SecretCipher> {
        let key = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| anyhow!("cannot use the secret key for AES-256-GCM"))?;
        Ok(SecretCipher {
            key: LessSafeKey::new(key),
        })
    }

    pub fn seal(&self, subscription: &str, secret: &SigningSecret) -> anyhow::Result<String> {
        let nonce_bytes = super::random_bytes::<NONCE_BYTES>()?;
        let mut data = secret.to_string().into_bytes();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(subscription.as_bytes()),
                &mut data,
            )
            .map_err(|_| anyhow!("cannot encrypt a signing secret"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{FORMAT}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, subscription: &str, sealed: &str) -> anyhow::Result<SigningSecret> {
        let encoded = sealed
            .strip_prefix(FORMAT)
            .ok_or_else(|| anyhow!("unknown secret format"))?;
        let bytes = STANDARD
            .decode(encoded)
            .context("the stored secret is not base64")?;
        if bytes.len() < NONCE_BYTES {
            return Err(anyhow!("the stored secret is truncated"));
        }
        let (nonce, data) = bytes.split_at(NONCE_BYTES);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| anyhow!("the stored secret has a bad nonce"))?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(subscription.as_bytes()), &mut data)
            .map_err(|_| {
                anyhow!(
                    "cannot decrypt the signing secret of {subscription:?}: \
                     the secret key (REDRIVE_SECRET_KEY or DATA/secret.key) is not the one it was stored with"
                )
            })?;
        let text = std::str::from_utf8(plain).context("the decrypted secret is not text")?;
        text.parse().context("the decrypted secret is malformed")
    }
}

/// A subscription's usable secrets, newest first.
#[derive(Clone, Debug)]
pub struct Keys {
    pub current: SigningSecret,
    /// Secrets replaced by rotations, newest first, each with the end of
    /// its grace period.
    pub previous: Vec<(SigningSecret, Timestamp)>,
}

impl Keys {
    /// The secrets that sign at `now`: the current one, and every replaced
    /// one still within its grace period.
    pub fn signing_at(&self, now: Timestamp) -> Vec<SigningSecret> {
        std::iter::once(self.current.clone())
            .chain(
                self.previous
                    .iter()
                    .filter(|(_, until)| now < *until)
                    .map(|(secret, _)| secret.clone()),
            )
            .collect()
    }

    /// Until when a replaced secret still signs, if one does at `now`.
    pub fn previous_valid_until(&self, now: Timestamp) -> Option<Timestamp> {
        self.previous
            .iter()
            .map(|(_, until)| *until)
            .filter(|until| now < *until)
            .max()
    }
}

pub struct SecretBook {
    store: Arc<dyn Store>,
    cipher: SecretCipher,
    cache: Mutex<HashMap<String, (Instant, Keys)>>,
}

pub fn generate() -> anyhow::Result<SigningSecret> {
    Ok(SigningSecret::from_random(super::random_bytes::<
        GENERATED_SECRET_BYTES,
    >()?))
}

impl SecretBook {
    pub fn new(store: Arc<dyn Store>, cipher: SecretCipher) -> SecretBook {
        SecretBook {
            store,
            cipher,
            cache: Mutex::default(),
        }
    }

    fn decrypt(&self, stored: &SigningSecrets) -> anyhow::Result<Keys> {
        let current = self.cipher.open(&stored.subscription, &stored.current)?;
        let previous = stored
            .previous
            .iter()
            .map(|previous| {
                Ok((
                    self.cipher.open(&stored.subscription, &previous.secret)?,
                    previous.until,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Keys { current, previous })
    }

    /// The subscription's secrets, generating the first one if it has none
    /// (a subscription made before signing existed, or whose creation
    /// could not store one).
    pub async fn keys(&self, subscription: &str, now: Timestamp) -> anyhow::Result<Keys> {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, keys)) = cache.get(subscription)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(keys.clone());
        }
        let stored = match self.store.get_signing_secrets(subscription).await? {
            Some(stored) => stored,
            None => {
                let sealed = self.cipher.seal(subscription, &generate()?)?;
                self.store
                    .ensure_signing_secret(subscription, sealed, now)
                    .await?
            }
        };
        let keys = self.decrypt(&stored)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(subscription.to_owned(), (Instant::now(), keys.clone()));
        }
        Ok(keys)
    }

    /// Gives a new subscription its first secret.
    pub async fn create_for(&self, subscription: &str, now: Timestamp) -> anyhow::Result<()> {
        let sealed = self.cipher.seal(subscription, &generate()?)?;
        self.store
            .ensure_signing_secret(subscription, sealed, now)
            .await?;
        Ok(())
    }

    /// Makes `new` (or a fresh secret) current; the old one signs on until
    /// `now + grace`, and those replaced before until their own time (at
    /// most `redrive_store::MAX_PREVIOUS_SECRETS` of them).
    pub async fn rotate(
        &self,
        subscription: &str,
        new: Option<SigningSecret>,
        grace: Duration,
        now: Timestamp,
    ) -> anyhow::Result<Keys> {
        let new = match new {
            Some(secret) => secret,
            None => generate()?,
        };
        let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
        let stored = self
            .store
            .rotate_signing_secret(SecretRotation {
                subscription: subscription.to_owned(),
                new: self.cipher.seal(subscription, &new)?,
                previous_until: now.checked_add(grace).unwrap_or(Timestamp::MAX),
                now,
            })
            .await?;
        self.forget(subscription);
        self.decrypt(&stored)
    }

    /// Whether this server's secret key opens the signing secrets already
    /// stored: a node started with another key than its peers (or a data
    /// directory restored without its `secret.key`) signs nothing, so it
    /// should say so at start rather than at each push. Returns the first
    /// subscription whose secret it cannot open.
    pub async fn first_unreadable(&self) -> anyhow::Result<Option<String>> {
        for subscription in self.store.list_subscriptions().await? {
            let name = &subscription.spec.name;
            if let Some(stored) = self.store.get_signing_secrets(name).await? {
                // One secret tells: every secret is sealed with the same key.
                return Ok(self.decrypt(&stored).is_err().then(|| name.clone()));
            }
        }
        Ok(None)
    }

    pub fn forget(&self, subscription: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(subscription);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_subscription() {
        let cipher = SecretCipher::new(&[1; 32]).unwrap();
        let secret = generate().unwrap();
        let sealed = cipher.seal("orders", &secret).unwrap();
        assert!(!sealed.contains(&secret.to_string()));
        assert_eq!(cipher.open("orders", &sealed).unwrap(), secret);
        assert!(cipher.open("other", &sealed).is_err());
        let stranger = SecretCipher::new(&[2; 32]).unwrap();
        let err = stranger.open("orders", &sealed).unwrap_err().to_string();
        assert!(err.contains("secret key"), "{err}");
        assert!(cipher.open("orders", "v1:AAAA").is_err());
        assert!(cipher.open("orders", "garbage").is_err());
    }

    #[test]
    fn every_replaced_secret_signs_until_its_own_grace_ends() {
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        let [a, b, c] = [1u8, 2, 3].map(|b| SigningSecret::from_random([b; 32]));
        let keys = Keys {
            current: a.clone(),
            previous: vec![(b.clone(), t(200)), (c.clone(), t(100))],
        };
        assert_eq!(keys.signing_at(t(50)), [a.clone(), b.clone(), c]);
        assert_eq!(keys.previous_valid_until(t(50)), Some(t(200)));
        assert_eq!(keys.signing_at(t(100)), [a.clone(), b]);
        assert_eq!(keys.signing_at(t(200)), [a]);
        assert_eq!(keys.previous_valid_until(t(200)), None);
    }
}
