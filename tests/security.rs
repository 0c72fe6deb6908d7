//! Only directory members connect; revoked offices are cut off; tampered and misrouted
//! envelopes are refused. A node runs as a process; the attacker runs in this test with the
//! real libp2p stack.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::AsyncWriteExt;
use libp2p::{Multiaddr, PeerId};
use renkei_node::frames::{self, Kind};
use renkei_node::home::Home;
use renkei_node::net::{self, DELIVER, DIRECTORY, Net};
use renkei_protocol::FileKind;
use renkei_protocol::envelope::{MessageId, SealParams, seal};
use renkei_protocol::frames::Refusal;

/// Offices A (43), B (11) and C (15), all enrolled; only A's node will run (the test plays the
/// others with their keys).
fn three_offices() -> Federation {
    federation(&[
        ("1310000001", "43", true),
        ("1310000011", "11", true),
        ("1310000021", "15", true),
    ])
}

/// The directory node and office 0's node, once office 0 holds the directory.
fn first_office_running(fed: &Federation) -> (Proc, Proc) {
    let dn = fed.directory_node();
    let a = fed.node(0);
    fed.wait_directory(0, 1);
    (dn, a)
}

/// What a node answers on a delivery stream.
const ANSWERS: &[Kind] = &[Kind::Ack, Kind::Refuse];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A libp2p swarm holding `home`'s keys but running in the test, not as a node.
fn impostor(home: &Home) -> Net {
    let keys = home.load_keys().unwrap();
    net::start(
        &keys[0].identity,
        &[],
        Arc::new(|_: &PeerId| true),
        &net::NetConfig::office(),
    )
    .unwrap()
}

/// The PeerId and first listen address of an office.
fn address_of(home: &Home) -> (PeerId, Multiaddr) {
    let keys = home.load_keys().unwrap();
    let peer = net::peer_id_of(&keys[0].identity.verifying_key().to_bytes()).unwrap();
    let addr = home.config().unwrap().listen[0].parse().unwrap();
    (peer, addr)
}

#[test]
fn a_peer_not_in_the_directory_cannot_connect() {
    let fed = federation(&[("1310000001", "43", true), ("1310000099", "11", false)]);
    let _dn = fed.directory_node();
    let member = fed.node(0);
    fed.wait_directory(0, 1);
    rt().block_on(async {
        let outsider = impostor(fed.home(1));
        let (peer, addr) = address_of(fed.home(0));
        outsider.add_address(peer, addr).await;
        let r = outsider.open(peer, DELIVER, Duration::from_secs(5)).await;
        if let Ok(mut s) = r {
            // A stream may open before the member's gate closes the connection: nothing
            // must get through it.
            let _ = frames::write(&mut s, Kind::End, &[]).await;
            let mut buf = Vec::new();
            assert!(
                frames::read(&mut s, &mut buf, Duration::from_secs(5), ANSWERS)
                    .await
                    .is_err()
                    || buf.is_empty()
            );
        }
        // Nor may it read the directory.
        let dn_peer: PeerId = fed
            .dn_multiaddr
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        outsider
            .add_address(dn_peer, fed.dn_addr.parse().unwrap())
            .await;
        assert!(
            outsider
                .open(dn_peer, DIRECTORY, Duration::from_secs(5))
                .await
                .is_err()
        );
    });
    wait_for(
        Duration::from_secs(10),
        "the member to log the refusal",
        || member.log_text().contains("not a directory member"),
    );
}

#[test]
fn a_revoked_office_is_refused() {
    let fed = federation(&[("1310000001", "43", true), ("1310000011", "11", true)]);
    let _dn = fed.directory_node();
    let _cm = fed.node(0);
    let _svc = fed.node(1);
    fed.wait_directory(0, 1);
    fed.revoke(1);
    fed.wait_directory(0, 2);
    // Files for the revoked office are refused at the sender, with a report.
    let name = fed.drop(
        FileKind::UpPlan,
        0,
        1,
        1,
        &valid_file(FileKind::UpPlan, 2, "取消後送信試験"),
    );
    let text = wait_rejected(fed.home(0), &name);
    assert!(text.contains("RECIPIENT_UNKNOWN"), "{text}");
    assert_eq!(count(&fed.home(1).inbox()), 0);
    // And the revoked office's key can no longer deliver to anyone.
    rt().block_on(async {
        let revoked = impostor(fed.home(1));
        let (peer, addr) = address_of(fed.home(0));
        revoked.add_address(peer, addr).await;
        let answer = try_deliver(&revoked, peer, b"RENKEI").await;
        assert!(
            answer.is_none(),
            "a revoked office got an answer: {answer:?}"
        );
    });
    assert_state_clean(fed.home(0), &[&marker_bytes("取消後送信試験")]);
    assert_state_clean(fed.home(1), &[&marker_bytes("取消後送信試験")]);
}

