//! `proxy` and `no_proxy`: flag, both spellings of the variables, YAML,
//! precedence, and a password that no message or `Debug` shows.

use super::*;

fn one() -> Flags {
    flags(&[&format!("reader={ARN_A}")])
}

#[test]
fn the_proxy_comes_from_flag_variables_or_file() {
    let c = Config::load(&one(), &env(&[])).unwrap();
    assert_eq!((c.proxy, c.no_proxy), (None, None));
    let c = Config::load(
        &one(),
        &env(&[
            ("https_proxy", "http://lower:3128"),
            ("no_proxy", ".internal"),
        ]),
    )
    .unwrap();
    assert_eq!(c.proxy.unwrap().shown(), "http://lower:3128");
    assert_eq!(c.no_proxy.as_deref(), Some(".internal"));
    // HTTPS_PROXY before https_proxy; the flag before both.
    let both = env(&[
        ("HTTPS_PROXY", "http://upper:3128"),
        ("https_proxy", "http://lower:3128"),
    ]);
    let c = Config::load(&one(), &both).unwrap();
    assert_eq!(c.proxy.unwrap().shown(), "http://upper:3128");
    let f = Flags {
        proxy: Some("http://flag:8080".into()),
        no_proxy: Some("*".into()),
        ..one()
    };
    let c = Config::load(&f, &both).unwrap();
    assert_eq!(c.proxy.unwrap().shown(), "http://flag:8080");
    assert_eq!(c.no_proxy.as_deref(), Some("*"));
    let (_f, mut fl) = yaml(&format!(
        "region: eu-west-1\nproxy: 'http://u:p4ss@yaml:3128'\nno_proxy: sts.amazonaws.com\nprofiles:\n  reader: {ARN_A}\n"
    ));
    fl.region = None;
    let c = Config::load(&fl, &env(&[])).unwrap();
    assert_eq!(c.proxy.as_ref().unwrap().shown(), "http://***@yaml:3128");
    assert!(
        !format!("{c:?}").contains("p4ss"),
        "Debug masks the password"
    );
}

#[test]
fn a_bad_proxy_is_exit_64_without_its_password() {
    let f = Flags {
        proxy: Some("ftp://user:hunter2@proxy:21".into()),
        no_proxy: Some("a b".into()),
        ..one()
    };
    let p = problems(Config::load(&f, &env(&[])));
    assert!(has(&p, "--proxy", "ftp://***@proxy:21"), "{p:#?}");
    assert!(has(&p, "--no-proxy", "not a host"), "{p:#?}");
    assert!(!format!("{p:?}").contains("hunter2"));
}
