//! Datagrams in and out in batches: the seam for a batched backend.
//!
//! The driver asks for two operations only: read every datagram a socket has ready (up to a
//! limit) into an `RxBatch`, and send a `TxBatch` of encoded datagrams. This portable
//! backend drains with `try_recv_buf_from` / `try_send_to`, one system call per datagram; a
//! batched one (`recvmmsg`/`sendmmsg`, GSO and GRO, e.g. the `quinn-udp` crate's
//! `UdpSocketState`) replaces these two functions without touching the driver: a `TxBatch`
//! already holds its datagrams back to back in one buffer, as `sendmmsg` and GSO want them.
//!
//! Received datagrams are carved out of one large buffer ([`RX_CHUNK`]), so reading allocates
//! at most once per chunk, not once per datagram; a datagram the node keeps holds its chunk
//! alive, and a chunk whose datagrams are all gone is read into again.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;

/// The largest UDP payload (IPv4: 65,507 bytes), rounded up.
pub const MAX_DATAGRAM: usize = 1 << 16;

/// The buffer datagrams are read into: a few maximal datagrams, many small ones.
pub const RX_CHUNK: usize = 4 * MAX_DATAGRAM;

/// Datagrams read in one go, with their source addresses.
#[derive(Debug)]
pub(crate) struct RxBatch {
    buf: BytesMut,
    pub datagrams: Vec<(Bytes, SocketAddr)>,
}

impl RxBatch {
    pub(crate) fn new(limit: usize) -> Self {
        RxBatch { buf: BytesMut::with_capacity(RX_CHUNK), datagrams: Vec::with_capacity(limit) }
    }

    /// Reads what `socket` has ready, up to `limit` datagrams; returns the read error, if
    /// any, other than having nothing to read. Leaves the socket's readiness cleared only
    /// when it ran dry, so a socket with more to read is ready again at once.
    pub(crate) fn recv(&mut self, socket: &UdpSocket, limit: usize) -> Option<io::Error> {
        while self.datagrams.len() < limit {
            if self.buf.capacity() - self.buf.len() < MAX_DATAGRAM
                && !self.buf.try_reclaim(RX_CHUNK)
            {
                // The old chunk lives on in datagrams cut from it that the node still holds;
                // start a new one. (Once they are all dropped it is reused: no allocation,
                // and no fresh pages to fault in.)
                self.buf = BytesMut::with_capacity(RX_CHUNK);
            }
            match socket.try_recv_buf_from(&mut self.buf) {
                Ok((n, from)) => {
                    let datagram = self.buf.split_to(n).freeze();
                    self.datagrams.push((datagram, from));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                // An ICMP error left on the socket by an earlier send: nothing was read.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Some(e),
            }
        }
        None
    }
}

/// Datagrams to send: their bytes back to back in one buffer, each with its destination. A
/// datagram sent to several members (a cast in unicast-only mode) is stored once.
#[derive(Debug, Default)]
pub(crate) struct TxBatch {
    buf: BytesMut,
    items: Vec<(Range<usize>, SocketAddr)>,
}

impl TxBatch {
    /// Appends a datagram written by `write`; returns its place, for [`TxBatch::push_to`].
    pub(crate) fn write(&mut self, write: impl FnOnce(&mut BytesMut)) -> Range<usize> {
        let start = self.buf.len();
        write(&mut self.buf);
        start..self.buf.len()
    }

    /// The bytes of a datagram written before.
    pub(crate) fn bytes(&self, at: Range<usize>) -> &[u8] {
        &self.buf[at]
    }

    /// Sends the datagram at `at` to `to`.
    pub(crate) fn push_to(&mut self, at: Range<usize>, to: SocketAddr) {
        self.items.push((at, to));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends every datagram from `socket`, waiting for room in its buffer when full, and
    /// empties the batch (keeping its memory). Returns the datagrams and bytes sent, and the
    /// send errors met (each loses its datagram).
    pub(crate) async fn send(&mut self, socket: &UdpSocket) -> Sent {
        let mut sent = Sent::default();
        for (at, to) in &self.items {
            let datagram = &self.buf[at.clone()];
            loop {
                match socket.try_send_to(datagram, *to) {
                    Ok(n) => {
                        sent.datagrams += 1;
                        sent.bytes += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if let Err(e) = socket.writable().await {
                            sent.error(e);
                        } else {
                            continue;
                        }
                    }
                    Err(e) => sent.error(e),
                }
                break;
            }
        }
        self.buf.clear();
        self.items.clear();
        sent
    }
}

/// What sending a batch did.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    pub datagrams: u64,
    pub bytes: u64,
    pub errors: u64,
    /// The first error, for the log.
    pub first_error: Option<io::Error>,
}

impl Sent {
    fn error(&mut self, e: io::Error) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram size that fills a chunk past the point where a maximal datagram fits:
    /// `FILL` of them leave less than [`MAX_DATAGRAM`] free in one chunk.
    const LEN: usize = MAX_DATAGRAM / 4;
    const FILL: usize = (RX_CHUNK - MAX_DATAGRAM) / LEN + 1;

    /// A pair of loopback sockets: `rx` to read from, and `tx` connected to it.
    async fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").await.expect("bind a loopback socket");
        let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind a loopback socket");
        tx.connect(rx.local_addr().expect("bound")).await.expect("connect");
        (rx, tx)
    }

    /// Sends `n` datagrams of [`LEN`] bytes, one at a time, reading each into `batch`.
    async fn round(rx: &UdpSocket, tx: &UdpSocket, batch: &mut RxBatch, n: usize) {
        for i in 0..n {
            tx.send(&[i as u8; LEN]).await.expect("send on loopback");
            while batch.datagrams.len() <= i {
                rx.readable().await.expect("readable");
                assert!(batch.recv(rx, n).is_none(), "no receive error");
            }
        }
        assert!(intact(&batch.datagrams));
    }

    /// Whether datagram `i` of `got` is [`LEN`] bytes of `i`.
    fn intact(got: &[(Bytes, SocketAddr)]) -> bool {
        got.iter().enumerate().all(|(i, (d, _))| d.len() == LEN && d.iter().all(|b| *b == i as u8))
    }

    #[tokio::test]
    async fn a_chunk_whose_datagrams_are_gone_is_read_into_again() {
        let (rx, tx) = pair().await;
        let mut batch = RxBatch::new(FILL);
        round(&rx, &tx, &mut batch, FILL).await;
        let first = batch.datagrams[0].0.as_ptr();
        batch.datagrams.clear();
        round(&rx, &tx, &mut batch, 1).await;
        assert_eq!(batch.datagrams[0].0.as_ptr(), first, "the chunk is read into again");
    }

    #[tokio::test]
    async fn a_chunk_still_held_is_never_written_over() {
        let (rx, tx) = pair().await;
        let mut batch = RxBatch::new(FILL);
        round(&rx, &tx, &mut batch, FILL).await;
        let kept = std::mem::take(&mut batch.datagrams);
        round(&rx, &tx, &mut batch, FILL).await;
        assert!(intact(&kept), "what the node kept reads as it was received");
        assert_ne!(batch.datagrams[0].0.as_ptr(), kept[0].0.as_ptr());
    }
}
