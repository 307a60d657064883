//! A TCP proxy between a bus client and its broker, so a test can cut every connection and
//! refuse new ones for a while, as a broker restart does, without stopping the shared server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy to one upstream address.
pub struct Proxy {
    /// Where clients connect.
    pub address: SocketAddr,
    /// Bumped to cut every open connection.
    generation: watch::Sender<u64>,
    /// While false, new connections are closed at once.
    accepting: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let (generation, _) = watch::channel(0u64);
        let accepting = Arc::new(AtomicBool::new(true));
        let upstream = upstream.to_owned();
        let cut = generation.clone();
        let open = accepting.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = cut.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else { return };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { address, generation, accepting }
    }

    /// Cuts every connection and refuses new ones until `resume`.
    pub fn cut(&self) {
        self.accepting.store(false, Ordering::SeqCst);
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Accepts connections again.
    pub fn resume(&self) {
        self.accepting.store(true, Ordering::SeqCst);
    }
}