/// Opens a delivery stream and sends `envelope` as a header frame followed by its chunks;
/// returns the first frame the node answers with, if any.
async fn try_deliver(net: &Net, peer: PeerId, envelope: &[u8]) -> Option<(Kind, Vec<u8>)> {
    let mut s = net.open(peer, DELIVER, Duration::from_secs(5)).await.ok()?;
    let Ok((header, mut pos)) = renkei_protocol::envelope::EnvelopeHeader::parse(envelope) else {
        frames::write(&mut s, Kind::Header, envelope).await.ok()?;
        s.flush().await.ok()?;
        let mut buf = Vec::new();
        return frames::read(&mut s, &mut buf, Duration::from_secs(5), ANSWERS)
            .await
            .ok()?
            .map(|k| (k, buf));
    };
    frames::write(&mut s, Kind::Header, &envelope[..pos])
        .await
        .ok()?;
    for i in 0..header.chunk_count() {
        let n = header.chunk_len(i);
        frames::write(&mut s, Kind::Chunk, &envelope[pos..pos + n])
            .await
            .ok()?;
        pos += n;
    }
    frames::write(&mut s, Kind::End, &[]).await.ok()?;
    s.flush().await.ok()?;
    let mut buf = Vec::new();
    let kind = frames::read(&mut s, &mut buf, Duration::from_secs(10), ANSWERS)
        .await
        .ok()??;
    Some((kind, buf))
}

fn envelope_from(sender: &Home, to: &Home, name: &str, plaintext: &[u8], id: u8) -> Vec<u8> {
    let keys = sender.load_keys().unwrap();
    let to_keys = to.load_keys().unwrap();
    let params = SealParams {
        message_id: MessageId([id; 16]),
        created_at: renkei_node::env::wall_clock_ms() / 1000,
        sender_office: sender.config().unwrap().office.parse().unwrap(),
        recipient_office: to.config().unwrap().office.parse().unwrap(),
        recipient_key: x25519_dalek::PublicKey::from(&to_keys[0].encryption).to_bytes(),
        file_name: name,
        plaintext_len: plaintext.len() as u64,
        plaintext_hash: renkei_protocol::sha256(plaintext),
        chunk_size: 1024,
    };
    seal(&params, plaintext, &keys[0].identity, &mut rand::rng()).unwrap()
}

#[test]
fn tampered_and_misrouted_envelopes_are_refused() {
    let fed = three_offices();
    let _nodes = first_office_running(&fed);
    let (a, b, c) = (fed.home(0), fed.home(1), fed.home(2));
    let file = valid_file(FileKind::UpJsk, 40, "改ざん試験");
    rt().block_on(async {
        let sender = impostor(c);
        let (peer, addr) = address_of(a);
        sender.add_address(peer, addr).await;

        // Sealed for office B but delivered to A: misrouted.
        let to_b = name_for(FileKind::UpJsk, &fed.offices[2], &fed.offices[1], &stamp(1));
        let env = envelope_from(c, b, &to_b, &file, 1);
        let (kind, payload) = try_deliver(&sender, peer, &env).await.expect("an answer");
        assert_eq!(kind, Kind::Refuse);
        let r = Refusal::parse(&payload).unwrap();
        assert_eq!(
            (r.message_id, r.code.to_u16()),
            (MessageId([1; 16]), 3),
            "WrongRecipient: refused under the message's own id"
        );

        // Sealed for A, one ciphertext byte flipped in transit.
        let to_a = name_for(FileKind::UpJsk, &fed.offices[2], &fed.offices[0], &stamp(2));
        let mut env = envelope_from(c, a, &to_a, &file, 2);
        let last = env.len() - 20;
        env[last] ^= 0x40;
        let (kind, payload) = try_deliver(&sender, peer, &env).await.expect("an answer");
        assert_eq!(kind, Kind::Refuse);
        let r = Refusal::parse(&payload).unwrap();
        assert_eq!(
            (r.message_id, r.code.to_u16()),
            (MessageId([2; 16]), 10),
            "chunk authentication: refused under the message's own id"
        );

        // Header signature broken (creation time altered).
        let mut env = envelope_from(c, a, &to_a, &file, 3);
        env[30] ^= 0x01;
        let (kind, payload) = try_deliver(&sender, peer, &env).await.expect("an answer");
        assert_eq!(kind, Kind::Refuse);
        let r = Refusal::parse(&payload).unwrap();
        assert_eq!(
            (r.message_id, r.code.to_u16()),
            (MessageId([3; 16]), 6),
            "bad signature: refused under the message's own id"
        );

        // The same envelope untouched is accepted and acked: the harness is sound.
        let env = envelope_from(c, a, &to_a, &file, 4);
        let (kind, payload) = try_deliver(&sender, peer, &env).await.expect("an answer");
        assert_eq!(kind, Kind::Ack);
        let ack = renkei_protocol::ack::Ack::parse(&payload).unwrap();
        assert_eq!(ack.verdict, renkei_protocol::ack::Verdict::Accepted);
    });
    assert_eq!(
        count(&a.inbox()),
        1,
        "only the intact envelope reached the inbox"
    );
    assert_state_clean(a, &[&marker_bytes("改ざん試験")]);
}

