use super::*;

#[test]
fn lines_and_raw_output_share_one_cap() {
    // A line costs 32 bytes plus its text (plus 8 per field).
    let log = StepLog::new(50);
    log.line(Level::Info, "0123456789".into(), vec![]); // 42
    log.write(Stream::Stdout, b"abcdefgh"); // 50
    log.write(Stream::Stderr, b"XYZ"); // no room
    log.line(Level::Warn, "dropped".into(), vec![]); // 39, no room
    let out = log.take();
    assert_eq!(out.lines.len(), 1);
    assert_eq!(out.stdout, "abcdefgh");
    assert_eq!(out.stderr, "");
    assert_eq!(out.dropped_bytes, 3 + 39);
}

#[test]
fn empty_lines_are_not_free() {
    let log = StepLog::new(100);
    for _ in 0..10 {
        log.line(
            Level::Info,
            String::new(),
            vec![(String::new(), String::new())],
        );
    }
    assert_eq!(
        log.take().lines.len(),
        2,
        "each empty line with an empty field costs 40 bytes"
    );
}

#[test]
fn stderr_tail_is_the_last_non_empty_line() {
    let log = StepLog::new(1 << 20);
    log.write(Stream::Stderr, b"noise\nthread panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\n");
    assert_eq!(
        log.stderr_tail().as_deref(),
        Some("noise | thread panicked at src/lib.rs:3:5: | boom")
    );
    assert_eq!(StepLog::new(10).stderr_tail(), None);
}

#[test]
fn invalid_utf8_on_stdout_is_kept_lossily() {
    let log = StepLog::new(100);
    log.write(Stream::Stdout, &[0xff, b'o', b'k']);
    assert_eq!(log.take().stdout, "\u{fffd}ok");
}
