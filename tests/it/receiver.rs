//! A webhook receiver for tests: a real HTTP server on a free loopback port that records what
//! it is sent and answers as the test says (a status per attempt, or hold the request open).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// How to answer the next request.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Status(u16),
    /// Keep the connection open, unanswered, until `release` is called.
    Hang,
    /// Start a 200 answer, then send one more header byte every 100 ms, never finishing,
    /// until the client hangs up.
    Trickle,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Answers for the coming requests, in order; `fallback` after they run out.
    script: Vec<Answer>,
    fallback: Option<Answer>,
    released: bool,
    hanging: usize,
}

pub struct Receiver {
    pub url: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Receiver {
    /// Answers `script` in order, then `fallback` for every later request.
    pub fn start(script: Vec<Answer>, fallback: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/tally", listener.local_addr().unwrap());
        let state =
            Arc::new((Mutex::new(State { script, fallback: Some(fallback), ..State::default() }), Condvar::new()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Receiver { url, state }
    }

    /// From now on answer every request with `answer`.
    pub fn answer_all(&self, answer: Answer) {
        let mut state = self.state.0.lock().unwrap();
        state.script.clear();
        state.fallback = Some(answer);
    }

    /// Waits (bounded) until `done` holds for the received requests.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut state = self.state.0.lock().unwrap();
        while !done(&state.received) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}; received {:?}", state.received);
            state = self.state.1.wait_timeout(state, left).unwrap().0;
        }
        state.received.clone()
    }

    /// Waits (bounded) until a request is being held open.
    pub fn wait_hanging(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut state = self.state.0.lock().unwrap();
        while state.hanging == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for a held request");
            state = self.state.1.wait_timeout(state, left).unwrap().0;
        }
    }

    /// How many requests are held open right now.
    pub fn hanging(&self) -> usize {
        self.state.0.lock().unwrap().hanging
    }

    /// Lets held requests go (they are answered 200).
    pub fn release(&self) {
        self.state.0.lock().unwrap().released = true;
        self.state.1.notify_all();
    }
}

fn serve(stream: TcpStream, shared: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (lock, condvar) = shared;
    let answer = {
        let mut state = lock.lock().unwrap();
        state.received.push(Received { headers, body: String::from_utf8_lossy(&body).into_owned() });
        let answer = if state.script.is_empty() {
            state.fallback.unwrap_or(Answer::Status(200))
        } else {
            state.script.remove(0)
        };
        condvar.notify_all();
        answer
    };
    let status = match answer {
        Answer::Status(status) => status,
        Answer::Trickle => {
            let mut stream = reader.into_inner();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ");
            while stream.write_all(b"a").and_then(|()| stream.flush()).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        Answer::Hang => {
            let mut state = lock.lock().unwrap();
            state.hanging += 1;
            condvar.notify_all();
            while !state.released {
                state = condvar.wait(state).unwrap();
            }
            200
        }
    };
    let mut stream = reader.into_inner();
    let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}
