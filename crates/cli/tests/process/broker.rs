//! A broker of the test's own, on a free port with its data in a temporary folder, so a test can
//! stop and start it (as an operator restarts a broker) without disturbing the shared servers
//! other tests use: Redis (append-only file, fsync on every write), NATS with JetStream (file
//! storage) and RabbitMQ (a second node, named after its port, management plugin off).
//!
//! The binaries are looked for on `PATH` and in the system folders Debian installs them in
//! (`/usr/sbin`, `/usr/lib/rabbitmq/bin`). A missing one skips the test with a notice, or fails
//! it under `XC_REQUIRE_SERVICES`. The data folder (with the broker's log) is kept when the test
//! fails or `XC_KEEP_TEST_DIRS` is set.

use super::cluster::services_required;
use super::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a broker may take to listen after a start (a RabbitMQ node boots in about 10 s
/// alone, more on a busy machine).
pub const BROKER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest a clean stop may take before the broker is killed.
pub const BROKER_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Which broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `redis-server --appendonly yes --appendfsync always`.
    Redis,
    /// `nats-server -js` with file storage.
    Nats,
    /// A RabbitMQ node of its own.
    RabbitMq,
}

impl Kind {
    /// The binary that runs the broker.
    fn binary(self) -> &'static str {
        match self {
            Kind::Redis => "redis-server",
            Kind::Nats => "nats-server",
            Kind::RabbitMq => "rabbitmq-server",
        }
    }
}

/// A broker process of the test's own, stopped cleanly when dropped.
pub struct OwnBroker {
    kind: Kind,
    binary: PathBuf,
    /// `rabbitmqctl`, for a RabbitMQ node.
    control: Option<PathBuf>,
    port: u16,
    /// RabbitMQ's inter-node port (unused by the other brokers).
    dist_port: u16,
    data: tempfile::TempDir,
    child: Option<Child>,
    /// How many times it was started.
    starts: usize,
}

/// The first of `name` on `PATH`, then in the system folders, that exists (`command -v`, plus
/// the folders a non-root `PATH` leaves out). For RabbitMQ the real script in
/// `/usr/lib/rabbitmq/bin` comes first: Debian's `/usr/sbin` wrapper switches to the `rabbitmq`
/// user when run as root, which could not read the test's folder nor share its Erlang cookie.
fn find(name: &str) -> Option<PathBuf> {
    let system = ["/usr/lib/rabbitmq/bin", "/usr/sbin", "/usr/local/sbin", "/sbin"];
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).collect::<Vec<_>>();
    let folders: Vec<PathBuf> = if name.starts_with("rabbitmq") {
        system
            .iter()
            .take(1)
            .map(PathBuf::from)
            .chain(on_path)
            .chain(system.iter().skip(1).map(PathBuf::from))
            .collect()
    } else {
        on_path.into_iter().chain(system.iter().map(PathBuf::from)).collect()
    };
    folders.into_iter().map(|folder| folder.join(name)).find(|candidate| candidate.is_file())
}

