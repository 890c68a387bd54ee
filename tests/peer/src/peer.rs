//! The running server.

use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::body::PeerBody;
use crate::{Recorded, Reply, Router};

/// The default largest request body a peer reads: 64 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 << 20;

/// A running HTTP/1.1 server on `127.0.0.1`, answering through a [`Router`]
/// and recording every request.
///
/// It runs as a task on the current tokio runtime. Dropping the `Peer` closes
/// the listening socket at once (new connections are refused) and then ends
/// every open connection.
///
/// A handler that panics is answered `500 {"error": "peer handler panicked"}`
/// and the panic is re-raised when the `Peer` is dropped, so an assertion
/// inside a handler still fails the test.
pub struct Peer {
    addr: SocketAddr,
    ca_pem: Option<String>,
    state: Arc<State>,
    listener: Arc<Mutex<Option<TcpListener>>>,
    task: JoinHandle<()>,
}

struct State {
    router: Router,
    requests: Mutex<Vec<Arc<Recorded>>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    connections: AtomicUsize,
    panics: Mutex<Vec<String>>,
}

impl Peer {
    /// Starts a peer on `127.0.0.1` with a port the OS assigns.
    ///
    /// # Panics
    /// Outside a tokio runtime, or if no local port can be bound.
    pub async fn start(router: Router) -> Peer {
        Self::start_with(router, None).await
    }

    /// Starts an HTTPS peer whose certificate is valid for `names` (e.g.
    /// `www.virustotal.com`), issued by a throwaway CA; [`Peer::ca_pem`] is
    /// the CA to trust. Point the names at [`Peer::addr`] in the client.
    pub async fn start_tls(router: Router, names: &[&str]) -> Peer {
        let (config, ca_pem) = crate::tls::server_config(names);
        let mut peer = Self::start_with(router, Some(config)).await;
        peer.ca_pem = Some(ca_pem);
        peer
    }

    /// The PEM of the CA that issued an HTTPS peer's certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    async fn start_with(
        router: Router,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Peer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binding 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let state = Arc::new(State {
            router,
            requests: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            panics: Mutex::new(Vec::new()),
        });
        let listener = Arc::new(Mutex::new(Some(listener)));
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = tokio::spawn(accept_loop(
            Arc::clone(&listener),
            Arc::clone(&state),
            acceptor,
        ));
        Peer {
            addr,
            ca_pem: None,
            state,
            listener,
            task,
        }
    }

    /// The address the peer listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path` as given (e.g. `"/v1/x?a=1"`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.url("")
    }

    /// Every request received so far, in the order their bodies were read.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.requests)
            .iter()
            .map(|r| Recorded::clone(r))
            .collect()
    }

    /// How many requests the peer has received.
    pub fn request_count(&self) -> usize {
        lock(&self.state.requests).len()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<Recorded> {
        lock(&self.state.requests)
            .last()
            .map(|r| Recorded::clone(r))
    }

    /// Forgets the requests recorded so far (counters are kept).
    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }

    /// How many TCP connections the peer has accepted (to check connection
    /// reuse, or that the host never even connected).
    pub fn connection_count(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// How many requests are being handled right now: received but not yet
    /// answered (a delayed reply counts until its delay is over; a streamed
    /// body no longer counts once its headers are sent).
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests ever handled at once (see [`Peer::in_flight`]).
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Close the listening socket now rather than when the aborted task is
        // next polled, so that connecting fails as soon as the peer is gone.
        drop(lock(&self.listener).take());
        // Dropping the accept loop drops its JoinSet, which aborts every
        // connection.
        self.task.abort();
        if !std::thread::panicking() {
            let panics = lock(&self.state.panics);
            if let Some(first) = panics.first() {
                panic!("{} peer handler(s) panicked; first: {first}", panics.len());
            }
        }
    }
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("addr", &self.addr)
            .field("router", &self.state.router)
            .field("requests", &self.request_count())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts from the shared listener; `None` once [`Peer`]'s drop took it.
fn poll_accept(
    listener: &Mutex<Option<TcpListener>>,
    cx: &mut Context<'_>,
) -> Poll<Option<std::io::Result<(TcpStream, SocketAddr)>>> {
    match lock(listener).as_ref() {
        Some(listener) => listener.poll_accept(cx).map(Some),
        None => Poll::Ready(None),
    }
}

async fn accept_loop(
    listener: Arc<Mutex<Option<TcpListener>>>,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = std::future::poll_fn(|cx| poll_accept(&listener, cx)) => match accepted {
                Some(Ok((stream, _))) => {
                    state.connections.fetch_add(1, Ordering::SeqCst);
                    let state = Arc::clone(&state);
                    match tls.clone() {
                        None => {
                            connections.spawn(serve(stream, state));
                        }
                        Some(acceptor) => {
                            connections.spawn(async move {
                                let _ = stream.set_nodelay(true);
                                // A failed handshake is the client's problem: drop it.
                                if let Ok(tls) = acceptor.accept(stream).await {
                                    serve_io(tls, state).await;
                                }
                            });
                        }
                    }
                }
                // Transient (e.g. out of file descriptors): back off a little.
                Some(Err(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
                None => return,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(stream: TcpStream, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    serve_io(stream, state).await;
}

async fn serve_io<S>(stream: S, state: Arc<State>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(Arc::clone(&state), req));
    // Errors here are the client's doing (reset, malformed request): the
    // connection simply ends.
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Counts a request as in flight while alive.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> InFlight<'a> {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<PeerBody>, Infallible> {
    let _in_flight = InFlight::enter(&state);
    let (parts, mut body) = req.into_parts();

    let limit = state.router.body_limit;
    let mut data = Vec::new();
    let mut too_large = false;
    let mut broken = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            broken = true;
            break;
        };
        if let Ok(chunk) = frame.into_data() {
            let room = limit - data.len();
            if chunk.len() > room {
                data.extend_from_slice(&chunk[..room]);
                too_large = true;
                break;
            }
            data.extend_from_slice(&chunk);
        }
    }

    let recorded = Arc::new(Recorded {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body: data,
    });
    lock(&state.requests).push(Arc::clone(&recorded));

    let reply = if too_large {
        Reply::error(413, "payload too large")
    } else if broken {
        Reply::error(400, "incomplete request body")
    } else {
        match std::panic::catch_unwind(AssertUnwindSafe(|| state.router.dispatch(&recorded))) {
            Ok(reply) => reply,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".to_owned());
                lock(&state.panics).push(format!(
                    "{} {}: {message}",
                    recorded.method,
                    recorded.path_and_query()
                ));
                Reply::error(500, "peer handler panicked")
            }
        }
    };
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    Ok(reply.into_response())
}
