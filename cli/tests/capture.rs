//! `--capture` and `dissector/rdio.lua`: a scripted session between real
//! processes (serve, put, get over libfabric's tcp provider on 127.0.0.1)
//! is captured on both sides, and tshark with the dissector must decode
//! every record with the expected field values and no malformed frame or
//! expert error; a hand-made capture of protocol violations must raise the
//! dissector's expert errors.
//!
//! Needs tshark (`scripts/setup.sh` installs it).

mod common;

use rdio::capture::{Direction, Kind, Record, Recorder};
use rdio_transport::RemoteBuf;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `rdio` with a home of this test binary's own: `serve` creates its
/// identity, clients file and this user's credential there on first start,
/// and clients find and pin them there, as between two shells of one user —
/// isolated from the real home.
fn rdio_command() -> Command {
    common::rdio_in(concat!(env!("CARGO_TARGET_TMPDIR"), "/home-capture"))
}

fn dissector() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dissector/rdio.lua")
}

/// `tshark -X lua_script:rdio.lua -r FILE [-Y FILTER] -T fields -e ...`:
/// one row per frame, one column per field (several values joined by ',').
fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut command = Command::new("tshark");
    command
        .arg("-X")
        .arg(format!("lua_script:{}", dissector().display()))
        .arg("-r")
        .arg(file)
        .args([
            "-2",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-E",
            "occurrence=a",
        ]);
    if !filter.is_empty() {
        command.args(["-Y", filter]);
    }
    for field in fields {
        command.args(["-e", field]);
    }
    let out = command
        .output()
        .expect("tshark is needed: run scripts/setup.sh (apt-get install tshark)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {stderr}");
    assert!(
        !stderr.contains("Lua") && !stderr.contains("rror"),
        "tshark complained: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| line.split('|').map(str::to_owned).collect())
        .collect()
}

fn count(file: &Path, filter: &str) -> usize {
    tshark(file, filter, &["frame.number"]).len()
}

struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(root: &Path, capture: &Path) -> Self {
        let (child, addr, _) = common::spawn_serve(
            rdio_command()
                .args(["serve", "--listen", "127.0.0.1:0", "--root"])
                .arg(root)
                .arg("--capture")
                .arg(capture)
                .stderr(Stdio::piped()),
        );
        Self { child, addr }
    }

    /// SIGTERM and wait: the capture is finished and its count printed.
    fn stop(self) -> String {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let out = self.child.wait_with_output().expect("wait");
        assert!(out.status.success(), "serve: {:?}", out.status);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn run(args: &[&str]) -> String {
    let out = rdio_command().args(args).output().expect("run rdio");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rdio {args:?}: {stderr}");
    stderr
}

/// The fields the session test reads, every frame of a capture decoded
/// once (tshark takes a second per run).
const FIELDS: &[&str] = &[
    "frame.number",
    "rdiocap.kind",
    "rdiocap.direction",
    "rdiocap.imm",
    "rdiopipe.opcode",
    "rdiopipe.path",
    "rdiopipe.flags.read",
    "rdiopipe.flags.write",
    "rdiopipe.status",
    "rdiopipe.provider",
    "rdiopipe.response_to",
    "rdiopipe.capabilities",
    "rdiopipe.name",
    "rdiopipe.salt",
    "rdiopipe.nonce",
    "rdiopipe.proof",
    "rdiopipe.access.read_only",
    "rdiopipe.size",
    "rdiopipe.modified_ns",
    "rdiopipe.file_id",
    "rdiopipe.kind",
    "rdiopipe.count",
    "rdiopipe.op_opcode",
    "rdiopipe.algorithm",
    "rdiopipe.checksum_length",
    "rdiopipe.digest",
    "rdio.opcode",
    "rdio.request_id",
    "rdio.status",
    "rdio.size",
    "rdio.response_to",
    "rdio.offset",
    "rdio.desc.len",
    "rdio.data_len",
    "rdio.batch.count",
    "rdio.write.data",
    "rdio.write.request",
    "rdiosb.request_id",
    "rdiosb.status",
    "rdiosb.bytes",
    "rdiosb.response_to",
    "rdiosb.valid",
    "_ws.expert.severity",
    "_ws.malformed",
];

/// One decoded frame: the values of [`FIELDS`], '' when absent.
struct Frame(Vec<String>);

impl Frame {
    fn get(&self, field: &str) -> &str {
        let i = FIELDS
            .iter()
            .position(|f| *f == field)
            .expect("a listed field");
        self.0.get(i).map_or("", String::as_str)
    }

    fn has(&self, field: &str) -> bool {
        !self.get(field).is_empty()
    }

    fn num(&self, field: &str) -> u64 {
        let text = self.get(field);
        match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        }
        .unwrap_or_else(|_| panic!("{field} is not a number: {text:?}"))
    }
}