impl OwnBroker {
    /// Starts a broker of `kind` and waits until it listens; `None` (said aloud) when its binary
    /// is not installed and `XC_REQUIRE_SERVICES` is not set.
    pub fn start(kind: Kind) -> Option<OwnBroker> {
        let Some(binary) = find(kind.binary()) else {
            assert!(
                !services_required(),
                "{} is not installed and XC_REQUIRE_SERVICES is true",
                kind.binary()
            );
            eprintln!("NOTICE: {} is not installed: the test with it was NOT run", kind.binary());
            return None;
        };
        let control = match kind {
            Kind::RabbitMq => match find("rabbitmqctl") {
                Some(control) => Some(control),
                None => {
                    assert!(!services_required(), "rabbitmqctl is not installed");
                    eprintln!("NOTICE: rabbitmqctl is not installed: the test was NOT run");
                    return None;
                }
            },
            _ => None,
        };
        let data = tempfile::Builder::new().prefix("xc-broker-").tempdir().expect("broker folder");
        if kind == Kind::RabbitMq {
            std::fs::write(data.path().join("enabled_plugins"), "[].\n").expect("plugins file");
            std::fs::write(data.path().join("rabbitmq.conf"), "").expect("config file");
        }
        let mut broker = OwnBroker {
            kind,
            binary,
            control,
            port: free_port(),
            dist_port: free_port(),
            data,
            child: None,
            starts: 0,
        };
        broker.start_again();
        Some(broker)
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
            Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
            Kind::RabbitMq => format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port),
        }
    }

    /// The RabbitMQ node name.
    fn node(&self) -> String {
        format!("xc{}@localhost", self.port)
    }

    fn folder(&self) -> &Path {
        self.data.path()
    }

    /// Starts the broker on its port with its data folder (again), and waits until it listens.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        self.starts += 1;
        let folder = self.folder().to_owned();
        let log = std::fs::File::create(folder.join(format!("broker-{}.log", self.starts)))
            .expect("broker log");
        let mut command = Command::new(&self.binary);
        match self.kind {
            Kind::Redis => {
                command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"]).args([
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                ]);
                command.arg("--dir").arg(&folder);
            }
            Kind::Nats => {
                command.args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"]);
                command.arg(&folder);
            }
            Kind::RabbitMq => {
                command
                    .env("HOME", &folder)
                    .env("RABBITMQ_NODENAME", self.node())
                    .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
                    .env("RABBITMQ_NODE_PORT", self.port.to_string())
                    .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
                    .env("RABBITMQ_MNESIA_BASE", folder.join("mnesia"))
                    .env("RABBITMQ_LOG_BASE", folder.join("log"))
                    .env("RABBITMQ_CONFIG_FILE", folder.join("rabbitmq.conf"))
                    .env("RABBITMQ_ENABLED_PLUGINS_FILE", folder.join("enabled_plugins"))
                    .env("RABBITMQ_PID_FILE", folder.join("node.pid"));
            }
        }
        let child = command
            .current_dir(&folder)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        while !self.answers(address) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{} exited at start ({status}); log in {}",
                    self.binary.display(),
                    folder.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not listen on {address} in time",
                self.kind
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the broker at `address` speaks its protocol: not just an open port, which another
    /// test's process may hold while a RabbitMQ node boots (its port was free when drawn).
    fn answers(&self, address: std::net::SocketAddr) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let (hello, expected): (&[u8], &[u8]) = match self.kind {
            Kind::Redis => (b"PING\r\n", b"+PONG"),
            // The server speaks first: `INFO {...}`.
            Kind::Nats => (b"", b"INFO "),
            // AMQP 0-9-1 header; the server answers with a method frame (type 1), Connection.Start.
            Kind::RabbitMq => (b"AMQP\x00\x00\x09\x01", b"\x01\x00\x00"),
        };
        if stream.write_all(hello).is_err() {
            return false;
        }
        let mut answer = vec![0; expected.len()];
        stream.read_exact(&mut answer).is_ok() && answer == expected
    }

    /// Stops the broker cleanly, as an operator restarting it would (SIGTERM; `rabbitmqctl stop`
    /// for RabbitMQ), and waits for it to exit (killed after `BROKER_STOP_TIMEOUT`).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        match self.kind {
            Kind::RabbitMq => {
                let control = self.control.clone().expect("rabbitmqctl found at start");
                let _ = Command::new(control)
                    .env("HOME", self.folder())
                    .args(["-n", &self.node(), "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            Kind::Redis | Kind::Nats => {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            }
        }
        let deadline = Instant::now() + BROKER_STOP_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                eprintln!("{:?} did not stop within {BROKER_STOP_TIMEOUT:?}: killed", self.kind);
                // A RabbitMQ node runs under its start script: kill the Erlang VM too.
                if let Ok(pid) = std::fs::read_to_string(self.folder().join("node.pid")) {
                    let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
                }
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || std::env::var_os("XC_KEEP_TEST_DIRS").is_some() {
            // The logs are in the data folder: keep it.
            let kept = std::mem::replace(
                &mut self.data,
                tempfile::Builder::new().prefix("xc-broker-").tempdir().expect("folder"),
            );
            eprintln!("broker folder kept: {}", kept.keep().display());
        }
    }
}
