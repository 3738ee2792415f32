//! The media socket: batched receive (`recvmmsg`, with GRO where the kernel offers it) and
//! segmented send (UDP GSO).
//!
//! An SFU sends far more than it receives: each packet from a publisher leaves once per
//! subscriber, and a subscriber's share of a video frame leaves as a run of datagrams of the same
//! size to the same address. The kernel's per-datagram send path (route lookup, socket buffer,
//! IP header, the loopback or driver hand-off) is most of a forwarded packet's cost, so
//! [`MediaSocket::send`] joins such runs into one `sendmsg` with a `UDP_SEGMENT` size and lets
//! the kernel, or the network card, cut them. Where the kernel or device refuses segmentation,
//! quinn-udp turns it off for the socket and the datagrams of the refused batch are sent one by
//! one, so nothing is lost.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Receive slots per `recvmmsg` call.
pub const RECEIVE_SLOTS: usize = 16;

/// Bytes per receive slot. With GRO, one slot holds a run of datagrams from one sender (the
/// kernel coalesces at most 64 KiB); without it, one datagram.
const RECEIVE_SLOT_BYTES: usize = 64 * 1024;

/// Datagrams joined into one segmented send, at most. The kernel's limit is 64.
pub const SEGMENTS_MAX: usize = 32;

/// Bytes of one segmented send, at most: the largest UDP payload, rounded down.
const SEGMENTED_BYTES_MAX: usize = 60_000;

/// What the socket has done, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketCounters {
    /// `sendmsg` calls; fewer than datagrams sent when runs were segmented.
    pub send_calls: u64,
    /// Datagrams the kernel refused (each is lost; the peer's retransmission or ICE copes).
    pub send_errors: u64,
    /// Received datagrams larger than a WebRTC datagram can be, dropped unread.
    pub datagrams_oversized: u64,
}

/// One received datagram's place in the receive buffers.
#[derive(Debug, Clone, Copy)]
struct Received {
    source: SocketAddr,
    slot: usize,
    start: usize,
    end: usize,
}

/// The node's one media socket.
pub struct MediaSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    slots: Vec<u8>,
    metas: Vec<RecvMeta>,
    /// Datagrams found by the last [`MediaSocket::try_receive`].
    received: Vec<Received>,
    /// The run being gathered for one segmented send.
    run: Vec<u8>,
    run_to: Option<SocketAddr>,
    run_segment: usize,
    run_segments: usize,
    /// Whether the last datagram of the run was shorter than the segment size (it must be the
    /// last one).
    run_closed: bool,
    largest_datagram: usize,
    pub counters: SocketCounters,
}

