//! Where each HTTP/1.1 request head begins in a connection's bytes, so that every head —
//! the first or a later one, pipelined behind a request or sent after its answer — has
//! the request timeout from its own first byte.
//!
//! hyper reads ahead: bytes of the next request can arrive in the same read as the end
//! of the current one, and then no further read says that a head is waiting. So the
//! watchdog follows HTTP/1.1 framing itself, over the bytes it sees: a head runs to its
//! empty line; its `Content-Length` or chunked `Transfer-Encoding` says how many bytes
//! after it belong to the body; what follows is the next head. hyper still parses
//! everything; this only keeps time. Anything it cannot follow (a head it cannot parse,
//! an upgrade) stops the tracking, and the watchdog's other bounds (no request, idle)
//! still hold. An HTTP/2 connection is known by its preface and not followed.

use std::collections::VecDeque;

/// The longest head followed; hyper refuses a larger one (431) and closes.
const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size or trailer line followed.
const MAX_LINE: usize = 4 * 1024;

#[derive(Debug)]
enum State {
    /// Between messages: the next byte (other than an empty line) starts a head.
    Between,
    /// In a head whose first byte came at `since` (ms); `bytes` holds it so far.
    Head { since: u64, bytes: Vec<u8> },
    /// In a body with `left` bytes to come.
    Body { left: u64 },
    /// In a chunked body.
    Chunked(Chunk),
    /// An HTTP/2 connection (its preface was seen): nothing to follow.
    Http2,
    /// Framing lost: nothing more is followed.
    Lost,
}

#[derive(Debug)]
enum Chunk {
    /// Reading a chunk-size line, `len` bytes so far, `size` parsed from its hex digits
    /// (`None` once the digits have ended: an extension follows).
    Size { len: usize, size: u64, digits: bool },
    /// In a chunk's data.
    Data { left: u64 },
    /// After a chunk's data, up to its line end.
    DataEnd,
    /// In the trailer section; `len` bytes of the current line.
    Trailer { len: usize },
}

/// The framing of one connection's incoming bytes.
#[derive(Debug)]
pub struct Framing {
    state: State,
    /// The first-byte times (ms) of heads that are complete and not yet taken by a
    /// request, in order (pipelined requests are served in order).
    complete: VecDeque<u64>,
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            state: State::Between,
            complete: VecDeque::new(),
        }
    }
}

impl Framing {
    /// Follow `bytes`, read at `now` (ms).
    pub fn feed(&mut self, bytes: &[u8], now: u64) {
        self.feed_with(bytes, || now);
    }

    /// Follow `bytes`; `clock` says the time (ms), asked only when a head begins (most
    /// reads are within a head or a body, and need no clock).
    pub fn feed_with(&mut self, mut bytes: &[u8], mut clock: impl FnMut() -> u64) {
        while !bytes.is_empty() {
            bytes = match &mut self.state {
                State::Http2 | State::Lost => return,
                State::Between => {
                    let start = bytes
                        .iter()
                        .position(|b| *b != b'\r' && *b != b'\n')
                        .unwrap_or(bytes.len());
                    if start < bytes.len() {
                        self.state = State::Head {
                            since: clock(),
                            bytes: Vec::new(),
                        };
                    }
                    &bytes[start..]
                }
                // The common case: the whole head is in this read. It is parsed where it
                // lies, once: nothing is copied, no separate search for its end.
                State::Head { since, bytes: head } if head.is_empty() => {
                    match head_in(&mut self.complete, *since, bytes) {
                        Some((end, next)) => {
                            self.state = next;
                            &bytes[end..]
                        }
                        None if bytes.len() > MAX_HEAD => {
                            self.state = State::Lost;
                            return;
                        }
                        None => {
                            head.extend_from_slice(bytes);
                            return;
                        }
                    }
                }
                // A head that spans reads: kept until its end arrives.
                State::Head { since, bytes: head } => {
                    let searched_from = head.len().saturating_sub(3);
                    head.extend_from_slice(bytes);
                    match head_end(&head[searched_from..]) {
                        Some(end) => {
                            let end = searched_from + end;
                            let rest = head.len() - end;
                            let (since, head) = (*since, std::mem::take(head));
                            self.state = head_in(&mut self.complete, since, &head[..end])
                                .map_or(State::Lost, |(_, next)| next);
                            &bytes[bytes.len() - rest..]
                        }
                        None if head.len() > MAX_HEAD => {
                            self.state = State::Lost;
                            return;
                        }
                        None => return,
                    }
                }
                State::Body { left } => {
                    let taken = (*left).min(bytes.len() as u64);
                    *left -= taken;
                    if *left == 0 {
                        self.state = State::Between;
                    }
                    &bytes[taken as usize..]
                }
                State::Chunked(chunk) => match chunked(chunk, bytes) {
                    Some((rest, done)) => {
                        if done {
                            self.state = State::Between;
                        }
                        rest
                    }
                    None => {
                        self.state = State::Lost;
                        return;
                    }
                },
            };
        }
    }

