//! `forward-floor LISTEN UPSTREAM PATH DIR`: the least a pull-through mirror must do to serve a
//! blob it does not have, and nothing more, as the reference `bench/mirror.sh` measures the
//! mirror's cold pull against.
//!
//! For each connection on LISTEN (one request each, any request): GET `PATH` from UPSTREAM
//! (`host:port`, plain HTTP/1.1), then for every piece of the body as it arrives: SHA-256 it,
//! write it to a new file in DIR (the page cache) and send it on to the client. One thread, one
//! reused 256 KiB buffer, no HTTP library, no allocation per piece; the digest is compared with
//! the one in PATH before the last piece is sent, as a mirror must, and the file is fsynced
//! after the client has its bytes (then renamed to `<name>.synced`). Anything unexpected ends
//! the process with a message.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

use sha2::{Digest, Sha256};

const BUFFER: usize = 256 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, path, dir] = args.as_slice() else {
        eprintln!("usage: forward-floor LISTEN UPSTREAM PATH DIR");
        std::process::exit(2);
    };
    let expected = path
        .rsplit("sha256:")
        .next()
        .unwrap_or_default()
        .to_string();
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| fail("bind", e));
    for (n, client) in listener.incoming().enumerate() {
        let client = client.unwrap_or_else(|e| fail("accept", e));
        let file = format!("{dir}/blob-{n}");
        if let Err(e) = serve(client, upstream, path, &file, &expected) {
            fail("forward", e);
        }
    }
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    path: &str,
    file: &str,
    expected: &str,
) -> io::Result<()> {
    // The request itself does not matter: every connection asks for the one blob.
    let mut request = [0u8; 8192];
    let _ = client.read(&mut request)?;
    let mut up = TcpStream::connect(upstream)?;
    write!(
        up,
        "GET {path} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = vec![0u8; BUFFER];
    let (head_end, mut filled) = read_head(&mut up, &mut buf)?;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(io::Error::other(format!("upstream answered {head}")));
    }
    let length: u64 = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no content-length"))?;
    write!(
        client,
        "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = std::fs::File::create(file)?;
    let mut hash = Sha256::new();
    let mut start = head_end;
    let mut done = 0u64;
    loop {
        let piece = &buf[start..filled];
        done += piece.len() as u64;
        hash.update(piece);
        out.write_all(piece)?;
        if done >= length {
            let actual = format!("{:x}", hash.finalize());
            if actual != expected {
                return Err(io::Error::other(format!("digest {actual}, not {expected}")));
            }
            client.write_all(piece)?;
            break;
        }
        client.write_all(piece)?;
        start = 0;
        filled = up.read(&mut buf)?;
        if filled == 0 {
            return Err(io::Error::other("upstream closed early"));
        }
    }
    drop(client);
    out.sync_data()?;
    // Tells bench/mirror.sh the file is on disk, so its next pull does not share the disk.
    std::fs::rename(file, format!("{file}.synced"))
}

/// Reads until the end of the response head; returns where the body starts and how much of
/// `buf` is filled.
fn read_head(up: &mut TcpStream, buf: &mut [u8]) -> io::Result<(usize, usize)> {
    let mut filled = 0;
    loop {
        let n = up.read(&mut buf[filled..])?;
        if n == 0 {
            return Err(io::Error::other("upstream closed before its head ended"));
        }
        filled += n;
        if let Some(at) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok((at + 4, filled));
        }
        if filled == buf.len() {
            return Err(io::Error::other("response head too large"));
        }
    }
}

fn fail(what: &str, e: io::Error) -> ! {
    eprintln!("forward-floor: {what}: {e}");
    std::process::exit(1);
}
