use super::*;

#[test]
fn lines_and_raw_output_share_one_cap() {
    let log = StepLog::new(20);
    log.line(Level::Info, "0123456789".into(), vec![]);
    log.write(Stream::Stdout, b"abcdefgh");
    log.write(Stream::Stderr, b"XYZ");
    log.line(Level::Warn, "dropped".into(), vec![]);
    let out = log.take();
    assert_eq!(out.lines.len(), 1);
    assert_eq!(out.stdout, "abcdefgh");
    assert_eq!(out.stderr, "XY");
    assert_eq!(out.dropped_bytes, 1 + 7);
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
