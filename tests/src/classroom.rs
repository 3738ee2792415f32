//! A classroom WebSocket client, as the browser client speaks it: hello with a token (and the
//! last sequence number seen, when resuming), then commands with idempotency keys; it keeps the
//! events it was sent, in order, and checks there are no gaps or repeats.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use multistream_proto::session::{Command, CommandKey, Event, Seq};
use multistream_proto::wire::{ClientMessage, ServerMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something the node should send.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct ClassClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The sequence number of the last event applied (from a snapshot or an event).
    pub seq: Seq,
    /// The last snapshot's state, if one came.
    pub snapshot: Option<serde_json::Value>,
    /// Every event received since connecting, in order.
    pub events: Vec<Event>,
    /// Events the node said were not for this participant.
    pub hidden: u64,
    next_key: u64,
    name: String,
}

/// What came back for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ack(Seq),
    Refused { code: String, message: String },
}

impl ClassClient {
    /// Connects to `/ws/{session}` and says hello; waits for the welcome.
    pub async fn connect(
        http: SocketAddr,
        session: &str,
        token: &str,
        resume_from: Option<Seq>,
    ) -> Result<Self, String> {
        let url = format!("ws://{http}/ws/{session}");
        // No Nagle delay: the messages are small and the tests and benchmarks time them.
        let connect = tokio_tungstenite::connect_async_with_config(&url, None, true);
        let (mut socket, _) = tokio::time::timeout(WAIT, connect)
            .await
            .map_err(|_| format!("connecting to {url} timed out"))?
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let hello = ClientMessage::Hello {
            token: token.to_owned(),
            resume_from,
        };
        let text = serde_json::to_string(&hello).map_err(|e| e.to_string())?;
        socket
            .send(Message::text(text))
            .await
            .map_err(|e| e.to_string())?;
        let mut client = ClassClient {
            socket,
            seq: resume_from.unwrap_or_default(),
            snapshot: None,
            events: Vec::new(),
            hidden: 0,
            next_key: 0,
            name: session.to_owned(),
        };
        client
            .wait_for(|m| matches!(m, ServerMessage::Welcome { .. }))
            .await?;
        Ok(client)
    }

    /// Reads the next message, keeping the class state's position; `Err` on close or timeout.
    pub async fn next(&mut self) -> Result<ServerMessage, String> {
        loop {
            let frame = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .map_err(|_| format!("nothing from the node for {WAIT:?} ({})", self.name))?;
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!("the node closed the connection: {frame:?}"));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the connection ended".into()),
            };
            let message: ServerMessage = serde_json::from_str(&text)
                .map_err(|e| format!("the node sent what the client cannot read ({e}): {text}"))?;
            match &message {
                ServerMessage::Snapshot { seq, state } => {
                    self.seq = *seq;
                    self.snapshot = Some(state.clone());
                }
                ServerMessage::Event { event } => {
                    if event.seq != self.seq.next() {
                        return Err(format!(
                            "event {} came after {}: a gap or a repeat",
                            event.seq, self.seq
                        ));
                    }
                    self.seq = event.seq;
                    self.events.push(event.clone());
                }
                ServerMessage::Hidden { seq } => {
                    if *seq != self.seq.next() {
                        return Err(format!(
                            "hidden event {seq} came after {}: a gap or a repeat",
                            self.seq
                        ));
                    }
                    self.seq = *seq;
                    self.hidden += 1;
                }
                _ => {}
            }
            return Ok(message);
        }
    }

    /// Reads until a message satisfies `condition`.
    pub async fn wait_for(
        &mut self,
        condition: impl Fn(&ServerMessage) -> bool,
    ) -> Result<ServerMessage, String> {
        loop {
            let message = self.next().await?;
            if condition(&message) {
                return Ok(message);
            }
        }
    }

    /// Reads events until one satisfies `condition`.
    pub async fn wait_for_event(
        &mut self,
        condition: impl Fn(&Event) -> bool,
    ) -> Result<Event, String> {
        if let Some(event) = self.events.iter().find(|e| condition(e)) {
            return Ok(event.clone());
        }
        loop {
            if let ServerMessage::Event { event } = self.next().await? {
                if condition(&event) {
                    return Ok(event);
                }
            }
        }
    }

    /// Sends a command with a fresh key and waits for its answer.
    pub async fn command(&mut self, command: Command) -> Result<Answer, String> {
        // Unique in the test process: a participant's new connection must not reuse a key an
        // earlier one used, or the node rightly answers with the earlier command's outcome.
        static KEYS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        self.next_key = KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let key: CommandKey = format!("t{}-{}", std::process::id(), self.next_key)
            .parse()
            .map_err(|e: String| e)?;
        self.command_with_key(key, command).await
    }

    /// Sends a command with the given key and waits for its answer.
    pub async fn command_with_key(
        &mut self,
        key: CommandKey,
        command: Command,
    ) -> Result<Answer, String> {
        let text = serde_json::to_string(&ClientMessage::Command {
            key: key.clone(),
            command,
        })
        .map_err(|e| e.to_string())?;
        self.send_raw(&text).await?;
        let answer = self
            .wait_for(|m| match m {
                ServerMessage::Ack { key: k, .. } | ServerMessage::Refused { key: k, .. } => {
                    *k == key
                }
                _ => false,
            })
            .await?;
        Ok(match answer {
            ServerMessage::Ack { seq, .. } => Answer::Ack(seq),
            ServerMessage::Refused { code, message, .. } => Answer::Refused { code, message },
            _ => unreachable!("filtered above"),
        })
    }

    /// Sends any text, well-formed or not.
    pub async fn send_raw(&mut self, text: &str) -> Result<(), String> {
        self.socket
            .send(Message::text(text.to_owned()))
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    /// Leaves the class as the page's "Leave" button does: a normal close saying `left`.
    pub async fn leave(mut self) {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "left".into(),
        };
        let _ = self.socket.close(Some(frame)).await;
    }
}
