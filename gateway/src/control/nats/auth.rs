//! OAuth2 tokens and OAuth1 nonces in the shared buckets: not mirrored (there are many, and
//! each is read by the request that brings it), one KV read or write per request.

use async_nats::jetstream::kv;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::{NatsPlane, encode, shared};
use crate::control::tokens::TokenRecord;
use crate::store::StoreError;

fn token_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl NatsPlane {
    // OAuth2 tokens.

    pub(crate) async fn issue_token(&self, record: &TokenRecord) -> Result<String, StoreError> {
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        self.tokens
            .put(token_key(&token), encode(record))
            .await
            .map_err(|e| shared("tokens", e))?;
        Ok(token)
    }

    pub(crate) async fn token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let key = token_key(token);
        let Some(bytes) = self
            .tokens
            .get(&key)
            .await
            .map_err(|e| shared("tokens", e))?
        else {
            return Ok(None);
        };
        let record: TokenRecord =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                tree: "tokens",
                message: e.to_string(),
            })?;
        if record.exp <= now {
            let _ = self.tokens.purge(&key).await;
            return Ok(None);
        }
        Ok(Some(record))
    }

    pub(crate) async fn revoke_token(
        &self,
        token: &str,
        client_id: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        match self.token(token, now).await? {
            Some(record) if record.client_id == client_id => {
                self.tokens
                    .purge(token_key(token))
                    .await
                    .map_err(|e| shared("tokens", e))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Walks the whole bucket: for removing an app, not for the request path.
    pub(crate) async fn revoke_app_tokens(&self, app: &str) -> Result<usize, StoreError> {
        let all = super::mirror::keys(&self.tokens, usize::MAX).await?;
        let mut removed = 0;
        for key in all {
            let Some(bytes) = self
                .tokens
                .get(&key)
                .await
                .map_err(|e| shared("tokens", e))?
            else {
                continue;
            };
            if serde_json::from_slice::<TokenRecord>(&bytes).is_ok_and(|r| r.app == app) {
                self.tokens
                    .purge(&key)
                    .await
                    .map_err(|e| shared("tokens", e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    // OAuth1 nonces.

    pub(crate) async fn claim_nonce(
        &self,
        consumer: &str,
        nonce: &str,
        timestamp: u64,
    ) -> Result<bool, StoreError> {
        let triple = [
            consumer.as_bytes(),
            b"\0",
            nonce.as_bytes(),
            b"\0",
            timestamp.to_string().as_bytes(),
        ]
        .concat();
        let key = hex::encode(Sha256::digest(&triple));
        match self.nonces.create(&key, Bytes::from_static(b"1")).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(shared("oauth1_nonces", e)),
        }
    }
}
