//! Policy data types: what a loaded, validated policy holds.

use crate::retry::RetryPolicy;

/// A loaded and validated policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    /// Policy version identifier (`release`).
    pub release: Option<String>,
    /// Product the policy applies to (`product`).
    pub product: Option<String>,
    /// Minimum policy parser version required (`schema-version`).
    pub schema_version: Option<u32>,
    /// Global SOCKS5 proxy `address:port` for client traffic (`via-socks5`).
    pub via_socks5: Option<String>,
    /// Named backoff schemes (`retry`), in definition order.
    pub retry: Vec<RetryPolicy>,
    /// Named certificates, DER-decoded and checked at load (`certs`).
    pub certs: Vec<Cert>,
    /// Named stacks of certificates (`trust_stores`).
    pub trust_stores: Vec<TrustStore>,
    /// Authentication schemes (`auth`).
    pub auth: Vec<AuthScheme>,
    /// Metrics policies (`metrics`).
    pub metrics: Vec<MetricsPolicy>,
    /// Streamtypes (`s`), in definition order.
    pub streamtypes: Vec<StreamType>,
}

impl Policy {
    /// The streamtype called `name`.
    pub fn streamtype(&self, name: &str) -> Option<&StreamType> {
        self.streamtypes.iter().find(|s| s.name == name)
    }

    /// The retry policy called `name`.
    pub fn retry_policy(&self, name: &str) -> Option<&RetryPolicy> {
        self.retry.iter().find(|r| r.name == name)
    }

    /// The certificate called `name`.
    pub fn cert(&self, name: &str) -> Option<&Cert> {
        self.certs.iter().find(|c| c.name == name)
    }

    /// The trust store called `name`.
    pub fn trust_store(&self, name: &str) -> Option<&TrustStore> {
        self.trust_stores.iter().find(|t| t.name == name)
    }
}

/// A certificate from `certs`: base64 DER in the JSON, decoded here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cert {
    /// Its name in the policy.
    pub name: String,
    /// The DER bytes.
    pub der: Vec<u8>,
}

/// A trust store from `trust_stores`: named certificates to validate peers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustStore {
    /// Its name (`name`).
    pub name: String,
    /// Names of certificates in `certs` (`stack`), each defined earlier.
    pub stack: Vec<String>,
}

/// An entry of `auth`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthScheme {
    /// Name streamtypes use in `use_auth`.
    pub name: String,
    /// Scheme type, e.g. `sigv4` (`type`).
    pub kind: String,
    /// Streamtype used to refresh the token (`streamtype`).
    pub streamtype: Option<String>,
    /// System blob index holding the token (`blob`, 0..=3).
    pub blob: u8,
}

/// An entry of `metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsPolicy {
    /// Name of the metrics policy (`name`).
    pub name: String,
    /// Reporting period in microseconds (`us_schedule`).
    pub us_schedule: u64,
    /// Half-life for averages in microseconds (`us_halflife`).
    pub us_halflife: u64,
    /// Minimum outlier to report (`min_outlier`).
    pub min_outlier: u32,
    /// Streamtype the report is sent on (`report`).
    pub report: Option<String>,
}

/// The wire protocol a streamtype uses (`protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Raw bytes, no framing (`raw`).
    #[default]
    Raw,
    /// HTTP/1.1 (`h1`).
    H1,
    /// HTTP/2 (`h2`).
    H2,
    /// WebSocket over HTTP/1.1 (`ws`).
    Ws,
    /// MQTT 3.1.1 (`mqtt`).
    Mqtt,
}

impl Protocol {
    /// The policy's name for the protocol.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Raw => "raw",
            Protocol::H1 => "h1",
            Protocol::H2 => "h2",
            Protocol::Ws => "ws",
            Protocol::Mqtt => "mqtt",
        }
    }
}

/// A declared metadata item (`metadata: [{ "name": "header:" }]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataDecl {
    /// Symbol name used in `${name}` and the metadata API.
    pub name: String,
    /// Protocol entity it maps to, e.g. `content-type:`; `None` when `""`.
    pub header: Option<String>,
}

/// IP ToS / priority attributes (`attr_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Socket priority 0..=7 (`attr_priority`).
    pub priority: u8,
    /// ToS low delay (`attr_low_latency`).
    pub low_latency: bool,
    /// ToS high throughput (`attr_high_throughput`).
    pub high_throughput: bool,
    /// ToS high reliability (`attr_high_reliability`).
    pub high_reliability: bool,
    /// ToS low cost (`attr_low_cost`).
    pub low_cost: bool,
}

/// HTTP keys (`http_*` and friends), used by h1, h2 and ws.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpPolicy {
    /// `http_method`.
    pub method: Option<String>,
    /// `http_url`, may hold `${metadata}`.
    pub url: Option<String>,
    /// `http_expect`: the one status that means success.
    pub expect: Option<u16>,
    /// `http_fail_redirect`.
    pub fail_redirect: bool,
    /// `allow_redirects`.
    pub allow_redirects: bool,
    /// `http_resp_map`: status code to user state number.
    pub resp_map: Vec<(u16, u32)>,
    /// `http_auth_header`.
    pub auth_header: Option<String>,
    /// `http_dsn_header`.
    pub dsn_header: Option<String>,
    /// `http_fwv_header`.
    pub fwv_header: Option<String>,
    /// `http_devtype_header`.
    pub devtype_header: Option<String>,
    /// `http_auth_preamble`.
    pub auth_preamble: Option<String>,
    /// `auth_hexify`.
    pub auth_hexify: bool,
    /// `http_no_content_length`.
    pub no_content_length: bool,
    /// `http_multipart_name`.
    pub multipart_name: Option<String>,
    /// `http_multipart_filename`.
    pub multipart_filename: Option<String>,
    /// `http_multipart_content_type` / `http_mime_content_type`.
    pub multipart_content_type: Option<String>,
    /// `http_www_form_urlencoded`.
    pub www_form_urlencoded: bool,
    /// `http_cookies`.
    pub cookies: bool,
    /// `http_multipart_ss_in`.
    pub multipart_ss_in: bool,
    /// `nghttp2_quirk_end_stream`.
    pub quirk_end_stream: bool,
    /// `h2q_oflow_txcr`.
    pub h2_quirk_overflow_tx_credit: bool,
    /// `rideshare`: streamtype this one travels with.
    pub rideshare: Option<String>,
}

