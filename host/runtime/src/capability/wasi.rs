//! WASI p2 with an empty context: no preopened directories, no environment,
//! no sockets, no name lookup. stdout and stderr go to the step log, capped.
//!
//! The standard implementation would refuse these quietly inside the guest;
//! we replace the few entry points a component must pass through to reach a
//! file, a variable or the network with versions that refuse *and* write an
//! audit record, so an operator sees every attempt.

use serde::{Deserialize, Serialize};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::{cli, filesystem, sockets};
use wasmtime_wasi::p2::{DynPollable, SocketError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use super::StepEnv;
use super::log::{StepLog, Stream};
use crate::audit::AuditEvent;

/// Audit events for WASI access the sandbox refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum WasiEvent {
    /// The component looked for directories to open: none are granted.
    Filesystem,
    /// The component read its environment: it is empty.
    Environment,
    /// The component tried to create a socket.
    Socket {
        /// `tcp` or `udp`.
        protocol: String,
    },
    /// The component tried to resolve a name.
    NameLookup {
        /// The name.
        name: String,
    },
}

/// Build the step's empty WASI context, with stdout/stderr into `log`.
pub(crate) fn context(log: &Arc<StepLog>) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(LogPipe {
            log: log.clone(),
            stream: Stream::Stdout,
        })
        .stderr(LogPipe {
            log: log.clone(),
            stream: Stream::Stderr,
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// stdout/stderr: every write is accepted (so a guest never blocks or fails
/// on logging) and kept up to the cap.
struct LogPipe {
    log: Arc<StepLog>,
    stream: Stream,
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LogPipe {
            log: self.log.clone(),
            stream: self.stream,
        })
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.log.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Per-step state of the audited WASI entry points.
pub struct WasiGuard {
    env: StepEnv,
}

impl WasiGuard {
    pub(crate) fn new(env: StepEnv) -> Self {
        Self { env }
    }
    fn audit(&self, event: WasiEvent) {
        self.env.audit.emit(AuditEvent::Wasi(event));
    }
}

/// Link WASI p2, then shadow the entry points we audit.
pub(crate) fn add_to_linker<T>(
    linker: &mut Linker<T>,
    guard: fn(&mut T) -> &mut WasiGuard,
) -> wasmtime::Result<()>
where
    T: wasmtime_wasi::WasiView + 'static,
{
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    linker.allow_shadowing(true);
    use wasmtime::component::HasSelf;
    filesystem::preopens::add_to_linker::<T, HasSelf<WasiGuard>>(linker, guard)?;
    cli::environment::add_to_linker::<T, HasSelf<WasiGuard>>(linker, guard)?;
    sockets::tcp_create_socket::add_to_linker::<T, HasSelf<WasiGuard>>(linker, guard)?;
    sockets::udp_create_socket::add_to_linker::<T, HasSelf<WasiGuard>>(linker, guard)?;
    sockets::ip_name_lookup::add_to_linker::<T, HasSelf<WasiGuard>>(linker, guard)?;
    linker.allow_shadowing(false);
    Ok(())
}

impl filesystem::preopens::Host for WasiGuard {
    fn get_directories(
        &mut self,
    ) -> wasmtime::Result<Vec<(Resource<filesystem::types::Descriptor>, String)>> {
        self.audit(WasiEvent::Filesystem);
        Ok(Vec::new())
    }
}

impl cli::environment::Host for WasiGuard {
    fn get_environment(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        self.audit(WasiEvent::Environment);
        Ok(Vec::new())
    }
    fn get_arguments(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn initial_cwd(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(None)
    }
}

fn access_denied() -> SocketError {
    sockets::network::ErrorCode::AccessDenied.into()
}

impl sockets::tcp_create_socket::Host for WasiGuard {
    fn create_tcp_socket(
        &mut self,
        _family: sockets::network::IpAddressFamily,
    ) -> Result<Resource<wasmtime_wasi::p2::TcpSocket>, SocketError> {
        self.audit(WasiEvent::Socket {
            protocol: "tcp".into(),
        });
        Err(access_denied())
    }
}

impl sockets::udp_create_socket::Host for WasiGuard {
    async fn create_udp_socket(
        &mut self,
        _family: sockets::network::IpAddressFamily,
    ) -> Result<Resource<wasmtime_wasi::p2::UdpSocket>, SocketError> {
        self.audit(WasiEvent::Socket {
            protocol: "udp".into(),
        });
        Err(access_denied())
    }
}

impl sockets::ip_name_lookup::Host for WasiGuard {
    fn resolve_addresses(
        &mut self,
        _network: Resource<sockets::network::Network>,
        name: String,
    ) -> Result<Resource<sockets::ip_name_lookup::ResolveAddressStream>, SocketError> {
        self.audit(WasiEvent::NameLookup {
            name: name.chars().take(256).collect(),
        });
        Err(access_denied())
    }
}

// No stream is ever created (resolve-addresses always refuses), so these are
// only reachable with a forged handle, which the resource table rejects.
impl sockets::ip_name_lookup::HostResolveAddressStream for WasiGuard {
    fn resolve_next_address(
        &mut self,
        _stream: Resource<sockets::ip_name_lookup::ResolveAddressStream>,
    ) -> Result<Option<sockets::network::IpAddress>, SocketError> {
        Err(access_denied())
    }
    fn subscribe(
        &mut self,
        _stream: Resource<sockets::ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        Err(wasmtime::format_err!(
            "name lookup is not available in the Allama sandbox"
        ))
    }
    fn drop(
        &mut self,
        _stream: Resource<sockets::ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<()> {
        Ok(())
    }
}

// The socket bindings convert `SocketError` through `network::Host`; only
// that conversion is reached from the functions above.
impl sockets::network::Host for WasiGuard {
    fn convert_error_code(
        &mut self,
        error: SocketError,
    ) -> wasmtime::Result<sockets::network::ErrorCode> {
        error.downcast()
    }
    fn network_error_code(
        &mut self,
        _err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<sockets::network::ErrorCode>> {
        Ok(None)
    }
}

impl sockets::network::HostNetwork for WasiGuard {
    fn drop(&mut self, _network: Resource<sockets::network::Network>) -> wasmtime::Result<()> {
        Ok(())
    }
}
