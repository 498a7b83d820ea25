use super::*;

fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut s = LineSplitter::default();
    for c in chunks {
        s.feed(c, |l| out.push(l.to_vec()));
    }
    s.finish(|l| out.push(l.to_vec()));
    out
}

#[test]
fn lines_are_split_on_newlines_across_chunks() {
    let out = split(&[b"a\nb", b"c\r\n", b"\nlast"]);
    assert_eq!(
        out,
        vec![
            b"a".to_vec(),
            b"bc".to_vec(),
            b"".to_vec(),
            b"last".to_vec()
        ]
    );
}

#[test]
fn long_lines_are_split_at_the_bound() {
    let long = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
    let mut input = long.clone();
    input.push(b'\n');
    let out = split(&[&input[..100], &input[100..]]);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].len(), MAX_LINE_BYTES);
    assert_eq!(out[1].len(), MAX_LINE_BYTES);
    assert_eq!(out[2].len(), 10);
}

#[test]
fn a_line_of_exactly_the_bound_is_not_followed_by_an_empty_line() {
    let mut input = vec![b'y'; MAX_LINE_BYTES];
    input.push(b'\n');
    let out = split(&[&input]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), MAX_LINE_BYTES);
    // Same when the newline arrives in the next chunk.
    let out = split(&[&input[..MAX_LINE_BYTES], b"\nz\n"]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1], b"z");
}

#[test]
fn snapshot_filters_by_service_and_cursor() {
    let store = LogStore::default();
    store.push("a", Stream::Stdout, "a1");
    store.push("b", Stream::Stderr, "b1");
    store.push("a", Stream::Stdout, "a2");
    let all = store.snapshot(None, 0);
    let texts: Vec<_> = all.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["a1", "b1", "a2"]);
    assert_eq!(all.next, 4);
    assert!(!all.missed);
    let a = store.snapshot(Some("a"), 2);
    assert_eq!(a.lines.len(), 1);
    assert_eq!(a.lines[0].text, "a2");
    assert_eq!(store.snapshot(None, all.next).lines.len(), 0);
    assert_eq!(store.services(), ["a", "b"]);
    assert_eq!(store.snapshot(Some("b"), 0).lines[0].stream, Stream::Stderr);
}

#[test]
fn rings_are_bounded_and_report_missed_lines() {
    let store = LogStore::new(3, 1 << 20);
    for i in 0..5 {
        store.push("a", Stream::Stdout, &format!("l{i}"));
    }
    let batch = store.snapshot(Some("a"), 1);
    let texts: Vec<_> = batch.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["l2", "l3", "l4"]);
    assert!(batch.missed);
    assert!(!store.snapshot(Some("a"), 3).missed);

    let bytes = LogStore::new(100, 10);
    bytes.push("b", Stream::Stdout, "0123456");
    bytes.push("b", Stream::Stdout, "789abc");
    assert_eq!(bytes.snapshot(None, 0).lines.len(), 1);
}

#[test]
fn follow_wakes_up_on_a_new_line() {
    let store = Arc::new(LogStore::default());
    let cursor = store.cursor();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            store.push("other", Stream::Stdout, "ignored");
            store.push("svc", Stream::Stdout, "hello");
        })
    };
    let batch = store.follow(Some("svc"), cursor, Duration::from_secs(5));
    assert_eq!(batch.lines.len(), 1);
    assert_eq!(batch.lines[0].text, "hello");
    let _ = writer.join();
    // Nothing new: returns empty after the timeout.
    let t = Instant::now();
    let empty = store.follow(Some("svc"), batch.next, Duration::from_millis(30));
    assert!(empty.lines.is_empty());
    assert!(t.elapsed() >= Duration::from_millis(30));
}

#[test]
fn capture_thread_stores_lines_until_eof() {
    let store = Arc::new(LogStore::default());
    let data: &[u8] = b"one\ntwo\nthree";
    spawn_capture(store.clone(), Arc::from("cap"), Stream::Stderr, data).unwrap();
    let mut got = Vec::new();
    let mut cursor = 0;
    while got.len() < 3 {
        let b = store.follow(Some("cap"), cursor, Duration::from_secs(5));
        assert!(!b.lines.is_empty(), "timed out");
        cursor = b.next;
        got.extend(b.lines.into_iter().map(|l| l.text));
    }
    assert_eq!(got, ["one", "two", "three"]);
}