/// An envelope's frames: its header, then each chunk.
fn frames_of(envelope: &[u8]) -> Vec<(Kind, Vec<u8>)> {
    let (h, mut at) = renkei_protocol::envelope::EnvelopeHeader::parse(envelope).unwrap();
    let mut out = vec![(Kind::Header, envelope[..at].to_vec())];
    for i in 0..h.chunk_count() {
        let n = h.chunk_len(i);
        out.push((Kind::Chunk, envelope[at..at + n].to_vec()));
        at += n;
    }
    out
}

/// Writes frames on a stream and flushes.
async fn send(s: &mut libp2p::Stream, frames: &[(Kind, Vec<u8>)]) {
    for (k, f) in frames {
        frames::write(s, *k, f).await.unwrap();
    }
    s.flush().await.unwrap();
}

async fn answer(s: &mut libp2p::Stream) -> Option<(Kind, Vec<u8>)> {
    let mut buf = Vec::new();
    let kind = frames::read(s, &mut buf, Duration::from_secs(10), ANSWERS)
        .await
        .ok()??;
    Some((kind, buf))
}

#[test]
fn two_streams_with_one_message_id_cannot_mix_their_bytes() {
    let fed = federation(&[("1310000001", "43", true), ("1310000021", "15", true)]);
    let _dn = fed.directory_node();
    let _a = fed.node(0);
    fed.wait_directory(0, 1);
    let (a, c) = (fed.home(0), fed.home(1));
    let name = name_for(FileKind::UpJsk, &fed.offices[1], &fed.offices[0], &stamp(1));
    // Two different files under one message id, both validly signed by C (a member can).
    let first = valid_file(FileKind::UpJsk, 60, "一本目の内容です");
    let second = valid_file(FileKind::UpJsk, 60, "二本目の内容です");
    let env1 = frames_of(&envelope_from(c, a, &name, &first, 7));
    let env2 = frames_of(&envelope_from(c, a, &name, &second, 7));
    assert!(env1.len() >= 3, "several chunks");
    rt().block_on(async {
        let sender = impostor(c);
        let (peer, addr) = address_of(a);
        sender.add_address(peer, addr).await;
        let mut s1 = sender
            .open(peer, DELIVER, Duration::from_secs(5))
            .await
            .unwrap();
        // Stream 1: the header and the first chunk, then a pause.
        send(&mut s1, &env1[..2]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Stream 2, same id: refused while stream 1 holds the message.
        let mut s2 = sender
            .open(peer, DELIVER, Duration::from_secs(5))
            .await
            .unwrap();
        send(&mut s2, &env2).await;
        let (kind, payload) = answer(&mut s2).await.expect("an answer on stream 2");
        assert_eq!(kind, Kind::Refuse);
        let r = Refusal::parse(&payload).unwrap();
        assert_eq!(
            (r.message_id, r.code),
            (
                MessageId([7; 16]),
                renkei_protocol::frames::RefusalCode::Busy
            )
        );
        // Stream 1 finishes and is acked for its own bytes.
        send(&mut s1, &env1[2..]).await;
        send(&mut s1, &[(Kind::End, Vec::new())]).await;
        let (kind, payload) = answer(&mut s1).await.expect("an ack on stream 1");
        assert_eq!(kind, Kind::Ack);
        let ack = renkei_protocol::ack::Ack::parse(&payload).unwrap();
        assert_eq!(ack.plaintext_hash, renkei_protocol::sha256(&first));
    });
    // The inbox holds exactly the bytes that were checked, hashed and acked.
    assert_eq!(std::fs::read(a.inbox().join(&name)).unwrap(), first);
    assert_eq!(count(&a.inbox()), 1);
    assert_eq!(count(&a.partial()), 0);
}

#[test]
fn message_ids_are_per_sender() {
    let fed = three_offices();
    let _nodes = first_office_running(&fed);
    let (a, b, c) = (fed.home(0), fed.home(1), fed.home(2));
    let from_c = name_for(FileKind::UpJsk, &fed.offices[2], &fed.offices[0], &stamp(1));
    let from_b = name_for(FileKind::UpJsk, &fed.offices[1], &fed.offices[0], &stamp(2));
    let file_c = valid_file(FileKind::UpJsk, 5, "事業所Cの実績");
    let file_b = valid_file(FileKind::UpJsk, 5, "事業所Bの実績");
    rt().block_on(async {
        let (peer, addr) = address_of(a);
        let sc = impostor(c);
        sc.add_address(peer, addr.clone()).await;
        let (kind, _) = try_deliver(&sc, peer, &envelope_from(c, a, &from_c, &file_c, 9))
            .await
            .expect("an answer to C");
        assert_eq!(kind, Kind::Ack);
        // B happens to use the same message id: its own file, its own ack.
        let sb = impostor(b);
        sb.add_address(peer, addr).await;
        let (kind, payload) = try_deliver(&sb, peer, &envelope_from(b, a, &from_b, &file_b, 9))
            .await
            .expect("an answer to B");
        assert_eq!(kind, Kind::Ack);
        let ack = renkei_protocol::ack::Ack::parse(&payload).unwrap();
        assert_eq!(ack.sender_office.as_str(), "1310000011");
        assert_eq!(ack.plaintext_hash, renkei_protocol::sha256(&file_b));
    });
    assert_eq!(std::fs::read(a.inbox().join(&from_c)).unwrap(), file_c);
    assert_eq!(std::fs::read(a.inbox().join(&from_b)).unwrap(), file_b);
}

#[test]
fn an_interrupted_receive_leaves_no_plaintext_and_a_partner_cannot_fill_the_disk() {
    let fed = federation(&[("1310000001", "43", true), ("1310000021", "15", true)]);
    let mut config = fed.home(0).config().unwrap();
    config.io_timeout_secs = 2;
    config.max_partial_mb = 2;
    fed.home(0).write_config(&config).unwrap();
    let _dn = fed.directory_node();
    let _a = fed.node(0);
    fed.wait_directory(0, 1);
    let (a, c) = (fed.home(0), fed.home(1));
    let name = |n| name_for(FileKind::UpJsk, &fed.offices[1], &fed.offices[0], &stamp(n));
    // 1–2 MiB each: streamed to disk as it comes (larger than what is opened in memory); one
    // at a time fits in max_partial_mb = 2, two do not.
    let big = valid_file(FileKind::UpJsk, 6000, "途中で止まる受信");
    assert!(big.len() > 1 << 20 && big.len() < 2 << 20, "{}", big.len());
    rt().block_on(async {
        let sender = impostor(c);
        let (peer, addr) = address_of(a);
        sender.add_address(peer, addr).await;
        let env1 = frames_of(&envelope_from(c, a, &name(1), &big, 1));
        let env2 = frames_of(&envelope_from(c, a, &name(2), &big, 2));
        // A stream that stalls in the middle of a message.
        let mut s1 = sender
            .open(peer, DELIVER, Duration::from_secs(5))
            .await
            .unwrap();
        send(&mut s1, &env1[..3]).await;
        wait_for(Duration::from_secs(10), "a partial file", || {
            count(&a.partial()) == 1
        });
        // Only the office's user may read it.
        #[cfg(unix)]
        for e in std::fs::read_dir(a.partial()).unwrap().flatten() {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }
        // A second unfinished file from the same partner would pass max_partial_mb: busy.
        let mut s2 = sender
            .open(peer, DELIVER, Duration::from_secs(5))
            .await
            .unwrap();
        send(&mut s2, &env2[..1]).await;
        let (kind, payload) = answer(&mut s2).await.expect("an answer on stream 2");
        assert_eq!(kind, Kind::Refuse);
        assert_eq!(
            Refusal::parse(&payload).unwrap().code,
            renkei_protocol::frames::RefusalCode::Busy
        );
        // The stalled stream times out (2 s) and its partial file is removed at once.
        wait_for(Duration::from_secs(10), "the partial file removed", || {
            count(&a.partial()) == 0
        });
        drop(s1);
        // A stream dropped in the middle of a message leaves nothing either.
        let mut s3 = sender
            .open(peer, DELIVER, Duration::from_secs(5))
            .await
            .unwrap();
        send(&mut s3, &env2[..3]).await;
        wait_for(Duration::from_secs(10), "a partial file", || {
            count(&a.partial()) == 1
        });
        let _ = s3.close().await;
        drop(s3);
        wait_for(Duration::from_secs(10), "the partial file removed", || {
            count(&a.partial()) == 0
        });
    });
    assert_eq!(count(&a.inbox()), 0);
}