/// WebSocket keys (`ws_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WsPolicy {
    /// `ws_subprotocol`.
    pub subprotocol: Option<String>,
    /// `ws_binary`.
    pub binary: bool,
    /// `ws_prioritize_reads`.
    pub prioritize_reads: bool,
}

/// MQTT keys (`mqtt_*`, `aws_iot`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MqttPolicy {
    /// `mqtt_topic`, may hold `${metadata}`.
    pub topic: Option<String>,
    /// `mqtt_subscribe`.
    pub subscribe: Option<String>,
    /// `mqtt_qos` (0..=2).
    pub qos: u8,
    /// `mqtt_retain`.
    pub retain: bool,
    /// `mqtt_keep_alive` in seconds.
    pub keep_alive: u16,
    /// `mqtt_clean_start`.
    pub clean_start: bool,
    /// `mqtt_will_topic`.
    pub will_topic: Option<String>,
    /// `mqtt_will_message`.
    pub will_message: Option<String>,
    /// `mqtt_will_qos`.
    pub will_qos: u8,
    /// `mqtt_will_retain`.
    pub will_retain: bool,
    /// `mqtt_birth_topic`.
    pub birth_topic: Option<String>,
    /// `mqtt_birth_message`.
    pub birth_message: Option<String>,
    /// `mqtt_birth_qos`.
    pub birth_qos: u8,
    /// `mqtt_birth_retain`.
    pub birth_retain: bool,
    /// `aws_iot`: AWS IoT topic and size limits apply.
    pub aws_iot: bool,
}

/// One streamtype from `s`: everything about how streams of this name connect.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamType {
    /// The streamtype name the application asks for.
    pub name: String,
    /// `endpoint`: host (may hold `${metadata}`), `+path` Unix socket, `+@name`
    /// abstract socket; for servers the bind address or interface.
    pub endpoint: Option<String>,
    /// `port`: to connect to, or for servers to listen on.
    pub port: u16,
    /// `protocol`.
    pub protocol: Protocol,
    /// `server`: this streamtype describes a server.
    pub server: bool,
    /// `tls`.
    pub tls: bool,
    /// `client_cert`: index of the client certificate blob.
    pub client_cert: Option<u8>,
    /// `tls_trust_store`: name of a trust store defined earlier.
    pub tls_trust_store: Option<String>,
    /// `server_cert`: name of the server certificate in `certs`.
    pub server_cert: Option<String>,
    /// `server_key`: name of the server key in `certs`.
    pub server_key: Option<String>,
    /// `retry`: name of a retry policy defined earlier.
    pub retry: Option<String>,
    /// `opportunistic`: the connection may stay down except when in use.
    pub opportunistic: bool,
    /// `nailed_up`: reconnect whenever the connection drops.
    pub nailed_up: bool,
    /// `urgent_tx`.
    pub urgent_tx: bool,
    /// `urgent_rx`.
    pub urgent_rx: bool,
    /// `long_poll`.
    pub long_poll: bool,
    /// `local_sink`.
    pub local_sink: bool,
    /// `perf`: deliver connection performance JSON.
    pub perf: bool,
    /// `swake_validity`.
    pub swake_validity: bool,
    /// `direct_proto_str`.
    pub direct_proto_str: bool,
    /// `timeout_ms`: applied by `start_timeout` with the policy value.
    pub timeout_ms: Option<u32>,
    /// `attr_*`.
    pub attr: Attributes,
    /// `metadata` declarations, in order.
    pub metadata: Vec<MetadataDecl>,
    /// `proxy_buflen`.
    pub proxy_buflen: Option<u32>,
    /// `proxy_buflen_rxflow_on_above`.
    pub proxy_buflen_rxflow_on_above: Option<u32>,
    /// `proxy_buflen_rxflow_off_below`.
    pub proxy_buflen_rxflow_off_below: Option<u32>,
    /// `client_buflen`.
    pub client_buflen: Option<u32>,
    /// `client_buflen_rxflow_on_above`.
    pub client_buflen_rxflow_on_above: Option<u32>,
    /// `client_buflen_rxflow_off_below`.
    pub client_buflen_rxflow_off_below: Option<u32>,
    /// `via-socks5` for this streamtype.
    pub via_socks5: Option<String>,
    /// `plugins`.
    pub plugins: Vec<String>,
    /// `payload_fmt`.
    pub payload_fmt: Option<String>,
    /// `options`: free-form name/value pairs.
    pub options: Vec<(String, String)>,
    /// `use_auth`: name of an `auth` entry.
    pub use_auth: Option<String>,
    /// `aws_region`: metadata name holding the AWS region.
    pub aws_region: Option<String>,
    /// `aws_service`: metadata name holding the AWS service.
    pub aws_service: Option<String>,
    /// HTTP settings.
    pub http: HttpPolicy,
    /// WebSocket settings.
    pub ws: WsPolicy,
    /// MQTT settings.
    pub mqtt: MqttPolicy,
}

impl StreamType {
    /// Index of the declared metadata item `name`.
    pub fn metadata_index(&self, name: &str) -> Option<usize> {
        self.metadata.iter().position(|m| m.name == name)
    }
}
