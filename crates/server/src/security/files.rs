//! Secrets redrive keeps in its data directory, readable by its owner only.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

const TOKEN_FILE: &str = "api-token";
const KEY_FILE: &str = "secret.key";

/// The admin token from `DATA/api-token`, generated on first start.
/// Returns whether it was generated now.
pub fn admin_token(data_dir: &Path) -> anyhow::Result<(String, bool)> {
    let path = data_dir.join(TOKEN_FILE);
    if path.exists() {
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the admin token from {}", path.display()))?;
        let token = token.trim().to_owned();
        super::auth::check_admin_token(&token)
            .with_context(|| format!("{} holds no usable token", path.display()))?;
        return Ok((token, false));
    }
    let token = format!(
        "{}admin_{}",
        super::auth::TOKEN_PREFIX,
        URL_SAFE_NO_PAD.encode(super::random_bytes::<32>()?)
    );
    write_private(&path, &format!("{token}\n"))?;
    Ok((token, true))
}

/// The key that encrypts signing secrets, from `DATA/secret.key`,
/// generated on first start.
pub fn secret_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join(KEY_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the secret key from {}", path.display()))?;
        return decode_key(&text)
            .with_context(|| format!("{} holds no usable key", path.display()));
    }
    let key = super::random_bytes::<32>()?;
    write_private(&path, &format!("{}\n", STANDARD.encode(key)))?;
    tracing::info!(path = %path.display(), "generated the key that encrypts signing secrets; back it up with the database");
    Ok(key)
}

pub fn decode_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = STANDARD
        .decode(text.trim())
        .context("the key is not base64")?;
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(key) => Ok(key),
        Err(_) => bail!("the key must be 32 bytes, it is {}", bytes.len()),
    }
}

/// Creates `path` with mode 0600; never overwrites.
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
