//! The request path: one handler that runs the phases in order
//! (authenticate → route → authorize → rewrite → forward → record).

pub mod body;
pub mod handler;
pub mod headers;
pub mod impersonation;
pub mod inspect;
pub mod limits;
pub mod options;
pub mod precondition;
pub mod record;
pub mod refusal;
pub mod request_body;
pub mod request_id;
pub mod route;
pub mod size;
pub mod status;
pub mod upgrade;

use bytes::Bytes;
use http_body_util::{Either, Full};

pub use handler::{Conn, Proxy};
pub use options::ProxyOptions;
pub use record::Recorder;

/// Response bodies: streamed from the API server, or made by the proxy (Status errors).
pub type ProxyBody = Either<body::Observed, Full<Bytes>>;