impl MediaSocket {
    /// Takes over a bound socket. `largest_datagram` is the size above which a received
    /// datagram is counted as oversized and dropped.
    pub fn new(socket: std::net::UdpSocket, largest_datagram: usize) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new((&socket).into())?;
        let socket = UdpSocket::from_std(socket)?;
        Ok(Self {
            socket,
            state,
            slots: vec![0; RECEIVE_SLOTS * RECEIVE_SLOT_BYTES],
            metas: vec![RecvMeta::default(); RECEIVE_SLOTS],
            received: Vec::with_capacity(RECEIVE_SLOTS),
            run: Vec::with_capacity(SEGMENTED_BYTES_MAX),
            run_to: None,
            run_segment: 0,
            run_segments: 0,
            run_closed: false,
            largest_datagram,
            counters: SocketCounters::default(),
        })
    }

    /// Whether the kernel segments sends for this socket.
    pub fn segmentation(&self) -> bool {
        self.state.max_gso_segments() > 1
    }

    /// Waits until datagrams may be waiting.
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads what is waiting with one `recvmmsg`, without blocking. Returns how many datagrams
    /// were found (read each with [`MediaSocket::received`]); zero when nothing waits.
    pub fn try_receive(&mut self) -> usize {
        self.received.clear();
        let mut slices: Vec<IoSliceMut<'_>> = self
            .slots
            .chunks_exact_mut(RECEIVE_SLOT_BYTES)
            .map(IoSliceMut::new)
            .collect();
        let result = self.socket.try_io(Interest::READABLE, || {
            self.state
                .recv((&self.socket).into(), &mut slices, &mut self.metas)
        });
        let count = match result {
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
            // ICMP errors from peers that went away surface here on Linux; they concern one
            // peer, whose ICE will time out, and never the socket.
            Err(error) => {
                tracing::trace!(%error, "UDP receive error");
                0
            }
        };
        for (slot, meta) in self.metas.iter().take(count).enumerate() {
            let stride = meta.stride.max(1);
            let mut start = 0;
            while start < meta.len {
                let end = (start + stride).min(meta.len);
                if end - start > self.largest_datagram {
                    self.counters.datagrams_oversized += 1;
                } else {
                    self.received.push(Received {
                        source: meta.addr,
                        slot,
                        start,
                        end,
                    });
                }
                start = end;
            }
        }
        self.received.len()
    }

    /// The sender and bytes of a datagram found by the last [`MediaSocket::try_receive`].
    pub fn received(&self, index: usize) -> Option<(SocketAddr, &[u8])> {
        let received = self.received.get(index)?;
        let slot = self
            .slots
            .chunks_exact(RECEIVE_SLOT_BYTES)
            .nth(received.slot)?;
        Some((received.source, slot.get(received.start..received.end)?))
    }

    /// Sends a datagram, possibly later: it joins the run being gathered when it goes to the
    /// same address and fits the run's segment size; otherwise the run is sent first. Call
    /// [`MediaSocket::flush`] when there is nothing more to send.
    pub async fn send(&mut self, destination: SocketAddr, contents: &[u8]) {
        if contents.is_empty() {
            return;
        }
        if !self.joins_run(destination, contents.len()) {
            self.flush().await;
            self.run_to = Some(destination);
            self.run_segment = contents.len();
        }
        self.run.extend_from_slice(contents);
        self.run_segments += 1;
        self.run_closed = contents.len() < self.run_segment;
    }

    fn joins_run(&self, destination: SocketAddr, length: usize) -> bool {
        self.run_to == Some(destination)
            && !self.run_closed
            && length > 0
            && length <= self.run_segment
            && self.run_segments < SEGMENTS_MAX.min(self.state.max_gso_segments())
            && self.run.len() + length <= SEGMENTED_BYTES_MAX
    }

    /// Sends the run gathered so far.
    pub async fn flush(&mut self) {
        let Some(destination) = self.run_to.take() else {
            return;
        };
        let segments = std::mem::take(&mut self.run_segments);
        let segment = self.run_segment;
        let contents = std::mem::take(&mut self.run);
        let sent = self
            .send_now(destination, &contents, (segments > 1).then_some(segment))
            .await;
        if let Err(error) = sent {
            if segments > 1 && !self.segmentation() {
                // The kernel or device refused segmentation (quinn-udp has now turned it off):
                // send the run's datagrams one by one.
                tracing::info!(%error, "UDP segmentation offload refused; sending datagrams singly");
                for datagram in contents.chunks(segment) {
                    if self.send_now(destination, datagram, None).await.is_err() {
                        self.counters.send_errors += 1;
                    }
                }
            } else {
                tracing::trace!(%error, %destination, "UDP send error");
                self.counters.send_errors += segments as u64;
            }
        }
        self.run = contents;
        self.run.clear();
        self.run_closed = false;
    }

    async fn send_now(
        &mut self,
        destination: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        self.counters.send_calls += 1;
        self.socket
            .async_io(Interest::WRITABLE, || {
                self.state.try_send((&self.socket).into(), &transmit)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> std::net::UdpSocket {
        std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a loopback socket")
    }

    /// Reads `count` datagrams from `socket`, each as its own buffer.
    async fn read(socket: &mut MediaSocket, count: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while out.len() < count {
            let found = socket.try_receive();
            for index in 0..found {
                let (source, bytes) = socket.received(index).expect("a received datagram");
                out.push((source, bytes.to_vec()));
            }
            if found == 0 {
                tokio::time::timeout(std::time::Duration::from_secs(5), socket.readable())
                    .await
                    .expect("datagrams arrive")
                    .expect("socket readable");
            }
        }
        out
    }

    fn datagram(tag: u8, length: usize) -> Vec<u8> {
        (0..length).map(|i| tag.wrapping_add(i as u8)).collect()
    }

    #[tokio::test]
    async fn runs_to_one_peer_arrive_as_the_datagrams_sent() {
        let mut sender = MediaSocket::new(loopback(), 2_047).expect("sender");
        let mut first = MediaSocket::new(loopback(), 2_047).expect("receiver");
        let mut second = MediaSocket::new(loopback(), 2_047).expect("receiver");
        let to_first = first.socket.local_addr().expect("address");
        let to_second = second.socket.local_addr().expect("address");
        // A run of equal sizes closed by a shorter one, then a longer one (a new run), then
        // another peer, then back: every boundary must survive segmentation.
        let plan = [
            (to_first, datagram(1, 1_100)),
            (to_first, datagram(2, 1_100)),
            (to_first, datagram(3, 1_100)),
            (to_first, datagram(4, 700)),
            (to_first, datagram(5, 700)),
            (to_first, datagram(6, 1_200)),
            (to_second, datagram(7, 90)),
            (to_first, datagram(8, 1_200)),
        ];
        for (to, bytes) in &plan {
            sender.send(*to, bytes).await;
        }
        sender.flush().await;
        let got_first = read(&mut first, 7).await;
        let got_second = read(&mut second, 1).await;
        let want_first: Vec<Vec<u8>> = plan
            .iter()
            .filter(|(to, _)| *to == to_first)
            .map(|(_, b)| b.clone())
            .collect();
        let got: Vec<Vec<u8>> = got_first.into_iter().map(|(_, b)| b).collect();
        assert_eq!(got, want_first);
        assert_eq!(got_second[0].1, plan[6].1);
        if sender.segmentation() {
            // 1100 x3 + 700 | 700 | 1200 | 90 | 1200
            assert_eq!(sender.counters.send_calls, 5);
        } else {
            assert_eq!(sender.counters.send_calls, plan.len() as u64);
        }
        assert_eq!(sender.counters.send_errors, 0);
    }

    #[tokio::test]
    async fn oversized_datagrams_are_counted_and_dropped() {
        let mut sender = MediaSocket::new(loopback(), 2_047).expect("sender");
        let mut receiver = MediaSocket::new(loopback(), 2_047).expect("receiver");
        let to = receiver.socket.local_addr().expect("address");
        sender.send(to, &datagram(1, 4_000)).await;
        sender.send(to, &datagram(2, 100)).await;
        sender.flush().await;
        let got = read(&mut receiver, 1).await;
        assert_eq!(got[0].1, datagram(2, 100));
        assert_eq!(receiver.counters.datagrams_oversized, 1);
    }
}
