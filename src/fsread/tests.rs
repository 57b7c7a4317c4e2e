use super::*;

fn mkfifo(p: &Path) {
    crate::sys::mkfifo(p, 0o600).expect("mkfifo");
}

#[test]
fn reads_a_regular_file_up_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"hello").unwrap();
    assert_eq!(read(&p, 5, Follow::No).unwrap(), b"hello");
    assert!(matches!(
        read(&p, 4, Follow::No),
        Err(ReadError::TooLarge { cap: 4 })
    ));
    assert!(
        read(&dir.path().join("nope"), 5, Follow::No)
            .unwrap_err()
            .is_missing()
    );
    assert!(matches!(
        read(dir.path(), 5, Follow::Yes),
        Err(ReadError::IsDirectory)
    ));
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fifo");
    mkfifo(&p);
    for follow in [Follow::Yes, Follow::No] {
        assert!(matches!(read(&p, 1024, follow), Err(ReadError::NotRegular)));
    }
    // A symlink to it, followed, is refused the same way.
    let l = dir.path().join("link");
    std::os::unix::fs::symlink(&p, &l).unwrap();
    assert!(matches!(
        read(&l, 1024, Follow::Yes),
        Err(ReadError::NotRegular)
    ));
}

#[test]
fn a_symlink_is_followed_only_when_asked_and_never_to_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, b"data").unwrap();
    let l = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &l).unwrap();
    assert!(matches!(
        read(&l, 1024, Follow::No),
        Err(ReadError::Symlink)
    ));
    assert_eq!(read(&l, 1024, Follow::Yes).unwrap(), b"data");
    let z = dir.path().join("zero");
    std::os::unix::fs::symlink("/dev/zero", &z).unwrap();
    assert!(matches!(
        read(&z, 1024, Follow::No),
        Err(ReadError::Symlink)
    ));
    assert!(matches!(
        read(&z, 1024, Follow::Yes),
        Err(ReadError::NotRegular)
    ));
    assert!(matches!(
        read(Path::new("/dev/zero"), 1024, Follow::Yes),
        Err(ReadError::NotRegular)
    ));
}

#[test]
fn a_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sock");
    let _l = std::os::unix::net::UnixListener::bind(&p).unwrap();
    assert!(matches!(
        read(&p, 1024, Follow::No),
        Err(ReadError::NotRegular)
    ));
}

fn is_content(c: &Change, want: &[u8]) -> bool {
    matches!(c, Change::Content(b) if b == want)
}

#[test]
fn a_tracker_reports_new_bytes_and_only_new_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"a").unwrap();
    let mut t = Tracker::new(&p, 16);
    assert!(is_content(&t.check(), b"a"), "the first read is a change");
    assert!(
        matches!(t.check(), Change::None),
        "an event without a change"
    );
    std::fs::write(&p, b"b").unwrap();
    assert!(is_content(&t.check(), b"b"));
    // The same bytes written again, or renamed over it: no change.
    std::fs::write(&p, b"b").unwrap();
    assert!(matches!(t.check(), Change::None));
    std::fs::write(dir.path().join("new"), b"b").unwrap();
    std::fs::rename(dir.path().join("new"), &p).unwrap();
    assert!(matches!(t.check(), Change::None));
    // Back to earlier bytes: a change (only the last bytes read count).
    std::fs::write(&p, b"a").unwrap();
    assert!(is_content(&t.check(), b"a"));
}

#[test]
fn a_file_deleted_and_recreated_with_the_same_bytes_is_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"a").unwrap();
    let mut t = Tracker::new(&p, 16);
    assert!(is_content(&t.check(), b"a"));
    std::fs::remove_file(&p).unwrap();
    assert!(matches!(t.check(), Change::Unreadable(ReadError::Missing)));
    assert!(matches!(t.check(), Change::None), "said once");
    std::fs::create_dir(&p).unwrap();
    assert!(
        matches!(t.check(), Change::Unreadable(ReadError::IsDirectory)),
        "another reason is said too"
    );
    std::fs::remove_dir(&p).unwrap();
    std::fs::write(&p, b"a").unwrap();
    assert!(matches!(t.check(), Change::Restored));
    assert!(matches!(t.check(), Change::None));
    // Gone, then back with other bytes: a change.
    std::fs::remove_file(&p).unwrap();
    assert!(matches!(t.check(), Change::Unreadable(_)));
    std::fs::write(&p, b"c").unwrap();
    assert!(is_content(&t.check(), b"c"));
}