/// Decode `file`, and check that nothing is malformed, no expert info is
/// an error, and every record decoded as what its kind says.
fn decode(file: &Path) -> Vec<Frame> {
    let frames: Vec<Frame> = tshark(file, "", FIELDS).into_iter().map(Frame).collect();
    assert!(!frames.is_empty(), "{}", file.display());
    for frame in &frames {
        let number = frame.get("frame.number");
        assert!(!frame.has("_ws.malformed"), "frame {number} malformed");
        // Expert severities: note 0x400000, warn 0x600000, error 0x800000.
        assert!(
            !frame.get("_ws.expert.severity").contains("8388608"),
            "frame {number} of {} has an expert error",
            file.display()
        );
        match frame.num("rdiocap.kind") {
            1 => assert!(frame.has("rdiopipe.opcode"), "frame {number}"),
            2 | 3 => assert!(frame.has("rdio.opcode"), "frame {number}"),
            4 => assert!(
                frame.has("rdiosb.status") || frame.has("rdio.write.data"),
                "frame {number}"
            ),
            5..=7 => {}
            kind => panic!("frame {number}: kind {kind}"),
        }
    }
    frames
}

#[test]
fn a_captured_session_decodes_with_the_expected_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("root");
    let src = dir.path().join("src.bin");
    // 200 000 bytes: with 64 KiB requests, four writes (each a Write and
    // WriteData fragments) and four reads, the last one short.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &data).expect("src");
    let (serve_cap, put_cap, get_cap) = (
        dir.path().join("serve.pcapng"),
        dir.path().join("put.pcapng"),
        dir.path().join("get.pcapng"),
    );
    let served = Served::start(&root, &serve_cap);
    let remote = format!("{}:f.bin", served.addr);
    let path = |p: &Path| p.to_str().expect("utf-8").to_owned();
    let put = run(&[
        "put",
        &path(&src),
        &remote,
        "--io-size",
        "64K",
        "--capture",
        &path(&put_cap),
    ]);
    assert!(put.contains("rdio: captured "), "{put}");
    let dst = dir.path().join("dst.bin");
    run(&[
        "get",
        &remote,
        &path(&dst),
        "--io-size",
        "64K",
        "--polling",
        "--capture",
        &path(&get_cap),
    ]);
    assert_eq!(std::fs::read(&dst).expect("dst"), data);
    let stopped = served.stop();
    assert!(stopped.contains("rdio: captured "), "{stopped}");

    let (serve, put, get) = (decode(&serve_cap), decode(&put_cap), decode(&get_cap));

    // The client's side channel, in order: authentication (hello,
    // challenge, proof, result), resume key, negotiate, what the source is
    // (Info: a file, or a directory to copy with -r), open, then a Stat
    // after the open and one after the last read, then the checksum that
    // verifies the download.
    let pipe: Vec<&Frame> = get.iter().filter(|f| f.has("rdiopipe.opcode")).collect();
    let ops: Vec<(u64, u64)> = pipe
        .iter()
        .map(|f| (f.num("rdiocap.direction"), f.num("rdiopipe.opcode")))
        .collect();
    assert_eq!(
        ops,
        [
            (0, 0x10),
            (1, 0x11),
            (0, 0x12),
            (1, 0x13),
            (0, 1),
            (1, 2),
            (0, 5),
            (1, 6),
            (0, 0x24),
            (1, 0x25),
            (0, 3),
            (1, 4),
            (0, 7),
            (1, 8),
            (0, 7),
            (1, 8),
            (0, 0x20),
            (1, 0x21)
        ]
    );
    let (auth, pipe) = pipe.split_at(4);
    // The auth exchange: the client's name (as the server received it),
    // a 16-byte salt and 32-byte nonce, a 32-byte proof, and a result of
    // Success with full (not read-only) access; each answer matched.
    let name = auth[0].get("rdiopipe.name");
    assert!(
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-@".contains(&c)),
        "AuthHello name {name:?}"
    );
    assert!(
        serve.iter().any(|f| f.get("rdiopipe.opcode") == "0x10"
            && f.get("rdiocap.direction") == "1"
            && f.get("rdiopipe.name") == name),
        "the server received the AuthHello of {name:?}"
    );
    assert_eq!(auth[1].get("rdiopipe.salt").len(), 32, "16-byte salt");
    assert_eq!(auth[1].get("rdiopipe.nonce").len(), 64, "32-byte nonce");
    assert_eq!(auth[2].get("rdiopipe.proof").len(), 64, "32-byte proof");
    assert_eq!(auth[3].get("rdiopipe.status"), "0");
    assert_eq!(auth[3].get("rdiopipe.access.read_only"), "0");
    assert_eq!(
        auth[1].get("rdiopipe.response_to"),
        auth[0].get("frame.number"),
        "the AuthChallenge answers the AuthHello"
    );
    assert_eq!(
        auth[3].get("rdiopipe.response_to"),
        auth[2].get("frame.number"),
        "the AuthResult answers the AuthProof"
    );
    // The source is a file of 200 000 bytes.
    assert_eq!(pipe[4].get("rdiopipe.path"), "f.bin");
    assert_eq!(pipe[5].get("rdiopipe.status"), "0");
    assert_eq!(pipe[5].get("rdiopipe.kind"), "0");
    assert_eq!(pipe[5].num("rdiopipe.size"), 200_000);
    assert_eq!(
        pipe[5].get("rdiopipe.response_to"),
        pipe[4].get("frame.number"),
        "the InfoResponse answers the InfoRequest"
    );
    // The rest as before the Info: resume key, negotiate, open, stats.
    let pipe: Vec<&Frame> = pipe
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 4 | 5))
        .map(|(_, frame)| *frame)
        .collect();
    assert_eq!(pipe[4].get("rdiopipe.path"), "f.bin");
    assert_eq!(pipe[4].get("rdiopipe.flags.read"), "1");
    assert_eq!(pipe[4].get("rdiopipe.flags.write"), "0");
    assert_eq!(pipe[3].get("rdiopipe.status"), "0");
    assert_eq!(pipe[3].get("rdiopipe.provider"), "ofi:tcp");
    assert_eq!(
        pipe[3].get("rdiopipe.response_to"),
        pipe[2].get("frame.number"),
        "the NegotiateResponse answers the NegotiateRequest"
    );
    // The capabilities bitmap at its new offsets (40-byte and 44-byte
    // fixed parts): rdio get offers read batches (bit 0) and credit
    // demand (bit 1), rdio serve grants both.
    assert_eq!(pipe[2].get("rdiopipe.capabilities"), "0x0000000000000003");
    assert_eq!(pipe[3].get("rdiopipe.capabilities"), "0x0000000000000003");
    assert_eq!(pipe[5].get("rdiopipe.status"), "0");
    // Both Stats name the file and find it unchanged: Success, its size,
    // a modification time and the same file id; each answer matched.
    let stats = &pipe[6..10];
    for pair in stats.chunks(2) {
        assert_eq!(pair[0].get("rdiopipe.path"), "f.bin");
        assert_eq!(pair[1].get("rdiopipe.status"), "0");
        assert_eq!(pair[1].num("rdiopipe.size"), 200_000);
        assert!(pair[1].num("rdiopipe.modified_ns") > 0);
        assert!(pair[1].num("rdiopipe.file_id") != 0);
        assert_eq!(
            pair[1].get("rdiopipe.response_to"),
            pair[0].get("frame.number"),
            "the StatResponse answers its StatRequest"
        );
    }
    assert_eq!(
        stats[1].get("rdiopipe.file_id"),
        stats[3].get("rdiopipe.file_id")
    );
    assert_eq!(
        stats[1].get("rdiopipe.modified_ns"),
        stats[3].get("rdiopipe.modified_ns")
    );

    // The checksum: XXH3-128 of the file, the whole of it, answered.
    let checksum = &pipe[10..];
    assert_eq!(checksum[0].get("rdiopipe.path"), "f.bin");
    assert_eq!(checksum[0].get("rdiopipe.algorithm"), "1");
    assert_eq!(checksum[1].get("rdiopipe.status"), "0");
    assert_eq!(checksum[1].num("rdiopipe.checksum_length"), 200_000);
    let digest: String = xxhash_rust::xxh3::xxh3_128(&data)
        .to_be_bytes()
        .iter()
        .chain(&[0; 16])
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(checksum[1].get("rdiopipe.digest"), digest);
    assert_eq!(
        checksum[1].get("rdiopipe.response_to"),
        checksum[0].get("frame.number"),
        "the ChecksumResponse answers its ChecksumRequest"
    );

    // The client's RDMA channel: authentication, registration (the size
    // is the file's), reads at 64 KiB steps until end of file — the first
    // alone, later ones alone or as read batches (the session granted
    // them; they form when completions arrive in bursts) — close,
    // terminate.
    let sent: Vec<&Frame> = get
        .iter()
        .filter(|f| f.get("rdiocap.kind") == "2")
        .collect();
    let opcodes: Vec<u64> = sent.iter().map(|f| f.num("rdio.opcode")).collect();
    let reads: u64 = sent
        .iter()
        .map(|f| match f.num("rdio.opcode") {
            0x21 => 1,
            0x2a => f.num("rdio.batch.count"),
            _ => 0,
        })
        .sum();
    assert!(reads >= 4, "{opcodes:?}");
    let n = opcodes.len();
    assert!(n > 4, "{opcodes:?}");
    assert_eq!(opcodes[..3], [0x01, 0x20, 0x21], "{opcodes:?}");
    assert!(
        opcodes[3..n - 2].iter().all(|op| [0x21, 0x2a].contains(op)),
        "{opcodes:?}"
    );
    assert_eq!(opcodes[n - 2..], [0x27, 0x7f], "{opcodes:?}");
    let registered = get
        .iter()
        .find(|f| f.get("rdio.opcode") == "0x28")
        .expect("RegisterFileCompletion");
    assert_eq!(registered.get("rdio.status"), "0");
    assert_eq!(registered.num("rdio.size"), 200_000);
    assert_eq!(
        registered.get("rdio.response_to"),
        sent[1].get("frame.number")
    );
    // Each read, alone or in a batch (whose fields list its reads').
    let asked: Vec<(u64, String)> = sent
        .iter()
        .filter(|f| ["0x21", "0x2a"].contains(&f.get("rdio.opcode")))
        .flat_map(|f| {
            let offsets: Vec<u64> = f
                .get("rdio.offset")
                .split(',')
                .map(|o| u64::from_str_radix(o.trim_start_matches("0x"), 16).expect("offset"))
                .collect();
            let lens: Vec<&str> = f.get("rdio.desc.len").split(',').collect();
            offsets
                .into_iter()
                .zip(lens.chunks(2).map(|pair| pair.join(",")))
                .collect::<Vec<_>>()
        })
        .collect();
    // The destination (64 KiB, the last one what is left), then the status
    // block's 24 bytes.
    assert_eq!(
        asked[..4],
        [
            (0, "65536,24".to_owned()),
            (0x10000, "65536,24".to_owned()),
            (0x20000, "65536,24".to_owned()),
            (0x30000, "3392,24".to_owned()),
        ],
        "{asked:?}"
    );

    // The server's side: RDMA writes of the read data, each matched to its
    // read, and a status block completing each request, matched too: four
    // writes, four reads, then reads past the end.
    let writes: Vec<&Frame> = serve.iter().filter(|f| f.has("rdio.write.data")).collect();
    let data: u64 = writes.iter().map(|f| f.num("rdio.write.data")).sum();
    assert_eq!(data, 200_000);
    assert!(writes.iter().all(|f| f.has("rdio.write.request")));
    let blocks: Vec<&Frame> = serve.iter().filter(|f| f.has("rdiosb.status")).collect();
    let statuses: Vec<u64> = blocks.iter().map(|f| f.num("rdiosb.status")).collect();
    assert_eq!(&statuses[..8], [0; 8], "{statuses:?}");
    assert!(
        statuses[8..].iter().all(|s| *s == 1),
        "EndOfFile: {statuses:?}"
    );
    for block in &blocks {
        assert_eq!(block.get("rdiosb.valid"), "RDIO");
        assert!(block.has("rdiosb.response_to"));
    }
    let completed: u64 = blocks.iter().map(|f| f.num("rdiosb.bytes")).sum();
    assert_eq!(completed, 400_000, "200 000 written, 200 000 read");

    // The upload as its client sent it: the data in Write and WriteData,
    // and (interrupt mode, the default) completions as immediates naming
    // the writes' request ids.
    let carried: u64 = put
        .iter()
        .filter(|f| f.has("rdio.data_len"))
        .map(|f| f.num("rdio.data_len"))
        .sum();
    assert_eq!(carried, 200_000);
    let imms: Vec<u64> = put
        .iter()
        .filter(|f| f.get("rdiocap.kind") == "5")
        .map(|f| f.num("rdiocap.imm"))
        .collect();
    let write_ids: Vec<u64> = put
        .iter()
        .filter(|f| f.get("rdio.opcode") == "0x23")
        .map(|f| f.num("rdio.request_id"))
        .collect();
    assert_eq!(write_ids.len(), 4);
    assert_eq!(imms, write_ids);
}

