//! Headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: NUL-terminated JSON messages, commands in on fd 3,
//! answers and events out on fd 4): no WebDriver, no websocket, no Node.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Long enough for a page load or a command on a busy machine.
const COMMAND_WAIT: Duration = Duration::from_secs(60);

/// A browser with one page open at 1280×800.
pub struct Browser {
    child: Child,
    commands: RefCell<File>,
    messages: mpsc::Receiver<Value>,
    /// Events read while waiting for an answer, for a later wait on them.
    events: RefCell<VecDeque<Value>>,
    next_id: Cell<u64>,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts headless Chromium and opens a blank page.
    pub fn launch() -> Browser {
        let (browser_in, to_browser) = pipe();
        let (from_browser, browser_out) = pipe();
        let profile = tempfile::tempdir().unwrap();
        let mut command = Command::new(chromium());
        command
            .args([
                "--headless",
                "--remote-debugging-pipe",
                // Tests run as root in containers, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (input, output) = (browser_in.raw(), browser_out.raw());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Copies above 4 first, so that placing one cannot overwrite the other;
                // dup2's copies are not close-on-exec.
                let input = libc::fcntl(input, libc::F_DUPFD, 10);
                let output = libc::fcntl(output, libc::F_DUPFD, 10);
                if input < 0 || output < 0 || libc::dup2(input, 3) < 0 || libc::dup2(output, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("starting Chromium");
        drop((browser_in, browser_out));

        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(File::from(from_browser.0));
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice(&message)
                    && tx.send(value).is_err()
                {
                    return;
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands: RefCell::new(File::from(to_browser.0)),
            messages,
            events: RefCell::default(),
            next_id: Cell::new(1),
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.page("Page.enable", json!({}));
        browser.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser
    }

    /// Loads `url` and waits for its load event.
    pub fn open(&self, url: &str) {
        self.events.borrow_mut().clear();
        let navigated = self.page("Page.navigate", json!({"url": url}));
        assert!(navigated.get("errorText").is_none(), "{url}: {navigated}");
        self.wait_event("Page.loadEventFired");
    }

    /// Moves the single-page app to `hash` (`#/proxies`).
    pub fn go(&self, hash: &str) {
        self.page(
            "Runtime.evaluate",
            json!({"expression": format!("location.hash = {}", json!(hash))}),
        );
    }

    /// What `read` (a JavaScript function returning JSON-able data, or null while the
    /// page is not there yet) returns after the next render that makes it non-null;
    /// on timeout, what the page was showing.
    pub fn next_render(&self, read: &str, wait: Duration) -> Result<Value, String> {
        let expression = format!(
            "new Promise(resolve => {{
               const read = ({read});
               const check = () => {{
                 const value = read();
                 if (value === null || value === undefined) return;
                 document.removeEventListener('mizzen:rendered', check);
                 resolve(JSON.stringify(value));
               }};
               document.addEventListener('mizzen:rendered', check);
             }})"
        );
        let id = self.send(
            Some(&self.session),
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        match self.answer(id, wait) {
            Some(result) => {
                if let Some(error) = result.get("exceptionDetails") {
                    return Err(format!("the page threw: {error}"));
                }
                let text = result["result"]["value"].as_str().unwrap_or("null");
                Ok(serde_json::from_str(text).unwrap())
            }
            None => {
                let text = self.page(
                    "Runtime.evaluate",
                    json!({"expression": "document.querySelector('main').innerText + ' | ' + document.querySelector('#status').innerText", "returnByValue": true}),
                );
                Err(format!(
                    "nothing within {wait:?}; the page shows: {}",
                    text["result"]["value"]
                ))
            }
        }
    }

    /// A PNG of the page as it is.
    pub fn screenshot(&self) -> Vec<u8> {
        let shot = self.page("Page.captureScreenshot", json!({"format": "png"}));
        base64(shot["data"].as_str().unwrap())
    }

    /// Runs a command on the page and returns its result.
    fn page(&self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.send(session, method, params);
        self.answer(id, COMMAND_WAIT)
            .unwrap_or_else(|| panic!("Chromium did not answer {method}"))
    }

    fn send(&self, session: Option<&str>, method: &str, params: Value) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut commands = self.commands.borrow_mut();
        commands
            .write_all(message.to_string().as_bytes())
            .and_then(|()| commands.write_all(&[0]))
            .expect("Chromium reads its commands");
        id
    }

    /// The result of command `id`, or `None` if it takes longer than `wait`; panics
    /// with Chromium's error message if it failed.
    fn answer(&self, id: u64, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.messages.recv_timeout(left).ok()?;
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("Chromium refused command {id}: {error}");
                }
                return Some(message["result"].clone());
            }
            if message.get("method").is_some() {
                self.events.borrow_mut().push_back(message);
            }
        }
    }

    fn wait_event(&self, method: &str) {
        let deadline = Instant::now() + COMMAND_WAIT;
        loop {
            let seen = self
                .events
                .borrow()
                .iter()
                .position(|e| e["method"] == method);
            if let Some(i) = seen {
                self.events.borrow_mut().drain(..=i);
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no {method} from Chromium: {e}"));
            self.events.borrow_mut().push_back(message);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One end of a pipe.
struct End(OwnedFd);

impl End {
    fn raw(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
}

/// A pipe's (read, write) ends, closed on exec (the child gets copies of its own).
fn pipe() -> (End, End) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    unsafe {
        (
            End(OwnedFd::from_raw_fd(fds[0])),
            End(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

/// Where `chromium` is: `$MIZZEN_CHROMIUM`, else the first of Debian's names on PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("MIZZEN_CHROMIUM") {
        return path.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .expect(
            "headless Chromium is needed: `apt-get install chromium` (.ci/run installs it), or set MIZZEN_CHROMIUM",
        )
}

/// Standard base64 (the screenshot's encoding) to bytes.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &d)| acc | (u32::from(d) << (18 - 6 * i)));
            let bytes = bits.to_be_bytes();
            bytes[1..chunk.len()].to_vec()
        })
        .collect()
}
