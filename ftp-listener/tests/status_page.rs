//! The status page at `/`, loaded in headless Chromium (Debian's `chromium`, installed by
//! scripts/setup/80-chromium.sh): it shows the group's leader and term, and another leader
//! after the first one is killed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Proc, Site, http_get, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

/// The DOM Chromium renders for `url` (no script on the page: the HTML as served, parsed).
fn rendered(url: &str, profile: &std::path::Path) -> String {
    let out = chromium(profile, &["--dump-dom", url]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Headless Chromium with its own profile directory and `args`; fails the test if it does.
fn chromium(profile: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium (scripts/setup/80-chromium.sh installs it)");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A PNG screenshot Chromium takes of `url`, kept at `path` for a human to look at.
fn screenshot(url: &str, profile: &std::path::Path, path: &std::path::Path) -> Vec<u8> {
    let target = format!("--screenshot={}", path.display());
    chromium(
        profile,
        &["--hide-scrollbars", "--window-size=1280,900", &target, url],
    );
    std::fs::read(path).unwrap_or_default()
}

fn address(proc: &Proc) -> String {
    proc.output()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .expect("the bound address is logged")
        .to_string()
}

#[test]
fn the_status_page_shows_the_leader_and_follows_a_failover() {
    let site = Site::new();
    let a = site.spawn(&site.config("a", "node-a", &site.probe_handler("")));
    assert!(
        a.wait_line("became leader", LIMIT).is_some(),
        "{}",
        a.output()
    );
    let b = site.spawn(&site.config("b", "node-b", &site.probe_handler("")));
    assert!(
        b.wait_line("ftp-listener started", LIMIT).is_some(),
        "{}",
        b.output()
    );
    site.drop_file("seen.txt", b"x");
    assert!(
        wait_for(LIMIT, || site
            .path("inbox/.done/seen.txt")
            .exists()
            .then_some(()))
        .is_some()
    );
    let (addr_a, addr_b) = (address(&a), address(&b));
    let profile = tempfile::tempdir().unwrap();

    // The leader's page: who leads, the term, both members, the file's outcome.
    let page = wait_for(LIMIT, || {
        let dom = rendered(&format!("http://{addr_a}/"), profile.path());
        (dom.contains("node-b") && dom.contains("seen.txt")).then_some(dom)
    })
    .expect("both members and the handled file on the page");
    assert!(
        page.contains(r#"id="leader-e2e">node-a</b>"#),
        "the leader is shown:\n{page}"
    );
    assert!(page.contains(r#"id="term-e2e">1</b>"#), "{page}");
    assert!(
        page.contains(r#"id="backlog-e2e">0</b>"#),
        "the backlog: {page}"
    );
    assert!(
        page.contains("http-equiv=\"refresh\""),
        "it refreshes itself"
    );
    assert!(!page.contains("<script"), "readable without JavaScript");
    // A picture of it, for the record (its path is printed; one per test process).
    let shot = std::env::temp_dir().join(format!("ftpl-status-page-{}.png", std::process::id()));
    let png = screenshot(&format!("http://{addr_a}/"), profile.path(), &shot);
    assert!(png.starts_with(b"\x89PNG"), "a PNG at {}", shot.display());
    println!(
        "status page screenshot: {} ({} bytes)",
        shot.display(),
        png.len()
    );
    let (code, raw) = http_get(&addr_a, "/");
    assert_eq!(code, 200);
    assert!(
        !raw.contains("http://") && !raw.contains("https://"),
        "no external asset"
    );

    // The leader dies (kill -9): the standby's page changes to the new leader and term.
    a.signal("KILL");
    assert!(
        b.wait_line("became leader", LIMIT).is_some(),
        "{}",
        b.output()
    );
    let page = wait_for(LIMIT, || {
        let dom = rendered(&format!("http://{addr_b}/"), profile.path());
        dom.contains(r#"id="leader-e2e">node-b</b>"#).then_some(dom)
    })
    .expect("the page shows the new leader");
    assert!(page.contains(r#"id="term-e2e">2</b>"#), "{page}");
    b.signal("TERM");
}
