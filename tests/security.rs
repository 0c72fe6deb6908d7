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
                frames::read(&mut s, &mut buf, Duration::from_secs(5))
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
        return frames::read(&mut s, &mut buf, Duration::from_secs(5))
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
    let kind = frames::read(&mut s, &mut buf, Duration::from_secs(10))
        .await
        .ok()??;
    Some((kind, buf))
}

fn envelope_from(sender: &Home, to: &Home, name: &str, plaintext: &[u8], id: u8) -> Vec<u8> {
    let keys = sender.load_keys().unwrap();
    let to_keys = to.load_keys().unwrap();
    let params = SealParams {
        message_id: MessageId([id; 16]),
        created_at: renkei_node::node::now_secs(),
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
    let fed = federation(&[
        ("1310000001", "43", true),
        ("1310000011", "11", true),
        ("1310000021", "15", true),
    ]);
    let _dn = fed.directory_node();
    let _a = fed.node(0);
    fed.wait_directory(0, 1);
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
        assert_eq!(
            u16::from_be_bytes([payload[0], payload[1]]),
            3,
            "WrongRecipient"
        );

        // Sealed for A, one ciphertext byte flipped in transit.
        let to_a = name_for(FileKind::UpJsk, &fed.offices[2], &fed.offices[0], &stamp(2));
        let mut env = envelope_from(c, a, &to_a, &file, 2);
        let last = env.len() - 20;
        env[last] ^= 0x40;
        let (kind, payload) = try_deliver(&sender, peer, &env).await.expect("an answer");
        assert_eq!(kind, Kind::Refuse);
        assert_eq!(
            u16::from_be_bytes([payload[0], payload[1]]),
            10,
            "chunk authentication"
        );

        // Header signature broken (creation time altered).
        let mut env = envelope_from(c, a, &to_a, &file, 3);
        env[30] ^= 0x01;
        let (kind, payload) = try_deliver(&sender, peer, &env).await.expect("an answer");
        assert_eq!(kind, Kind::Refuse);
        assert_eq!(
            u16::from_be_bytes([payload[0], payload[1]]),
            6,
            "bad signature"
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
