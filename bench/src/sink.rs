//! The receivers of the agent shipping benchmark: what takes the shipped
//! bytes and throws them away, so that the figures are the shipper's.
//!
//! - [`Mode::Ingest`] answers `POST /v1/ingest` as the collector does for
//!   a good batch (200, `{"accepted":N,"malformed":0,"malformed_lines":[]}`),
//!   inflating a gzipped body to count its records (lines after the batch
//!   header) and their bytes, and discards them.
//! - [`Mode::Tcp`] accepts connections and reads them to the end, counting
//!   bytes and newlines: the listener of `cat | nc` and rsyslog's `omfwd`.
//!
//! Both answer `GET /count` on the HTTP address with the totals as JSON,
//! `{"records":R,"bytes":B,"requests":Q}`. A thread a connection, std only:
//! it must not be used for anything but benchmarks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use anyhow::{Context, bail};
use flate2::read::GzDecoder;

/// What the receiver listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The collector's `POST /v1/ingest`.
    Ingest,
    /// Raw bytes over TCP.
    Tcp,
}

/// What arrived so far.
#[derive(Debug, Default)]
pub struct Counts {
    /// Records (ingest: lines after each batch's header) or newlines (tcp).
    pub records: AtomicU64,
    /// Record bytes, newlines included (ingest: inflated, header excluded).
    pub bytes: AtomicU64,
    /// Batches taken (ingest) or connections accepted (tcp).
    pub requests: AtomicU64,
}

impl Counts {
    fn json(&self) -> String {
        format!(
            "{{\"records\":{},\"bytes\":{},\"requests\":{}}}",
            self.records.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed)
        )
    }
}

/// Runs the receiver until killed: `mode` on `addr`; for [`Mode::Tcp`],
/// `count_addr` serves `GET /count` (for ingest `addr` serves it too).
pub fn run(mode: Mode, addr: &str, count_addr: Option<&str>) -> anyhow::Result<()> {
    let counts = Arc::new(Counts::default());
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    if let Some(count_addr) = count_addr {
        let count_listener =
            TcpListener::bind(count_addr).with_context(|| format!("binding {count_addr}"))?;
        let counts = Arc::clone(&counts);
        thread::spawn(move || serve(count_listener, Mode::Ingest, &counts));
    } else if mode == Mode::Tcp {
        bail!("a tcp sink needs --count-addr for its GET /count");
    }
    eprintln!("discard receiver ({mode:?}) on {addr}");
    serve(listener, mode, &counts);
    Ok(())
}

fn serve(listener: TcpListener, mode: Mode, counts: &Arc<Counts>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let counts = Arc::clone(counts);
        thread::spawn(move || {
            let _ = match mode {
                Mode::Ingest => http_connection(stream, &counts),
                Mode::Tcp => tcp_connection(stream, &counts).map_err(anyhow::Error::from),
            };
        });
    }
}

