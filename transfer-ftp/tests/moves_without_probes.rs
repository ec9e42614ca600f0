//! Issue 11: post-processing moves cost no probe a server could penalise. Against a scripted
//! FTP server on loopback that keeps a small file tree, records every command, and (like
//! servers that slow down directory scans) counts every refused one: a folder made once is
//! not checked again, a no-overwrite move sends `SIZE` (refused: the target is free), `RNFR`
//! and `RNTO`, and never a `CWD` per file.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord_core::{FsError, RemoteFs, RenameMode};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use transfer_ftp::{FtpFs, FtpSettings, MoveCheck, PassiveMode, Secret};

#[derive(Default)]
struct Tree {
    dirs: BTreeSet<String>,
    files: BTreeSet<String>,
    /// Every command received, in order (verb and argument).
    seen: Vec<String>,
    /// Commands answered with a 5xx.
    refused: Vec<String>,
}

type Shared = Arc<Mutex<Tree>>;

async fn start(tree: Shared) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::spawn(session(conn, tree.clone()));
        }
    });
    port
}

async fn session(conn: tokio::net::TcpStream, tree: Shared) {
    let (read, mut write) = conn.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 fake\r\n").await.unwrap();
    let mut rename_from: Option<String> = None;
    let mut cwd = "/".to_string();
    let mut passive: Option<TcpListener> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let verb = verb.to_ascii_uppercase();
        let arg = arg.to_string();
        if verb == "EPSV" {
            tree.lock().unwrap().seen.push(verb.clone());
            let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = data.local_addr().unwrap().port();
            passive = Some(data);
            let reply = format!("229 Entering Extended Passive Mode (|||{port}|)\r\n");
            write.write_all(reply.as_bytes()).await.unwrap();
            continue;
        }
        if verb == "LIST" {
            // The names in the current folder, as `ls -l` lines (vsftpd's form).
            let listing: String = {
                let mut t = tree.lock().unwrap();
                t.seen.push(format!("LIST {cwd}"));
                let prefix = format!("{}/", cwd.trim_end_matches('/'));
                let child = |p: &String| {
                    p.strip_prefix(&prefix)
                        .filter(|n| !n.contains('/'))
                        .map(str::to_string)
                };
                let dirs = t.dirs.iter().filter_map(child).map(|n| {
                    format!("drwxr-xr-x    2 1000     1000         4096 Dec 01 22:38 {n}\r\n")
                });
                let files = t.files.iter().filter_map(child).map(|n| {
                    format!("-rw-r--r--    1 1000     1000            5 Dec 01 22:38 {n}\r\n")
                });
                dirs.chain(files).collect()
            };
            let data = passive.take().expect("EPSV before LIST");
            write
                .write_all(b"150 Here comes the directory listing.\r\n")
                .await
                .unwrap();
            let (mut conn, _) = data.accept().await.unwrap();
            conn.write_all(listing.as_bytes()).await.unwrap();
            drop(conn);
            write
                .write_all(b"226 Directory send OK.\r\n")
                .await
                .unwrap();
            continue;
        }
        let reply = {
            let mut t = tree.lock().unwrap();
            t.seen.push(format!("{verb} {arg}"));
            let reply = match verb.as_str() {
                "USER" => "331 password please".to_string(),
                "PASS" => "230 in".to_string(),
                "TYPE" | "NOOP" => "200 ok".to_string(),
                "FEAT" => "211-Features:\r\n SIZE\r\n MDTM\r\n211 End".to_string(),
                "PWD" => "257 \"/\" is the current directory".to_string(),
                "CWD" if arg == "/" || t.dirs.contains(&arg) => {
                    cwd = arg.clone();
                    "250 ok".to_string()
                }
                "CWD" => "550 Failed to change directory.".to_string(),
                "MKD" if t.dirs.contains(&arg) || t.files.contains(&arg) => {
                    "550 Create directory operation failed.".to_string()
                }
                "MKD" => {
                    t.dirs.insert(arg.clone());
                    format!("257 \"{arg}\" created")
                }
                "SIZE" if t.files.contains(&arg) => "213 5".to_string(),
                "SIZE" => "550 Could not get file size.".to_string(),
                "RNFR" if t.files.contains(&arg) => {
                    rename_from = Some(arg.clone());
                    "350 Ready for RNTO.".to_string()
                }
                "RNFR" => "550 RNFR command failed.".to_string(),
                "RNTO" => match rename_from.take() {
                    // rename(2) does not replace a directory, nor write into a missing folder.
                    Some(_) if t.dirs.contains(&arg) => "550 Rename failed.".to_string(),
                    Some(_) if !t.dirs.contains(parent(&arg)) => "550 Rename failed.".to_string(),
                    Some(from) => {
                        t.files.remove(&from);
                        t.files.insert(arg.clone());
                        "250 Rename successful.".to_string()
                    }
                    None => "503 RNFR required first.".to_string(),
                },
                "QUIT" => "221 bye".to_string(),
                _ => "502 not here".to_string(),
            };
            if reply.starts_with('5') {
                t.refused.push(format!("{verb} {arg}"));
            }
            reply
        };
        if write
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
            || verb == "QUIT"
        {
            return;
        }
    }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "",
    }
}

