//! A minimal HTTP/1.1 keep-alive GET and POST client on a std `TcpStream`, so that
//! what a lookup benchmark times is the server, not a client runtime: one
//! connection, reused, `TCP_NODELAY`, the body read whole into a buffer
//! that is kept between requests.
//!
//! It reads what causeway's server writes (a `Content-Length` or a chunked
//! body) and nothing fancier: no TLS, no redirects, no HTTP/2, no
//! compression. It must not be used for anything but benchmarks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use anyhow::{Context, bail};

/// One keep-alive connection to `http://host:port`.
#[derive(Debug)]
pub struct HttpClient {
    authority: String,
    /// The URL's path, without a trailing `/`, put before every request path.
    prefix: String,
    conn: Option<BufReader<TcpStream>>,
    body: Vec<u8>,
    line: String,
    /// Connections opened so far (1 when keep-alive held throughout).
    pub connects: u64,
}

/// A response's status and body length (the body stays in the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body_len: usize,
    /// `Retry-After` in seconds, when the response has one.
    pub retry_after: Option<u64>,
}

/// What a request sends after its head.
#[derive(Debug, Clone, Copy)]
struct Payload<'a> {
    content_type: &'a str,
    body: &'a [u8],
}

impl HttpClient {
    /// A client of `base_url` (`http://127.0.0.1:8686` or with a path).
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let Some(rest) = base_url.strip_prefix("http://") else {
            bail!("{base_url:?}: only http:// URLs are supported");
        };
        let (authority, prefix) = match rest.find('/') {
            Some(slash) => (&rest[..slash], rest[slash..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            bail!("{base_url:?} names no host");
        }
        Ok(Self {
            authority: authority.to_owned(),
            prefix: prefix.to_owned(),
            conn: None,
            body: Vec::new(),
            line: String::new(),
            connects: 0,
        })
    }

    /// The body of the last response.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// `GET prefix + path`, on the open connection if there is one; a
    /// connection the server closed meanwhile is opened again once.
    pub fn get(&mut self, path: &str) -> anyhow::Result<Response> {
        self.request(path, None)
    }

    /// `POST prefix + path` with `body`, as [`Self::get`] does its GET.
    pub fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Response> {
        self.request(path, Some(Payload { content_type, body }))
    }

    fn request(&mut self, path: &str, payload: Option<Payload<'_>>) -> anyhow::Result<Response> {
        let reused = self.conn.is_some();
        match self.try_request(path, payload) {
            Ok(response) => Ok(response),
            Err(_) if reused => {
                self.conn = None;
                self.try_request(path, payload)
            }
            Err(error) => Err(error),
        }
    }

    fn try_request(
        &mut self,
        path: &str,
        payload: Option<Payload<'_>>,
    ) -> anyhow::Result<Response> {
        let result = self.exchange(path, payload);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn exchange(&mut self, path: &str, payload: Option<Payload<'_>>) -> anyhow::Result<Response> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.authority)
                .with_context(|| format!("connecting to {}", self.authority))?;
            stream.set_nodelay(true)?;
            self.connects += 1;
            self.conn = Some(BufReader::with_capacity(64 * 1024, stream));
        }
        let Some(conn) = self.conn.as_mut() else {
            bail!("no connection");
        };
        match payload {
            None => {
                let request = format!(
                    "GET {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
                    self.prefix, self.authority
                );
                conn.get_mut().write_all(request.as_bytes())?;
            }
            Some(Payload { content_type, body }) => {
                let head = format!(
                    "POST {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\
                     Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                    self.prefix,
                    self.authority,
                    body.len()
                );
                let stream = conn.get_mut();
                stream.write_all(head.as_bytes())?;
                stream.write_all(body)?;
            }
        }

        self.line.clear();
        conn.read_line(&mut self.line)?;
        let status = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .with_context(|| format!("bad status line {:?}", self.line.trim_end()))?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        let mut retry_after = None;
        loop {
            self.line.clear();
            if conn.read_line(&mut self.line)? == 0 {
                bail!("connection closed inside the response head");
            }
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().context("bad content-length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("retry-after") {
                retry_after = value.parse::<u64>().ok();
            }
        }
        self.body.clear();
        if chunked {
            loop {
                self.line.clear();
                conn.read_line(&mut self.line)?;
                let size = self.line.trim_end().split(';').next().unwrap_or_default();
                let size = usize::from_str_radix(size, 16)
                    .with_context(|| format!("bad chunk size {size:?}"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        self.line.clear();
                        if conn.read_line(&mut self.line)? == 0 || self.line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = self.body.len();
                self.body.resize(start + size, 0);
                conn.read_exact(&mut self.body[start..])?;
                let mut crlf = [0u8; 2];
                conn.read_exact(&mut crlf)?;
            }
        } else if let Some(length) = length {
            self.body.resize(length, 0);
            conn.read_exact(&mut self.body)?;
        } else {
            conn.read_to_end(&mut self.body)?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok(Response {
            status,
            body_len: self.body.len(),
            retry_after,
        })
    }
}

/// `segment` with every byte outside RFC 3986's unreserved set
/// percent-encoded, for use as one path segment.
pub fn path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// Answers three requests on one connection: a sized body, a chunked
    /// one, and a sized one that closes the connection.
    #[test]
    fn a_connection_is_reused_for_sized_and_chunked_bodies() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let answers = [
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_owned(),
                "HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                    .to_owned(),
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_owned(),
            ];
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut paths = Vec::new();
            for answer in answers {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                paths.push(line.split(' ').nth(1).unwrap().to_owned());
                while line != "\r\n" {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                }
                reader.get_mut().write_all(answer.as_bytes()).unwrap();
            }
            paths
        });
        let mut client = HttpClient::new(&format!("http://{addr}/base/")).unwrap();
        let first = client.get("/a").unwrap();
        assert_eq!((first.status, client.body()), (200, &b"hello"[..]));
        let second = client.get("/b").unwrap();
        assert_eq!((second.status, client.body()), (404, &b"abcde"[..]));
        let third = client.get("/c").unwrap();
        assert_eq!((third.status, third.body_len), (200, 2));
        assert_eq!(client.connects, 1);
        assert_eq!(server.join().unwrap(), ["/base/a", "/base/b", "/base/c"]);
    }

    /// A POST sends its body after a head with its length, and a 503's
    /// `Retry-After` is read.
    #[test]
    fn a_post_sends_its_body_and_reads_retry_after() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let request_line = line.trim_end().to_owned();
            let mut length = 0;
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            reader
                .get_mut()
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            (request_line, body)
        });
        let mut client = HttpClient::new(&format!("http://{addr}")).unwrap();
        let response = client
            .post("/v1/ingest", "application/x-ndjson", b"{}\n")
            .unwrap();
        assert_eq!((response.status, response.retry_after), (503, Some(2)));
        let (request_line, body) = server.join().unwrap();
        assert_eq!(request_line, "POST /v1/ingest HTTP/1.1");
        assert_eq!(body, b"{}\n");
    }

    #[test]
    fn only_unreserved_bytes_stay_as_they_are() {
        assert_eq!(path_segment("order-12_3.x~"), "order-12_3.x~");
        assert_eq!(path_segment("a/b c?"), "a%2Fb%20c%3F");
        assert!(HttpClient::new("https://x").is_err());
    }
}
