//! A tansu broker (a Kafka-compatible server keeping everything in memory) run by a test on a
//! port of its own behind the cutting proxy: Kafka clients connect to the address the broker
//! advertises, so the broker advertises the proxy's.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a test waits for tansu to listen after starting it.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running tansu process on a loopback port.
pub struct Tansu {
    binary: String,
    address: SocketAddr,
    /// The address it tells clients to use (its own, or a proxy's in front of it).
    advertised: SocketAddr,
    child: Option<Child>,
}

impl Tansu {
    /// Starts `binary` on a free loopback port, telling clients to connect to `advertised` (a
    /// proxy forwarding to `address()`), and waits until it listens.
    pub fn start_behind(binary: &str, listen: SocketAddr, advertised: SocketAddr) -> Tansu {
        let mut tansu =
            Tansu { binary: binary.to_owned(), address: listen, advertised, child: None };
        tansu.spawn();
        tansu
    }

    /// A free loopback address to listen on.
    pub fn free_address() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
    }

    fn spawn(&mut self) {
        let listener = format!("tcp://{}", self.address);
        let advertised = format!("tcp://{}", self.advertised);
        // XC_TANSU_TEST_LOG=FILE keeps the broker's log (RUST_LOG sets its level).
        let log = std::env::var_os("XC_TANSU_TEST_LOG")
            .and_then(|path| std::fs::OpenOptions::new().create(true).append(true).open(path).ok());
        let mut command = Command::new(&self.binary);
        command
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        match log.and_then(|file| file.try_clone().ok().map(|copy| (file, copy))) {
            Some((out, err)) => command.stdout(out).stderr(err),
            None => command.arg("--silent").stderr(Stdio::null()),
        };
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start tansu ({}): {error}", self.binary));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&self.address, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {} in time", self.address);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker and starts it again on the same address: it comes back empty (memory
    /// storage), without the topics, records and committed offsets it held.
    pub fn restart_empty(&mut self) {
        self.stop();
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