fn fs(port: u16) -> FtpFs {
    fs_with(port, MoveCheck::Size)
}

fn fs_with(port: u16, move_check: MoveCheck) -> FtpFs {
    let mut settings = FtpSettings::new("127.0.0.1", port, "u");
    settings.move_check = move_check;
    settings.password = Some(Secret::new("p"));
    settings.passive_mode = PassiveMode::Epsv;
    settings.op_timeout = Duration::from_secs(10);
    // One session: the commands of every call in one sequence.
    settings.max_sessions = 1;
    FtpFs::new(settings).unwrap()
}

/// The commands and refusals recorded since the last call.
fn take(tree: &Shared) -> (Vec<String>, Vec<String>) {
    let mut t = tree.lock().unwrap();
    (std::mem::take(&mut t.seen), std::mem::take(&mut t.refused))
}

#[tokio::test]
async fn moves_send_no_probe_per_file_and_known_folders_are_not_checked_again() {
    let tree: Shared = Arc::default();
    {
        let mut t = tree.lock().unwrap();
        t.dirs.insert("/in".into());
        for i in 0..50 {
            t.files.insert(format!("/in/f{i:02}"));
        }
    }
    let fs = fs(start(tree.clone()).await);

    fs.create_dir_all("/in/.done/2026").await.unwrap();
    let (seen, _) = take(&tree);
    assert!(
        seen.iter().any(|c| c == "MKD /in/.done/2026"),
        "the folder is made: {seen:?}"
    );
    // Known now: asked again (the next term's preparation), nothing is sent.
    fs.create_dir_all("/in/.done/2026").await.unwrap();
    fs.create_dir_all("/in/.done").await.unwrap();
    let (seen, _) = take(&tree);
    assert!(seen.is_empty(), "{seen:?}");

    for i in 0..50 {
        let to = format!("/in/.done/2026/f{i:02}");
        fs.rename(&format!("/in/f{i:02}"), &to, RenameMode::NoOverwrite)
            .await
            .unwrap();
    }
    let (seen, refused) = take(&tree);
    let per_file: Vec<&str> = seen
        .iter()
        .filter_map(|c| c.split(' ').next())
        .filter(|v| !["NOOP", "TYPE", "PWD", "FEAT", "USER", "PASS"].contains(v))
        .collect();
    assert_eq!(
        per_file,
        ["SIZE", "RNFR", "RNTO"].repeat(50),
        "three commands a move: {seen:?}"
    );
    // The only refusals are the SIZE of each free target: one per file, never a CWD.
    assert_eq!(refused.len(), 50, "{refused:?}");
    assert!(
        refused.iter().all(|c| c.starts_with("SIZE ")),
        "{refused:?}"
    );
    assert_eq!(tree.lock().unwrap().files.len(), 50);
    assert!(tree.lock().unwrap().files.contains("/in/.done/2026/f49"));
}

#[tokio::test]
async fn a_taken_name_is_already_exists_whether_file_or_folder() {
    let tree: Shared = Arc::default();
    {
        let mut t = tree.lock().unwrap();
        for d in ["/in", "/done", "/done/taken-dir"] {
            t.dirs.insert(d.into());
        }
        for f in ["/in/a", "/done/a", "/in/taken-dir"] {
            t.files.insert(f.into());
        }
    }
    let fs = fs(start(tree.clone()).await);

    // A file there: SIZE says so, nothing is renamed.
    let err = fs
        .rename("/in/a", "/done/a", RenameMode::NoOverwrite)
        .await
        .unwrap_err();
    assert!(matches!(err, FsError::AlreadyExists { .. }), "{err:?}");
    let (seen, _) = take(&tree);
    assert!(!seen.iter().any(|c| c.starts_with("RN")), "{seen:?}");

    // A folder there: SIZE cannot tell, RNTO is refused, then the probe tells.
    let err = fs
        .rename("/in/taken-dir", "/done/taken-dir", RenameMode::NoOverwrite)
        .await
        .unwrap_err();
    assert!(matches!(err, FsError::AlreadyExists { .. }), "{err:?}");
    assert!(tree.lock().unwrap().files.contains("/in/taken-dir"));

    // Overwrite mode sends no SIZE at all.
    take(&tree);
    fs.rename("/in/a", "/done/a", RenameMode::Overwrite)
        .await
        .unwrap();
    let (seen, _) = take(&tree);
    assert!(!seen.iter().any(|c| c.starts_with("SIZE")), "{seen:?}");
}

