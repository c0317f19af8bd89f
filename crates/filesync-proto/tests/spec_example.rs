//! Keeps the example frames in `docs/protocol.md` ("Example exchange") true: each hex dump there
//! is checked against what the encoder produces. Run with `--nocapture` to print them.

use filesync_proto::*;

/// Hex dump, 16 bytes per line, as in the spec.
fn hex_dump(b: &[u8]) -> String {
    b.chunks(16)
        .enumerate()
        .map(|(i, line)| {
            let hex: Vec<String> = line.iter().map(|x| format!("{x:02x}")).collect();
            format!("{:04x}  {}\n", i * 16, hex.join(" "))
        })
        .collect()
}

fn check(frame: Frame, want: &str) {
    let bytes = frame.to_bytes().unwrap();
    let got = hex_dump(&bytes);
    println!("{} (request id {}):\n{got}", frame.message.name(), frame.request_id);
    assert_eq!(got, want, "docs/protocol.md shows a different encoding; update one of them");
    assert_eq!(decode_frame(&bytes).unwrap(), Decoded::Frame(frame, bytes.len()));
}

#[test]
fn hello_frame_matches_the_spec() {
    let hello = Hello {
        min_version: PROTOCOL_VERSION_MIN,
        max_version: PROTOCOL_VERSION_MAX,
        client_name: "filesync/0.1.0".into(),
    };
    check(
        Frame::new(1, Message::Hello(hello)),
        "0000  00 00 00 1c 00 01 00 00 00 00 00 01 08 02 10 05\n\
         0010  1a 0e 66 69 6c 65 73 79 6e 63 2f 30 2e 31 2e 30\n",
    );
}

#[test]
fn welcome_frame_matches_the_spec() {
    let welcome = Welcome { version: 5, server_name: "filesync/0.1.0".into(), registration_open: true };
    check(
        Frame::new(1, Message::Welcome(welcome)),
        "0000  00 00 00 1c 00 02 00 00 00 00 00 01 08 05 12 0e\n\
         0010  66 69 6c 65 73 79 6e 63 2f 30 2e 31 2e 30 18 01\n",
    );
}

#[test]
fn folder_changed_push_matches_the_spec() {
    check(
        Frame::new(0, Message::FolderChanged(FolderChanged { folder_id: 1, seq: 1 })),
        "0000  00 00 00 0c 00 22 00 00 00 00 00 00 08 01 10 01\n",
    );
}
