use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

use super::*;

fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
    paths.iter().fold(notify::Event::new(kind), |e, p| {
        e.add_path(PathBuf::from(p))
    })
}

fn filter() -> Filter {
    Filter::new(Path::new("/run/sa/token"))
}

#[test]
fn reads_of_the_token_never_wake_the_watcher() {
    let f = filter();
    for kind in [
        AccessKind::Open(AccessMode::Any),
        AccessKind::Read,
        AccessKind::Close(AccessMode::Read),
        AccessKind::Any,
    ] {
        let e = event(EventKind::Access(kind), &["/run/sa/token"]);
        assert_eq!(f.wakes(&e), Wake::No, "{kind:?}");
    }
}

#[test]
fn changes_to_the_token_or_kubelets_data_link_wake_the_watcher() {
    let f = filter();
    for (kind, paths) in [
        (
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &["/run/sa/token"][..],
        ),
        (
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            &["/run/sa/token"],
        ),
        (EventKind::Create(CreateKind::File), &["/run/sa/token"]),
        (EventKind::Remove(RemoveKind::File), &["/run/sa/token"]),
        (
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            &["/run/sa/token"],
        ),
        (
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            &["/run/sa/..data"],
        ),
        (
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &["/run/sa/..data_tmp", "/run/sa/..data"],
        ),
        (
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &["/run/sa/token.tmp", "/run/sa/token"],
        ),
    ] {
        let e = event(kind, paths);
        assert_eq!(f.wakes(&e), Wake::Check, "{e:?}");
    }
}

#[test]
fn other_files_in_the_directory_are_ignored() {
    let f = filter();
    for (kind, path) in [
        (
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            "/run/sa/ca.crt",
        ),
        (
            EventKind::Create(CreateKind::Folder),
            "/run/sa/..2026_01_01",
        ),
        (
            EventKind::Remove(RemoveKind::Folder),
            "/run/sa/..2025_12_31",
        ),
        (
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            "/run/sa/..data_tmp",
        ),
        (EventKind::Create(CreateKind::File), "/run/sa/token.tmp"),
    ] {
        let e = event(kind, &[path]);
        assert_eq!(f.wakes(&e), Wake::No, "{e:?}");
    }
}

#[test]
fn the_directory_going_away_ends_the_watch_and_rescans_re_read() {
    let f = filter();
    let gone = event(EventKind::Remove(RemoveKind::Folder), &["/run/sa"]);
    assert_eq!(f.wakes(&gone), Wake::Lost);
    let moved = event(
        EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        &["/run/sa"],
    );
    assert_eq!(f.wakes(&moved), Wake::Lost);
    let chmod = event(
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        &["/run/sa"],
    );
    assert_eq!(f.wakes(&chmod), Wake::Check);
    let rescan = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
    assert_eq!(f.wakes(&rescan), Wake::Check);
    assert_eq!(f.wakes(&event(EventKind::Any, &[])), Wake::Check);
}

#[test]
fn a_relative_token_path_is_matched_against_the_absolute_paths_notify_reports() {
    let f = Filter::new(Path::new("token"));
    let cwd = std::env::current_dir().unwrap();
    let dir = cwd.join(".");
    let e = event(
        EventKind::Modify(ModifyKind::Data(DataChange::Any)),
        &[dir.join("token").to_str().unwrap()],
    );
    assert_eq!(f.wakes(&e), Wake::Check);
    let gone = event(
        EventKind::Remove(RemoveKind::Folder),
        &[dir.to_str().unwrap()],
    );
    assert_eq!(f.wakes(&gone), Wake::Lost);
}

#[test]
fn a_file_of_the_same_name_in_another_directory_is_not_this_one() {
    // One notify watcher serves every watched file of the process: an
    // event is this filter's only in its own directory.
    let f = filter();
    for path in ["/run/other/token", "/run/other/..data", "/run/sa/sub/token"] {
        let e = event(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &[path],
        );
        assert_eq!(f.wakes(&e), Wake::No, "{path}");
    }
    let own = event(
        EventKind::Modify(ModifyKind::Data(DataChange::Any)),
        &["/run/sa/token"],
    );
    assert_eq!(f.wakes(&own), Wake::Check);
}
