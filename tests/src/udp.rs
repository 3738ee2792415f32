//! Runs a [`Client`] over a real UDP socket in a tokio task, and reports what it has seen.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::Client;

/// Datagrams read in one go before timers are looked at again.
const RECEIVE_BATCH_MAX: usize = 32;

/// What a running client has seen so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub connected: bool,
    pub disconnected: bool,
    pub video_frames: u64,
    pub video_packets: u64,
    pub audio_packets: u64,
    pub first_frame_keyframe: Option<bool>,
    pub keyframe_requests: u64,
}

impl Summary {
    fn of(client: &Client) -> Self {
        let video = client.video();
        Self {
            connected: client.connected,
            disconnected: client.disconnected,
            video_frames: video.map_or(0, |v| v.frames_by_layer.iter().sum()),
            video_packets: video.map_or(0, |v| v.packets),
            audio_packets: client.audio().map_or(0, |a| a.packets),
            first_frame_keyframe: video.and_then(|v| v.first_frame_keyframe),
            keyframe_requests: client.keyframe_requests,
        }
    }
}

/// A client running in the background.
pub struct Running {
    pub summary: watch::Receiver<Summary>,
    stop: watch::Sender<bool>,
    join: JoinHandle<Client>,
}

/// Binds a socket on loopback for a client.
pub async fn bind() -> std::io::Result<(UdpSocket, SocketAddr)> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    Ok((socket, addr))
}

/// Starts moving datagrams and time for `client` on `socket` (bound to `client.addr`).
pub fn spawn(client: Client, socket: UdpSocket) -> Running {
    let (summary_tx, summary) = watch::channel(Summary::of(&client));
    let (stop, stop_rx) = watch::channel(false);
    let join = tokio::spawn(run(client, socket, summary_tx, stop_rx));
    Running {
        summary,
        stop,
        join,
    }
}

impl Running {
    /// Waits until `condition` holds for the summary, or `limit` passes; returns whether it held.
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        condition: impl Fn(&Summary) -> bool,
    ) -> bool {
        tokio::time::timeout(limit, self.summary.wait_for(|s| condition(s)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn now(&self) -> Summary {
        self.summary.borrow().clone()
    }

    /// Closes the connection (DTLS close_notify) and returns the client with its statistics.
    pub async fn stop(self) -> Client {
        let _ = self.stop.send(true);
        self.join.await.expect("the client task does not panic")
    }
}

async fn run(
    mut client: Client,
    socket: UdpSocket,
    summary: watch::Sender<Summary>,
    mut stop: watch::Receiver<bool>,
) -> Client {
    let mut buffer = vec![0u8; 2048];
    loop {
        for transmit in client.take_transmits() {
            let _ = socket
                .send_to(&transmit.contents, transmit.destination)
                .await;
        }
        summary.send_if_modified(|old| {
            let new = Summary::of(&client);
            let changed = *old != new;
            *old = new;
            changed
        });
        let deadline = client.timeout().max(Instant::now());
        tokio::select! {
            _ = stop.changed() => break,
            received = socket.recv_from(&mut buffer) => {
                if let Ok((length, source)) = received {
                    client.handle_datagram(Instant::now(), source, &buffer[..length]);
                }
                for _ in 1..RECEIVE_BATCH_MAX {
                    match socket.try_recv_from(&mut buffer) {
                        Ok((length, source)) => client.handle_datagram(Instant::now(), source, &buffer[..length]),
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => client.handle_timeout(Instant::now()),
        }
    }
    client.close(Instant::now());
    for transmit in client.take_transmits() {
        let _ = socket
            .send_to(&transmit.contents, transmit.destination)
            .await;
    }
    client
}