    /// When the head now arriving began (ms), if one is arriving and is not complete.
    pub fn head_since(&self) -> Option<u64> {
        match &self.state {
            State::Head { since, .. } => Some(*since),
            _ => None,
        }
    }

    /// The first-byte time (ms) of the oldest complete head not yet taken by a request.
    pub fn take_complete(&mut self) -> Option<u64> {
        self.complete.pop_front()
    }

    /// Whether a head has been completed and not yet taken.
    pub fn has_complete(&self) -> bool {
        !self.complete.is_empty()
    }

    /// Whether the connection turned out to be HTTP/2 (its preface).
    pub fn is_http2(&self) -> bool {
        matches!(self.state, State::Http2)
    }
}

/// If `bytes` begin with a whole head (first byte at `since`): where it ends, and the state
/// after it (its body, or the next head); the head's start is queued in `complete`. `None`
/// while the head is not whole yet.
///
/// Not a parser: hyper parses every head. This reads only what the framing needs, line by
/// line (`memchr` finds each line end): the request line's version and method, and the
/// `Upgrade`, `Transfer-Encoding` and `Content-Length` headers. A head hyper would refuse
/// (no `HTTP/1.x`, a line without a colon, an obsolete folded line) stops the following;
/// hyper answers 400 and closes.
fn head_in(complete: &mut VecDeque<u64>, since: u64, bytes: &[u8]) -> Option<(usize, State)> {
    // The HTTP/2 connection preface, as hyper sniffs it.
    if bytes.starts_with(b"PRI * HTTP/2.0\r\n") {
        return head_end(bytes).map(|end| (end, State::Http2));
    }
    let lost = Some((bytes.len(), State::Lost));
    let mut lines = Lines { bytes, at: 0 };
    let request_line = lines.next()?;
    if !(request_line.ends_with(b" HTTP/1.1") || request_line.ends_with(b" HTTP/1.0"))
        || request_line.starts_with(b"CONNECT ")
    {
        return lost;
    }
    let mut encoding = None;
    let mut lengths = 0;
    let mut length = None;
    loop {
        let line = lines.next()?;
        let Some(&first) = line.first() else {
            break;
        };
        let Some(colon) = memchr::memchr(b':', line) else {
            return lost;
        };
        if matches!(first, b' ' | b'\t') {
            return lost;
        }
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        match name.len() {
            7 if name.eq_ignore_ascii_case(b"upgrade") => return lost,
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                lengths += 1;
                length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok());
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => encoding = Some(value),
            _ => {}
        }
    }
    let end = lines.at;
    complete.push_back(since);
    if let Some(encoding) = encoding {
        let last = encoding
            .rsplit(|b| *b == b',')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let next = match last.eq_ignore_ascii_case(b"chunked") {
            true => State::Chunked(Chunk::Size {
                len: 0,
                size: 0,
                digits: true,
            }),
            // A request body with another final coding has no length: hyper refuses it.
            false => State::Lost,
        };
        return Some((end, next));
    }
    let next = match (lengths, length) {
        (0, _) => State::Between,
        (1, Some(0)) => State::Between,
        (1, Some(left)) => State::Body { left },
        // Not a number, or several lengths: hyper refuses unless they agree; do not guess.
        _ => State::Lost,
    };
    Some((end, next))
}