/// A scripted session of every remote file operation, each outcome
/// status among them (`AlreadyExists`, `NotEmpty`, `IsADirectory`), as the
/// server recorded it: every frame decodes without an expert error, every
/// opcode and status is known, and the answers carry what was asked.
#[test]
fn remote_file_operations_are_captured_and_decoded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::create_dir(&root).expect("root");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(src.join("f.bin"), &data).expect("file");
    std::fs::write(src.join("sub/empty"), b"").expect("file");
    let serve_cap = dir.path().join("serve.pcapng");
    let served = Served::start(&root, &serve_cap);
    let remote = |path: &str| format!("{}:{path}", served.addr);
    let path = |p: &Path| p.to_str().expect("utf-8").to_owned();
    run(&["mkdir", "-p", &remote("d/e")]);
    run(&["put", "-r", "-p", &path(&src), &remote("d")]);
    run(&["ls", "-l", &remote("d/src")]);
    run(&["stat", &remote("d/src/f.bin")]);
    run(&["mv", &remote("d/src/f.bin"), "d/g.bin"]);
    // A partial download that matches: hashed, then resumed.
    let local = dir.path().join("local");
    std::fs::create_dir(&local).expect("local");
    std::fs::write(local.join(".g.bin.rdio-part"), &data[..40_000]).expect("part");
    run(&["get", "--partial", &remote("d/g.bin"), &path(&local)]);
    assert_eq!(std::fs::read(local.join("g.bin")).expect("got"), data);
    // Refusals, each a status of its own.
    for args in [
        vec!["mkdir".to_owned(), remote("d")],
        vec!["rm".to_owned(), "-d".to_owned(), remote("d")],
        vec!["rm".to_owned(), remote("d/e")],
    ] {
        let out = rdio_command().args(&args).output().expect("run rdio");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
    run(&["rm", "-d", &remote("d/e")]);
    served.stop();

    let frames = decode(&serve_cap);
    let received = |opcode: &str| -> Vec<&Frame> {
        frames
            .iter()
            .filter(|f| f.get("rdiopipe.opcode") == opcode)
            .collect()
    };
    for opcode in [
        "0x22", "0x23", "0x24", "0x25", "0x26", "0x27", "0x28", "0x29", "0x2a", "0x2b", "0x2f",
    ] {
        assert!(!received(opcode).is_empty(), "no {opcode} in the session");
    }
    let statuses: Vec<u64> = received("0x2f")
        .iter()
        .map(|f| f.num("rdiopipe.status"))
        .collect();
    for status in [0, 23, 41, 42] {
        assert!(statuses.contains(&status), "status {status}: {statuses:?}");
    }
    // Every answer names its request.
    for opcode in ["0x23", "0x25", "0x2b", "0x2f"] {
        for frame in received(opcode) {
            assert!(frame.has("rdiopipe.response_to"), "{opcode} unmatched");
        }
    }
    // The listing of d/src: f.bin and sub, with a count.
    let listing = received("0x23")
        .into_iter()
        .find(|f| f.get("rdiopipe.name") == "f.bin,sub")
        .expect("the listing of d/src");
    assert_eq!(listing.get("rdiopipe.count"), "2");
    assert_eq!(listing.get("rdiopipe.kind"), "0,1");
    let hash = received("0x2b")[0];
    assert_eq!(hash.get("rdiopipe.status"), "0");
    assert_eq!(hash.get("rdiopipe.digest").len(), 64);
}