#[test]
fn a_kubelet_swap_that_republishes_the_same_bytes_is_no_change() {
    // kubelet's AtomicWriter rewrites a whole volume when any of its files
    // changes: `..data` points at a new directory holding the same token.
    let dir = tempfile::tempdir().unwrap();
    let publish = |n: u32, bytes: &[u8]| {
        let ts = dir.path().join(format!("..{n}"));
        std::fs::create_dir(&ts).unwrap();
        std::fs::write(ts.join("token"), bytes).unwrap();
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).unwrap();
        std::fs::rename(&tmp, dir.path().join("..data")).unwrap();
    };
    publish(1, b"jwt-1");
    let p = dir.path().join("token");
    std::os::unix::fs::symlink("..data/token", &p).unwrap();
    let mut t = Tracker::new(&p, 16);
    assert!(is_content(&t.check(), b"jwt-1"));
    publish(2, b"jwt-1");
    assert!(matches!(t.check_if_moved(), Change::None));
    publish(3, b"jwt-2");
    assert!(is_content(&t.check_if_moved(), b"jwt-2"));
}

#[test]
fn a_tracker_started_from_a_digest_reports_only_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"loaded").unwrap();
    let mut t = Tracker::starting_from(&p, 16, Some(digest(b"loaded")));
    assert!(matches!(t.check(), Change::None));
    let mut t = Tracker::starting_from(&p, 16, Some(digest(b"before")));
    assert!(is_content(&t.check(), b"loaded"), "changed while starting");
    // Too large: unreadable, the bytes last read stand.
    std::fs::write(&p, [b'x'; 17]).unwrap();
    assert!(matches!(
        t.check(),
        Change::Unreadable(ReadError::TooLarge { cap: 16 })
    ));
}

#[test]
fn check_if_moved_reads_only_a_file_whose_identity_changed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"one").unwrap();
    let mut t = Tracker::new(&p, 16);
    assert!(
        is_content(&t.check_if_moved(), b"one"),
        "nothing looked at yet"
    );
    assert!(
        matches!(t.check_if_moved(), Change::None),
        "one stat, no read"
    );
    std::fs::write(&p, b"three").unwrap(); // another size
    assert!(is_content(&t.check_if_moved(), b"three"));
    // A read never trusts the identity (a write of the same size within
    // one tick of the filesystem's clock may leave it as it was).
    std::fs::write(&p, b"six").unwrap();
    assert!(is_content(&t.check(), b"six"));
    // A missing file is looked at again (a stat) on every call.
    std::fs::remove_file(&p).unwrap();
    assert!(matches!(t.check_if_moved(), Change::Unreadable(_)));
    assert!(matches!(t.check_if_moved(), Change::None));
}

#[test]
fn file_ids_follow_a_link_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, b"data").unwrap();
    let l = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &l).unwrap();
    assert_eq!(FileId::of(&l, Follow::Yes), FileId::of(&target, Follow::No));
    assert_ne!(FileId::of(&l, Follow::No), FileId::of(&l, Follow::Yes));
    assert_eq!(FileId::of(&dir.path().join("nope"), Follow::Yes), None);
    let before = FileId::of(&target, Follow::No);
    std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert_ne!(FileId::of(&target, Follow::No), before, "a chmod");
}

#[test]
fn debug_never_shows_the_bytes() {
    let c = Change::Content(b"secret-token".to_vec());
    assert_eq!(format!("{c:?}"), "Content(12 bytes)");
}