/// The lines of a head, each without its line end (LF, or CRLF), and where the next
/// begins; `None` when the rest holds no whole line.
struct Lines<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = &self.bytes[self.at..];
        let end = memchr::memchr(b'\n', rest)?;
        self.at += end + 1;
        let line = &rest[..end];
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// The end (exclusive) of a head in `bytes`: after its empty line (CRLF CRLF, or LF LF as
/// hyper also accepts).
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).enumerate().find_map(|(i, w)| match w {
        b"\n\n" => Some(i + 2),
        b"\n\r" if bytes.get(i + 2) == Some(&b'\n') => Some(i + 3),
        _ => None,
    })
}

/// Follow a chunked body through `bytes`: the bytes after what it consumed, and whether
/// the body ended; `None` when the chunk syntax cannot be followed.
fn chunked<'a>(chunk: &mut Chunk, mut bytes: &'a [u8]) -> Option<(&'a [u8], bool)> {
    while let Some((&byte, rest)) = bytes.split_first() {
        match chunk {
            Chunk::Size { len, size, digits } => {
                bytes = rest;
                *len += 1;
                if *len > MAX_LINE {
                    return None;
                }
                match byte {
                    b'\n' => {
                        *chunk = match *size {
                            0 => Chunk::Trailer { len: 0 },
                            left => Chunk::Data { left },
                        };
                    }
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if *digits => {
                        let digit = (byte as char).to_digit(16)? as u64;
                        *size = size.checked_mul(16)?.checked_add(digit)?;
                    }
                    _ => *digits = false,
                }
            }
            Chunk::Data { left } => {
                let taken = (*left).min(bytes.len() as u64);
                *left -= taken;
                bytes = &bytes[taken as usize..];
                if *left == 0 {
                    *chunk = Chunk::DataEnd;
                }
            }
            Chunk::DataEnd => {
                bytes = rest;
                if byte == b'\n' {
                    *chunk = Chunk::Size {
                        len: 0,
                        size: 0,
                        digits: true,
                    };
                }
            }
            Chunk::Trailer { len } => {
                bytes = rest;
                match byte {
                    b'\n' if *len == 0 => return Some((bytes, true)),
                    b'\n' => *len = 0,
                    b'\r' if *len == 0 => {}
                    _ => {
                        *len += 1;
                        if *len > MAX_LINE {
                            return None;
                        }
                    }
                }
            }
        }
    }
    Some((bytes, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"{\"a\":1}";

    fn request(extra: &str, body: &[u8]) -> Vec<u8> {
        let mut raw = format!("POST /validate HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes();
        raw.extend_from_slice(body);
        raw
    }

    /// However the bytes of pipelined requests are cut into reads (a head parsed where it
    /// lies, or gathered across reads), each head is found once, timed from the read that
    /// brought its first byte, and the stream stays followed.
    #[test]
    fn every_head_is_found_however_the_reads_fall() {
        let requests = [
            request("Content-Length: 7\r\n", BODY),
            request(
                "Transfer-Encoding: chunked\r\n",
                b"3;x=1\r\nabc\r\n0\r\nTrailer: t\r\n\r\n",
            ),
            b"GET /readyz HTTP/1.1\nHost: x\n\n".to_vec(),
            request("content-length:  7 \r\n", BODY),
        ];
        let mut offsets = Vec::new();
        let mut raw = Vec::new();
        for r in &requests {
            offsets.push(raw.len());
            raw.extend_from_slice(r);
        }
        for size in 1..=raw.len() {
            let mut f = Framing::default();
            let mut starts = Vec::new();
            for (i, read) in raw.chunks(size).enumerate() {
                f.feed(read, i as u64);
                while let Some(since) = f.take_complete() {
                    starts.push(since);
                }
            }
            assert_eq!(starts.len(), 4, "reads of {size}");
            let heads: Vec<u64> = offsets.iter().map(|at| (at / size) as u64).collect();
            assert_eq!(starts, heads, "reads of {size}");
            assert!(
                matches!(f.state, State::Between),
                "reads of {size}: {:?}",
                f.state
            );
        }
    }

    #[test]
    fn a_pipelined_partial_head_is_timed_from_its_first_byte() {
        let mut f = Framing::default();
        let mut raw = request("Content-Length: 7\r\n", BODY);
        raw.extend_from_slice(b"POST /validate HTTP/1.1\r\nHost: lo");
        f.feed(&raw, 10);
        assert_eq!(f.take_complete(), Some(10));
        assert_eq!(
            f.head_since(),
            Some(10),
            "the second head, in the same read"
        );
        f.feed(b"\r\nContent-Length: 0\r\n\r\n", 50);
        assert_eq!(f.head_since(), None);
        assert_eq!(f.take_complete(), Some(10));
        assert_eq!(f.take_complete(), None);
    }

    #[test]
    fn a_body_split_across_reads_is_not_a_head() {
        let mut f = Framing::default();
        let raw = request("Content-Length: 7\r\n", BODY);
        for (i, byte) in raw.iter().enumerate() {
            f.feed(std::slice::from_ref(byte), i as u64);
        }
        assert_eq!(f.head_since(), None);
        assert_eq!(f.take_complete(), Some(0));
        f.feed(b"\r\n", 100); // a stray empty line between requests
        assert_eq!(f.head_since(), None);
        f.feed(b"G", 200);
        assert_eq!(f.head_since(), Some(200));
    }

    #[test]
    fn a_chunked_body_with_extensions_and_trailers_is_followed() {
        let mut f = Framing::default();
        let mut raw = request("Transfer-Encoding: chunked\r\n", b"");
        raw.extend_from_slice(b"3;name=value\r\n{\"a\r\n4\r\n\":1}\r\n0\r\nX-Trailer: y\r\n\r\n");
        raw.extend_from_slice(b"POST");
        f.feed(&raw, 5);
        assert_eq!(f.take_complete(), Some(5));
        assert_eq!(
            f.head_since(),
            Some(5),
            "the next head starts after the trailers"
        );
        let mut f = Framing::default();
        let mut raw = request("Transfer-Encoding: gzip, chunked\r\n", b"");
        raw.extend_from_slice(b"A\r\n0123456789\r\n0\r\n\r\n");
        for byte in &raw {
            f.feed(std::slice::from_ref(byte), 1);
        }
        assert_eq!(f.head_since(), None);
        assert!(matches!(f.state, State::Between), "{:?}", f.state);
    }

    #[test]
    fn http2_upgrades_and_garbage_stop_the_following() {
        let mut f = Framing::default();
        f.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x08\x06", 1);
        assert!(f.is_http2());
        assert_eq!(f.head_since(), None);
        assert_eq!(f.take_complete(), None);
        for raw in [
            request("Upgrade: websocket\r\nConnection: upgrade\r\n", b""),
            b"\x16\x03\x01 not http at all\r\n\r\n".to_vec(),
            request("Content-Length: 1\r\nContent-Length: 2\r\n", b""),
        ] {
            let mut f = Framing::default();
            f.feed(&raw, 1);
            f.feed(b"POST", 2);
            assert!(matches!(f.state, State::Lost), "{:?}", f.state);
            assert_eq!(f.head_since(), None);
        }
        // A head that never ends stops being followed past its bound, not before.
        let mut f = Framing::default();
        f.feed(b"POST / HTTP/1.1\r\n", 1);
        f.feed(&vec![b'a'; MAX_HEAD], 2);
        assert!(matches!(f.state, State::Lost));
    }
}