#[test]
fn protocol_violations_are_expert_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.pcapng");
    let recorder = Recorder::create(&file, 512).expect("recorder");
    let message = |op: u8, flags: u16, credits: u16, reserved: u16, payload: &[u8]| {
        let mut bytes = vec![1, op];
        bytes.extend_from_slice(&flags.to_le_bytes());
        bytes.extend_from_slice(&credits.to_le_bytes());
        bytes.extend_from_slice(&reserved.to_le_bytes());
        bytes.extend_from_slice(&7u32.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes
    };
    let record = |direction, bytes: &[u8]| {
        recorder.record(&Record {
            direction,
            kind: if direction == Direction::Out {
                Kind::Send
            } else {
                Kind::Recv
            },
            connection: 1,
            remote: RemoteBuf::default(),
            imm: None,
            payload: bytes,
            len: bytes.len(),
        });
    };
    // 1: StatusResponse: the client's level is 4.
    let mut status = vec![0u8; 12];
    status[4] = 4;
    record(Direction::In, &message(0x03, 0, 0, 0, &status));
    // 2: a Keepalive claiming 9 credits: bad credits.
    record(Direction::Out, &message(0x40, 0, 9, 0, &[]));
    // 3: an unknown opcode.
    record(Direction::Out, &message(0x55, 0, 4, 0, &[]));
    // 4: a reserved field set: the header's demand word on an
    // AuthRequest, which never carries one (a request's may: §Credit
    // demand).
    record(Direction::Out, &message(0x01, 0, 4, 1, &[0u8; 16]));
    // 5: COLLAPSE on a Read.
    record(Direction::Out, &message(0x21, 0x2, 4, 0, &[0u8; 48]));
    // 6: a length that disagrees with the bytes.
    let mut short = message(0x40, 0, 4, 0, &[]);
    short[12] = 8;
    record(Direction::Out, &short);
    let pipe_record = |direction, bytes: &[u8]| {
        recorder.record(&Record {
            direction,
            kind: Kind::Pipe,
            connection: 2,
            remote: RemoteBuf::default(),
            imm: None,
            payload: bytes,
            len: bytes.len(),
        });
    };
    let frame = |op: u8, payload: &[u8]| {
        let mut bytes = b"RDIO\x01".to_vec();
        bytes.extend_from_slice(&[op, 0, 0]);
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes
    };
    // 7: a pipe frame with an unknown opcode.
    pipe_record(Direction::Out, b"RDIO\x01\x7e\x00\x00\x00\x00\x00\x00");
    // 8: a Terminate with reason UnknownOpcode (36): valid.
    record(
        Direction::In,
        &message(0x7f, 0, 0, 0, &[36, 0, 0, 0, 0, 0, 0, 0]),
    );
    // 9: a StatResponse with status 34, not assigned: unknown status.
    let mut stat = vec![0u8; 32];
    stat[0] = 34;
    pipe_record(Direction::In, &frame(0x08, &stat));
    // 10: a Refused with status Busy (28): valid.
    pipe_record(Direction::In, &frame(0x1f, &[28, 0, 0, 0, 0, 0, 0, 0]));
    // 11: an OpenRequest WRITE | IN_PLACE of "f": valid.
    pipe_record(
        Direction::Out,
        &frame(0x03, &[0x12, 0, 0, 0, 1, 0, 0, 0, b'f']),
    );
    // 12: an OpenRequest with the undefined open flag 0x20.
    pipe_record(
        Direction::Out,
        &frame(0x03, &[0x22, 0, 0, 0, 1, 0, 0, 0, b'f']),
    );
    // 13: an AuthResult that is 4 bytes, not 8: bad length.
    pipe_record(Direction::In, &frame(0x13, &[0, 0, 0, 0]));
    // 14: a pipe Error (BAD_LENGTH for the AuthResult's opcode): valid.
    pipe_record(Direction::In, &frame(0x30, &[5, 0, 0, 0, 0x13, 0, 0, 0]));
    // 15: a ReadBatch of two 16-byte reads, INTERRUPT, 4 credits: valid.
    let batch_read = |id: u32, dest: u64| {
        let mut read = Vec::new();
        read.extend_from_slice(&id.to_le_bytes());
        read.extend_from_slice(&1u32.to_le_bytes());
        read.extend_from_slice(&0u64.to_le_bytes());
        for (addr, len) in [(dest, 16u32), (dest + 16, 24)] {
            read.extend_from_slice(&addr.to_le_bytes());
            read.extend_from_slice(&5u32.to_le_bytes());
            read.extend_from_slice(&len.to_le_bytes());
        }
        read
    };
    let mut batch = vec![2, 0, 0, 0, 0, 0, 0, 0];
    batch.extend(batch_read(7, 0x1000));
    batch.extend(batch_read(8, 0x2000));
    record(Direction::Out, &message(0x2a, 0x1, 4, 0, &batch));
    // 16: a ReadBatch of no reads.
    record(Direction::Out, &message(0x2a, 0x1, 4, 0, &[0u8; 8]));
    assert_eq!(recorder.finish().expect("finish"), 16);

    let expected = [
        (2, "rdio.expert.credits"),
        (3, "rdio.expert.unknown_opcode"),
        (4, "rdio.expert.reserved"),
        (5, "rdio.expert.flags"),
        (6, "rdio.expert.length"),
        (7, "rdio.expert.unknown_opcode"),
        (9, "rdio.expert.unknown_status"),
        (12, "rdio.expert.reserved"),
        (13, "rdio.expert.length"),
        (16, "rdio.expert.invalid"),
    ];
    for (frame, expert) in expected {
        let rows = tshark(&file, expert, &["frame.number"]);
        assert!(
            rows.iter().any(|row| row[0] == frame.to_string()),
            "{expert} not raised on frame {frame}: {rows:?}"
        );
    }
    assert_eq!(count(&file, "_ws.expert.severity == error"), 10);
    assert_eq!(
        count(
            &file,
            "frame.number in {8, 10, 11, 14} && _ws.expert.severity == error"
        ),
        0,
        "known status codes (UnknownOpcode, Busy), IN_PLACE and a pipe Error are valid"
    );
    let decoded = tshark(
        &file,
        "frame.number in {8, 10, 11, 14}",
        &[
            "frame.number",
            "rdio.reason",
            "rdiopipe.status",
            "rdiopipe.flags.in_place",
            "rdiopipe.error.code",
            "rdiopipe.error.opcode",
        ],
    );
    assert_eq!(
        decoded,
        [
            ["8", "36", "", "", "", ""],
            ["10", "", "28", "", "", ""],
            ["11", "", "", "1", "", ""],
            ["14", "", "", "", "5", "0x13"],
        ],
        "Terminate reason, Refused status, IN_PLACE, Error code and opcode"
    );
    assert_eq!(
        count(&file, "frame.number == 1 && _ws.expert"),
        0,
        "a valid StatusResponse"
    );
    let batch = tshark(
        &file,
        "frame.number == 15",
        &[
            "_ws.expert.severity",
            "rdio.batch.count",
            "rdio.batch.request_id",
        ],
    );
    assert_eq!(
        batch,
        [["", "2", "0x00000007,0x00000008"]],
        "a ReadBatch decodes its reads, without expert info"
    );
}

