//! TLS for the lab's secure phones (SCCP on 2443, SIP on 5061): a certificate made for the run
//! (rcgen), a CUCM side that presents it (our SCCP CUCM, or kamailio's `tls` module) and phone
//! sides that trust it, over TLS 1.2 or 1.3 (rustls).
//! What keepalive sees of them is real TLS on kernel TCP: record headers, sizes and timing.

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::Arc,
};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};

use super::LabError;
use crate::fixtures::TlsVersion;

/// The name the CUCMs' certificate is made for, and the phones check.
pub const SERVER_NAME: &str = "cucm.lab";

/// A connection's byte stream, plain TCP or TLS over it, with its socket at hand (timeouts,
/// SO_LINGER).
pub trait Wire: Read + Write + Send {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Wire for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Wire for StreamOwned<ClientConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

impl Wire for StreamOwned<ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// The certificate of one lab run and the configurations made from it.
#[derive(Clone, Debug)]
pub struct LabTls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    /// The version the phones offer (the CUCMs accept both).
    pub version: TlsVersion,
    /// The certificate, PEM (for kamailio's `tls` module).
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> LabError {
    LabError::Tls(format!("{what}: {e}"))
}

impl LabTls {
    /// A fresh self-signed certificate for [`SERVER_NAME`]; phones offer only `version`.
    pub fn new(version: TlsVersion) -> Result<Self, LabError> {
        let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .map_err(|e| tls_error("make the lab certificate", e))?;
        let (cert_pem, key_pem) = (made.cert.pem(), made.signing_key.serialize_pem());
        let cert: CertificateDer<'static> = made.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .map_err(|e| tls_error("server versions", e))?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .map_err(|e| tls_error("server certificate", e))?;
        let mut roots = RootCertStore::empty();
        roots.add(cert).map_err(|e| tls_error("trust the lab certificate", e))?;
        let offered = match version {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        };
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[offered])
            .map_err(|e| tls_error("client versions", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { server: Arc::new(server), client: Arc::new(client), version, cert_pem, key_pem })
    }

    /// The CUCM's side of an accepted connection (the handshake runs on the first read).
    pub fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<StreamOwned<ServerConnection, TcpStream>, LabError> {
        let conn =
            ServerConnection::new(self.server.clone()).map_err(|e| tls_error("accept", e))?;
        Ok(StreamOwned::new(conn, tcp))
    }

    /// The phone's side of a connection (the handshake runs on the first write).
    pub fn connect(
        &self,
        tcp: TcpStream,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>, LabError> {
        let name = ServerName::try_from(SERVER_NAME).map_err(|e| tls_error("server name", e))?;
        let conn = ClientConnection::new(self.client.clone(), name)
            .map_err(|e| tls_error("connect", e))?;
        Ok(StreamOwned::new(conn, tcp))
    }
}
