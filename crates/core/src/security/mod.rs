//! The trust boundary's pure rules: token scopes, endpoint network policy,
//! Standard Webhooks signatures and rate expressions. No I/O here: the
//! server feeds these with requests, resolved addresses and clock readings.

pub mod network;
pub mod request_rate;
pub mod scope;
pub mod signature;

pub use network::{EndpointPolicy, IpNetwork, NetworkError, parse_networks};
pub use request_rate::RequestRate;
pub use scope::{Permission, Scope};
pub use signature::{SigningSecret, sign, verify};
