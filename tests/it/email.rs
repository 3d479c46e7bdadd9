//! Email alerts through a real SMTP server (aiosmtpd, installed by scripts/install-python.sh,
//! started here on a loopback port): a threshold crossing is mailed with a plain-text and an
//! HTML part carrying the numbers; a mail whose relay is down is retried and delivered after
//! a restart of Tally once the relay is back; mails to "customer" go to the address stored on
//! the user.

use crate::support::{Client, Setup, Tally, python, track};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A local SMTP server keeping each mail it accepts in a Maildir.
struct Sink {
    child: Child,
    maildir: PathBuf,
}

impl Sink {
    fn start(addr: SocketAddr, maildir: &Path) -> Sink {
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l", &addr.to_string(), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sink { child, maildir: maildir.to_owned() }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The mails received, parsed as a mail client would (tests/it/parse_mail.py).
    fn mails(&self) -> Vec<Value> {
        if !self.maildir.join("new").exists() {
            return Vec::new();
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/parse_mail.py");
        let output = Command::new(python()).arg(script).arg(&self.maildir).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap().as_array().unwrap().clone()
    }

    /// Waits (at most 15 s) until `count` mails have arrived.
    fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mails = self.mails();
            if mails.len() >= count || Instant::now() >= deadline {
                assert_eq!(mails.len(), count, "mails received: {mails:#?}");
                return mails;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback address nothing listens on now.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn setup(smtp: SocketAddr, rules: &str) -> Setup {
    Setup::new().config(&format!(
        "[email]\nsmtp_url = \"smtp://{smtp}\"\nfrom = \"Tally <alerts@example.com>\"\n{rules}\n\
         [webhook_delivery]\ntimeout_ms = 2000\nretry_initial_ms = 100\nretry_max_ms = 200\n"
    ))
}

fn deliveries(client: &mut Client) -> Vec<Value> {
    client.get("/v1/admin/webhooks/deliveries").json()["deliveries"].as_array().unwrap().clone()
}

#[test]
fn a_threshold_crossing_is_mailed_and_a_mail_the_relay_missed_arrives_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = free_addr();
    let mut sink = Sink::start(smtp, &dir.path().join("mail"));
    let rules = "[[email.alerts]]\nevents = [\"threshold_crossed\"]\nto = \"ops@example.com\"\n";
    let tally = setup(smtp, rules).start();
    let mut client = tally.client();
    track(&mut client, "alice", "prompts", 24);

    let mails = sink.wait_for(1);
    let mail = &mails[0];
    assert_eq!(mail["from"], "Tally <alerts@example.com>");
    assert_eq!(mail["to"], "ops@example.com");
    assert_eq!(mail["subject"], "User alice has used 80% of this month's prompts (24 of 30)");
    assert_eq!(mail["content_type"], "multipart/alternative");
    let text = mail["text"].as_str().unwrap();
    for line in ["Used: 24", "Limit: 30", "Plan: trial", "A plan that allows more: solo"] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    let html = mail["html"].as_str().unwrap();
    assert!(html.contains("<td>24</td>") && html.contains("<td>solo</td>"), "{html}");
    assert!(mail["message_id"].as_str().unwrap().ends_with(".mailto-ops-example-com@tally>"), "{mail}");

    // The relay goes down; the next crossing's mail is attempted, fails and stays pending.
    sink.stop();
    track(&mut client, "alice", "prompts", 6);
    let deadline = Instant::now() + Duration::from_secs(15);
    let failing = loop {
        let pending: Vec<Value> = deliveries(&mut client)
            .into_iter()
            .filter(|delivery| delivery["status"] == "pending" && delivery["attempts"].as_u64() >= Some(1))
            .collect();
        if let Some(delivery) = pending.into_iter().next() {
            break delivery;
        }
        assert!(Instant::now() < deadline, "no failed attempt was recorded: {:#?}", deliveries(&mut client));
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(failing["url"], "mailto:ops@example.com");
    assert!(failing["last_error"].as_str().unwrap().contains("relay"), "{failing}");

    // Tally restarts while the relay is still down; the relay comes back; the mail arrives.
    let tally = tally.restart();
    let sink = Sink::start(smtp, &dir.path().join("mail"));
    let mails = sink.wait_for(2);
    let subjects: Vec<&str> = mails.iter().map(|mail| mail["subject"].as_str().unwrap()).collect();
    assert!(subjects.contains(&"User alice has used 100% of this month's prompts (30 of 30)"), "{subjects:?}");
    let mut client = tally.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while deliveries(&mut client).iter().any(|delivery| delivery["status"] != "delivered") {
        assert!(Instant::now() < deadline, "{:#?}", deliveries(&mut client));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn mail_to_the_customer_goes_to_the_address_on_file_and_fails_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = free_addr();
    let sink = Sink::start(smtp, &dir.path().join("mail"));
    let rules = "[[email.alerts]]\nevents = [\"threshold_crossed\"]\nto = \"customer\"\n";
    let tally: Tally = setup(smtp, rules).start();
    let mut client = tally.client();
    let put = client.put("/v1/users/bea", &serde_json::json!({ "email": "bea@example.org" }));
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    track(&mut client, "bea", "prompts", 24);
    let mails = sink.wait_for(1);
    assert_eq!(mails[0]["to"], "bea@example.org");

    // No address on file: the delivery fails for good at once, with the reason.
    track(&mut client, "cal", "prompts", 24);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let failed = client.get("/v1/admin/webhooks/deliveries?status=failed").json()["deliveries"].clone();
        if let Some(delivery) = failed.as_array().unwrap().first() {
            assert!(delivery["last_error"].as_str().unwrap().contains("no email address"), "{delivery}");
            break;
        }
        assert!(Instant::now() < deadline, "{:#?}", deliveries(&mut client));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sink.mails().len(), 1, "nothing was sent for cal");
}
