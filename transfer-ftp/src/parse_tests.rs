use super::*;

fn entry(line: &[u8], format: ListFormat) -> RawEntry<'_> {
    match parse_line(format, line) {
        Parsed::Entry(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn civil_dates_round_trip() {
    assert_eq!(secs(utc(1970, 1, 1, 0, 0, 0, 0).unwrap()), 0);
    assert_eq!(secs(utc(2000, 3, 1, 0, 0, 0, 0).unwrap()), 951_868_800);
    assert_eq!(secs(utc(2026, 11, 27, 12, 0, 0, 0).unwrap()), 1_795_780_800);
    assert!(utc(2026, 13, 1, 0, 0, 0, 0).is_none());
}

#[test]
fn posix_vsftpd_and_proftpd_lines() {
    let e = entry(
        b"-rw-r--r--    1 1000     1000            5 Nov 27 11:22 report.csv",
        ListFormat::List,
    );
    assert_eq!(e.name, b"report.csv");
    assert_eq!(e.size, 5);
    assert_eq!(e.kind, EntryKind::File);

    let e = entry(
        b"drwxr-xr-x   3 hatest   hatest       4096 Jan  3  2024 old dir",
        ListFormat::List,
    );
    assert_eq!(e.name, b"old dir");
    assert_eq!(e.kind, EntryKind::Dir);

    // A leading dash, leading blank and trailing blank are part of the name.
    let e = entry(
        b"-rw-r--r--    1 0        0               0 Nov 27 11:22 -dash",
        ListFormat::List,
    );
    assert_eq!(e.name, b"-dash");
    let e = entry(
        b"-rw-r--r--    1 0        0               0 Nov 27 11:22  spaced ",
        ListFormat::List,
    );
    assert_eq!(e.name, b" spaced ");
}

/// Issue 7: a POSIX LIST date never becomes an mtime (neither the recent `HH:MM` form, whose
/// year only a clock could supply, nor the year form, which has no time of day); it is kept
/// as a stamp, which differs between the two forms of the same file.
#[test]
fn posix_dates_are_stamps_not_times() {
    let recent = entry(
        b"-rw-r--r--    1 1000     1000            5 Nov 27 11:22 report.csv",
        ListFormat::List,
    );
    assert_eq!(recent.mtime, None);
    assert_eq!(
        recent.stamp,
        Some(ListStamp::Recent {
            month: 11,
            day: 27,
            hour: 11,
            minute: 22
        })
    );
    // The same file six months later.
    let aged = entry(
        b"-rw-r--r--    1 1000     1000            5 Nov 27  2025 report.csv",
        ListFormat::List,
    );
    assert_eq!(aged.mtime, None);
    assert_eq!(
        aged.stamp,
        Some(ListStamp::Dated {
            month: 11,
            day: 27,
            year: 2025
        })
    );
    assert_ne!(recent.stamp, aged.stamp);
    // Column padding does not matter.
    let padded = entry(b"-rw-r--r-- 1 u g 5 Nov  7  2025 x", ListFormat::List);
    let tight = entry(b"-rw-r--r-- 1 u g 5 Nov 07 2025 x", ListFormat::List);
    assert_eq!(padded.stamp, tight.stamp);
    // A date ahead of any clock is just a stamp too.
    let late = entry(
        b"-rw-r--r-- 1 u g 1 Dec 30 10:00 late.txt",
        ListFormat::List,
    );
    assert_eq!((late.mtime, late.stamp.is_some()), (None, true));
}

#[test]
fn mdtm_replies() {
    let t = |body: &[u8]| parse_mdtm_reply(body);
    assert_eq!(
        t(b"213 20250327101530\r\n"),
        utc(2025, 3, 27, 10, 15, 30, 0)
    );
    assert_eq!(t(b"213 20250327101530"), utc(2025, 3, 27, 10, 15, 30, 0));
    assert_eq!(
        t(b"213 20250327101530.25\r\n"),
        utc(2025, 3, 27, 10, 15, 30, 250)
    );
    assert_eq!(
        t(b"213 19700101000000.123456\r\n"),
        utc(1970, 1, 1, 0, 0, 0, 123)
    );
    for bad in [
        &b"550 Could not get file modification time.\r\n"[..],
        b"213 2025032710153\r\n",
        b"213 20251327101530\r\n",
        b"213 2025032710153x\r\n",
        b"213 \r\n",
        b"",
        b"200 20250327101530\r\n",
    ] {
        assert_eq!(t(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn posix_symlinks_devices_and_missing_group() {
    let e = entry(
        b"lrwxrwxrwx 1 u g 11 Nov 27 10:00 link -> target.txt",
        ListFormat::List,
    );
    assert_eq!((e.name, e.kind), (&b"link"[..], EntryKind::Symlink));
    // No group column (some servers).
    let e = entry(
        b"-rw-r--r-- 1 owner 1234 Nov 27 10:00 nogroup",
        ListFormat::List,
    );
    assert_eq!((e.name, e.size), (&b"nogroup"[..], 1234));
    let e = entry(b"prw-r--r-- 1 u g 0 Nov 27 10:00 fifo", ListFormat::List);
    assert_eq!(e.kind, EntryKind::Other);
    // Non-UTF-8 bytes survive parsing; check_name refuses them later.
    let e = entry(
        b"-rw-r--r-- 1 u g 0 Nov 27 10:00 \xff\xfebad",
        ListFormat::List,
    );
    assert_eq!(e.name, b"\xff\xfebad");
}

#[test]
fn posix_ignores_total_and_dots() {
    for line in [
        &b"total 12"[..],
        b"drwxr-xr-x 2 u g 4096 Nov 27 10:00 .",
        b"drwxr-xr-x 2 u g 4096 Nov 27 10:00 ..",
        b"",
        b"   \r\n",
    ] {
        assert_eq!(parse_line(ListFormat::List, line), Parsed::Ignore);
    }
}

#[test]
fn dos_lines() {
    let e = entry(
        b"11-27-26  12:22PM       <DIR>          Incoming",
        ListFormat::List,
    );
    assert_eq!((e.name, e.kind), (&b"Incoming"[..], EntryKind::Dir));
    assert_eq!(e.mtime, utc(2026, 11, 27, 12, 22, 0, 0));
    let dos_secs = secs(e.mtime.unwrap());
    assert_eq!(e.stamp, Some(ListStamp::Dos(dos_secs)));
    let e = entry(
        b"01-02-2025  12:05AM              1,234 a file.txt",
        ListFormat::List,
    );
    assert_eq!((e.name, e.size), (&b"a file.txt"[..], 1234));
    assert_eq!(e.mtime, utc(2025, 1, 2, 0, 5, 0, 0));
    let e = entry(b"03-04-98  09:15       17 old.dat", ListFormat::List);
    assert_eq!(e.mtime, utc(1998, 3, 4, 9, 15, 0, 0));
}

#[test]
fn garbage_lines_are_garbage() {
    for line in [
        &b"hello world"[..],
        b"line",
        b"-rw-r--r-- 1 u g notasize Nov 27 10:00 x",
        b"-rw-r--r-- 1 u g 5 Foo 27 10:00 x",
        b"-rw-r--r-- 1 u g 5 Nov 27 10:00",
        b"-rw-r--r-- 1 u g 5 Nov 27 25:99 x",
        b"13-27-26  12:22PM <DIR> x",
        b"11-27-26  13:22PM <DIR> x",
        b"11-27-26  12:22PM abc x",
        b"-rw-r--r-- 1 u g 99999999999999999999999 Nov 27 10:00 huge",
        b"\x00\x01\x02",
    ] {
        assert_eq!(
            parse_line(ListFormat::List, line),
            Parsed::Garbage,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn mlsd_lines() {
    let e = entry(
        b"modify=20261127122348;perm=adfr;size=3;type=file;UNIX.mode=0644; new file",
        ListFormat::Mlsd,
    );
    assert_eq!(
        (e.name, e.size, e.kind),
        (&b"new file"[..], 3, EntryKind::File)
    );
    assert_eq!(e.mtime, utc(2026, 11, 27, 12, 23, 48, 0));
    let e = entry(b"Type=dir;Modify=20261127122348.123; sub", ListFormat::Mlsd);
    assert_eq!(e.kind, EntryKind::Dir);
    assert_eq!(e.mtime, utc(2026, 11, 27, 12, 23, 48, 123));
    let e = entry(b"type=OS.unix=slink:/etc/x;size=5; l", ListFormat::Mlsd);
    assert_eq!(e.kind, EntryKind::Symlink);
    let e = entry(b"size=5; -dash", ListFormat::Mlsd);
    assert_eq!((e.name, e.kind), (&b"-dash"[..], EntryKind::Other));
    for line in [&b"type=cdir;modify=20261127122348; ."[..], b"type=pdir; .."] {
        assert_eq!(parse_line(ListFormat::Mlsd, line), Parsed::Ignore);
    }
    for line in [
        &b"line"[..],
        b"type=file;size=x; a",
        b"type=file;size=1 ",
        b"type=file;size=1; ",
        b"nofacts name",
    ] {
        assert_eq!(
            parse_line(ListFormat::Mlsd, line),
            Parsed::Garbage,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn dir_parser_skips_hostile_names_and_newline_halves() {
    let mut out = Listing::default();
    let mut p = DirParser::new("/in", ListFormat::List);
    for line in [
        &b"-rw-r--r-- 1 0 0 5 Nov 27 10:00 good.txt\r\n"[..],
        b"-rw-r--r-- 1 0 0 3 Nov 27 10:00 new\r\n",
        b"line\r\n",
        b"-rw-r--r-- 1 0 0 0 Nov 27 10:00 \xff\xfebad\r\n",
        b"-rw-r--r-- 1 0 0 0 Nov 27 10:00 a\x1bb\r\n",
        b"drwxr-xr-x 2 0 0 4096 Nov 27 10:00 sub\r\n",
        b"-rw-r--r-- 1 0 0 0 Nov 27 10:00 -dash\r\n",
    ] {
        p.push_line(line, &mut out);
    }
    p.finish(&mut out);
    let names: Vec<&str> = out.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["good.txt", "sub", "-dash"]);
    assert_eq!(out.entries[0].path, "/in/good.txt");
    // `new` + `line` (2), non-UTF-8 (1), escape character (1).
    assert_eq!(out.skipped, 4);
    assert_eq!(p.subdirs, ["/in/sub"]);
    // Only regular files get a stamp, by their index in the listing.
    let stamped: Vec<usize> = p.stamps.iter().map(|&(i, _)| i).collect();
    assert_eq!(stamped, [0, 2]);
    assert!(out.entries.iter().all(|e| e.mtime.is_none()));
}
