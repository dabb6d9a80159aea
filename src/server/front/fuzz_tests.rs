//! Deterministic fuzzing of the head scanner and parser: ~20,000 random and mutated heads
//! (NULs, invalid UTF-8, huge lengths, bare LF, names with spaces…), fed in random pieces
//! as a socket would. Every one must end in a request or a 4xx, never a panic, and an
//! accepted head must re-serialize toward tiny_http into exactly one unambiguous request.

use std::net::SocketAddr;

use super::head::{parse, Scanner};
use super::upstream::{request_bytes, Origin};
use super::Limits;

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /api/v1/requests HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nContent-Type: application/json\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    b"GET /a?b=c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close, x-foo\r\nX-Foo: 1\r\n\r\n",
    b"GET /api/v1/tunnel/req_1 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: jitgate\r\n\r\n",
];

/// Fragments that have broken HTTP parsers before.
const NASTY: &[&[u8]] = &[
    b"\0",
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b" ",
    b"\t",
    b":",
    b",",
    b"\xff",
    b"\xc3\x28",
    b"0",
    b"Content-Length: 99999999999999999999999999\r\n",
    b"Content-Length: 18446744073709551616\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: 1, 1\r\n",
    b"Content-Length: +5\r\n",
    b"Content-Length:  7 \r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding : chunked\r\n",
    b"Bad Name: x\r\n",
    b"X-Jitgate-Peer: 6.6.6.6:6\r\n",
    b"Expect: 100-continue\r\n",
    b"Expect: nope\r\n",
    b"Host: b\r\n",
    b" folded\r\n",
    b"Connection: close\r\n",
    b"Connection: content-length, host\r\n",
    b"HTTP/1.1",
    b"HTTP/2.0",
    b"GET http://x/ HTTP/1.1\r\n",
    b"*",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    let at = rng.below(input.len() + 1);
    match rng.below(7) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] = rng.next() as u8;
        }
        1 => {
            let frag = rng.pick(NASTY);
            input.splice(at..at, frag.iter().copied());
        }
        2 if !input.is_empty() => {
            let end = (at + rng.below(8)).min(input.len());
            input.drain(at..end);
        }
        3 => {
            let n = rng.below(6);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            input.splice(at..at, bytes);
        }
        4 if !input.is_empty() => {
            // Duplicate a slice: repeated headers, doubled lines.
            let end = (at + rng.below(40)).min(input.len());
            let copy = input[at..end].to_vec();
            input.splice(end..end, copy);
        }
        5 => input.truncate(at),
        _ => {
            let digits: Vec<u8> = (0..rng.below(30)).map(|_| b'0' + rng.below(10) as u8).collect();
            input.splice(at..at, digits);
        }
    }
}

fn random_input(rng: &mut Rng) -> Vec<u8> {
    if rng.below(10) == 0 {
        return (0..rng.below(200)).map(|_| rng.next() as u8).collect();
    }
    let mut input = rng.pick(SEEDS).to_vec();
    for _ in 0..1 + rng.below(6) {
        mutate(rng, &mut input);
    }
    input
}

/// Feeds `buf` in random pieces, as reads would deliver it.
fn scan(rng: &mut Rng, buf: &[u8], max: usize) -> Result<Option<usize>, u16> {
    let mut scanner = Scanner::new();
    let mut seen = 0;
    while seen < buf.len() {
        seen = (seen + 1 + rng.below(64)).min(buf.len());
        match scanner.advance(&buf[..seen], max) {
            Ok(None) => {}
            Ok(Some(end)) => return Ok(Some(end)),
            Err(r) => return Err(r.status),
        }
    }
    Ok(None)
}

/// What tiny_http would receive must parse as one complete request whose framing is
/// ours alone: one Content-Length, no Transfer-Encoding, one peer header.
fn check_forwarded(head: &super::head::RequestHead, limits: &Limits) {
    assert!(head.target.starts_with('/'));
    assert!(head.minor_version <= 1);
    assert!(head.content_length <= limits.max_body_bytes as u64);
    let origin = Origin { peer: SocketAddr::from(([127, 0, 0, 1], 4242)), scheme: "http" };
    let wire = request_bytes(head, head.content_length as usize, &origin);
    let mut slots = [httparse::EMPTY_HEADER; 80];
    let mut req = httparse::Request::new(&mut slots);
    let n = match req.parse(&wire) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("forwarded head does not parse: {other:?}\n{}", String::from_utf8_lossy(&wire)),
    };
    assert_eq!(n, wire.len(), "forwarded head has trailing bytes");
    let count = |name: &str| req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
    assert_eq!(count("content-length"), 1);
    assert_eq!(count("transfer-encoding"), 0);
    assert_eq!(count("x-jitgate-peer"), 1);
    assert_eq!(count("x-jitgate-scheme"), 1);
    assert_eq!(count("connection"), 1);
}

#[test]
fn every_fuzzed_head_ends_in_a_request_or_a_4xx() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let small = Limits { max_head_bytes: 96, max_body_bytes: 10, ..Limits::default() };
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..20_000 {
        let limits = if i % 4 == 0 { &small } else { &Limits::default() };
        let mut input = random_input(&mut rng);
        if rng.below(3) != 0 {
            input.extend_from_slice(b"\r\n\r\n");
        }
        let outcome = scan(&mut rng, &input, limits.max_head_bytes);
        match outcome {
            Err(status) => {
                assert!((400..500).contains(&status));
                refused += 1;
            }
            Ok(None) => {
                assert!(input.len() <= limits.max_head_bytes);
                let mut rest = input.as_slice();
                while let Some(r) = rest.strip_prefix(b"\r\n") {
                    rest = r;
                }
                let has_end = rest.windows(4).any(|w| w == b"\r\n\r\n");
                assert!(!has_end, "complete head not found: {input:?}");
            }
            Ok(Some(end)) => match parse(&input[..end], limits) {
                Ok(head) => {
                    check_forwarded(&head, limits);
                    accepted += 1;
                }
                Err(r) => {
                    assert!((400..500).contains(&r.status), "{r:?}");
                    refused += 1;
                }
            },
        }
    }
    // The mutations must reach both sides, or the test proves little.
    assert!(accepted > 1_000 && refused > 1_000, "accepted {accepted}, refused {refused}");
}

#[test]
fn the_front_never_accepts_what_httparse_would_read_differently() {
    let limits = Limits::default();
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\nHost: a\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 411),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
        (b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ];
    for (raw, want) in cases {
        let got = match Scanner::new().advance(raw, limits.max_head_bytes) {
            Err(r) => r.status,
            Ok(Some(end)) => parse(&raw[..end], &limits).err().map_or(0, |r| r.status),
            Ok(None) => 0,
        };
        assert_eq!(got, *want, "{}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn too_many_headers_is_431() {
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..70 {
        raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let end = Scanner::new().advance(&raw, 16 * 1024).unwrap().unwrap();
    assert_eq!(parse(&raw[..end], &Limits::default()).unwrap_err().status, 431);
}