/// Reads a raw stream to its end, counting bytes and newlines.
fn tcp_connection(mut stream: TcpStream, counts: &Counts) -> std::io::Result<()> {
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let lines = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        counts.records.fetch_add(lines, Ordering::Relaxed);
        counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// One request's head: what the answer depends on.
#[derive(Debug, Default, PartialEq, Eq)]
struct Head {
    method: String,
    path: String,
    content_length: usize,
    chunked: bool,
    gzip: bool,
}

fn read_head(reader: &mut impl BufRead, line: &mut String) -> anyhow::Result<Option<Head>> {
    line.clear();
    if reader.read_line(line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let mut head = Head {
        method: parts.next().unwrap_or_default().to_owned(),
        path: parts.next().unwrap_or_default().to_owned(),
        ..Head::default()
    };
    loop {
        line.clear();
        if reader.read_line(line)? == 0 {
            bail!("connection closed in a request head");
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(Some(head));
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().context("Content-Length")?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-encoding") {
            head.gzip = value.eq_ignore_ascii_case("gzip");
        }
    }
}

fn read_body(
    reader: &mut impl BufRead,
    head: &Head,
    line: &mut String,
    body: &mut Vec<u8>,
) -> anyhow::Result<()> {
    body.clear();
    if !head.chunked {
        body.resize(head.content_length, 0);
        reader.read_exact(body)?;
        return Ok(());
    }
    loop {
        line.clear();
        reader.read_line(line)?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).context("chunk size")?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if reader.read_line(line)? == 0 || line.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        line.clear();
        reader.read_line(line)?;
    }
}

/// A batch body's records and their bytes: the lines after the header
/// line (empty lines are not records).
fn count_batch(body: &[u8]) -> (u64, u64) {
    let mut lines = body.split(|&b| b == b'\n');
    let header = lines.next().map_or(0, |h| h.len() + 1);
    let records = lines.filter(|l| !l.is_empty()).count() as u64;
    let bytes = (body.len().saturating_sub(header)) as u64;
    (records, bytes)
}

fn http_connection(stream: TcpStream, counts: &Counts) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut line = String::new();
    let mut body = Vec::new();
    let mut inflated = Vec::new();
    while let Some(head) = read_head(&mut reader, &mut line)? {
        read_body(&mut reader, &head, &mut line, &mut body)?;
        let (status, reply) = match (head.method.as_str(), head.path.as_str()) {
            ("POST", "/v1/ingest") => {
                let text: &[u8] = if head.gzip {
                    inflated.clear();
                    match GzDecoder::new(&body[..]).read_to_end(&mut inflated) {
                        Ok(_) => &inflated,
                        Err(e) => {
                            let reply = format!("{{\"error\":\"bad gzip body: {e}\"}}");
                            respond(&mut writer, "400 Bad Request", &reply)?;
                            continue;
                        }
                    }
                } else {
                    &body
                };
                let (records, bytes) = count_batch(text);
                counts.records.fetch_add(records, Ordering::Relaxed);
                counts.bytes.fetch_add(bytes, Ordering::Relaxed);
                counts.requests.fetch_add(1, Ordering::Relaxed);
                (
                    "200 OK",
                    format!("{{\"accepted\":{records},\"malformed\":0,\"malformed_lines\":[]}}"),
                )
            }
            ("GET", "/count") => ("200 OK", counts.json()),
            _ => ("404 Not Found", "{\"error\":\"not found\"}".to_owned()),
        };
        respond(&mut writer, status, &reply)?;
    }
    Ok(())
}

fn respond(writer: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    writer.write_all(response.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    #[test]
    fn a_batch_counts_the_lines_after_its_header() {
        let body = b"{\"version\":1}\n{\"a\":1}\n{\"b\":2}\n";
        assert_eq!(count_batch(body), (2, 16));
        assert_eq!(count_batch(b""), (0, 0));
    }

    #[test]
    fn a_chunked_body_is_read_whole() {
        let wire = b"4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n";
        let head = Head {
            chunked: true,
            ..Head::default()
        };
        let mut body = Vec::new();
        read_body(&mut &wire[..], &head, &mut String::new(), &mut body).unwrap();
        assert_eq!(body, b"abcdef");
    }

    fn request(addr: &str, raw: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(raw).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_gzipped_batch_is_acknowledged_and_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let counts = Arc::new(Counts::default());
        let served = Arc::clone(&counts);
        thread::spawn(move || serve(listener, Mode::Ingest, &served));

        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder
            .write_all(b"{\"version\":1}\n{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n")
            .unwrap();
        let zipped = encoder.finish().unwrap();
        let mut raw = format!(
            "POST /v1/ingest HTTP/1.1\r\nhost: x\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
            zipped.len()
        )
        .into_bytes();
        raw.extend_from_slice(&zipped);
        raw.extend_from_slice(b"GET /count HTTP/1.1\r\nhost: x\r\n\r\n");
        let out = request(&addr, &raw);
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(
            out.contains("{\"accepted\":3,\"malformed\":0,\"malformed_lines\":[]}"),
            "{out}"
        );
        assert!(
            out.contains("{\"records\":3,\"bytes\":24,\"requests\":1}"),
            "{out}"
        );
        assert_eq!(counts.records.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_tcp_sink_counts_bytes_and_lines() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let counts = Arc::new(Counts::default());
        let served = Arc::clone(&counts);
        thread::spawn(move || serve(listener, Mode::Tcp, &served));
        request(&addr, b"one\ntwo\nthree\n");
        // The sink counts before the connection ends; wait for its thread.
        for _ in 0..200 {
            if counts.bytes.load(Ordering::Relaxed) == 14 {
                break;
            }
            thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(counts.bytes.load(Ordering::Relaxed), 14);
        assert_eq!(counts.records.load(Ordering::Relaxed), 3);
    }
}