#[tokio::test]
async fn a_folder_removed_behind_our_back_is_made_again_after_a_failed_move() {
    let tree: Shared = Arc::default();
    {
        let mut t = tree.lock().unwrap();
        t.dirs.insert("/in".into());
        t.files.insert("/in/a".into());
        t.files.insert("/in/b".into());
    }
    let fs = fs(start(tree.clone()).await);
    fs.create_dir_all("/in/.done").await.unwrap();
    // Removed by someone else.
    tree.lock().unwrap().dirs.remove("/in/.done");
    let err = fs
        .rename("/in/a", "/in/.done/a", RenameMode::NoOverwrite)
        .await
        .unwrap_err();
    assert!(!matches!(err, FsError::AlreadyExists { .. }), "{err:?}");
    // The failed rename forgot what was known: the folder is checked and made again.
    take(&tree);
    fs.create_dir_all("/in/.done").await.unwrap();
    let (seen, _) = take(&tree);
    assert!(seen.iter().any(|c| c == "MKD /in/.done"), "{seen:?}");
    fs.rename("/in/b", "/in/.done/b", RenameMode::NoOverwrite)
        .await
        .unwrap();
}

/// `move_check = "listing"`: 1,000 moves into one folder against a server that counts every
/// refused command. The folder is listed once: no command is refused, and each move is
/// `RNFR` and `RNTO` alone. A name taken before the listing, or by an earlier move, is still
/// refused without a rename; a `.` name is asked with `SIZE`.
#[tokio::test]
async fn listing_mode_moves_a_thousand_files_without_one_refused_command() {
    let tree: Shared = Arc::default();
    {
        let mut t = tree.lock().unwrap();
        for d in ["/in", "/in/.done"] {
            t.dirs.insert(d.into());
        }
        for i in 0..1000 {
            t.files.insert(format!("/in/f{i:04}"));
        }
        t.files.insert("/in/again".into());
        t.files.insert("/in/.hidden".into());
        t.files.insert("/in/.done/taken".into());
        t.files.insert("/in/taken".into());
    }
    let fs = fs_with(start(tree.clone()).await, MoveCheck::Listing);
    fs.create_dir_all("/in/.done").await.unwrap();
    take(&tree);

    for i in 0..1000 {
        fs.rename(
            &format!("/in/f{i:04}"),
            &format!("/in/.done/f{i:04}"),
            RenameMode::NoOverwrite,
        )
        .await
        .unwrap();
    }
    let (seen, refused) = take(&tree);
    assert!(refused.is_empty(), "refused: {refused:?}");
    let verbs: Vec<&str> = seen
        .iter()
        .filter_map(|c| c.split(' ').next())
        .filter(|v| !["NOOP", "TYPE", "PWD", "FEAT", "USER", "PASS"].contains(v))
        .collect();
    let mut expected = vec!["CWD", "EPSV", "LIST"];
    expected.extend(["RNFR", "RNTO"].repeat(1000));
    assert_eq!(verbs, expected, "one listing, then two commands a move");
    assert_eq!(tree.lock().unwrap().files.len(), 1004);

    // Taken before the listing: refused without a rename or a probe.
    let err = fs
        .rename("/in/taken", "/in/.done/taken", RenameMode::NoOverwrite)
        .await
        .unwrap_err();
    assert!(matches!(err, FsError::AlreadyExists { .. }), "{err:?}");
    // Taken by one of our moves since the listing: the same.
    tree.lock().unwrap().files.insert("/in/f0007".into());
    let err = fs
        .rename("/in/f0007", "/in/.done/f0007", RenameMode::NoOverwrite)
        .await
        .unwrap_err();
    assert!(matches!(err, FsError::AlreadyExists { .. }), "{err:?}");
    let (seen, refused) = take(&tree);
    assert!(
        seen.is_empty() && refused.is_empty(),
        "{seen:?} {refused:?}"
    );
    assert!(tree.lock().unwrap().files.contains("/in/taken"));

    // A `.` name may be hidden from listings: asked with SIZE (free here, so refused once).
    fs.rename("/in/.hidden", "/in/.done/.hidden", RenameMode::NoOverwrite)
        .await
        .unwrap();
    let (seen, refused) = take(&tree);
    assert!(
        seen.iter().any(|c| c == "SIZE /in/.done/.hidden"),
        "{seen:?}"
    );
    assert_eq!(refused, ["SIZE /in/.done/.hidden"]);

    // A refused rename forgets the names: the next move lists the folder again.
    tree.lock().unwrap().dirs.remove("/in/.done");
    fs.rename("/in/again", "/in/.done/again", RenameMode::NoOverwrite)
        .await
        .unwrap_err();
    tree.lock().unwrap().dirs.insert("/in/.done".into());
    take(&tree);
    fs.rename("/in/again", "/in/.done/again", RenameMode::NoOverwrite)
        .await
        .unwrap();
    let (seen, _) = take(&tree);
    assert!(seen.iter().any(|c| c == "LIST /in/.done"), "{seen:?}");
}