#[test]
fn cp_over_loopback_is_captured_on_both_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.bin");
    let data: Vec<u8> = (0..150_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(&src, &data).expect("src");
    let dst = dir.path().join("dst.bin");
    let cap = dir.path().join("cp.pcapng");
    let path = |p: &Path| p.to_str().expect("utf-8").to_owned();
    // The round trip: an upload, then the read-back.
    let stderr = run(&[
        "cp",
        "--round-trip",
        &path(&src),
        &path(&dst),
        "--io-size",
        "64K",
        "--capture",
        &path(&cap),
    ]);
    assert!(stderr.contains("rdio: captured "), "{stderr}");
    assert_eq!(std::fs::read(&dst).expect("dst"), data);
    let frames = decode(&cap);
    // Both ends are in the one capture: every message the client sent the
    // server received, and the other way round.
    let opcodes = |kind: &str| -> Vec<u64> {
        let mut ops: Vec<u64> = frames
            .iter()
            .filter(|f| f.get("rdiocap.kind") == kind)
            .map(|f| f.num("rdio.opcode"))
            .collect();
        ops.sort_unstable();
        ops
    };
    assert_eq!(opcodes("2"), opcodes("3"));
    let sent = opcodes("2");
    for op in [0x01, 0x02, 0x03, 0x20, 0x28, 0x23, 0x21, 0x27, 0x29] {
        assert!(sent.contains(&op), "opcode {op:#x} missing: {sent:?}");
    }
    // Each pipe frame twice (client and server end): the upload's open
    // naming the file with WRITE | CREATE | TRUNCATE, then the read-back's
    // read-only open (zero-copy reads from the server's page cache).
    let opens: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.get("rdiopipe.opcode") == "0x03")
        .collect();
    assert_eq!(opens.len(), 4);
    assert!(opens.iter().all(|f| f.get("rdiopipe.path") == "src.bin"));
    let modes: Vec<(&str, &str)> = opens
        .iter()
        .map(|f| (f.get("rdiopipe.flags.read"), f.get("rdiopipe.flags.write")))
        .collect();
    assert_eq!(modes, [("0", "1"), ("0", "1"), ("1", "0"), ("1", "0")]);
    // The server's status blocks complete the upload and the download.
    let bytes: u64 = frames
        .iter()
        .filter(|f| f.get("rdiosb.status") == "0")
        .map(|f| f.num("rdiosb.bytes"))
        .sum();
    assert_eq!(bytes, 300_000);

    // The default: the read-only open and the reads alone, and the
    // checksum asked on the captured side channel.
    let dst = dir.path().join("dst-default.bin");
    let cap = dir.path().join("cp-default.pcapng");
    let stderr = run(&[
        "cp",
        &path(&src),
        &path(&dst),
        "--io-size",
        "64K",
        "--capture",
        &path(&cap),
    ]);
    assert!(stderr.contains("rdio: captured "), "{stderr}");
    assert_eq!(std::fs::read(&dst).expect("dst"), data);
    let frames = decode(&cap);
    let opens: Vec<(&str, &str)> = frames
        .iter()
        .filter(|f| f.get("rdiopipe.opcode") == "0x03")
        .map(|f| (f.get("rdiopipe.flags.read"), f.get("rdiopipe.flags.write")))
        .collect();
    assert_eq!(opens, [("1", "0"), ("1", "0")]);
    assert_eq!(
        frames
            .iter()
            .filter(|f| f.get("rdiopipe.opcode") == "0x20")
            .count(),
        2,
        "the ChecksumRequest, at both ends"
    );
    let bytes: u64 = frames
        .iter()
        .filter(|f| f.get("rdiosb.status") == "0")
        .map(|f| f.num("rdiosb.bytes"))
        .sum();
    assert_eq!(bytes, 150_000);
}

/// The dissector's status table names every status rdio-core defines, by
/// its Rust name, and names no code rdio-core does not know: a status added
/// to the wire (e.g. the per-client limits' 51 `TooManyOpenFiles` and 52
/// `IdleTimeout`) is named in captures, not flagged as unknown.
#[test]
fn the_dissector_names_every_status_code() {
    let lua = std::fs::read_to_string(dissector()).expect("rdio.lua");
    let table = lua
        .split("local STATUS = {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("the STATUS table");
    let mut named = std::collections::BTreeMap::new();
    for entry in table.split(',') {
        let entry = entry
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .collect::<String>();
        let Some((code, name)) = entry.split_once('=') else {
            continue;
        };
        let code: u32 = code
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .unwrap_or_else(|e| panic!("{entry:?}: {e}"));
        named.insert(code, name.trim().trim_matches('"').to_owned());
    }
    for code in 0..1024u32 {
        let status = rdio_core::wire::Status::from_u32(code).ok();
        assert_eq!(
            named.get(&code).map(String::as_str),
            status.map(|s| format!("{s:?}")).as_deref(),
            "status {code}"
        );
    }
}
