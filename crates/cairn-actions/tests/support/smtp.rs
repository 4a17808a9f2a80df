//! A small SMTP server on loopback that records what it is sent: the greeting, EHLO/HELO,
//! AUTH PLAIN and LOGIN (checked against one login: 535 otherwise), MAIL FROM (530 before a
//! login), RCPT TO, DATA, RSET, NOOP and QUIT.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use base64::Engine as _;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream, tcp::OwnedWriteHalf},
};

/// One message the sink accepted.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    /// MAIL FROM's address.
    pub from: String,
    /// RCPT TO's addresses.
    pub to: Vec<String>,
    /// The message as sent after DATA (dot-stuffing removed).
    pub data: String,
}

/// What the sink has seen.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// Connections accepted.
    pub connections: usize,
    /// Every login tried: (user, password).
    pub logins: Vec<(String, String)>,
    /// The messages accepted.
    pub messages: Vec<Mail>,
}

/// A running sink.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

impl Sink {
    /// Listens on a free loopback port, accepting the login `user`/`password`.
    pub async fn start(user: &str, password: &str) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Received::default()));
        let login = (user.to_owned(), password.to_owned());
        let shared = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .connections += 1;
                let (shared, login) = (shared.clone(), login.clone());
                tokio::spawn(async move {
                    let _ = session(stream, &login, &shared).await;
                });
            }
        });
        Sink { addr, received }
    }

    /// What it has seen so far.
    pub fn received(&self) -> Received {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One client's conversation.
async fn session(
    stream: TcpStream,
    login: &(String, String),
    received: &Mutex<Received>,
) -> io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    writer.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut authenticated = false;
    let mut mail = Mail::default();
    loop {
        let Some(line) = read_line(&mut reader).await? else {
            return Ok(());
        };
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            reply(
                &mut writer,
                "250-sink.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME",
            )
            .await?;
        } else if upper.starts_with("HELO") {
            reply(&mut writer, "250 sink.test").await?;
        } else if upper.starts_with("AUTH PLAIN") {
            let encoded = match line.get("AUTH PLAIN ".len()..) {
                Some(initial) if !initial.trim().is_empty() => initial.trim().to_owned(),
                _ => {
                    reply(&mut writer, "334 ").await?;
                    read_line(&mut reader).await?.unwrap_or_default()
                }
            };
            let decoded = decode(&encoded);
            let mut parts = decoded.split('\0').skip(1);
            let user = parts.next().unwrap_or_default().to_owned();
            let password = parts.next().unwrap_or_default().to_owned();
            authenticated = check(&mut writer, login, received, user, password).await?;
        } else if upper.starts_with("AUTH LOGIN") {
            reply(&mut writer, "334 VXNlcm5hbWU6").await?;
            let user = decode(&read_line(&mut reader).await?.unwrap_or_default());
            reply(&mut writer, "334 UGFzc3dvcmQ6").await?;
            let password = decode(&read_line(&mut reader).await?.unwrap_or_default());
            authenticated = check(&mut writer, login, received, user, password).await?;
        } else if upper.starts_with("MAIL FROM:") {
            if !authenticated {
                reply(&mut writer, "530 5.7.0 Authentication required").await?;
                continue;
            }
            mail = Mail {
                from: address(&line["MAIL FROM:".len()..]),
                ..Mail::default()
            };
            reply(&mut writer, "250 2.1.0 OK").await?;
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(address(&line["RCPT TO:".len()..]));
            reply(&mut writer, "250 2.1.5 OK").await?;
        } else if upper == "DATA" {
            reply(&mut writer, "354 end with <CRLF>.<CRLF>").await?;
            let mut data = String::new();
            while let Some(line) = read_line(&mut reader).await? {
                if line == "." {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                data.push_str("\r\n");
            }
            mail.data = data;
            received
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .messages
                .push(std::mem::take(&mut mail));
            reply(&mut writer, "250 2.0.0 OK queued").await?;
        } else if upper == "RSET" || upper == "NOOP" {
            reply(&mut writer, "250 2.0.0 OK").await?;
        } else if upper == "QUIT" {
            reply(&mut writer, "221 2.0.0 bye").await?;
            return Ok(());
        } else {
            reply(&mut writer, "502 5.5.2 command not recognized").await?;
        }
    }
}

/// Records a login and answers 235 if it is the expected one, else 535.
async fn check(
    writer: &mut OwnedWriteHalf,
    login: &(String, String),
    received: &Mutex<Received>,
    user: String,
    password: String,
) -> io::Result<bool> {
    let ok = (&user, &password) == (&login.0, &login.1);
    received
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .logins
        .push((user, password));
    if ok {
        reply(writer, "235 2.7.0 Authentication successful").await?;
    } else {
        reply(writer, "535 5.7.8 Authentication credentials invalid").await?;
    }
    Ok(ok)
}

async fn read_line(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> io::Result<Option<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

async fn reply(writer: &mut OwnedWriteHalf, text: &str) -> io::Result<()> {
    writer.write_all(format!("{text}\r\n").as_bytes()).await
}

fn decode(encoded: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `<user@example.com> SIZE=…` → `user@example.com`.
fn address(argument: &str) -> String {
    let argument = argument.trim();
    let end = argument.find('>').unwrap_or(argument.len());
    argument[..end].trim_start_matches('<').to_owned()
}
