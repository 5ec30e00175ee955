//! A small HTTP/1.1 client for the tests: one connection per request, `Connection: close`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Server-Sent Events as (event, data) pairs.
    pub fn sse(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for block in self.text().split("\n\n") {
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start().to_string());
            if let (Some(event), Some(data)) = (field("event:"), field("data:")) {
                out.push((event, serde_json::from_str(&data).unwrap()));
            }
        }
        out
    }
}

fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h
}

pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    send(addr, method, path, headers, body, false)
}

/// `request` for a server that may answer before it has read the whole body (and then
/// close): a failed write of the body is not an error, the answer is what counts.
#[allow(dead_code)]
pub fn request_refused_early(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    send(addr, method, path, headers, body, true)
}

/// One request with a Content-Length, and its answer; `refused_early`: a failed write of
/// the body is not an error.
fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], refused_early: bool) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut h = head(method, path, headers);
    h.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    s.write_all(h.as_bytes()).unwrap();
    let sent = s.write_all(body);
    if !refused_early {
        sent.unwrap();
    }
    read_response(s)
}

/// Sends the body in chunks, without a Content-Length (as a streaming client does), and
/// reads the answer. A server that refuses mid-body may close before the rest is sent.
pub fn request_chunked(addr: SocketAddr, path: &str, body: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut h = head("POST", path, &[("content-type", "application/json")]);
    h.push_str("transfer-encoding: chunked\r\n\r\n");
    s.write_all(h.as_bytes()).unwrap();
    for piece in body.chunks(64 << 10) {
        if s.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).and_then(|_| s.write_all(piece)).and_then(|_| s.write_all(b"\r\n")).is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    read_response(s)
}

/// Sends only the head (e.g. a huge Content-Length) and reads the answer.
pub fn head_only(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut h = head(method, path, headers);
    h.push_str("\r\n");
    s.write_all(h.as_bytes()).unwrap();
    read_response(s)
}

/// Sends a request and returns the open connection without reading the answer
/// (dropping it leaves mid-request).
pub fn send_and_leave_open(addr: SocketAddr, path: &str, body: &[u8]) -> TcpStream {
    send_typed_and_leave_open(addr, path, "application/json", body)
}

/// `send_and_leave_open` with another content type (a multipart upload).
#[allow(dead_code)]
pub fn send_typed_and_leave_open(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut h = head("POST", path, &[("content-type", content_type)]);
    h.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    s.write_all(h.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s
}

fn read_response(mut s: TcpStream) -> Response {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}
